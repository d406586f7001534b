"""Report topic: GRPO / RRPO / SRPO / oracle reset on a transformer policy."""
from __future__ import annotations

import math

from .common import fmt, pct

FILES = {"lc": "llm_compare.json"}


def paired_verdict(diffs: list[dict]) -> str:
    """Rule (paired by seed, 95% CIs): "reproduced" if SRPO's difference to every rival lies above 0,
    "contradicted" if one lies below 0, else "not distinguishable"."""
    if diffs and all(d["mean"] - d["ci95"] > 0 for d in diffs):
        return "reproduced at this scale"
    if any(d["mean"] + d["ci95"] < 0 for d in diffs):
        return "contradicted at this scale"
    return "not distinguishable at this scale"


def unpaired_verdict(srpo: dict, grpo: dict) -> str:
    """Rule without pairing: the two final 95% intervals do not overlap."""
    if (srpo["final_mean"] - srpo["final_ci95"]) > (grpo["final_mean"] + grpo["final_ci95"]):
        return "reproduced at this scale"
    if (srpo["final_mean"] + srpo["final_ci95"]) < (grpo["final_mean"] - grpo["final_ci95"]):
        return "contradicted at this scale"
    return "not distinguishable at this scale"


def eval_noise(accuracy: float, n: int) -> float:
    """Half-width of the 95% interval of one evaluation: ``1.96 sqrt(p (1 - p) / n)``."""
    return 1.96 * math.sqrt(max(accuracy * (1 - accuracy), 0.0) / n) if n else float("inf")


def speedup_verdict(samples_grpo: float, samples_srpo: float, target_gain: float | None = None,
                    noise: float | None = None) -> str:
    """Rule: "not testable" when the target lies within one evaluation's noise of the start
    (``target_gain <= noise``: a curve can cross it by chance); else reproduced when GRPO needs >= 1.5x
    SRPO's training samples to reach the target."""
    if target_gain is not None and noise is not None and target_gain <= noise:
        return (f"not testable: the target (step 0 + {target_gain:.3f}) lies within one evaluation's noise "
                f"(+-{noise:.3f}) of the start, so a crossing can be chance")
    r = samples_grpo / samples_srpo
    return f"reproduced ({r:.2f}x)" if r >= 1.5 else f"not reproduced ({r:.2f}x)"


def claims(d) -> list[str]:
    lc = d["lc"]
    if lc is None:
        return []
    out = []
    m = lc["summary"]["methods"]
    if {"grpo", "srpo"} <= set(m):
        g, s_ = m["grpo"], m["srpo"]
        pd = s_.get("paired_diff", {})
        if "grpo" in pd:  # paired by seed (same held-out set and prompt order); else unpaired intervals
            verdict = paired_verdict([pd[o] for o in ("grpo", "rrpo") if o in pd])
            how = "; paired by seed, SRPO - " + ", SRPO - ".join(
                f"{o.upper()} {pd[o]['mean']:+.3f} ± {pd[o]['ci95']:.3f}" for o in ("grpo", "rrpo") if o in pd)
        else:
            verdict, how = unpaired_verdict(s_, g), ""
        if lc["config"].get("profile") == "quick" and verdict.startswith("not distinguishable"):
            verdict = "not testable at quick size"  # a quick run's few seeds cannot separate the expected effect
        out.append(f"* **SRPO beats GRPO and RRPO in final accuracy (paper: +3.5 to +4.3 points on 10 benchmarks, "
                   f"7B-14B models)** - {verdict}: final held-out pass@1 GRPO {fmt(g['final_mean'])} ± "
                   f"{fmt(g['final_ci95'])}, RRPO {fmt(m.get('rrpo', {}).get('final_mean'))} ± "
                   f"{fmt(m.get('rrpo', {}).get('final_ci95'))}, SRPO {fmt(s_['final_mean'])} ± "
                   f"{fmt(s_['final_ci95'])}, oracle {fmt(m.get('oracle', {}).get('final_mean'))} ± "
                   f"{fmt(m.get('oracle', {}).get('final_ci95'))} (95% CIs over "
                   f"{len(lc['config']['seeds'])} seeds{how}). The paper's benchmarks and model sizes are not "
                   "testable on two CPU cores.")
        sg, ss = g["samples_to_target"], s_["samples_to_target"]
        base = lc["summary"]["start_accuracy"]
        noise = eval_noise(base, lc["config"]["eval_size"])
        gain = lc["config"]["target_gain"]
        if all("gain_mean" in v for v in m.values()):
            improved = [f"{k.upper()} ({v['gain_mean']:+.3f} ± {v['gain_ci95']:.3f})" for k, v in m.items()
                        if v["gain_mean"] - v["gain_ci95"] > 0]
            out.append(f"  Held-out accuracy at step 0 was {fmt(base)}; methods whose gain over step 0 (paired "
                       f"by seed, 95% CI) lies above 0: {', '.join(improved) if improved else 'none'}.")
        else:
            improved = [k.upper() for k, v in m.items() if v["final_mean"] - v["final_ci95"] > base]
            out.append(f"  Held-out accuracy at step 0 was {fmt(base)}; methods whose final 95% CI lies above "
                       f"it: {', '.join(improved) if improved else 'none'}.")
        if gain <= noise:
            out.append("* **SRPO reaches matching pass rates 2-3x faster than GRPO** - "
                       f"{speedup_verdict(sg or 1.0, ss or 1.0, gain, noise)} (held-out set of "
                       f"{lc['config']['eval_size']} problems; GRPO reached it: {'yes' if sg else 'no'}, SRPO: "
                       f"{'yes' if ss else 'no'}).")
        elif sg and ss:
            out.append(f"* **SRPO reaches matching pass rates 2-3x faster than GRPO** - "
                       f"{speedup_verdict(sg, ss, gain, noise)}: GRPO {sg:.0f} vs SRPO {ss:.0f} training samples to "
                       "the target.")
        else:
            out.append("* **SRPO reaches matching pass rates 2-3x faster than GRPO** - not testable in this run: "
                       f"the target ({fmt(lc['summary']['target_accuracy'])}) was reached by GRPO: "
                       f"{'yes' if sg else 'no'}, SRPO: {'yes' if ss else 'no'}.")
    if "srpo" in m and "rrpo" in m and m["srpo"].get("reset_rel_mean") is not None:
        early = m["srpo"]["reset_rel_mean"] < (m["rrpo"].get("reset_rel_mean") or 0.0)
        out.append(f"* **SRPO's resets cluster early** - {'reproduced' if early else 'not reproduced'}: mean "
                   f"relative reset position (k/n) SRPO {fmt(m['srpo']['reset_rel_mean'], 2)} vs RRPO (uniform) "
                   f"{fmt(m['rrpo'].get('reset_rel_mean'), 2)}"
                   + (f"; SRPO's reset hits the first wrong thought exactly in {pct(m['srpo']['loc_exact'])} "
                      f"of failed parents (within one step {pct(m['srpo']['loc_within1'])}; a uniform guess "
                      f"{pct(m['srpo'].get('loc_chance'))}, RRPO measured {pct(m['rrpo'].get('loc_exact'))})"
                      if m["srpo"].get("loc_exact") is not None else "")
                   + ". See `llm_resets.png`, `llm_localization.png`.")
    return out


