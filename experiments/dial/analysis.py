"""Stage 1 summaries: per arm and length, the reset statistics, the gradient signal and its predictions.

Predictions (written before the run; the verdict rules are the functions named in brackets):

* P1 (linear in q) [:func:`linearity_verdict`]: the mean per-prompt projection of ``noisy(q)`` is linear
  in ``q`` from ``random_failed`` (q = 0) to ``oracle`` (q = 1) - exact in expectation, because
  ``noisy(q)`` is the mixture ``q oracle + (1 - q) random_failed`` and the arms share their draws - with a
  positive slope: the oracle's resets carry more signal than uniform ones.
* P2 (proportional to the effective p) [:func:`proportionality_verdict`]: a reset sample's projection is
  proportional to the share of its groups that reach an improvable state, measured by the informative-
  reset rate ``p_eff`` (reset groups with reward variance): one constant ``beta`` per length for every reset
  arm, so ``proj_reset / p_eff`` of the oracle equals that of ``random_failed``.
* P3 (SRPO on the q axis) [:func:`self_verdict`]: with ``h`` the rate of resets exactly at the first
  wrong thought, ``self`` sits at ``q_self = (h_self - h_rf) / (h_oracle - h_rf)`` and its projection is
  the line's value there.
* P4 (difficulty): the oracle's gain over ``random_failed`` per reset sample grows with the chain length
  (a uniform guess hits the first error with probability ``E[1/n]``, smaller on longer chains).

Intervals: Wilson for proportions; for means over prompts a Student-t interval; for ratios, fits and
predictions a bootstrap over prompts (the arms resampled together, so common random numbers are kept).
"""
from __future__ import annotations

import math

import numpy as np

from .stage1 import arm_q
from .stats import mde_paired, samples_for_snr, seeds_needed, t_interval, wilson

SNR = 2.0
"""signal-to-noise ratio of the samples-needed column: mean projection = SNR x its standard error"""


def _arrays(rows: dict) -> dict:
    """Per arm: (P,) arrays of the per-prompt numbers."""
    out = {}
    for label, rs in rows.items():
        def col(key, default=np.nan):
            return np.array([default if r.get(key) is None else float(r[key]) for r in rs])
        out[label] = dict(proj=col("proj"), proj_fresh=col("proj_fresh"), proj_reset=col("proj_reset"),
                          folds=np.array([r["proj_folds"] for r in rs], dtype=float),           # (P, K)
                          reset_folds=np.array([r["proj_reset_folds"] for r in rs], dtype=float),  # (P, K)
                          has_reset=np.array([r["k"] is not None for r in rs]), k=col("k"), n=col("n"),
                          e=col("e"), informative=col("informative"), tokens=col("tokens"))
    return out


def _rates(a: dict, idx=None, folds=None) -> dict:
    """Reset statistics of one arm on prompts ``idx`` and reference folds ``folds`` (all by default)."""
    idx = np.arange(len(a["proj"])) if idx is None else idx
    folds = np.arange(a["folds"].shape[1]) if folds is None else folds
    has = a["has_reset"][idx]
    k, n, e, inf = a["k"][idx][has], a["n"][idx][has], a["e"][idx][has], a["informative"][idx][has]
    known = ~np.isnan(e)
    proj = a["folds"][idx][:, folds].mean(1)                       # (P,) per-prompt projection
    # a reset sample's projection: (1/4) sum over the reset group = 8/4 x the group's share of the prompt
    per_reset = 2.0 * a["reset_folds"][idx][:, folds].mean(1)[has]
    return dict(resets=int(has.sum()), informative=float(inf.mean()) if len(inf) else np.nan,
                informative_k=int(np.nansum(inf)), checked=int(known.sum()),
                hit=float((k[known] == e[known]).mean()) if known.any() else np.nan,
                hit_k=int((k[known] == e[known]).sum()),
                clean=float((k[known] <= e[known]).mean()) if known.any() else np.nan,
                inv_n=float((1.0 / n).mean()) if len(n) else np.nan,
                rel=float((k / n).mean()) if len(n) else np.nan,
                proj=float(proj.mean()), proj_sd=float(proj.std(ddof=1)),
                proj_reset_per_sample=float(per_reset.mean()) if len(k) else np.nan)


def _line(qs: np.ndarray, ys: np.ndarray) -> tuple[float, float]:
    b, a = np.polyfit(qs, ys, 1)
    return float(a), float(b)


