"""The kernel benchmark's own pieces, each against an independent reference.

Its numbers only mean something if the yardsticks and peer adapters compute what they claim
(checked against dense NumPy solves and ``P @ v``), the timing helpers time what they say,
and the target rules decide as documented. References: ``np.linalg.solve`` on the dense
``I - gamma P_pi``, a hand-written tree value.
"""
import argparse

import numpy as np
import pytest

import cpi
from experiments.bench import _timing, common, peers, table, targets, yardsticks
from experiments.bench import cpi_kernels, eval_rows


def dense_value(mdp, pi):
    """V by a dense solve, terminal rows of P_pi zeroed."""
    live = ~mdp.terminal
    Ppi = np.einsum("sa,sat->st", pi, mdp.P_dense()) * live[:, None]
    Rpi = np.einsum("sa,sa->s", pi, mdp.R) * live
    return np.linalg.solve(np.eye(mdp.S) - mdp.gamma * Ppi, Rpi), Ppi, Rpi


def test_plain_backward_pass_is_the_tree_value():
    mdp = cpi.thought_tree(4, 3, 0.3, p_success=0.9, p_recover=0.2, seed=2)
    pi = np.random.default_rng(0).dirichlet(np.ones(3), size=mdp.S)
    V_ref, _, _ = dense_value(mdp, pi)
    np.testing.assert_allclose(yardsticks.tree_value_plain(mdp, pi), V_ref, atol=1e-12)
    np.testing.assert_allclose(cpi.value(mdp, pi), V_ref, atol=1e-12)


def test_plain_pass_over_P_is_a_matvec():
    mdp = cpi.garnet(40, 3, 4, 0.9, seed=1)
    v = np.random.default_rng(1).random(40)
    np.testing.assert_allclose(yardsticks.pass_over_P(mdp, v)(), mdp.P @ v, rtol=1e-14)


@pytest.mark.parametrize("det", [False, True])
def test_scipy_policy_matrix_and_residual(det):
    mdp = cpi.combination_lock(20, 3, gamma=0.9, wrong="restart")
    rng = np.random.default_rng(3)
    pi = np.eye(3)[rng.integers(0, 3, mdp.S)] if det else rng.dirichlet(np.ones(3), mdp.S)
    V_ref, Ppi, _ = dense_value(mdp, pi)
    np.testing.assert_allclose(peers.scipy_policy_matrix(mdp, pi).toarray(), Ppi, atol=1e-15)
    assert peers.bellman_residual(mdp, pi, V_ref) < 1e-13
    assert peers.bellman_residual(mdp, pi, V_ref + 1e-3) > 1e-5


def test_scipy_value_peers_match_dense_solve():
    pytest.importorskip("threadpoolctl")
    mdp = cpi.garnet(60, 4, 5, 0.95, seed=4)
    act, pi = common.det_policy(mdp)
    V_ref, _, _ = dense_value(mdp, pi)
    np.testing.assert_allclose(peers.scipy_policy_value(mdp, pi, rtol=1e-13), V_ref, rtol=1e-10)
    np.testing.assert_allclose(peers.scipy_bicgstab_value(mdp, act), V_ref, rtol=1e-8)
    pis = common.stochastic_policy(mdp)
    np.testing.assert_allclose(pis.sum(1), 1.0)
    np.testing.assert_allclose(peers.scipy_policy_value(mdp, pis, rtol=1e-13),
                               dense_value(mdp, pis)[0], rtol=1e-10)


def test_scipy_tree_evaluate_matches_cpi():
    mdp = cpi.thought_tree(4, 2, 0.2, seed=0)
    pi = mdp.uniform_policy()
    V, d = peers.scipy_tree_evaluate(mdp, pi)
    ev = cpi.evaluate(mdp, pi)
    np.testing.assert_allclose(V, ev.V, atol=1e-13)
    np.testing.assert_allclose(d, ev.d, atol=1e-13)


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
    slow = _timing.run_capped([str(child), "30"], cap=0.5, cwd=tmp_path)
    assert slow["status"] == "timeout" and slow["cap_s"] == 0.5


def test_group_rows_ratios():
    times = {"cpi": [1.0, 1.0, 1.0], "peer": [4.0, 4.0, 4.0], "plain": [0.5, 0.5, 0.5]}
    res = {"cpi": np.ones(3), "peer": np.ones(3) * 1.1, "plain": None}
    rows = common.group_rows("m", "op", times, res, "cpi", res["cpi"], {"P": 2e9},
                             yardstick="plain")
    by = {r["impl"]: r for r in rows}
    assert by["peer"]["x_vs_cpi"] == 4.0 and by["cpi"]["x_vs_yardstick"] == 2.0
    assert by["peer"]["rel_err"] == pytest.approx(0.1) and by["plain"]["rel_err"] is None
    assert by["cpi"]["GBps_P"] == pytest.approx(2.0)
    assert set(by["cpi"]) == set(common.ROW_KEYS)
    with pytest.raises(KeyError, match="unknown row fields"):
        common.new_row(speed=1)


