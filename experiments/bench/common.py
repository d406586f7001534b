"""Sizes, MDPs, policies and the row format shared by the kernel benchmark's groups.

A *row* is one contender in one interleaved group (one MDP, one operation), a dict with the
keys of :data:`ROW_KEYS`:

* ``median_s`` / ``min_s`` / ``max_s`` / ``rel_iqr`` over ``n`` timed calls;
* ``GBps_P`` = bytes of ``P``'s CSR arrays / median (an *effective* bandwidth; the copy row:
  read + write bytes / median);
* ``x_vs_cpi`` = contender median / median of the group's cpi reference (> 1: cpi faster);
* ``x_vs_yardstick`` = median / median of the group's machine yardstick (a plain numba pass,
  :mod:`yardsticks`), where the group has one;
* ``rel_err`` = max |x - x_ref| / max |x_ref| against the group's reference result;
* ``residual`` = the final accuracy of a value, ``max |R_pi - (I - gamma P_pi) V| / max |R_pi|``
  (:func:`peers.bellman_residual`), where measured.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import cpi

from ._timing import summary

A_GARNET, B_GARNET, GAMMA_GARNET = 8, 10, 0.99

ROW_KEYS = ("mdp", "op", "impl", "status", "n", "median_s", "min_s", "max_s", "rel_iqr",
            "GBps_P", "x_vs_cpi", "x_vs_yardstick", "rel_err", "residual", "note")


@dataclass
class Sizes:
    """Problem sizes and limits of one benchmark run."""

    garnet_S: int
    """States of the main garnet; peers that cannot finish run under the cap."""
    garnet_small_S: int
    """States of the small garnet where every peer finishes (all in-process)."""
    tree_depth: int
    """Depth of the thought tree; branching ``tree_b``."""
    tree_b: int
    """Branching of the thought tree (= number of actions)."""
    copy_mb: int
    """Size in MB of the array copied for the bandwidth yardstick."""
    cap_s: float
    """Hard wall-clock cap (s) on one capped peer run (child process)."""
    reps: int
    """Timed repetitions per in-process contender (median reported); >= 5."""
    reps_fast: int
    """Timed repetitions of the fast policy-evaluation rows (tens of ms each); >= reps."""

    def __post_init__(self):
        if self.reps < 5:
            raise ValueError(f"reps must be >= 5 (medians of >= 5 runs); got {self.reps}")
        if self.reps_fast < self.reps:
            raise ValueError(f"reps_fast must be >= reps ({self.reps}); got {self.reps_fast}")
        if self.cap_s <= 0:
            raise ValueError(f"cap_s must be > 0; got {self.cap_s}")


FULL = dict(garnet_S=20_000, garnet_small_S=2_500, tree_depth=10, tree_b=4, copy_mb=400,
            cap_s=120.0, reps=7, reps_fast=21)
QUICK = dict(garnet_S=3_000, garnet_small_S=600, tree_depth=7, tree_b=4, copy_mb=64,
             cap_s=4.0, reps=5, reps_fast=5)


def make_garnet(S: int) -> cpi.TabularMDP:
    return cpi.garnet(S, A_GARNET, B_GARNET, GAMMA_GARNET, seed=0)


def make_tree(sz: Sizes) -> cpi.TabularMDP:
    return cpi.thought_tree(sz.tree_depth, sz.tree_b, 0.1, seed=0)


def det_policy(mdp: cpi.TabularMDP, seed: int = 1):
    """A seeded random deterministic policy: actions (S,) int and one-hot pi (S, A)."""
    act = np.random.default_rng(seed).integers(0, mdp.A, size=mdp.S)
    pi = np.zeros((mdp.S, mdp.A))
    pi[np.arange(mdp.S), act] = 1.0
    return act, pi


def stochastic_policy(mdp: cpi.TabularMDP, seed: int = 2):
    """A seeded random stochastic policy: rows drawn uniformly in [0, 1)^A, normalised."""
    pi = np.random.default_rng(seed).random((mdp.S, mdp.A))
    return pi / pi.sum(axis=1, keepdims=True)


def rel_err(x, ref) -> float:
    x = np.asarray(x, dtype=np.float64).ravel()
    ref = np.asarray(ref, dtype=np.float64).ravel()
    return float(np.abs(x - ref).max() / max(np.abs(ref).max(), 1e-300))


def new_row(**fields) -> dict:
    row = dict.fromkeys(ROW_KEYS)
    row.update(status="ok", note="")
    unknown = set(fields) - set(ROW_KEYS)
    if unknown:
        raise KeyError(f"unknown row fields {sorted(unknown)}")
    row.update(fields)
    return row


def group_rows(mdp_name, op, times, results, ref_name, ref_result, nbytes, notes=None,
               per_call=None, yardstick=None):
    """Rows of one interleaved group; ``x_vs_cpi`` against ``ref_name`` (a cpi contender),
    ``x_vs_yardstick`` against ``yardstick`` (a contender name) when given.

    ``per_call[name] = k``: that contender runs the operation ``k`` times back to back per
    timed call; its times are divided by ``k``. ``nbytes["P"]``: bytes of ``P``;
    ``nbytes["copy"]``: bytes moved by the copy row (names starting with ``numpy copy``).
    """
    notes = notes or {}
    per_call = per_call or {}
    times = {k: np.asarray(ts) / per_call.get(k, 1) for k, ts in times.items()}
    ref_med = summary(times[ref_name])["median"]
    yard_med = summary(times[yardstick])["median"] if yardstick else None
    rows = []
    for name, ts in times.items():
        s = summary(ts)
        row = new_row(mdp=mdp_name, op=op, impl=name, n=s["n"], median_s=s["median"],
                      min_s=s["min"], max_s=s["max"], rel_iqr=s["rel_iqr"],
                      note=notes.get(name, ""))
        if name.startswith("numpy copy"):
            row["GBps_P"] = nbytes["copy"] / s["median"] / 1e9
        else:
            row["GBps_P"] = nbytes["P"] / s["median"] / 1e9
            row["x_vs_cpi"] = s["median"] / ref_med
            if yard_med:
                row["x_vs_yardstick"] = s["median"] / yard_med
            if ref_result is not None and results.get(name) is not None:
                row["rel_err"] = rel_err(results[name], ref_result)
        rows.append(row)
    return rows


def capped_row(mdp_name, op, impl, res, ref_med, nbytes_P, note):
    """The row of a peer run once in a child under a cap (:func:`_timing.run_capped`)."""
    row = new_row(mdp=mdp_name, op=op, impl=impl, status=res["status"], n=1,
                  rel_err=res.get("rel_err"), note=note)
    if res["status"] == "ok":
        t = res["seconds"]
        row.update(median_s=t, min_s=t, max_s=t, GBps_P=nbytes_P / t / 1e9, x_vs_cpi=t / ref_med)
    elif res["status"] == "timeout":
        row["status"] = f"timeout > {res['cap_s']:.0f} s"
        row["x_vs_cpi"] = res["cap_s"] / ref_med  # a lower bound
        row["note"] = (note + "; " if note else "") + "x_vs_cpi is a lower bound (cap / cpi)"
    else:
        row["note"] = (note + "; " if note else "") + "error: " + res.get("stderr", "")[-300:]
    return row