def section(d) -> list[str]:
    lc = d["lc"]
    lines = ["## GRPO vs RRPO vs SRPO vs oracle reset (tiny default, equal budgets)", ""]
    if lc is None:
        return lines + ["Not run.", ""]
    s, cfg = lc["summary"], lc["config"]
    lines += [f"Model `{cfg['model']}`, task `{cfg['task']}`, {cfg['steps']} steps x {cfg['prompts_per_step']} "
              f"prompts x 8 rollouts, seeds {cfg['seeds']}; held-out greedy pass@1 on {cfg['eval_size']} "
              f"problems{' shared by every seed and method' if cfg.get('shared_held_out') else ''}"
              f"{' (the runs of ' + cfg['source'] + ')' if cfg.get('source') else ''}. "
              f"Step-0 accuracy {fmt(s['start_accuracy'])}; target = step 0 + "
              f"{cfg['target_gain']:.2f} = {fmt(s['target_accuracy'])}.", "",
              "| method | final pass@1 (mean ± 95% CI) | gain over step 0, paired by seed | vs GRPO, paired | "
              "samples to target | mean relative reset position | "
              "reset at the first wrong thought: exact / ±1 (uniform guess) |", "|---|---|---|---|---:|---:|---|"]
    for m, v in s["methods"].items():
        reach = "not reached" if v["samples_to_target"] is None else f"{v['samples_to_target']:.0f}"
        loc = (f"{pct(v['loc_exact'])} / {pct(v['loc_within1'])} ({pct(v.get('loc_chance'))}; n={v['loc_n']})"
               if v.get("loc_exact") is not None else "")
        rel = fmt(v.get("reset_rel_mean"), 2) if v.get("reset_rel_mean") is not None else ""
        gain = f"{v['gain_mean']:+.3f} ± {v['gain_ci95']:.3f}" if "gain_mean" in v else ""
        vs = v.get("paired_diff", {}).get("grpo")
        vs = f"{vs['mean']:+.3f} ± {vs['ci95']:.3f}" if vs else ""
        lines.append(f"| {m.upper()} | {fmt(v['final_mean'])} ± {fmt(v['final_ci95'])} | {gain} | {vs} | {reach} | "
                     f"{rel} | {loc} |")
    lines.append("")
    return lines


FIGURES = [
    ("llm_accuracy.png", "llm_accuracy.csv", "Held-out greedy pass@1 vs training samples and vs tokens "
     "generated for GRPO / RRPO / SRPO / oracle reset on the tiny default (mean, 95% CI over seeds)."),
    ("llm_resets.png", "llm_resets.csv", "Histogram of reset steps for RRPO (uniform), SRPO "
     "(self-localized) and oracle (first wrong thought)."),
    ("llm_localization.png", "llm_localization.csv", "SRPO's self-localization accuracy (exact, within one "
     "step) against the task's first wrong thought, over training."),
]


def captions(d, figs) -> list[str]:
    cap = [f"* `{png}` ({data}) - {text}" for png, data, text in FIGURES if (figs / png).exists()]
    if d["lc"]:
        cap.append("  LLM finals: " + ", ".join(f"{m.upper()} {fmt(v['final_mean'])} ± {fmt(v['final_ci95'])}"
                                                for m, v in d["lc"]["summary"]["methods"].items()))
    return cap
