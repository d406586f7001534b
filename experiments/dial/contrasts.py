"""Stage 2 summaries: per-seed outcomes, the pre-registered contrasts with Holm, samples to a target.

Outcome of a run (primary): its final held-out greedy pass@1. Secondary: the final sampled probe
(T = 0.7), the normalised area under the greedy curve against trained samples (mean accuracy over the
run) and the trained samples at which the curve first reaches ``start + target_gain`` (interpolated
between evaluations; a run that never reaches it is censored at its budget and counted as such).

Pre-registered contrasts (paired by seed; the prediction of each is "> 0"):

* ``C1`` oracle - random_failed (RRPO) at the longest length (the theory's CARO vs RR, largest where a
  uniform reset is least likely to hit the first error);
* ``C2`` its interaction with length: (oracle - RRPO) at the longest minus at the shortest length;
* ``C3`` the linear trend in q: per seed, the least-squares slope of the outcome on q over RRPO (0),
  noisy (q) and oracle (1), averaged over lengths.

Holm's correction over the three (:func:`stats.holm`), intervals at the matching Holm levels. Verdict
(:func:`contrast_verdict`): "reproduced" if the interval lies above 0, "contradicted" if below, else "no
separation" when the minimum detectable effect at that level is at most the predicted effect, else "not
testable at this size".
"""
from __future__ import annotations

import math

import numpy as np

from .stats import area, crossing, holm, holm_levels, mde_paired, paired_test, t_interval


def per_seed(plan, data: dict, starts: dict, target_gain: float) -> dict:
    """``{(L, arm, seed): outcome dict}``: final greedy / sampled, gain, area, crossing (None: censored)."""
    out = {}
    for (L, a, s), run in data.items():
        c = run["curve"]
        x = [p["samples"] for p in c]
        y = [p["greedy"] for p in c]
        target = starts[L]["eval_pass@1"] + target_gain
        out[(L, a, s)] = dict(final=y[-1], sampled=c[-1]["sampled"], gain=y[-1] - y[0], area=area(x, y),
                              crossing=crossing(x, y, target), budget=x[-1],
                              tokens=c[-1]["tokens"], informative=_mean(run["train"], "reset_informative_rate"),
                              hit=_ratio(run["train"], "loc_exact", "loc_checked"))
    return out


def _mean(train: list, key: str) -> float:
    v = [r[key] for r in train if r.get(key) is not None]
    return float(np.mean(v)) if v else float("nan")


def _ratio(train: list, key: str, weight: str) -> float:
    num = sum((r.get(key) or 0.0) * (r.get(weight) or 0) for r in train)
    den = sum(r.get(weight) or 0 for r in train)
    return num / den if den else float("nan")


def _by_seed(out: dict, L: int, arm: str, seeds, key: str) -> np.ndarray:
    return np.array([out[(L, arm, s)][key] if (L, arm, s) in out else np.nan for s in seeds], dtype=float)


def contrast_values(plan, out: dict, key: str = "final") -> dict:
    """Per-seed values of C1, C2, C3 (module docstring) for the outcome ``key``."""
    lo, hi = min(plan.lengths), max(plan.lengths)
    S = plan.seeds

    def diff(L):
        return _by_seed(out, L, "oracle", S, key) - _by_seed(out, L, "rrpo", S, key)

    q_arms = [a for a in plan.arms if plan.q_of(a) is not None]
    qs = np.array([plan.q_of(a) for a in q_arms])
    slopes = []
    for L in plan.lengths:
        Y = np.stack([_by_seed(out, L, a, S, key) for a in q_arms])          # (arms, seeds)
        qc = qs - qs.mean()
        slopes.append((qc[:, None] * (Y - Y.mean(0))).sum(0) / (qc ** 2).sum())
    vals = {"C1": diff(hi), "C2": diff(hi) - diff(lo), "C3": np.mean(slopes, axis=0)}
    return {k: v[np.isfinite(v)] for k, v in vals.items()}


CONTRAST_TEXT = {"C1": "oracle - RRPO at the longest length", "C2": "(oracle - RRPO) longest minus shortest length",
                 "C3": "linear trend in q (RRPO 0, noisy, oracle 1), mean over lengths"}


def contrasts(plan, out: dict, predicted: dict, key: str = "final", alpha: float = 0.05, quick: bool = False) -> dict:
    """The three contrasts with Holm-adjusted p-values and intervals, their MDE and verdicts; ``predicted``
    maps a contrast to its predicted effect (outcome units)."""
    vals = contrast_values(plan, out, key)
    tests = {k: paired_test(v) for k, v in vals.items()}
    names = list(tests)
    adj = holm([tests[k]["p"] for k in names])
    levels = holm_levels([tests[k]["p"] for k in names], alpha)
    res = {}
    for k, p_adj, lev in zip(names, adj, levels):
        t = tests[k]
        m, half = t_interval(vals[k], lev)
        mde = mde_paired(t["sd"], t["n"], 1 - lev, 0.8)
        d = dict(text=CONTRAST_TEXT[k], mean=m, half=half, lo=m - half, hi=m + half, level=lev, p=t["p"],
                 p_holm=p_adj, sd=t["sd"], n=t["n"], mde=mde, predicted=predicted.get(k, float("nan")),
                 values=[float(x) for x in vals[k]])
        d["verdict"] = contrast_verdict(d, quick)
        res[k] = d
    return res


