"""The ``evaluation`` rows: ``cpi`` policy evaluation against the machine and against scipy.

* Thought tree (depth 10, b = 4, 1.4M states, uniform policy): the plain numba backward pass
  (:func:`yardsticks.plain_backward_pass`, the yardstick), ``cpi.value`` and ``cpi.evaluate``,
  interleaved. Targets: ``cpi.value`` <= 1.5x and ``cpi.evaluate`` <= 3x the plain pass.
* Garnet S = 20,000, A = 8, b = 10, gamma = 0.99, once with a random stochastic policy (rows
  uniform in [0, 1)^A, normalised) and once with a random deterministic one: one plain pass over
  ``P`` (the yardstick), ``cpi.value``, and scipy as a user writes it from the policy - build
  ``P_pi = Pi P``, then ``bicgstab(rtol=1e-10)`` - plus the same scipy solve at ``rtol=1e-13``
  (the accuracy ``cpi`` solves to; for information), and ``cpi.value`` with numba limited to
  one thread (serial mat-vecs; for information). Target: ``cpi.value`` <= 0.5x scipy at
  1e-10 in the same run, at no worse final accuracy: every value's residual
  ``max |R_pi - (I - gamma P_pi) V| / max |R_pi|`` is reported (``residual``).
"""
from __future__ import annotations

import numba as nb
import numpy as np

import cpi

from . import peers
from ._timing import interleaved
from .common import Sizes, det_policy, group_rows, make_garnet, make_tree, stochastic_policy
from .yardsticks import pass_over_P, tree_value_plain

CPI = "cpi.value (V)"
PLAIN_TREE = "plain numba backward pass (V)"
PLAIN_P = "plain numba pass over P (one mat-vec)"
SCIPY = "scipy P_pi = Pi P + bicgstab (rtol 1e-10)"
SCIPY_13 = "scipy P_pi = Pi P + bicgstab (rtol 1e-13)"
CPI_1T = "cpi.value (V), 1 numba thread"
OP_TREE = "policy evaluation vs the machine"
OP_GARNET = "policy evaluation vs scipy"


def one_thread(f, *args):
    """``f(*args)`` with numba limited to one thread (restored after)."""
    n = nb.get_num_threads()
    nb.set_num_threads(1)
    try:
        return f(*args)
    finally:
        nb.set_num_threads(n)


def bench_tree_eval(sz: Sizes, log) -> list[dict]:
    """``cpi.value`` and ``cpi.evaluate`` against the plain backward pass on the tree."""
    mdp = make_tree(sz)
    name = f"thought_tree d={sz.tree_depth} b={sz.tree_b} (S={mdp.S})"
    pi = mdp.uniform_policy()
    cases = {
        PLAIN_TREE: lambda: tree_value_plain(mdp, pi),
        "cpi.value (V)": lambda: cpi.value(mdp, pi),
        "cpi.evaluate (V + d)": lambda: cpi.evaluate(mdp, pi).V,
    }
    times, res = interleaved(cases, sz.reps_fast)
    rows = group_rows(name, OP_TREE, times, res, "cpi.value (V)", res[PLAIN_TREE],
                      {"P": mdp.nbytes_P}, yardstick=PLAIN_TREE,
                      notes={PLAIN_TREE: "yardstick: no order array, no terminal test, no checks",
                             "cpi.value (V)": "uniform policy, checked on the way",
                             "cpi.evaluate (V + d)": "value pass + occupancy pass"})
    for r in rows:
        r["residual"] = peers.bellman_residual(mdp, pi, res[r["impl"]])
    log(f"[{name}] evaluation vs the plain pass done")
    return rows


def bench_garnet_eval(sz: Sizes, log) -> list[dict]:
    """``cpi.value`` against scipy from the policy, stochastic and deterministic policies."""
    mdp = make_garnet(sz.garnet_S)
    rows = []
    v = np.random.default_rng(3).random(mdp.S)
    for kind, pi in (("stochastic", stochastic_policy(mdp)), ("deterministic", det_policy(mdp)[1])):
        name = f"garnet S={mdp.S}, {kind} policy"
        cases = {
            PLAIN_P: pass_over_P(mdp, v),
            "cpi.value (V)": lambda pi=pi: cpi.value(mdp, pi),
            CPI_1T: lambda pi=pi: one_thread(cpi.value, mdp, pi),
            SCIPY: lambda pi=pi: peers.scipy_policy_value(mdp, pi),
            SCIPY_13: lambda pi=pi: peers.scipy_policy_value(mdp, pi, rtol=1e-13),
        }
        times, res = interleaved(cases, sz.reps_fast)
        res[PLAIN_P] = None  # not a value
        group = group_rows(name, OP_GARNET, times, res, "cpi.value (V)", res["cpi.value (V)"],
                           {"P": mdp.nbytes_P}, yardstick=PLAIN_P,
                           notes={PLAIN_P: "yardstick: x_vs_yardstick = equivalent passes over P",
                                  "cpi.value (V)": "numba's default threads: parallel mat-vecs "
                                                   "from 500k non-zeros",
                                  CPI_1T: "serial mat-vecs (numba.set_num_threads(1))",
                                  SCIPY: "the target's peer; BLAS 1 thread",
                                  SCIPY_13: "cpi's own accuracy; BLAS 1 thread"})
        for r in group:
            if res.get(r["impl"]) is not None:
                r["residual"] = peers.bellman_residual(mdp, pi, res[r["impl"]])
        rows += group
        log(f"[{name}] evaluation vs scipy done")
    return rows