def _derived(A: dict, idx, folds=None) -> dict:
    """Quantities bootstrapped together: the q-line, SRPO's place on it, P2's ratios, P4's gap."""
    q_arms = [(lab, arm_q(lab)) for lab in A if arm_q(lab) is not None]
    rates = {lab: _rates(A[lab], idx, folds) for lab in A}
    qs = np.array([q for _, q in q_arms])
    a, b = _line(qs, np.array([rates[lab]["proj"] for lab, _ in q_arms]))
    out = dict(intercept=a, slope=b)
    rf, orc = rates.get("random_failed"), rates.get("oracle")
    if rf and orc and "self" in rates:
        q_self = (rates["self"]["hit"] - rf["hit"]) / (orc["hit"] - rf["hit"]) if orc["hit"] != rf["hit"] else np.nan
        out.update(q_self=q_self, self_predicted=a + b * q_self, self_gap=rates["self"]["proj"] - (a + b * q_self))
    if rf and orc:
        beta = {lab: r["proj_reset_per_sample"] / r["informative"] for lab, r in rates.items()
                if lab not in ("start",) and r["informative"] and r["informative"] > 0}
        out["beta"] = beta
        out["beta_ratio"] = beta.get("oracle", np.nan) / beta.get("random_failed", np.nan)
        out["reset_gap"] = orc["proj_reset_per_sample"] - rf["proj_reset_per_sample"]
    out["samples_snr"] = {lab: 8 * samples_for_snr(r["proj"], r["proj_sd"], SNR) for lab, r in rates.items()}
    out["proj"] = {lab: r["proj"] for lab, r in rates.items()}
    out["reset"] = {lab: r["proj_reset_per_sample"] for lab, r in rates.items()}
    return out


def _boot(A: dict, fn, B: int, seed: int) -> list[dict]:
    """``fn`` on ``B`` bootstrap replicates: prompts resampled (every arm together) and reference folds
    resampled, so both the rollouts' and the reference's noise enter the intervals."""
    P, K = next(iter(A.values()))["folds"].shape
    rng = np.random.default_rng(seed)
    return [fn(A, rng.integers(0, P, P), rng.integers(0, K, K)) for _ in range(B)]


def _pct(vals, lo=2.5, hi=97.5):
    v = np.asarray([x for x in vals if x is not None and np.isfinite(x)], dtype=float)
    return (float(np.percentile(v, lo)), float(np.percentile(v, hi))) if len(v) > 10 else (np.nan, np.nan)


def summarise_length(res: dict, boot: int = 1000, seed: int = 0) -> dict:
    """The stage-1 table of one length: per arm the rates (Wilson), projections (t intervals), samples to
    SNR 2, paired differences to random_failed, and the bootstrapped predictions P1-P3."""
    A = _arrays(res["rows"])
    P = res["prompts"]
    arms = {}
    for lab, a in A.items():
        r = _rates(a)
        m, sd = r["proj"], r["proj_sd"]
        K = a["folds"].shape[1]
        se_ref = float(a["folds"].mean(0).std(ddof=1) / math.sqrt(K)) if K > 1 else 0.0  # reference noise
        se = math.sqrt(sd ** 2 / P + se_ref ** 2)
        r.update(proj_ci=1.96 * se, proj_se_prompts=sd / math.sqrt(P), proj_se_reference=se_ref,
                 proj_fresh=float(a["proj_fresh"].mean()),
                 proj_reset=float(a["proj_reset"].mean()), tokens_per_prompt=float(a["tokens"].mean()),
                 informative_ci=wilson(r["informative_k"], r["resets"]), hit_ci=wilson(r["hit_k"], r["checked"]),
                 samples_snr=8 * samples_for_snr(m, sd, SNR),
                 tokens_snr=samples_for_snr(m, sd, SNR) * float(a["tokens"].mean()))
        if "random_failed" in A and lab != "random_failed":
            dm, dh = t_interval(a["proj"] - A["random_failed"]["proj"])
            r.update(vs_random_failed=dm, vs_random_failed_ci=dh)
        arms[lab] = r
    point = _derived(A, np.arange(P))
    bs = _boot(A, _derived, boot, seed)
    for lab in arms:  # paired with random_failed, both noise sources
        arms[lab]["vs_random_failed_boot"] = _pct([b["proj"][lab] - b["proj"]["random_failed"] for b in bs])
    ci = {k: _pct([b[k] for b in bs]) for k in ("intercept", "slope", "q_self", "self_predicted", "self_gap",
                                                   "beta_ratio", "reset_gap") if k in point}
    for lab in arms:
        arms[lab]["samples_snr_ci"] = _pct([b["samples_snr"][lab] for b in bs])
        arms[lab]["proj_reset_per_sample_ci"] = _pct([b["reset"][lab] for b in bs])
    # P1 lack of fit: the noisy arms' distance from the line through the end points, paired per prompt
    q_arms = [lab for lab in A if arm_q(lab) is not None]
    resid = {}
    for lab in q_arms:
        q = arm_q(lab)
        d = A[lab]["proj"] - ((1 - q) * A["random_failed"]["proj"] + q * A["oracle"]["proj"])
        resid[lab] = t_interval(d)
    return dict(task=res["task"], prompts=P, success=res["success"], success_n=res["success_n"], ref=res["ref"],
                arms=arms, fit={**point, "ci": ci, "chord_residuals": resid},
                inv_n=arms.get("random_failed", {}).get("inv_n"))


# ----------------------------------------------------------------------------- verdicts (rules fixed before)