def contrast_verdict(c: dict, quick: bool = False) -> str:
    """Rule fixed before the run: "reproduced" if the Holm-level interval lies above 0, "contradicted" if it
    lies below 0; otherwise "no separation" when the minimum detectable effect at that level is at most
    the predicted effect (the design could have seen it), else "not testable at this size" ("at quick
    size" for the quick profile)."""
    if not (math.isfinite(c["lo"]) and math.isfinite(c["hi"])):
        return "not testable at quick size" if quick else "not testable at this size"
    if c["lo"] > 0:
        return "reproduced"
    if c["hi"] < 0:
        return "contradicted"
    pred = abs(c["predicted"]) if math.isfinite(c["predicted"]) else 0.0
    if c["mde"] <= pred and pred > 0:
        return "no separation"
    return "not testable at quick size" if quick else "not testable at this size"


def arm_table(plan, out: dict, starts: dict) -> list[dict]:
    """Per length and arm: mean and 95% t-interval over seeds of every outcome, the share of runs that
    reached the target, and the difference to GRPO paired by seed."""
    rows = []
    for L in plan.lengths:
        for a in plan.arms:
            row = dict(length=L, arm=a, q=plan.q_of(a), start=starts[L]["eval_pass@1"],
                       start_sampled=starts[L].get("eval_sampled_acc"))
            for key in ("final", "sampled", "gain", "area", "tokens", "informative", "hit"):
                v = _by_seed(out, L, a, plan.seeds, key)
                v = v[np.isfinite(v)]
                row[key], row[f"{key}_ci"] = t_interval(v) if len(v) else (float("nan"), float("nan"))
            cr = [out[(L, a, s)]["crossing"] for s in plan.seeds if (L, a, s) in out]
            reached = [c for c in cr if c is not None]
            row.update(reached=len(reached), runs=len(cr),
                       crossing_median=float(np.median(reached)) if len(reached) * 2 > len(cr) else None)
            if a != "grpo":
                d = _by_seed(out, L, a, plan.seeds, "final") - _by_seed(out, L, "grpo", plan.seeds, "final")
                d = d[np.isfinite(d)]
                row["vs_grpo"], row["vs_grpo_ci"] = t_interval(d) if len(d) else (float("nan"), float("nan"))
            rows.append(row)
    return rows


def predicted_effects(plan, s1: dict, out: dict) -> dict:
    """Predicted C1-C3 in accuracy units from stage 1 (first-order model of ``analysis.stage2_power``): an
    arm's gain is proportional to its per-prompt projection, scaled by GRPO's measured mean gain at that
    length: ``delta_L = G_L (mu_oracle - mu_rrpo) / mu_grpo``."""
    d = {}
    for L in plan.lengths:
        arms = s1.get(L, {}).get("arms", {})
        g = _by_seed(out, L, "grpo", plan.seeds, "gain")
        g = g[np.isfinite(g)]
        if not arms or not len(g) or not arms["start"]["proj"] > 0:
            d[L] = float("nan")
            continue
        d[L] = float(np.mean(g)) * (arms["oracle"]["proj"] - arms["random_failed"]["proj"]) / arms["start"]["proj"]
    lo, hi = min(plan.lengths), max(plan.lengths)
    return {"C1": d[hi], "C2": d[hi] - d[lo], "C3": float(np.mean(list(d.values()))), "by_length": d}


def pilot_from(result: dict) -> dict | None:
    """A pilot for the power calculation from a finished run's ``llm_dial.json`` (e.g. the quick profile):
    ``sd`` = the standard deviation of per-seed paired differences of the final greedy pass@1, pooled over
    every pair of arms and every length (one degree of freedom per pair and seed beyond the first), and
    ``delta`` = that run's predicted C1. None when it has fewer than two seeds."""
    import itertools
    s2 = result.get("stage2") or {}
    rows = s2.get("per_seed") or []
    seeds = sorted({r["seed"] for r in rows})
    if len(seeds) < 2:
        return None
    val = {(r["length"], r["arm"], r["seed"]): r["final"] for r in rows}
    var, df = [], 0
    for L in sorted({r["length"] for r in rows}):
        arms = sorted({r["arm"] for r in rows if r["length"] == L})
        for a, b in itertools.combinations(arms, 2):
            d = [val[(L, a, s)] - val[(L, b, s)] for s in seeds if (L, a, s) in val and (L, b, s) in val]
            if len(d) > 1:
                var.append(np.var(d, ddof=1) * (len(d) - 1))
                df += len(d) - 1
    if not df:
        return None
    return dict(sd=float(math.sqrt(sum(var) / df)), df=df, delta=float(s2["predicted"]["C1"]),
                steps=s2["plan"]["steps"], seeds=len(seeds), profile=result["config"]["profile"])
