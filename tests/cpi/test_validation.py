"""Policy validation: the one-pass numba check against the NumPy reference it replaced, the
checks fused into the evaluation kernels, and the messages on every evaluation path."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import cpi
from cpi import _kernels as K
from cpi import exact
from cpi.mdp import ROW_TOL, row_tolerance

from .strategies import policies


def numpy_violation(pi, tol):
    """The NumPy check of ``TabularMDP.check_policy`` before the fused kernel: first bad entry
    (row-major), else first row whose sum is off by more than ``tol``."""
    bad = ~np.isfinite(pi) | (pi < 0)
    if bad.any():
        s, a = np.argwhere(bad)[0]
        return 1, int(s), int(a)
    sums = pi.sum(axis=1)
    rows = np.flatnonzero(np.abs(sums - 1.0) > tol)
    return (2, int(rows[0]), -1) if rows.size else (0, -1, -1)


@st.composite
def maybe_bad_policies(draw, max_S=8, max_A=9):
    """Valid policies and policies broken in one or more ways (NaN, inf, negative entries,
    rows scaled off one), away from the tolerance boundary."""
    S = draw(st.integers(1, max_S))
    A = draw(st.integers(1, max_A))
    pi = draw(policies(S, A)).copy()
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    for _ in range(draw(st.integers(0, 3))):
        s, a = rng.integers(0, S), rng.integers(0, A)
        kind = draw(st.sampled_from(["nan", "inf", "-inf", "neg", "scale", "tiny"]))
        if kind == "scale":
            pi[s] *= draw(st.sampled_from([0.5, 0.97, 1.001, 2.0]))
        elif kind == "tiny":
            pi[s, a] += draw(st.sampled_from([1e-12, -1e-12]))  # within tolerance: still valid
            pi[s, a] = abs(pi[s, a])
        else:
            pi[s, a] = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf, "neg": -0.25}[kind]
    return pi


@given(maybe_bad_policies())
def test_fused_check_agrees_with_numpy(pi):
    tol = ROW_TOL
    ref = numpy_violation(pi, tol)
    assert tuple(K.policy_violation(pi, tol)) == ref
    # the checks fused into the value pass and the compact P_pi build say the same valid / not
    S, A = pi.shape
    mdp = cpi.garnet(S, A, 1, 0.9, seed=0)
    V = np.zeros(S)
    order = np.arange(S)
    ok = K.dag_value(order, mdp.P.indptr, mdp.P.indices, mdp.P.data, mdp.R, pi, 0.9,
                     np.zeros(S, np.bool_), A, V, tol)
    assert ok == (ref[0] == 0)
    *_, ok2 = K.compact_ppi(mdp.P.indptr, mdp.P.indices, mdp.P.data, pi, mdp.terminal, A, tol,
                            np.empty(0, np.uint16))
    assert ok2 == (ref[0] == 0)


def _message(mdp, pi, name="pi"):
    with pytest.raises(ValueError) as e:
        mdp.check_policy(pi, name)
    return str(e.value)


@pytest.mark.parametrize("path", ["dag", "dense", "krylov"])
@pytest.mark.parametrize("breaker, match", [
    (lambda pi: pi.__setitem__((3, 1), -0.5), r"pi\[3, 1\] = -0.5: policy entries must be finite and >= 0"),
    (lambda pi: pi.__setitem__((2, 0), np.nan), r"pi\[2, 0\] = nan"),
    (lambda pi: pi.__setitem__((4, 0), pi[4, 0] + 0.1), r"row for state 4 sums to 1.1"),
])
def test_every_evaluation_path_names_the_bad_entry(path, breaker, match, monkeypatch):
    if path == "dag":
        mdp = cpi.thought_tree(3, 3, 0.2, seed=0)
    else:
        mdp = cpi.garnet(30, 3, 4, 0.9, seed=0)
        monkeypatch.setattr(exact, "DENSE_MAX_S", 200 if path == "dense" else 0)
    pi = mdp.uniform_policy()
    breaker(pi)
    msg = _message(mdp, pi)
    for f in (cpi.value, cpi.evaluate, cpi.occupancy, cpi.q_values, cpi.advantages):
        with pytest.raises(ValueError, match=match) as e:
            f(mdp, pi)
        assert str(e.value) == msg
    with pytest.raises(ValueError, match=match.replace("pi", "pi2", 1)):
        cpi.policy_advantage(mdp, mdp.uniform_policy(), pi)


def test_terminal_rows_of_the_policy_are_checked_too():
    mdp = cpi.thought_tree(2, 2, 0.0, seed=0)
    pi = mdp.uniform_policy()
    leaf = int(np.flatnonzero(mdp.terminal)[0])
    pi[leaf] = [0.7, 0.7]
    with pytest.raises(ValueError, match=f"row for state {leaf} sums to 1.4"):
        cpi.value(mdp, pi)


def test_float32_inputs_normalised_in_float32_are_accepted():
    rng = np.random.default_rng(0)
    S, A = 50, 7
    P = rng.random((S, A, S)).astype(np.float32)
    P /= P.sum(-1, keepdims=True)
    R = rng.random((S, A)).astype(np.float32)
    init = rng.random(S).astype(np.float32)
    init /= init.sum()
    assert np.abs(P.astype(np.float64).sum(-1) - 1).max() > ROW_TOL  # float64's rule would refuse
    mdp = cpi.TabularMDP(P, R, 0.9, initial=init)
    pi = rng.random((S, A)).astype(np.float32)
    pi /= pi.sum(1, keepdims=True)
    V = cpi.value(mdp, pi)
    assert np.all(np.isfinite(V))
    mdp.check_policy(pi)
    assert row_tolerance(np.float32) == pytest.approx(64 * np.finfo(np.float32).eps)
    assert row_tolerance(np.float64) == row_tolerance(np.int64) == ROW_TOL
    pi[3] *= 1.001  # a real error is still an error
    with pytest.raises(ValueError, match="row for state 3 sums to"):
        cpi.value(mdp, pi)
    bad = P.copy()
    bad[1, 2] *= 1.001
    with pytest.raises(ValueError, match="state 1, action 2 sums to"):
        cpi.TabularMDP(bad, R, 0.9)


def test_terminal_indices_must_be_integers():
    P = np.zeros((3, 2, 3))
    P[0, :, 1] = P[1, :, 2] = P[2, :, 2] = 1.0
    R = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    with pytest.raises(ValueError, match="terminal indices must be integers; got 2.7 at position 0"):
        cpi.TabularMDP(P, R, 1.0, terminal=[2.7])
    with pytest.raises(ValueError, match="terminal indices must be integers; got nan"):
        cpi.TabularMDP(P, R, 1.0, terminal=[np.nan])
    with pytest.raises(ValueError, match="bool mask or integer state indices"):
        cpi.TabularMDP(P, R, 1.0, terminal=np.array(["2"]))
    with pytest.raises(ValueError, match="1-d array of state indices"):
        cpi.TabularMDP(P, R, 1.0, terminal=[[2]])
    assert cpi.TabularMDP(P, R, 1.0, terminal=[2.0]).terminal.tolist() == [False, False, True]
