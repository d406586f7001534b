"""Report topic: resets on a transformer with the localizer's accuracy as a dial (``experiments/llm_dial.py``).

Verdict rules live with the experiment (``dial.analysis``: P1-P4 of stage 1; ``dial.contrasts``: C1-C3 of
stage 2); this module words them for the report. A verdict the run's size cannot decide reads "not
testable at quick size" in the quick profile.
"""
from __future__ import annotations

import math

from .common import fmt, missing, pct

FILES = {"dial": "llm_dial.json", "dial_seeds": "llm_dial_seeds.json", "dial_full": "llm_dial_full.json"}
"""the reproduction profile's run; the quick sizes with the seeds stage 2's power calculation asks for
(``--profile quick --stage 2 --seeds 0 ... 9 --name llm_dial_seeds``, reusing the reproduction's run
directory), when it was made; and the full design's run, when it was made (``--profile full --name
llm_dial_full``). The claims state the verdicts of the largest run present."""

PREDICTIONS = {
    "P1": "the per-prompt gradient signal of noisy(q) is linear in q, rising from RRPO (q = 0) to the oracle "
          "(q = 1)",
    "P2": "a reset sample's signal is proportional to the effective p (its informative-reset rate): "
          "beta(oracle) / beta(RRPO) = 1",
    "P3": "SRPO sits on the q line at its measured hit rate",
    "P4": "the oracle's gain over RRPO per reset sample grows with the chain length",
}


def quick_wording(verdict: str, profile: str) -> str:
    """Rule: in a profile other than full, a verdict the size cannot decide ("not resolved ..." / "not
    testable ...") reads "not testable at quick size"."""
    if profile != "full" and (verdict.startswith("not resolved") or verdict.startswith("not testable")):
        return "not testable at quick size"
    return verdict


def _ci(pair, digits=4):
    lo, hi = pair if pair else (math.nan, math.nan)
    return "n/a" if missing(lo) or missing(hi) else f"[{lo:+.{digits}f}, {hi:+.{digits}f}]"


def _lengths(d):
    return sorted(d["stage1"], key=int)


def claims(d) -> list[str]:
    r = d.get("dial_full") or d.get("dial_seeds") or d["dial"]
    if r is None:
        return []
    prof, v, s1 = r["config"]["profile"], r["verdicts"], r["stage1"]
    out = [f"* Resets on a transformer, the localizer's accuracy as a dial: the verdicts below are from the "
           f"`{prof}` run with {len(r['stage2']['plan']['seeds'])} seeds ({r['config']['model']}; sections below)."]
    for key in ("P1", "P2", "P3"):
        per = "; ".join(f"{L} terms: {quick_wording(v[key][L], prof)}" for L in _lengths(r))
        detail = []
        for L in _lengths(r):
            f = s1[L]["fit"]
            if key == "P1":
                detail.append(f"{L} terms slope {fmt(f['slope'], 4)} {_ci(f['ci'].get('slope'))}")
            elif key == "P2":
                detail.append(f"{L} terms ratio {fmt(f.get('beta_ratio'), 2)} {_ci(f['ci'].get('beta_ratio'), 2)}")
            else:
                detail.append(f"{L} terms q_self {fmt(f.get('q_self'), 2)}, measured - predicted "
                              f"{fmt(f.get('self_gap'), 4)} {_ci(f['ci'].get('self_gap'))}")
        out.append(f"* **Stage 1 ({key}): {PREDICTIONS[key]}** - {per} ({'; '.join(detail)}; bootstrap 95% over "
                   "prompts and reference folds).")
    gaps = ", ".join(f"{L} terms {fmt(s1[L]['fit'].get('reset_gap'), 4)} {_ci(s1[L]['fit']['ci'].get('reset_gap'))}"
                     for L in _lengths(r))
    out.append(f"* **Stage 1 (P4): {PREDICTIONS['P4']}** - {quick_wording(v['P4'], prof)} (oracle - RRPO per reset "
               f"sample: {gaps}).")
    con = r["stage2"]["contrasts"]
    for k, c in con.items():
        out.append(f"* **Stage 2 ({k}): {c['text']} > 0 (CARO beats RR on a transformer)** - "
                   f"{quick_wording(c['verdict'], prof)}: {c['mean']:+.4f}, Holm-level ({c['level']:.3f}) interval "
                   f"{_ci((c['lo'], c['hi']))}, Holm p {fmt(c['p_holm'], 3)}, {c['n']} seeds, minimum detectable "
                   f"{fmt(c['mde'], 4)} vs predicted {c['predicted']:+.4f}.")
    return out


