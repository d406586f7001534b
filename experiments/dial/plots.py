"""Figures and tables of the reset experiment (``llm_dial_stage1.*``, ``llm_dial_stage2.*``)."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from .stage1 import arm_q

ARM_COLORS = {"start": "tab:gray", "grpo": "tab:gray", "random": "tab:purple", "random_failed": "tab:blue",
              "rrpo": "tab:blue", "noisy": "tab:orange", "oracle": "tab:green", "self": "tab:red", "srpo": "tab:red"}
LENGTH_MARKERS = ["o", "s", "^", "D"]

STAGE1_FIELDS = ["length", "arm", "q", "resets", "informative", "informative_lo", "informative_hi", "hit", "hit_lo",
                 "hit_hi", "clean", "inv_n", "rel", "proj", "proj_ci", "proj_sd", "proj_se_prompts",
                 "proj_se_reference", "proj_reset_per_sample", "proj_reset_lo", "proj_reset_hi", "vs_random_failed", "vs_random_failed_lo",
                 "vs_random_failed_hi", "samples_snr", "samples_snr_lo", "samples_snr_hi", "tokens_per_prompt",
                 "success"]


def stage1_rows(s1: dict) -> list[dict]:
    rows = []
    for L, s in s1.items():
        for lab, a in s["arms"].items():
            b = a.get("vs_random_failed_boot", (np.nan, np.nan))
            rows.append(dict(length=L, arm=lab, q=arm_q(lab), resets=a["resets"], informative=a["informative"],
                             informative_lo=a["informative_ci"][0], informative_hi=a["informative_ci"][1],
                             hit=a["hit"], hit_lo=a["hit_ci"][0], hit_hi=a["hit_ci"][1], clean=a["clean"],
                             inv_n=a["inv_n"], rel=a["rel"], proj=a["proj"], proj_ci=a["proj_ci"], proj_sd=a["proj_sd"],
                             proj_se_prompts=a["proj_se_prompts"], proj_se_reference=a["proj_se_reference"],
                             proj_reset_per_sample=a["proj_reset_per_sample"],
                             proj_reset_lo=a.get("proj_reset_per_sample_ci", (np.nan, np.nan))[0],
                             proj_reset_hi=a.get("proj_reset_per_sample_ci", (np.nan, np.nan))[1],
                             vs_random_failed=a["proj"] - s["arms"]["random_failed"]["proj"],
                             vs_random_failed_lo=b[0], vs_random_failed_hi=b[1], samples_snr=a["samples_snr"],
                             samples_snr_lo=a["samples_snr_ci"][0], samples_snr_hi=a["samples_snr_ci"][1],
                             tokens_per_prompt=a["tokens_per_prompt"], success=s["success"]))
    return rows


def write_csv(path: Path, rows: list[dict], fields: list[str]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def _q_panel(ax, s1: dict, key: str, ci_of, title: str, ylabel: str) -> None:
    """``key`` of the q arms against q, the chord from RRPO to the oracle, SRPO at its measured q, GRPO dotted."""
    for j, (L, s) in enumerate(s1.items()):
        A, fit = s["arms"], s["fit"]
        qa = [lab for lab in A if arm_q(lab) is not None]
        q = np.array([arm_q(lab) for lab in qa])
        y = np.array([A[lab][key] for lab in qa], dtype=float)
        lo, hi = np.array([ci_of(A[lab]) for lab in qa], dtype=float).T
        ax.errorbar(q, y, yerr=[np.nan_to_num(np.clip(y - lo, 0, None)), np.nan_to_num(np.clip(hi - y, 0, None))],
                    fmt=LENGTH_MARKERS[j % 4], color=f"C{j}", capsize=3, label=f"{L} terms: RRPO, noisy(q), oracle")
        ax.plot([0, 1], [A["random_failed"][key], A["oracle"][key]], "-", color=f"C{j}", lw=1)
        qs = fit.get("q_self", np.nan)
        if np.isfinite(qs):
            ylo, yhi = ci_of(A["self"])
            ys = A["self"][key]
            ax.errorbar([qs], [ys], yerr=[[np.nan_to_num(max(ys - ylo, 0))], [np.nan_to_num(max(yhi - ys, 0))]], fmt="*",
                        ms=12, color=f"C{j}", mec="k", capsize=3, label=f"{L} terms: SRPO at its measured q")
        if key == "proj":
            ax.axhline(A["start"]["proj"], color=f"C{j}", ls=":", lw=1, label=f"{L} terms: GRPO")
    ax.set_xlabel("q (share of resets at the checker's first error)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)


def plot_stage1(s1: dict, path: Path) -> None:
    """(a) a reset sample's projection against q; (b) the per-prompt projection of the whole update against q
    (GRPO dotted); (c) informative-reset rate per arm (Wilson 95%); (d) trained samples for signal-to-noise 2
    (bootstrap 95%). Projections in units of |grad J|; intervals hold the prompts' and the reference's noise."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 4, figsize=(22, 4.8))
    _q_panel(ax[0], s1, "proj_reset_per_sample", lambda a: a.get("proj_reset_per_sample_ci", (np.nan, np.nan)),
             "A reset sample's gradient signal vs localizer accuracy", "projection on grad J / |grad J| per reset sample")
    _q_panel(ax[1], s1, "proj", lambda a: (a["proj"] - a["proj_ci"], a["proj"] + a["proj_ci"]),
             "Whole update (4 fresh + 4 reset) per prompt", "per-prompt projection on grad J / |grad J|")
    labels = list(next(iter(s1.values()))["arms"])
    width = 0.8 / max(len(s1), 1)
    for j, (L, s) in enumerate(s1.items()):
        A = s["arms"]
        pos = np.arange(len(labels)) + (j - (len(s1) - 1) / 2) * width
        for axis, key, ci in ((ax[2], "informative", "informative_ci"), (ax[3], "samples_snr", "samples_snr_ci")):
            v = np.array([A[lab][key] for lab in labels], dtype=float)
            lo = np.array([A[lab][ci][0] for lab in labels], dtype=float)
            hi = np.array([A[lab][ci][1] for lab in labels], dtype=float)
            axis.bar(pos, np.nan_to_num(np.where(np.isfinite(v), v, np.nan)), width, color=f"C{j}", alpha=0.8,
                     label=f"{L} terms")
            ok = np.isfinite(v) & np.isfinite(lo) & np.isfinite(hi)
            axis.errorbar(pos[ok], v[ok], yerr=[np.clip(v[ok] - lo[ok], 0, None), np.clip(hi[ok] - v[ok], 0, None)],
                          fmt="none", ecolor="k", capsize=2)
    ax[2].set_ylabel("reset groups with reward variance")
    ax[2].set_title("Informative-reset rate (Wilson 95%)", fontsize=10)
    ax[3].set_ylabel("trained samples for mean / s.e. = 2")
    ax[3].set_yscale("log")
    ax[3].set_title("Samples needed for a fixed signal-to-noise (bootstrap 95%)", fontsize=10)
    for a in ax[2:]:
        a.set_xticks(np.arange(len(labels)))
        a.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    for a in ax:
        a.grid(alpha=0.3)
        a.legend(fontsize=7)
    fig.suptitle("Stage 1: one policy, common random numbers across reset arms (no training)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


STAGE2_FIELDS = ["length", "arm", "step", "samples", "greedy", "greedy_ci", "greedy_se", "sampled", "sampled_ci",
                 "seeds"]
SHORT = {"C1": "C1: oracle - RRPO\n(longest length)", "C2": "C2: C1 longest -\nC1 shortest", "C3": "C3: trend in q\n(mean over lengths)"}


def stage2_curves(plan, data: dict) -> list[dict]:
    from .stats import t_interval
    rows = []
    for L in plan.lengths:
        for a in plan.arms:
            runs = [data[(L, a, s)]["curve"] for s in plan.seeds if (L, a, s) in data]
            if not runs:
                continue
            for st in sorted({c["step"] for r in runs for c in r}):
                pts = [c for r in runs for c in r if c["step"] == st]
                g, gci = t_interval([c["greedy"] for c in pts])
                sm, sci = t_interval([c["sampled"] for c in pts])
                se = float(np.std([c["greedy"] for c in pts], ddof=1) / np.sqrt(len(pts))) if len(pts) > 1 else np.nan
                rows.append(dict(length=L, arm=a, step=st, samples=float(np.mean([c["samples"] for c in pts])),
                                 greedy=g, greedy_ci=gci, greedy_se=se, sampled=sm, sampled_ci=sci, seeds=len(pts)))
    return rows


def plot_stage2(plan, curves: list[dict], contrasts: dict, path: Path) -> None:
    """Greedy held-out curves per length (mean, band of one standard error over seeds) and the contrasts with
    their Holm-level intervals and predictions."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(plan.lengths)
    fig, ax = plt.subplots(1, n + 1, figsize=(5.2 * (n + 1), 4.4), gridspec_kw={"width_ratios": [1] * n + [1.1]})
    for j, L in enumerate(plan.lengths):
        for a in plan.arms:
            c = [r for r in curves if r["length"] == L and r["arm"] == a]
            if not c:
                continue
            x = np.array([r["samples"] for r in c])
            y = np.array([r["greedy"] for r in c])
            e = np.nan_to_num(np.array([r["greedy_se"] for r in c], dtype=float))
            lab = f"{a}" + (f" (q={plan.q:g})" if a == "noisy" else "")
            ax[j].plot(x, y, "-o", ms=3, color=ARM_COLORS.get(a), label=lab)
            ax[j].fill_between(x, y - e, y + e, color=ARM_COLORS.get(a), alpha=0.12)
        ax[j].set_xlabel("trained samples")
        ax[j].set_ylabel("held-out greedy pass@1 (shared set)")
        ax[j].set_title(f"{L} terms ({len(plan.seeds)} seeds; band: mean +- 1 s.e.)", fontsize=10)
        ax[j].grid(alpha=0.3)
        ax[j].legend(fontsize=7)
    names = list(contrasts)
    m = np.array([contrasts[k]["mean"] for k in names], dtype=float)
    lo = np.array([contrasts[k]["lo"] for k in names], dtype=float)
    hi = np.array([contrasts[k]["hi"] for k in names], dtype=float)
    pr = np.array([contrasts[k]["predicted"] for k in names], dtype=float)
    yy = np.arange(len(names))
    ok = np.isfinite(lo) & np.isfinite(hi)
    ax[n].errorbar(m, yy, xerr=[np.where(ok, m - lo, 0), np.where(ok, hi - m, 0)], fmt="o", color="k", capsize=4,
                   label="measured, Holm-level interval")
    ax[n].plot(pr, yy, "x", color="tab:red", ms=9, label="predicted (stage 1)")
    ax[n].axvline(0, color="k", lw=0.8, ls=":")
    ax[n].set_yticks(yy)
    ax[n].set_yticklabels([SHORT.get(k, k) for k in names], fontsize=8)
    ax[n].set_xlabel("difference in final greedy pass@1 (paired by seed)")
    ax[n].set_title("Pre-registered contrasts", fontsize=10)
    ax[n].grid(alpha=0.3)
    ax[n].set_ylim(-0.5, len(names) + 0.3)  # room above the rows for the legend (it hid C3's prediction)
    ax[n].legend(fontsize=7, loc="upper center", ncol=2)
    fig.suptitle("Stage 2: training with each reset distribution (one held-out set per length)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
