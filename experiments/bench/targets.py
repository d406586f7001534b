"""The benchmark's targets, judged on one run's rows (``docs/benchmarks.md``).

Each target is a dict ``target`` (what is required), ``measured`` (the number, as text) and
``met``: True / False, or None when only a lower bound is known (a peer hit its cap) and that
bound is below the target. Targets whose rows were not run (``--rows``) are left out.
"""
from __future__ import annotations

from . import eval_rows as E

PEER_SPEEDUPS = (("quantecon evaluate_policy", 5.0), ("pymdptoolbox _evalPolicyMatrix", 50.0))
"""Policy evaluation (V + d) at least this many times faster than each peer (V only)."""
TREE_EVAL_MAX_S = 1.0
SWEEP_MIN_COPY_FRACTION = 0.30
TREE_VALUE_MAX_X_PLAIN = 1.5
TREE_EVALUATE_MAX_X_PLAIN = 3.0
GARNET_VALUE_MAX_X_SCIPY = 0.5


def _get(rows, mdp_prefix, impl_prefix, op):
    for r in rows:
        if r["mdp"].startswith(mdp_prefix) and r["impl"].startswith(impl_prefix) and r["op"] == op:
            return r
    return None


def peer_targets(rows, garnet_sizes) -> list[dict]:
    """Speed-ups over QuantEcon / pymdptoolbox, the tree under a second, sweeps near copy speed."""
    out = []
    for S in garnet_sizes:
        m = f"garnet S={S}"
        ref = _get(rows, m, "cpi.evaluate", "policy evaluation")
        for impl, need in PEER_SPEEDUPS:
            r = _get(rows, m, impl, "policy evaluation")
            label = f"{m}: cpi.evaluate (V + d) >= {need:g}x faster than {impl}"
            if r is None or r["x_vs_cpi"] is None or ref is None:
                continue
            x = r["x_vs_cpi"]
            bound = "timeout" in r["status"]
            met = x >= need if (not bound or x >= need) else None
            out.append(dict(target=label, measured=f"{'>= ' if bound else ''}{x:.0f}x", met=met))
    tree = _get(rows, "thought_tree", "cpi.evaluate", "policy evaluation")
    if tree is not None:
        out.append(dict(target=f"{tree['mdp']}: cpi.evaluate in < {TREE_EVAL_MAX_S:g} s",
                        measured=f"{1e3 * tree['median_s']:.1f} ms", met=tree["median_s"] < TREE_EVAL_MAX_S))
    for mp in [f"garnet S={garnet_sizes[0]}", "thought_tree"] if garnet_sizes else ["thought_tree"]:
        cp = _get(rows, mp, "numpy copy", "VI sweep")
        sw = _get(rows, mp, "cpi.bellman_sweep", "VI sweep")
        if cp is None or sw is None:
            continue
        frac = sw["GBps_P"] / cp["GBps_P"]
        out.append(dict(target=f"{sw['mdp']}: cpi.bellman_sweep >= "
                               f"{100 * SWEEP_MIN_COPY_FRACTION:.0f}% of copy bandwidth",
                        measured=f"{sw['GBps_P']:.1f} / {cp['GBps_P']:.1f} GB/s = {100 * frac:.0f}%",
                        met=frac >= SWEEP_MIN_COPY_FRACTION))
    return out


def evaluation_targets(rows) -> list[dict]:
    """cpi.value / cpi.evaluate against the plain pass (tree) and against scipy (garnet)."""
    out = []
    for impl, need in (("cpi.value", TREE_VALUE_MAX_X_PLAIN),
                       ("cpi.evaluate", TREE_EVALUATE_MAX_X_PLAIN)):
        r = _get(rows, "thought_tree", impl, E.OP_TREE)
        if r is not None:
            out.append(dict(target=f"{r['mdp']}: {impl} <= {need:g}x the plain backward pass",
                            measured=f"{r['x_vs_yardstick']:.2f}x "
                                     f"({1e3 * r['median_s']:.1f} ms)",
                            met=r["x_vs_yardstick"] <= need))
    for kind in ("stochastic", "deterministic"):
        c = _garnet_row(rows, kind, E.CPI)
        for peer, what in ((E.SCIPY_13, "at the same final accuracy (bicgstab rtol 1e-13, the tolerance "
                                         "cpi solves to)"),
                           (E.SCIPY, "at its looser rtol 1e-10")):
            s = _garnet_row(rows, kind, peer)
            if c is None or s is None:
                continue
            x = c["median_s"] / s["median_s"]
            same = c["residual"] <= s["residual"]
            out.append(dict(
                target=f"{c['mdp']}: cpi.value <= {GARNET_VALUE_MAX_X_SCIPY:g}x scipy (Pi P + bicgstab) "
                       f"{what}, residual no worse",
                measured=f"{x:.2f}x ({1e3 * c['median_s']:.1f} vs {1e3 * s['median_s']:.1f} ms); "
                         f"residual {c['residual']:.1e} vs {s['residual']:.1e}",
                met=bool(x <= GARNET_VALUE_MAX_X_SCIPY and same)))
    return out


def _garnet_row(rows, kind: str, impl: str):
    return next((r for r in rows if r["op"] == E.OP_GARNET and kind in r["mdp"] and r["impl"] == impl), None)
