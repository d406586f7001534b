"""Thought-ICS on one model: lift at L1 / L2 / L3, with and without ICS-A, against baselines.

All runs use the same problems (seeded test split) and the same chain budget. Each run is
cached under ``--runs`` (``<label>.jsonl`` + ``<label>.summary.json``, written by
``llm.ics.write_run``) and skipped on a re-run with the same config and model (its fingerprint). Writes to ``--out``:

* ``ics_lift.{png,csv}`` - self-correction lift (share of initially wrong answers that end
  right) and net change of accuracy, for Thought-ICS and Thought-ICS-A, per run;
* ``ics_summary.json`` - every run's full summary (exits, localization accuracy, clean-prefix
  rate, fallbacks) and the config.

    python experiments/ics_eval.py --profile quick          # tiny default
    python experiments/ics_eval.py --model path/to/hf_dir --n 200 --max_iters 10
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROFILES = {  # problems, loop iterations L, which (method, level, localizer) runs
    "smoke": dict(n=4, max_iters=2, budget=dict(max_thoughts=3, max_thought_tokens=8, judge_max_new_tokens=8),
                  runs=[("thought", "L2", "model"), ("thought", "L2", "oracle"),
                                          ("scratch", "L2", "model")]),
    "quick": dict(n=200, max_iters=5, runs=[
        ("thought", "L1", "model"), ("thought", "L2", "model"), ("thought", "L3", "model"),
        ("thought", "L2", "oracle"), ("token", "L2", "model"), ("scratch", "L2", "model"),
        ("refine", "L2", "model")]),
    "full": dict(n=200, max_iters=10, runs=[
        (m, lv, "model") for lv in ("L1", "L2", "L3") for m in ("thought", "token", "scratch", "refine")]
        + [("thought", lv, "oracle") for lv in ("L1", "L2", "L3")]),
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--task", default="arith")
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--max_iters", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", default=None, help="cache directory (default runs/ics_eval/<profile>)")
    ap.add_argument("--out", default=str(ROOT / "paper_figs"))
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--no_progress", action="store_true", help="no progress bar per run (stderr)")
    args = ap.parse_args(argv)
    prof = PROFILES[args.profile]
    n = args.n or prof["n"]
    iters = args.max_iters or prof["max_iters"]
    runs_dir = Path(args.runs or ROOT / "runs" / "ics_eval" / args.profile)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    import torch

    from llm.ics import (TINY_BUDGET, ICSConfig, format_summary, load_model_and_task, read_summary, run_ics,
                         run_label, summarize, write_run)

    from llm.models import model_fingerprint

    policy, task = load_model_and_task(args.model, args.task, threads=args.threads)
    fp = model_fingerprint(args.model)  # a cached run of another model (a rebuilt default) is redone
    problems = task.sample(n, args.seed, split="test")
    budget = prof.get("budget") or (TINY_BUDGET if policy.meta.get("task") else {})
    summaries, configs = {}, {}
    t0 = time.perf_counter()
    for method, level, loc in prof["runs"]:
        cfg = ICSConfig(method=method, level=level, localizer=loc, max_iters=iters, seed=args.seed, **budget)
        label = run_label(cfg)
        saved = None if args.force else read_summary(runs_dir, label, cfg, n, model=fp)
        if saved is not None:
            summaries[label], configs[label] = saved["summary"], saved["config"]
            print(f"  {label}: cached", flush=True)
            continue
        t = time.perf_counter()
        gen = torch.Generator(device="cpu").manual_seed(args.seed)
        print(f"  {label}: {n} problems, up to {iters} rounds", flush=True)
        results = run_ics(policy, task, problems, cfg, generator=gen, progress=not args.no_progress)
        summaries[label] = summarize(results)
        configs[label] = asdict(cfg)
        write_run(runs_dir, label, cfg, results, summaries[label], model=fp)
        print(f"  {label}: {time.perf_counter() - t:.0f} s", flush=True)
    table = format_summary(summaries)
    print(table)
    (out / "ics_summary.json").write_text(json.dumps(
        {"model": args.model, "task": args.task, "n": n, "max_iters": iters, "seed": args.seed,
         "configs": configs, "summaries": summaries, "table": table,
         "seconds": time.perf_counter() - t0}, indent=1, default=str))
    rows = []
    for label, s in summaries.items():
        rows.append(dict(run=label, n=s["n"], acc_before=s["acc_before"], acc_after=s["acc_after"],
                         acc_after_a=s["acc_after_a"], lift=s["lift"], lift_a=s["lift_a"],
                         net=s["net"], net_a=s["net_a"], fixed=s["fixed"], broke=s["broke"],
                         loc_exact=s.get("loc_exact"), loc_within1=s.get("loc_within1"),
                         clean_prefix=s.get("clean_prefix"), chains=s["chains"]))
    with open(out / "ics_lift.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    plot(rows, out / "ics_lift.png", n, iters, args.model)
    return 0


def plot(rows, path, n, iters, model):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    x = np.arange(len(rows))
    labels = [r["run"] for r in rows]
    for ax, key, title, unit in ((axes[0], "lift", "self-correction lift", 100),
                                 (axes[1], "net", "net change in accuracy", 100 / n)):
        a = [(r[key] or 0) * unit for r in rows]
        b = [(r[key + "_a"] or 0) * unit for r in rows]
        ax.bar(x - 0.2, a, 0.4, label="Thought-ICS / method", color="tab:blue")
        ax.bar(x + 0.2, b, 0.4, label="with ICS-A revert", color="tab:orange")
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xticks(x)
        ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
        ax.set_title(title)
        ax.grid(alpha=0.3, axis="y")
    axes[0].set_ylabel("% of initially wrong answers fixed")
    axes[1].set_ylabel("accuracy change (percentage points)")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Thought-ICS on {model}: {n} test problems, L = {iters} iterations")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