def _stage1_table(r) -> list[str]:
    lines = ["| terms | arm | informative resets (Wilson 95%) | at first error | clean prefix | mean k/n | "
             "projection per prompt (95%) | vs RRPO, paired (bootstrap 95%) | per reset sample | trained samples "
             "for SNR 2 | tokens / prompt |", "|---|---|---|---:|---:|---:|---|---|---:|---|---:|"]
    for L in _lengths(r):
        for lab, a in r["stage1"][L]["arms"].items():
            inf = "" if missing(a["informative"]) else (f"{pct(a['informative'])} [{pct(a['informative_ci'][0])}, "
                                                        f"{pct(a['informative_ci'][1])}]")
            vs = "" if lab == "random_failed" else _ci(a.get("vs_random_failed_boot"))
            sn = a["samples_snr"]
            snr = "inf" if not math.isfinite(sn) else (f"{sn:,.0f} [{a['samples_snr_ci'][0]:,.0f}, "
                                                       f"{a['samples_snr_ci'][1]:,.0f}]"
                                                       if not missing(a["samples_snr_ci"][0]) else f"{sn:,.0f}")
            lines.append(f"| {L} | {lab} | {inf} | {pct(a['hit'])} | {pct(a['clean'])} | {fmt(a['rel'], 2)} | "
                         f"{a['proj']:+.4f} ± {fmt(a['proj_ci'], 4)} | {vs} | {fmt(a['proj_reset_per_sample'], 4)} | "
                         f"{snr} | {a['tokens_per_prompt']:.0f} |")
    return lines


def _difficulty_table(r) -> list[str]:
    starts = r["stage2"]["starts"]
    lines = ["| terms | step-0 sampled success (T 0.7) | held-out greedy pass@1 (n) | held-out sampled | E[1/n] "
             "(failed parents) | informative resets: random / RRPO / oracle / SRPO |", "|---|---:|---|---:|---:|---|"]
    for L in _lengths(r):
        s, st = r["stage1"][L], starts.get(str(L), starts.get(L, {}))
        a = s["arms"]
        lines.append(f"| {L} | {pct(s['success'])} | {pct(st.get('eval_pass@1'))} ({st.get('eval_n')}) | "
                     f"{pct(st.get('eval_sampled_acc'))} | {fmt(s.get('inv_n'), 3)} | "
                     + " / ".join(pct(a[k]["informative"]) for k in ("random", "random_failed", "oracle", "self"))
                     + " |")
    return lines


def _power_text(r) -> list[str]:
    out = []
    for L, p in sorted(r["power"].items(), key=lambda kv: int(kv[0])):
        out.append(f"* {L} terms: effect / sd per seed = sqrt(T P) (mu_oracle - mu_RRPO) / sqrt(sd_o^2 + sd_r^2) "
                   f"= {fmt(p['effect_over_sd'], 2)} with T = {p['steps']} steps, P = {p['prompts_per_step']} "
                   f"prompts; seeds for power {p['power']:.0%} at alpha {p['alpha']:.4f} (Holm's first step over 3): "
                   f"{p['n_model']} by the model"
                   + (f", {p['n_pilot']} by the pilot (sd of paired final differences {p['pilot']['sd']:.4f} over "
                      f"{p['pilot']['df']} df from the {p['pilot']['profile']} run, its predicted oracle - RRPO "
                      f"{p['pilot']['delta']:+.4f})" if p.get("n_pilot") else "")
                   + f"; {p['n']} used (floor {p['minimum']}, cap {p['cap']}); minimum detectable difference with "
                   f"{p['n']} seeds: {fmt(p['mde_at_n_in_sd'], 2)} sd"
                   + (f" = {p['mde_at_n']:.4f} in final pass@1 at the pilot's sd" if p.get("mde_at_n") else "") + ".")
    return out


def _stage2_tables(r) -> list[str]:
    s2 = r["stage2"]
    lines = ["| terms | arm | final greedy (95% t) | gain over step 0 | final sampled | area under curve | vs GRPO, "
             "paired | reached target | informative resets | at first error |",
             "|---|---|---|---|---|---|---|---:|---:|---:|"]
    for t in s2["table"]:
        vs = "" if t["arm"] == "grpo" else f"{t['vs_grpo']:+.3f} ± {fmt(t['vs_grpo_ci'])}"
        lines.append(f"| {t['length']} | {t['arm']} | {fmt(t['final'])} ± {fmt(t['final_ci'])} | {t['gain']:+.3f} ± "
                     f"{fmt(t['gain_ci'])} | {fmt(t['sampled'])} ± {fmt(t['sampled_ci'])} | {fmt(t['area'])} ± "
                     f"{fmt(t['area_ci'])} | {vs} | {t['reached']}/{t['runs']} | {pct(t['informative'])} | "
                     f"{pct(t['hit'])} |")
    lines += ["", "| contrast | mean | Holm level | interval | p | Holm p | sd | seeds | MDE | predicted | verdict |",
              "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---|"]
    for k, c in s2["contrasts"].items():
        lines.append(f"| {k}: {c['text']} | {c['mean']:+.4f} | {c['level']:.4f} | {_ci((c['lo'], c['hi']))} | "
                     f"{fmt(c['p'], 3)} | {fmt(c['p_holm'], 3)} | {fmt(c['sd'], 4)} | {c['n']} | {fmt(c['mde'], 4)} | "
                     f"{c['predicted']:+.4f} | {quick_wording(c['verdict'], r['config']['profile'])} |")
    return lines


