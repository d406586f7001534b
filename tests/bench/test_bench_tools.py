"""Benchmark tooling: the prototype evaluator (dense-solve reference) and the capped runner.

The prototype in ``experiments/bench/proto_eval.py`` is timed beside ``cpi.evaluate``; its
numbers only mean something if it computes the same ``V`` and ``d``. References here are
independent: ``np.linalg.solve`` on the dense ``I - gamma P_pi``.
"""
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import cpi

BENCH = Path(__file__).resolve().parents[2] / "experiments" / "bench"
sys.path.insert(0, str(BENCH))
import _timing  # noqa: E402
import proto_eval  # noqa: E402


def dense_reference(mdp, pi, mu):
    """V and normalised d by dense solves (gamma < 1, no terminal states)."""
    P = mdp.P_dense()  # (S, A, S)
    Ppi = np.einsum("sa,sat->st", pi, P)
    Rpi = np.einsum("sa,sa->s", pi, mdp.R)
    M = np.eye(mdp.S) - mdp.gamma * Ppi
    V = np.linalg.solve(M, Rpi)
    m = np.linalg.solve(M.T, mu)
    return V, m / m.sum()


@given(S=st.integers(2, 40), A=st.integers(1, 4), b=st.integers(1, 3),
       gamma=st.sampled_from([0.0, 0.5, 0.9, 0.99]), det=st.booleans(),
       seed=st.integers(0, 10_000))
def test_proto_evaluate_matches_dense_solve(S, A, b, gamma, det, seed):
    b = min(b, S)
    mdp = cpi.garnet(S, A, b, gamma, seed=seed)
    rng = np.random.default_rng(seed)
    if det:
        pi = np.eye(A)[rng.integers(0, A, S)]
    else:
        pi = rng.dirichlet(np.ones(A), size=S)
    mu = rng.dirichlet(np.ones(S))
    V, d, H = proto_eval.evaluate(mdp, pi, mu)
    V_ref, d_ref = dense_reference(mdp, pi, mu)
    assert np.allclose(V, V_ref, rtol=1e-10, atol=1e-10)
    assert np.allclose(d, d_ref, rtol=1e-9, atol=1e-12)
    assert H == pytest.approx(1.0 / (1.0 - gamma))


def test_proto_evaluate_breakdown_restart_on_lock():
    # a restart lock makes plain BiCGSTAB break down (rho = 0) after two steps
    mdp = cpi.combination_lock(30, 3, gamma=0.95, wrong="restart")
    pi = cpi.lock_policy(mdp, 0.7)
    V, d, _ = proto_eval.evaluate(mdp, pi)
    P = mdp.P_dense()
    live = ~mdp.terminal
    Ppi = np.einsum("sa,sat->st", pi, P) * live[:, None]
    Rpi = np.einsum("sa,sa->s", pi, mdp.R) * live
    V_ref = np.linalg.solve(np.eye(mdp.S) - mdp.gamma * Ppi, Rpi)
    assert np.allclose(V, V_ref, atol=1e-10)
    assert d.sum() == pytest.approx(1.0)


def test_proto_sweep_matches_numpy():
    mdp = cpi.garnet(50, 3, 4, 0.9, seed=3)
    v = np.random.default_rng(0).random(50)
    Q = mdp.R + mdp.gamma * np.einsum("sat,t->sa", mdp.P_dense(), v)
    V_out, act = proto_eval.sweep(mdp, v)
    assert np.allclose(V_out, Q.max(axis=1), atol=1e-12)
    assert np.array_equal(act, Q.argmax(axis=1))


@pytest.mark.parametrize("mdp", [cpi.garnet(60, 3, 4, 0.9, seed=5),
                                 cpi.thought_tree(4, 3, 0.2, seed=1)], ids=["garnet", "tree"])
def test_proto_blocked_and_regular_sweeps_match_numpy(mdp):
    v = np.random.default_rng(1).random(mdp.S)
    Q = mdp.R + mdp.gamma * np.einsum("sat,t->sa", mdp.P_dense(), v)
    V_out, act = proto_eval.sweep_blocked(mdp, v)
    assert np.allclose(V_out, Q.max(axis=1), atol=1e-12)
    assert np.array_equal(act, Q.argmax(axis=1))
    k = proto_eval.regular_k(mdp)
    assert k is not None  # both families have a constant number of successors per row
    for nblk in (1, 7):
        Vr = np.empty(mdp.S)
        ar = np.empty(mdp.S, np.int64)
        proto_eval.sweep_regular_kernel(k, mdp.P.indices, mdp.P.data, mdp.R, mdp.gamma, v,
                                        Vr, ar, nblk)
        assert np.allclose(Vr, Q.max(axis=1), atol=1e-12)
        assert np.array_equal(ar, Q.argmax(axis=1))


def test_interleaved_and_summary():
    calls = []
    times, res = _timing.interleaved({"a": lambda: calls.append("a") or 1,
                                      "b": lambda: calls.append("b") or 2}, reps=3, warmup=1)
    assert calls == ["a", "b"] + ["a", "b"] * 3  # warm-up, then round-robin
    assert res == {"a": 1, "b": 2} and len(times["a"]) == 3
    s = _timing.summary([1.0, 2.0, 3.0, 4.0, 100.0])
    assert s["median"] == 3.0 and s["min"] == 1.0 and s["max"] == 100.0 and s["n"] == 5
    with pytest.raises(ValueError, match="reps"):
        _timing.interleaved({"a": lambda: None}, reps=0)


def test_run_capped_ok_and_timeout(tmp_path):
    child = tmp_path / "child.py"
    child.write_text("import sys, time, json\nprint('READY', flush=True)\n"
                     "time.sleep(float(sys.argv[1]))\nprint(json.dumps({'seconds': 1.5}))\n")
    ok = _timing.run_capped([str(child), "0"], cap=20)
    assert ok == {"seconds": 1.5, "status": "ok"}
    slow = _timing.run_capped([str(child), "30"], cap=0.5)
    assert slow["status"] == "timeout" and slow["cap_s"] == 0.5
