"""The ``peers`` rows: ``cpi`` against QuantEcon, pymdptoolbox and scipy on the same MDPs.

(a) ``cpi.garnet(S, 8, 10, 0.99)`` at S = 20,000 (1.6M non-zeros) and at a small size
    (S = 2,500) where every peer finishes; a seeded random deterministic policy (the peers'
    API takes one action per state).
(b) ``cpi.thought_tree(10, 4, 0.1)`` (1,398,101 states, a gamma = 1 DAG), the uniform policy
    (every node is reached, so the forward occupancy pass does its full work).

For each: policy evaluation (``cpi.evaluate`` = ``value`` + ``occupancy``; ``cpi.value``
alone as well, since the peers only compute ``V``), one value-iteration sweep
(``cpi.bellman_sweep``; also 10 back to back) with ``np.copyto`` as the bandwidth yardstick,
and, on the garnets, the set-up (construction with input checks). Peers that do not finish
at S = 20,000 (QuantEcon ``evaluate_policy``, pymdptoolbox's dense solve and constructor) run
once in a child process under a hard cap (:func:`child`).
"""
from __future__ import annotations

import json
import time

import numpy as np

import cpi

from . import peers
from ._timing import interleaved, run_capped
from .common import (Sizes, capped_row, det_policy, group_rows, make_garnet, make_tree,
                     rel_err)
from .yardsticks import copy_case, sweeps

SWEEP10 = "cpi.bellman_sweep, 10 in a row (per sweep)"
CHILD_MODULE = "experiments.bench.cpi_kernels"


def sweep_cases(mdp, v, ddp, copy_mb, nbytes, mdpt_obj=None) -> dict:
    """One VI sweep by cpi and each peer (pymdptoolbox only where it holds the MDP), and the copy."""
    Tv = np.empty(mdp.S)
    sigma = np.empty(mdp.S, dtype=int)
    copy_f, nbytes["copy"] = copy_case(copy_mb)
    cases = {
        "cpi.bellman_sweep": lambda: cpi.bellman_sweep(mdp, v)[0],
        SWEEP10: sweeps(mdp, v, 10),
        "scipy CSR mat-vec + max": lambda: peers.scipy_sweep(mdp, v)[0],
        "quantecon bellman_operator": lambda: ddp.bellman_operator(v, Tv=Tv, sigma=sigma).copy(),
    }
    if mdpt_obj is not None:
        cases["pymdptoolbox _bellmanOperator"] = lambda: mdpt_obj._bellmanOperator(v)[1]
    cases[f"numpy copy {copy_mb} MB (read+write)"] = copy_f
    return cases


def child(op: str, S: int) -> None:
    """Run one capped peer measurement: set up, print READY, time ``op`` once, print JSON."""
    mdp = make_garnet(S)
    act, pi = det_policy(mdp)
    V_ref = cpi.value(mdp, pi)
    if op == "qe_eval":
        ddp = peers.qe_ddp(mdp)
        f = lambda: ddp.evaluate_policy(act)  # noqa: E731
    elif op == "mdpt_eval":
        obj = peers.mdpt_unchecked(mdp, act)
        f = lambda: peers.mdpt_eval(obj)  # noqa: E731
    elif op == "mdpt_setup":
        f = lambda: peers.mdpt_setup(mdp)  # noqa: E731
    else:
        raise ValueError(f"unknown child op {op!r}")
    print("READY", flush=True)
    t0 = time.perf_counter()
    out = f()
    t = time.perf_counter() - t0
    err = rel_err(out, V_ref) if op != "mdpt_setup" else None
    print(json.dumps({"seconds": t, "rel_err": err}), flush=True)


def _capped_rows(name, S, rows, mdp, sz: Sizes, log, repo):
    ref_eval = next(r for r in rows if r["impl"] == "cpi.evaluate (V + d)")["median_s"]
    ref_setup = next(r for r in rows if r["impl"].startswith("cpi TabularMDP"))["median_s"]
    out = []
    for op, impl, group, ref, note in [
            ("qe_eval", "quantecon evaluate_policy (V, spsolve)", "policy evaluation",
             ref_eval, "1 run in a child, hard cap"),
            ("mdpt_eval", "pymdptoolbox _evalPolicyMatrix (V, dense)", "policy evaluation",
             ref_eval, "1 run in a child, hard cap; object built without input checks"),
            ("mdpt_setup", "pymdptoolbox PolicyIteration (checks)", "set-up",
             ref_setup, "1 run in a child, hard cap")]:
        log(f"[{name}] capped peer {impl} (cap {sz.cap_s:.0f} s) ...")
        r = run_capped(["-m", CHILD_MODULE, "--child", op, "--S", str(S)], sz.cap_s, cwd=repo)
        row = capped_row(name, group, impl, r, ref, mdp.nbytes_P, note)
        log(f"    -> {row['status']} {row['median_s']}")
        out.append(row)
    return out