def section(d) -> list[str]:
    lines = ["## Resets on a transformer, the localizer's accuracy as a dial", ""]
    if d["dial"] is None and not d.get("dial_full") and not d.get("dial_seeds"):
        return lines + ["Not run.", ""]
    for key in ("dial_full", "dial_seeds", "dial"):
        if d.get(key):
            lines += _section(d[key])
    return lines


def _section(r) -> list[str]:
    cfg, s1 = r["config"], r["stage1"]
    seeds = r["stage2"]["plan"]["seeds"]
    name = cfg.get("name", "llm_dial")
    cmd = f"python experiments/llm_dial.py --profile {cfg['profile']}" + (
        f" --stage 2 --seeds {' '.join(map(str, seeds))} --name {name}" if name == "llm_dial_seeds" else
        f" --name {name}" if name != "llm_dial" else "")
    lines = [f"### Profile `{cfg['profile']}`, {len(seeds)} seeds (`{cmd}`)", ""]
    p = cfg["profile_sizes"]["s1"]
    L0 = _lengths(r)[0]
    ver = f" (recipe version {cfg['model_version']})" if cfg.get("model_version") is not None else ""
    sec = r.get("seconds", {})
    cpu = sum(s1[L].get("cpu_seconds", {}).get("total", 0.0) for L in _lengths(r))
    lines += [f"Model `{cfg['model']}`{ver}, task `arith` at {', '.join(_lengths(r))} terms (profile `{cfg['profile']}`; "
              f"stage 1 {fmt(sec.get('stage1'), 0)} s wall, {cpu:.0f} s CPU; both stages {fmt(sec.get('total'), 0)} s "
              f"wall{', stage-2 training CPU ' + format(sec['stage2_cpu'], '.0f') + ' s' if sec.get('stage2_cpu') else ''}"
              "). "
              f"Stage 1: {p['prompts']} prompts per length, common random numbers across arms; reference gradient "
              f"from {s1[L0]['ref']['chains']} fresh chains in {p['folds']} folds (mean pairwise fold cosine "
              + ", ".join(f"{L} terms {fmt(s1[L]['ref']['fold_cosine'], 2)}" for L in _lengths(r))
              + "); projections in units of the estimated |grad J|, intervals with both the prompts' and the "
              "reference's noise.", "", "Difficulty (step 0):", ""] + _difficulty_table(r) + ["", "Stage 1:", ""]
    lines += _stage1_table(r) + ["", "Power of stage 2 (first-order model, written before the run):", ""]
    lines += _power_text(r) + [""]
    s2 = r["stage2"]
    pl = s2["plan"]
    lines += [f"Stage 2: {len(pl['arms'])} arms x {len(pl['lengths'])} lengths x {len(pl['seeds'])} seeds, "
              f"{pl['steps']} steps x {pl['prompts_per_step']} prompts x 8 rollouts, held-out {pl['eval_size']} "
              f"distinct problems per length shared by every run (greedy, and one sampled chain per problem at T 0.7), "
              f"noisy q = {pl['q']}. Target for the crossing: step 0 + {cfg['target_gain']}.", ""]
    lines += _stage2_tables(r) + [""]
    return lines


def captions(d, figs) -> list[str]:
    cap = []
    for stem, what in (("llm_dial", ""), ("llm_dial_seeds", " (quick sizes, 10 seeds)"), ("llm_dial_full", " (full design)")):
        if (figs / f"{stem}_stage1.png").exists():
            cap.append(f"* `{stem}_stage1.png` ({stem}_stage1.csv, {stem}.json) - Stage 1{what}: the gradient signal "
                       "of a reset sample and of the whole update against the localizer accuracy q (SRPO at its "
                       "measured q), the informative-reset rate and the trained samples needed for a signal-to-noise "
                       "ratio of 2, per chain length.")
        if (figs / f"{stem}_stage2.png").exists():
            cap.append(f"* `{stem}_stage2.png` ({stem}_stage2.csv, {stem}.json) - Stage 2{what}: held-out greedy "
                       "pass@1 curves of GRPO, RRPO, noisy(q), oracle and SRPO per length (one shared held-out set), "
                       "and the pre-registered contrasts with Holm-level intervals and their predictions.")
    return cap