def _eval_row(mdp, op, impl, median, **kw):
    return common.new_row(mdp=mdp, op=op, impl=impl, median_s=median, **kw)


def test_evaluation_targets_rules():
    tree = "thought_tree d=10 b=4 (S=1398101)"
    rows = [
        _eval_row(tree, eval_rows.OP_TREE, "cpi.value (V)", 0.012, x_vs_yardstick=1.2),
        _eval_row(tree, eval_rows.OP_TREE, "cpi.evaluate (V + d)", 0.04, x_vs_yardstick=3.5),
        _eval_row("garnet S=20000, stochastic policy", eval_rows.OP_GARNET, "cpi.value (V)", 0.02,
                  residual=1e-13),
        _eval_row("garnet S=20000, stochastic policy", eval_rows.OP_GARNET, eval_rows.SCIPY, 0.05,
                  residual=1e-10),
        _eval_row("garnet S=20000, deterministic policy", eval_rows.OP_GARNET, "cpi.value (V)",
                  0.002, residual=1e-9),  # fast but less accurate than scipy: not met
        _eval_row("garnet S=20000, deterministic policy", eval_rows.OP_GARNET, eval_rows.SCIPY,
                  0.01, residual=1e-10),
    ]
    met = [t["met"] for t in targets.evaluation_targets(rows)]
    assert met == [True, False, True, False]


def test_peer_targets_lower_bound_is_open():
    rows = [_eval_row("garnet S=100", "policy evaluation", "cpi.evaluate (V + d)", 0.01,
                      x_vs_cpi=1.0),
            _eval_row("garnet S=100", "policy evaluation", "quantecon evaluate_policy (V)", None,
                      x_vs_cpi=3.0, status="timeout > 0 s"),
            _eval_row("garnet S=100", "policy evaluation", "pymdptoolbox _evalPolicyMatrix", 1.0,
                      x_vs_cpi=100.0)]
    out = targets.peer_targets(rows, (100,))
    assert [t["met"] for t in out] == [None, True]
    assert "OPEN" in "\n".join(table.target_lines(out))


def test_rows_option():
    assert cpi_kernels.parse_rows("all") == cpi_kernels.GROUPS
    assert cpi_kernels.parse_rows("evaluation") == ("evaluation",)
    assert cpi_kernels.parse_rows("peers,evaluation") == ("peers", "evaluation")
    with pytest.raises(argparse.ArgumentTypeError, match="subset of evaluation, peers"):
        cpi_kernels.parse_rows("speed")
    args = cpi_kernels.build_parser().parse_args(["--rows", "evaluation", "--quick", "--reps", "6"])
    sz = cpi_kernels.sizes(args)
    assert args.rows == ("evaluation",) and sz.reps == 6 and sz.reps_fast == 18


def test_evaluation_rows_smoke(tmp_path):
    """``--rows evaluation`` at smoke sizes: every row timed, residuals measured, files written."""
    pytest.importorskip("threadpoolctl")
    stem = tmp_path / "bench"
    rows, tg = cpi_kernels.main(["--rows", "evaluation", "--quick", "--out", str(stem)])
    assert {r["op"] for r in rows} == {eval_rows.OP_TREE, eval_rows.OP_GARNET}
    assert all(r["median_s"] > 0 for r in rows)
    cpi_rows = [r for r in rows if r["impl"].startswith("cpi.value") and "garnet" in r["mdp"]]
    assert len(cpi_rows) == 4 and all(r["residual"] < 1e-12 for r in cpi_rows)  # 2 policies x threads
    assert len(tg) == 6  # tree value, tree evaluate, 2 policies x (scipy at the same accuracy, at 1e-10)
    assert sum("same final accuracy" in t["target"] for t in tg) == 2
    header = (stem.with_suffix(".csv")).read_text().splitlines()[0]
    assert header.split(",") == list(common.ROW_KEYS)
    assert "| " + " | ".join(table.HEAD) + " |" in table.table(rows)
    md = stem.with_suffix(".md").read_text()
    assert "cpi / yardstick" in md and "1 numba thread" in md and len(md.splitlines()) >= 8
