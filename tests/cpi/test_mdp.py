"""Validation of TabularMDP inputs: each bad input raises a ValueError naming it."""
import numpy as np
import pytest
import scipy.sparse as sp

import cpi


def _chain():
    P = np.zeros((3, 2, 3))
    P[0, :, 1] = 1.0
    P[1, :, 2] = 1.0
    P[2, :, 2] = 1.0
    R = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    return P, R


def test_dense_and_sparse_inputs_agree():
    P, R = _chain()
    a = cpi.TabularMDP(P, R, 0.9)
    b = cpi.TabularMDP(sp.csr_matrix(P.reshape(6, 3)), R, 0.9)
    assert (a.P != b.P).nnz == 0 and a.P.shape == (6, 3)
    assert a.initial.sum() == pytest.approx(1.0)


@pytest.mark.parametrize("mutate, match", [
    (lambda P, R: (P[:, :, :2], R), r"P must have shape"),
    (lambda P, R: (P, R[:, :1]), r"P must have shape"),
    (lambda P, R: (P, R[0]), r"R must have shape"),
])
def test_shape_errors(mutate, match):
    P, R = _chain()
    with pytest.raises(ValueError, match=match):
        cpi.TabularMDP(*mutate(P, R), 0.9)


def test_row_sum_error_names_state_and_action():
    P, R = _chain()
    P[1, 1, 2] = 0.97
    with pytest.raises(ValueError, match=r"state 1, action 1 sums to 0.97"):
        cpi.TabularMDP(P, R, 0.9)


def test_negative_and_nan_entries():
    P, R = _chain()
    P[0, 0, 0] = -0.1
    P[0, 0, 1] = 1.1
    with pytest.raises(ValueError, match=r"negative entry -0.1 for state 0, action 0"):
        cpi.TabularMDP(P, R, 0.9)
    P, R = _chain()
    P[2, 1, 0] = np.nan
    with pytest.raises(ValueError, match=r"state 2, action 1.*finite"):
        cpi.TabularMDP(P, R, 0.9)
    P, R = _chain()
    R[1, 0] = np.nan
    with pytest.raises(ValueError, match=r"R\[1, 0\] is nan"):
        cpi.TabularMDP(P, R, 0.9)


@pytest.mark.parametrize("gamma", [-0.1, 1.5, float("nan")])
def test_gamma_range(gamma):
    P, R = _chain()
    with pytest.raises(ValueError, match="gamma"):
        cpi.TabularMDP(P, R, gamma)


def test_gamma_one_needs_terminals_and_proper_policies():
    P, R = _chain()
    with pytest.raises(ValueError, match="gamma == 1 needs terminal"):
        cpi.TabularMDP(P, R, 1.0)
    R[2] = 0.0
    m = cpi.TabularMDP(P, R, 1.0, terminal=[2])
    assert m.order is not None and m.longest_path == 2
    # action 1 in state 1 loops back to 0: the policy that always takes it never terminates
    P2 = P.copy()
    P2[1, 1] = 0.0
    P2[1, 1, 0] = 1.0
    with pytest.raises(ValueError, match="some policy never terminates from state 0"):
        cpi.TabularMDP(P2, R, 1.0, terminal=[2])


def test_terminal_must_absorb_with_zero_reward():
    P, R = _chain()
    with pytest.raises(ValueError, match="terminal state 1 is not absorbing"):
        cpi.TabularMDP(P, R, 0.9, terminal=[1])
    P, R = _chain()
    R[2, 1] = 1.0
    with pytest.raises(ValueError, match=r"terminal state 2 has reward R\[2, 1\]"):
        cpi.TabularMDP(P, R, 0.9, terminal=[2])


def test_policy_and_distribution_checks():
    P, R = _chain()
    m = cpi.TabularMDP(P, R, 0.9)
    with pytest.raises(ValueError, match=r"row for state 1 sums to 0.9"):
        cpi.value(m, np.array([[0.5, 0.5], [0.5, 0.4], [1.0, 0.0]]))
    with pytest.raises(ValueError, match=r"pi must have shape \(S, A\) = \(3, 2\)"):
        cpi.value(m, np.ones((3, 1)))
    with pytest.raises(ValueError, match=r"pi\[0, 1\] = -0.5"):
        cpi.value(m, np.array([[1.5, -0.5], [0.5, 0.5], [1.0, 0.0]]))
    with pytest.raises(ValueError, match=r"initial sums to 2"):
        cpi.TabularMDP(P, R, 0.9, initial=[1.0, 1.0, 0.0])
    with pytest.raises(ValueError, match=r"start\[0\] = -1"):
        cpi.occupancy(m, m.uniform_policy(), start=[-1.0, 1.0, 1.0])


def test_horizon_and_order_checks():
    P, R = _chain()
    R[2] = 0.0
    with pytest.raises(ValueError, match="horizon 1 is shorter than the longest path"):
        cpi.TabularMDP(P, R, 1.0, terminal=[2], horizon=1)
    with pytest.raises(ValueError, match="order is not topological"):
        cpi.TabularMDP(P, R, 1.0, terminal=[2], order=[1, 0, 2])
    g = cpi.garnet(5, 2, 2, 0.9)
    with pytest.raises(ValueError, match="has a cycle"):
        cpi.TabularMDP(g.P, g.R, 0.9, horizon=3)