def bench_garnet(S: int, sz: Sizes, capped: bool, log, repo) -> list[dict]:
    """Evaluation, sweep and set-up groups on a garnet; ``capped``: slow peers in children."""
    name = f"garnet S={S}"
    t0 = time.perf_counter()
    mdp = make_garnet(S)
    log(f"[{name}] built in {time.perf_counter() - t0:.1f} s: {mdp!r}, "
        f"nbytes_P = {mdp.nbytes_P / 1e6:.1f} MB")
    act, pi = det_policy(mdp)
    nbytes = {"P": mdp.nbytes_P}
    ddp = peers.qe_ddp(mdp)
    obj = peers.mdpt_unchecked(mdp, act)
    rows = []

    cases = {
        "cpi.evaluate (V + d)": lambda: cpi.evaluate(mdp, pi).V,
        "cpi.value (V)": lambda: cpi.value(mdp, pi),
        "scipy bicgstab (V, rtol 1e-10)": lambda: peers.scipy_bicgstab_value(mdp, act),
    }
    if not capped:
        cases["quantecon evaluate_policy (V, spsolve)"] = lambda: ddp.evaluate_policy(act)
        cases["pymdptoolbox _evalPolicyMatrix (V, dense)"] = lambda: peers.mdpt_eval(obj)
    times, res = interleaved(cases, sz.reps)
    rows += group_rows(name, "policy evaluation", times, res, "cpi.evaluate (V + d)",
                       res["cpi.value (V)"], nbytes,
                       notes={"cpi.evaluate (V + d)": "ratio reference; also computes d",
                              "scipy bicgstab (V, rtol 1e-10)":
                                  "P_pi by row selection (solve only); BLAS 1 thread"})
    log(f"[{name}] evaluation done")

    v = res["cpi.value (V)"].copy()
    cases = sweep_cases(mdp, v, ddp, sz.copy_mb, nbytes, mdpt_obj=obj)
    times, res = interleaved(cases, max(sz.reps, 9))
    rows += group_rows(name, "VI sweep", times, res, "cpi.bellman_sweep",
                       res["cpi.bellman_sweep"], nbytes, per_call={SWEEP10: 10},
                       notes={"pymdptoolbox _bellmanOperator": "object built without its input checks",
                              SWEEP10: "value iteration: 10 sweeps back to back, time / 10"})
    del cases  # frees the copy buffers held by the closures
    log(f"[{name}] sweep done")

    cases = {
        "cpi TabularMDP(P, R, gamma)": lambda: cpi.TabularMDP(mdp.P, mdp.R, mdp.gamma),
        "quantecon DiscreteDP (SA pairs)": lambda: peers.qe_ddp(mdp),
    }
    if not capped:
        cases["pymdptoolbox PolicyIteration (checks)"] = lambda: peers.mdpt_setup(mdp)
    times, res = interleaved(cases, sz.reps)
    rows += group_rows(name, "set-up", times, res, "cpi TabularMDP(P, R, gamma)", None, nbytes)
    log(f"[{name}] set-up done")
    if capped:
        rows += _capped_rows(name, S, rows, mdp, sz, log, repo)
    return rows


def bench_tree(sz: Sizes, log) -> list[dict]:
    """Evaluation (cpi vs scipy triangular solves) and sweep groups on the thought tree."""
    t0 = time.perf_counter()
    mdp = make_tree(sz)
    name = f"thought_tree d={sz.tree_depth} b={sz.tree_b} (S={mdp.S})"
    log(f"[{name}] built in {time.perf_counter() - t0:.1f} s: nbytes_P = "
        f"{mdp.nbytes_P / 1e6:.1f} MB")
    pi = mdp.uniform_policy()
    nbytes = {"P": mdp.nbytes_P}
    ev_ref = cpi.evaluate(mdp, pi)
    cases = {
        "cpi.evaluate (V + d)": lambda: cpi.evaluate(mdp, pi),
        "cpi.value (V)": lambda: cpi.value(mdp, pi),
        "cpi.occupancy (d)": lambda: cpi.occupancy(mdp, pi),
        "scipy spsolve_triangular (V + d)": lambda: peers.scipy_tree_evaluate(mdp, pi),
    }
    times, res = interleaved(cases, sz.reps)
    ref = np.concatenate([ev_ref.V, ev_ref.d])  # accuracy of V and d together
    res2 = {"cpi.evaluate (V + d)": np.concatenate([res["cpi.evaluate (V + d)"].V,
                                                    res["cpi.evaluate (V + d)"].d]),
            "scipy spsolve_triangular (V + d)": np.concatenate(res["scipy spsolve_triangular (V + d)"])}
    rows = group_rows(name, "policy evaluation", times, res2, "cpi.evaluate (V + d)", ref, nbytes,
                      notes={"cpi.evaluate (V + d)": "ratio reference; uniform policy"})
    for r in rows:
        if r["impl"] == "cpi.value (V)":
            r["rel_err"] = rel_err(res["cpi.value (V)"], ev_ref.V)
        if r["impl"] == "cpi.occupancy (d)":
            r["rel_err"] = rel_err(res["cpi.occupancy (d)"], ev_ref.d)
    log(f"[{name}] evaluation done")

    ddp = peers.qe_ddp(mdp)
    v = ev_ref.V.copy()
    cases = sweep_cases(mdp, v, ddp, sz.copy_mb, nbytes)
    times, res = interleaved(cases, max(sz.reps, 9))
    rows += group_rows(name, "VI sweep", times, res, "cpi.bellman_sweep",
                       res["cpi.bellman_sweep"], nbytes, per_call={SWEEP10: 10},
                       notes={"quantecon bellman_operator": "beta = 1 (allowed for operators)",
                              SWEEP10: "value iteration: 10 sweeps back to back, time / 10"})
    log(f"[{name}] sweep done")
    return rows
