"""Resets on a transformer with the localizer's accuracy as a dial: stage 1 (no training) and stage 2 (training).

Reset distributions (``llm.resets``): start (GRPO), random, random_failed (RRPO), noisy(q), oracle, self
(SRPO). Difficulty: a fixed number of terms per run (``arith:terms=L``; default: the model's shortest
and longest trained length).

* Stage 1 (``dial.stage1``, ``dial.analysis``): at each length, one policy, common random numbers across
  arms; per arm the informative-reset rate, the hit rate at the first error, and the gradient signal: each
  prompt's share of the training update projected on ``grad J`` from a large independent batch (reference
  folds keep its noise in the intervals), and the trained samples needed for a signal-to-noise ratio of 2.
  Predictions P1-P4 are written in ``dial/analysis.py`` with their verdict rules.
* Power: the seeds stage 2 needs for the predicted oracle - RRPO difference (``analysis.stage2_power``);
  ``--seeds auto`` (the full profile) runs that many.
* Stage 2 (``dial.stage2``, ``dial.contrasts``): GRPO, RRPO, noisy(q), oracle, SRPO x lengths x seeds,
  one held-out set per length shared by every run (greedy + a sampled probe), paired by seed;
  contrasts C1-C3 with Holm; samples to a target and the area under the curve.

Writes to ``--out``: ``llm_dial.json`` (everything), ``llm_dial_stage1.{png,csv}``,
``llm_dial_stage2.{png,csv}``, and the GRPO/RRPO/SRPO/oracle comparison of the longest length in the
format of ``experiments/llm_compare.py`` (``llm_compare.json``, ``llm_accuracy``, ``llm_resets``,
``llm_localization``), which the report's comparison topic reads.

    python experiments/llm_dial.py --profile quick            # tiny default, both stages reduced
    python experiments/llm_dial.py --profile full             # the whole design (hours on 2 cores)
    python experiments/llm_dial.py --model path/to/hf_dir --lengths 3 8 --profile full
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))

from dial import analysis, contrasts, plots, stage2  # noqa: E402

PROFILES = {
    "smoke": dict(s1=dict(prompts=6, ref_prompts=8, ref_samples=4, folds=2, boot=50), seeds=[0], steps=2,
                  prompts_per_step=2, eval_size=8, eval_every=1, target_gain=0.05,
                  extra=["--rollout.max_thoughts", "4", "--rollout.max_thought_tokens", "8", "--train_size", "64",
                         "--loc_max_new_tokens", "8"], inprocess=True),
    "quick": dict(s1=dict(prompts=128, ref_prompts=512, ref_samples=8, folds=2, boot=500), seeds=[0, 1], steps=20,
                  prompts_per_step=16, eval_size=1000, eval_every=20, target_gain=0.05, extra=[], inprocess=False),
    "full": dict(s1=dict(prompts=1024, ref_prompts=2048, ref_samples=16, folds=4, boot=1000), seeds="auto",
                 steps=100, prompts_per_step=16, eval_size=1000, eval_every=20, target_gain=0.05, extra=[],
                 inprocess=False),
}


def default_lengths(model: str) -> list[int]:
    """The shortest and longest chain the model was trained on (``credit_resets.json``), else 3 and 6."""
    from llm.hub import read_meta
    from llm.models import resolve_model
    t = read_meta(resolve_model(model)).get("task") or {}
    lo, hi = t.get("min_terms", 3), t.get("max_terms", 6)
    return [lo, hi] if hi > lo else [lo]


def model_version(model: str):
    """The recipe version recorded beside the model (the tiny default: ``credit_resets.json``), else None."""
    from llm.hub import read_meta
    from llm.models import resolve_model
    return (read_meta(resolve_model(model)).get("recipe") or {}).get("version")


def run_stage1(args, prof: dict, log) -> dict:
    import torch

    from llm.config import RolloutConfig
    from llm.models import load_policy
    from dial.stage1 import run_length

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    pol = load_policy(args.model)
    cfg = RolloutConfig(method="srpo", **({"max_thoughts": 4, "max_thought_tokens": 8, "loc_max_new_tokens": 8}
                                          if args.profile == "smoke" else {}))
    out, raw = {}, {}
    for L in args.lengths:
        p = prof["s1"]
        res = run_length(pol, pol.get_task(stage2.task_of(L)), cfg, prompts=p["prompts"], ref_prompts=p["ref_prompts"],
                         ref_samples=p["ref_samples"], seed=args.seed, folds=p["folds"], log=log)
        raw[L] = res
        out[L] = analysis.summarise_length(res, boot=p["boot"], seed=args.seed)
        out[L]["seconds"], out[L]["cpu_seconds"] = res["seconds"], res["cpu_seconds"]
    return out


def stage1_results(args, prof: dict, runs: Path, log) -> dict:
    """Stage 1 per length: read from ``runs/stage1.json`` with ``--stage 2`` (when saved), else run and saved there."""
    s1_file = runs / "stage1.json"
    if args.stage == "2" and s1_file.exists():
        return {int(k): v for k, v in json.loads(s1_file.read_text()).items()}
    log(f"  stage 1: lengths {args.lengths}, {prof['s1']}")
    s1 = run_stage1(args, prof, log)
    s1_file.write_text(json.dumps({str(k): v for k, v in s1.items()}, default=float))
    return s1


def stage1_verdicts(s1: dict) -> dict:
    gaps = [(s["fit"]["reset_gap"], tuple(s["fit"]["ci"].get("reset_gap", (math.nan, math.nan))))
            for _, s in sorted(s1.items())]
    return dict(P1={L: analysis.linearity_verdict(s["fit"]) for L, s in s1.items()},
                P2={L: analysis.proportionality_verdict(s["fit"]) for L, s in s1.items()},
                P3={L: analysis.self_verdict(s["fit"]) for L, s in s1.items()},
                P4=analysis.difficulty_verdict(gaps))


def compare_outputs(args, plan, data: dict, out: Path) -> None:
    """The longest length's GRPO / RRPO / SRPO / oracle runs through ``llm_compare``'s summary and figures."""
    import llm_compare as LC
    L = max(plan.lengths)
    runs = stage2.compare_runs(plan, data, L)
    ns = argparse.Namespace(target_gain=args.target_gain)
    summary = LC.summarise(ns, runs)
    LC.plot(summary, runs, out)
    LC.write_tables(summary, runs, out)
    cfg = dict(model=args.model, task=stage2.task_of(L), steps=plan.steps, prompts_per_step=plan.prompts_per_step,
               seeds=plan.seeds, eval_size=plan.eval_size, eval_every=plan.eval_every, target_gain=args.target_gain,
               shared_held_out=True, source="experiments/llm_dial.py stage 2", profile=args.profile)
    (out / "llm_compare.json").write_text(json.dumps({"config": cfg, "summary": summary}, indent=1, default=float))


def read_pilot(args, out: Path) -> dict | None:
    """The pilot of the power calculation (``--pilot``), or None."""
    if args.pilot == "none" or (args.pilot == "auto" and args.profile != "full"):
        return None
    path = out / "llm_dial.json" if args.pilot == "auto" else Path(args.pilot)
    if not path.is_file():
        return None
    prev = json.loads(path.read_text())
    c = prev.get("config", {})
    if args.pilot == "auto" and (c.get("profile") != "quick" or c.get("model") != args.model
                                 or list(c.get("lengths", [])) != list(args.lengths)):
        return None
    p = contrasts.pilot_from(prev)
    if p is not None:
        p["source"] = str(path)
    return p


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--lengths", nargs="+", type=int, default=None, help="terms per chain (default: the model's)")
    ap.add_argument("--seeds", nargs="+", default=None, help="stage-2 seeds, or 'auto' (the power calculation)")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--q", type=float, default=0.5, help="q of the noisy arm in stage 2")
    ap.add_argument("--target_gain", type=float, default=None, help="target = step-0 pass@1 + this")
    ap.add_argument("--seed", type=int, default=0, help="stage-1 seed")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads of stage 1 (1: on a shared machine more threads spin-wait for each other)")
    ap.add_argument("--jobs", type=int, default=2, help="stage-2 runs in parallel (one thread each)")
    ap.add_argument("--runs", default=None, help="run directory (default runs/llm_dial/<profile>)")
    ap.add_argument("--out", default=str(ROOT / "paper_figs"))
    ap.add_argument("--name", default="llm_dial",
                    help="stem of the output files (<name>.json, <name>_stage1.*, <name>_stage2.*); with another name "
                         "than llm_dial the llm_compare files are not written (e.g. llm_dial_full beside a quick run)")
    ap.add_argument("--stage", choices=["1", "2", "both"], default="both",
                    help="2: reuse the stage-1 results saved in the run directory")
    ap.add_argument("--force", action="store_true", help="re-run finished training runs")
    ap.add_argument("--pilot", default="auto",
                    help="a finished llm_dial.json whose stage 2 measures the sd of paired differences for the power "
                         "calculation ('auto', full profile: <out>/llm_dial.json when it is a quick run of this model "
                         "and these lengths; 'none')")
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    prof = PROFILES[args.profile]
    args.lengths = args.lengths or default_lengths(args.model)
    args.target_gain = prof["target_gain"] if args.target_gain is None else args.target_gain
    runs = Path(args.runs or ROOT / "runs" / "llm_dial" / args.profile)
    out = Path(args.out)
    runs.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    def log(msg):
        print(msg, flush=True)

    s1 = stage1_results(args, prof, runs, log)
    t1 = time.perf_counter() - t0
    steps = args.steps or prof["steps"]
    pilot = read_pilot(args, out)
    power = {L: analysis.stage2_power(s["arms"], steps, prof["prompts_per_step"], pilot=pilot) for L, s in s1.items()}
    seeds = args.seeds or prof["seeds"]
    if seeds == "auto" or seeds == ["auto"]:
        seeds = list(range(max(p["n"] for p in power.values())))
    plan = stage2.Plan(model=args.model, lengths=args.lengths, seeds=[int(s) for s in seeds], steps=steps,
                       prompts_per_step=prof["prompts_per_step"], eval_size=prof["eval_size"],
                       eval_every=prof["eval_every"], q=args.q, jobs=args.jobs, extra=prof["extra"],
                       inprocess=prof["inprocess"])
    log(f"  stage 2: {len(plan.jobs_list())} runs ({len(plan.arms)} arms x {len(plan.lengths)} lengths x "
        f"{len(plan.seeds)} seeds, {plan.steps} steps x {plan.prompts_per_step} prompts)")
    starts = {L: stage2.start_eval(plan, L, threads=args.threads) for L in plan.lengths}
    import resource
    child0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    failed = stage2.run_all(plan, runs, force=args.force, log=log)
    child1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu2 = (child1.ru_utime + child1.ru_stime) - (child0.ru_utime + child0.ru_stime)
    if failed:
        log(f"failed runs: {failed}")
        return 1
    data = stage2.read_all(plan, runs, starts)
    outc = contrasts.per_seed(plan, data, starts, args.target_gain)
    pred = contrasts.predicted_effects(plan, s1, outc)
    con = contrasts.contrasts(plan, outc, pred, quick=args.profile != "full")
    table = contrasts.arm_table(plan, outc, starts)
    curves = plots.stage2_curves(plan, data)
    plots.write_csv(out / f"{args.name}_stage1.csv", plots.stage1_rows(s1), plots.STAGE1_FIELDS)
    plots.plot_stage1(s1, out / f"{args.name}_stage1.png")
    plots.write_csv(out / f"{args.name}_stage2.csv", curves, plots.STAGE2_FIELDS)
    plots.plot_stage2(plan, curves, con, out / f"{args.name}_stage2.png")
    if args.name == "llm_dial":
        compare_outputs(args, plan, data, out)
    result = dict(config=dict(vars(args), runs=str(runs), out=str(out), profile_sizes=prof,
                              model_version=model_version(args.model)),
                  stage1=s1, verdicts=stage1_verdicts(s1), power=power,
                  stage2=dict(plan=vars(plan), starts=starts, table=table, contrasts=con, predicted=pred,
                              per_seed=[dict(length=L, arm=a, seed=s, **v) for (L, a, s), v in sorted(outc.items())]),
                  seconds=dict(stage1=t1, total=time.perf_counter() - t0, stage2_cpu=cpu2,
                               stage2=stage2.run_seconds(plan, runs)))
    (out / f"{args.name}.json").write_text(json.dumps(result, indent=1, default=_json))
    for k, c in con.items():
        log(f"  {k} {c['text']}: {c['mean']:+.4f} [{c['lo']:+.4f}, {c['hi']:+.4f}] (Holm level {c['level']:.3f}, "
            f"p_holm {c['p_holm']:.3g}, predicted {c['predicted']:+.4f}, MDE {c['mde']:.4f}) -> {c['verdict']}")
    log(f"  done in {time.perf_counter() - t0:.0f} s (stage 1 {t1:.0f} s)")
    return 0


def _json(x):
    if isinstance(x, (set, tuple)):
        return list(x)
    if isinstance(x, Path):
        return str(x)
    try:
        return float(x)
    except (TypeError, ValueError):
        return str(x)


if __name__ == "__main__":
    sys.exit(main())