def linearity_verdict(fit: dict) -> str:
    """P1: "reproduced" if every noisy arm's mean lies on the chord from random_failed to oracle (its
    paired 95% interval of the residual contains 0) and the slope's bootstrap interval lies above 0;
    "contradicted" if the slope's interval lies below 0; else "not resolved"."""
    lo, hi = fit["ci"].get("slope", (np.nan, np.nan))
    on_chord = all(abs(m) <= h for m, h in fit["chord_residuals"].values() if np.isfinite(h))
    if lo > 0 and on_chord:
        return "reproduced"
    if hi < 0:
        return "contradicted"
    return "not resolved at this size"


def proportionality_verdict(fit: dict) -> str:
    """P2: with ``[lo, hi]`` the bootstrap interval of beta(oracle) / beta(random_failed): "not proportional"
    if it excludes 1; "consistent" if it contains 1 and lies within [1/3, 3] (the ratio is known to a
    factor of 3); else "not resolved" (a denominator near 0 makes the ratio unbounded)."""
    lo, hi = fit["ci"].get("beta_ratio", (np.nan, np.nan))
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "not resolved at this size"
    if lo > 1 or hi < 1:
        return "not proportional"
    return "consistent" if 1 / 3 <= lo and hi <= 3 else "not resolved at this size"


def self_verdict(fit: dict) -> str:
    """P3: "on the line" if the bootstrap interval of (measured - predicted) contains 0; "below the line" /
    "above the line" when it excludes 0."""
    lo, hi = fit["ci"].get("self_gap", (np.nan, np.nan))
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "not resolved at this size"
    return "on the line" if lo <= 0 <= hi else ("below the line" if hi < 0 else "above the line")


def difficulty_verdict(gaps: list[tuple[float, tuple[float, float]]]) -> str:
    """P4 over lengths in increasing order, ``(gap, (lo, hi))`` each: "reproduced" if the longest length's
    interval lies above the shortest's, "contradicted" if below, else "not resolved"."""
    if len(gaps) < 2:
        return "not testable with one length"
    (_, (lo0, hi0)), (_, (lo1, hi1)) = gaps[0], gaps[-1]
    if lo1 > hi0:
        return "reproduced"
    if hi1 < lo0:
        return "contradicted"
    return "not resolved at this size"


# ----------------------------------------------------------------------------- power of stage 2

def stage2_power(arms: dict, steps: int, prompts_per_step: int, alpha: float = 0.05, m: int = 3,
                 power: float = 0.8, minimum: int = 10, cap: int = 40, pilot: dict | None = None) -> dict:
    """Seeds stage 2 needs to detect the predicted oracle - random_failed difference (first-order model).

    Model: a run's held-out gain is proportional to the projection of its summed updates on the reference
    direction, ``Delta_arm = c sum_{t,p} x_tp`` over ``T`` steps of ``P`` prompts with per-prompt projections
    of mean ``mu_arm`` and sd ``sd_arm`` (stage 1). Then ``delta = c T P (mu_o - mu_r)`` and, the arms' samples
    being independent in training, ``sd_d = c sqrt(T P (sd_o^2 + sd_r^2))``; ``c`` cancels in
    ``delta / sd_d = sqrt(T P) (mu_o - mu_r) / sqrt(sd_o^2 + sd_r^2)``. Seeds: the smallest ``n`` with
    ``(t_{1-a/2} + t_power) sd_d / sqrt(n) <= delta`` at ``a = alpha / m`` (Holm's first step over the
    ``m`` contrasts), at least ``minimum`` (the model ignores every noise source but gradient sampling)
    and at most ``cap``. With a ``pilot`` (``contrasts.pilot_from``: the measured sd of paired final-accuracy
    differences and the predicted C1 of a smaller finished run) also ``n_pilot``, the seeds that detect the
    pilot's predicted difference at its measured sd (conservative: under the model both grow with the run's
    length, their ratio like its square root); ``n`` is the largest of the three."""
    o, r = arms["oracle"], arms["random_failed"]
    eff = math.sqrt(steps * prompts_per_step) * (o["proj"] - r["proj"]) / math.sqrt(o["proj_sd"] ** 2 + r["proj_sd"] ** 2)
    n_model = seeds_needed(eff, 1.0, alpha / m, power, cap=10_000) if eff > 0 else 10_000
    n_pilot = None
    if pilot and pilot.get("delta", 0) > 0:
        n_pilot = seeds_needed(pilot["delta"], pilot["sd"], alpha / m, power, cap=10_000)
    n = int(min(max(n_model, n_pilot or 0, minimum), cap))
    return dict(effect_over_sd=eff, n_model=n_model, n_pilot=n_pilot, pilot=pilot, n=n, alpha=alpha / m,
                power=power, steps=steps, prompts_per_step=prompts_per_step, minimum=minimum, cap=cap,
                mde_at_n_in_sd=mde_paired(1.0, n, alpha / m, power),
                mde_at_n=mde_paired(pilot["sd"], n, alpha / m, power) if pilot else None)
