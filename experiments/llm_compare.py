"""GRPO vs RRPO vs SRPO vs oracle reset on one model and task, equal sample budgets.

Runs ``python -m llm.train`` once per (method, seed) - in parallel jobs, each resumable
(a finished run is skipped, a killed one resumes from its last checkpoint) - then reads the
``metrics.jsonl`` files and writes, under ``--out`` (default ``paper_figs/``). Every run is scored on
the same held-out problems (``eval_seed`` 0, whatever the seed), so differences pair by seed.
``experiments/llm_dial.py`` (the reproduction's ``llm`` step) writes the same files from its stage-2
runs at its longest chain length; this script runs the comparison on its own (any model, task, methods):

* ``llm_accuracy.{png,csv}`` - held-out greedy pass@1 against training samples (the budget:
  trained rollouts) and against all tokens generated (fresh tries, failed parents and
  localization calls included), mean over seeds with a 95% t-interval band;
* ``llm_resets.{png,csv}`` - where the reset methods reset: histogram of the reset step;
* ``llm_localization.{png,csv}`` - SRPO's self-localization accuracy over training
  (exact / within one step of the task's first wrong thought, on failed parents that have one);
* ``llm_compare.json`` - the config, per-run finals and the summary table used by the report.

    python experiments/llm_compare.py --profile quick          # tiny default, 3 seeds
    python experiments/llm_compare.py --steps 200 --seeds 0 1 2 3 4 --model path/to/hf_dir
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

METHODS = ("grpo", "rrpo", "srpo", "oracle")
"""compared by default; ``--methods`` takes any of ``llm.config.METHODS`` (also noisy, random)"""
ALL_METHODS = ("grpo", "rrpo", "srpo", "oracle", "noisy", "random")
COLORS = {"grpo": "tab:gray", "rrpo": "tab:blue", "srpo": "tab:red", "oracle": "tab:green", "noisy": "tab:orange",
          "random": "tab:purple"}

# sizes per profile: steps, prompts per step, eval size, eval every, seeds
PROFILES = {
    "smoke": dict(steps=2, prompts_per_step=2, eval_size=8, eval_every=1, seeds=[0],
                  extra=["--rollout.max_thoughts", "4", "--rollout.max_thought_tokens", "8",
                         "--train_size", "64"]),
    "quick": dict(steps=100, prompts_per_step=16, eval_size=1000, eval_every=20, seeds=[0, 1, 2],
                  extra=[]),
    "full": dict(steps=300, prompts_per_step=32, eval_size=1000, eval_every=25,
                 seeds=[0, 1, 2, 3, 4], extra=[]),
}


# ----------------------------------------------------------------------------- running
def run_dir(runs: Path, method: str, seed: int) -> Path:
    return runs / f"{method}_s{seed}"


def train_command(args, method: str, seed: int, out: Path) -> list[str]:
    cmd = [sys.executable, "-m", "llm.train", "--method", method, "--model", args.model,
           "--task", args.task, "--steps", str(args.steps), "--seed", str(seed),
           "--prompts_per_step", str(args.prompts_per_step), "--eval_size", str(args.eval_size),
           "--eval_every", str(args.eval_every), "--save_every", str(args.eval_every),
           "--out_dir", str(out), "--progress", "false", "--num_threads", str(args.threads)]
    cmd += list(args.extra)
    if (out / "checkpoints").is_dir() and any((out / "checkpoints").iterdir()):
        cmd.append("--resume")
    return cmd


def run_one(args, method: str, seed: int) -> tuple[str, int, float]:
    out = run_dir(args.runs, method, seed)
    if (out / "DONE").exists() and not args.force:
        return f"{method}_s{seed}", 0, 0.0
    out.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    with open(out / "train.log", "a") as log:
        rc = subprocess.call(train_command(args, method, seed, out), stdout=log,
                             stderr=subprocess.STDOUT, cwd=ROOT)
    if rc == 0:
        (out / "DONE").write_text("ok\n")
    return f"{method}_s{seed}", rc, time.perf_counter() - t


def last_train_record(path: Path) -> dict | None:
    """The newest training record of a run's metrics.jsonl (None before its first step)."""
    f = path / "metrics.jsonl"
    if not f.is_file():
        return None
    for line in reversed(f.read_text().splitlines()):
        if line.strip() and '"kind": "train"' in line:
            return json.loads(line)
    return None


def report_progress(args, jobs: list[tuple[str, int]], stop: threading.Event, every: float) -> None:
    """Every ``every`` seconds until ``stop``: one line per unfinished run with its step and reward."""
    while not stop.wait(every):
        parts = []
        for m, s in jobs:
            d = run_dir(args.runs, m, s)
            if (d / "DONE").exists():
                continue
            rec = last_train_record(d)
            if rec is not None:
                parts.append(f"{m}_s{s} {rec['step']}/{args.steps} r={rec['reward_mean']:.2f}")
        if parts:
            print("  progress: " + ", ".join(parts), flush=True)


# ----------------------------------------------------------------------------- reading
def read_run(path: Path) -> dict:
    """Eval curve and per-step training records of one run."""
    recs = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines() if line.strip()]
    train = [r for r in recs if r.get("kind") == "train"]
    evals = [r for r in recs if r.get("kind") == "eval"]
    cum_samples = {0: 0}
    cum_tokens = {0: 0}
    s = t = 0
    for r in train:
        s += r.get("samples", 0)
        t += r.get("tokens_generated", 0)
        cum_samples[r["step"]] = s
        cum_tokens[r["step"]] = t
    curve = [(e["step"], cum_samples.get(e["step"], np.nan), cum_tokens.get(e["step"], np.nan),
              e["eval_pass@1"]) for e in evals]
    return {"train": train, "curve": curve}


def t_interval(x: np.ndarray) -> tuple[float, float]:
    """Mean and the half-width of a 95% Student-t interval (0 with one seed)."""
    from scipy import stats
    x = np.asarray(x, dtype=float)
    m = float(np.mean(x))
    if x.size < 2:
        return m, 0.0
    return m, float(stats.t.ppf(0.975, x.size - 1) * np.std(x, ddof=1) / np.sqrt(x.size))


def summarise(args, runs: dict) -> dict:
    """Per method: eval curve mean/CI, final accuracy, samples to target, reset/localization stats."""
    out = {}
    start = [c["curve"][0][3] for v in runs.values() for c in v if c["curve"]]
    base = float(np.mean(start)) if start else float("nan")
    target = base + args.target_gain
    for m, rs in runs.items():
        steps = sorted({c[0] for r in rs for c in r["curve"]})
        rows = []
        for st in steps:
            acc = [c[3] for r in rs for c in r["curve"] if c[0] == st]
            smp = [c[1] for r in rs for c in r["curve"] if c[0] == st]
            tok = [c[2] for r in rs for c in r["curve"] if c[0] == st]
            mean, ci = t_interval(acc)
            # paired by seed: the change since step 0 on the seed's own held-out set
            gain = [c[3] - r["curve"][0][3] for r in rs for c in r["curve"] if c[0] == st]
            gmean, gci = t_interval(gain)
            rows.append(dict(method=m, step=st, samples=float(np.mean(smp)), tokens=float(np.mean(tok)),
                             acc_mean=mean, acc_ci95=ci, gain_mean=gmean, gain_ci95=gci, n_seeds=len(acc)))
        reach = next((r["samples"] for r in rows if r["acc_mean"] >= target), None)
        finals = [r["curve"][-1][3] for r in rs if r["curve"]]
        fm, fci = t_interval(finals) if finals else (float("nan"), 0.0)
        # paired per seed: a seed fixes the held-out set and the prompt order, so differences within a
        # seed remove the eval-set noise that dominates the unpaired intervals
        gains = [r["curve"][-1][3] - r["curve"][0][3] for r in rs if r["curve"]]
        gm, gci = t_interval(gains) if gains else (float("nan"), 0.0)
        hist: dict[str, int] = {}
        rel = []
        loc_ex, loc_w1, loc_ch, loc_n = 0.0, 0.0, 0.0, 0
        train_reward = []
        for r in rs:
            for t in r["train"]:
                for k, v in (t.get("reset_step_hist") or {}).items():
                    hist[k] = hist.get(k, 0) + v
                if t.get("reset_rel_mean") is not None:
                    rel.append(t["reset_rel_mean"])
                n = t.get("loc_checked") or 0
                if n:
                    loc_ex += t["loc_exact"] * n
                    loc_w1 += t["loc_within1"] * n
                    loc_ch += (t.get("loc_chance") or 0.0) * n
                    loc_n += n
            train_reward.append([t["reward_mean"] for t in r["train"]])
        out[m] = dict(curve=rows, final_mean=fm, final_ci95=fci, finals=finals, gains=gains, gain_mean=gm,
                      gain_ci95=gci,
                      samples_to_target=reach, reset_hist=hist,
                      reset_rel_mean=float(np.mean(rel)) if rel else None,
                      loc_exact=loc_ex / loc_n if loc_n else None,
                      loc_within1=loc_w1 / loc_n if loc_n else None,
                      loc_chance=loc_ch / loc_n if loc_n else None, loc_n=loc_n)
    for m, v in out.items():  # paired final-accuracy differences to each other method, seed by seed
        v["paired_diff"] = {}
        for o, w in out.items():
            if o != m and len(v["finals"]) == len(w["finals"]) > 0:
                dm, dci = t_interval(np.subtract(v["finals"], w["finals"]))
                v["paired_diff"][o] = {"mean": dm, "ci95": dci}
    return {"start_accuracy": base, "target_accuracy": target, "methods": out}


# ----------------------------------------------------------------------------- figures
def plot(summary: dict, runs: dict, out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
    for m, s in summary["methods"].items():
        c = s["curve"]
        if not c:
            continue
        lab = f"{m.upper()} (n={c[-1]['n_seeds']})"
        for ax, key, mean, half in ((axes[0], "samples", "acc_mean", "acc_ci95"),
                                    (axes[1], "tokens", "acc_mean", "acc_ci95"),
                                    (axes[2], "samples", "gain_mean", "gain_ci95")):
            x = np.array([r[key] for r in c])
            y, ci = np.array([r[mean] for r in c]), np.array([r[half] for r in c])
            ax.plot(x, y, "-o", ms=3, color=COLORS.get(m), label=lab)
            ax.fill_between(x, y - ci, y + ci, color=COLORS.get(m), alpha=0.15)
    axes[0].set_xlabel("training samples (trained rollouts, cumulative)")
    axes[1].set_xlabel("tokens generated, thousands (incl. extra tries, parents, localization)")
    axes[1].xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v / 1000:g}"))
    axes[2].set_xlabel("training samples (trained rollouts, cumulative)")
    axes[0].set_title("held-out accuracy (unpaired band)", fontsize=10)
    axes[1].set_title("same, against tokens generated", fontsize=10)
    axes[2].set_title("gain over step 0, paired by seed (same held-out set)", fontsize=10)
    axes[2].axhline(0.0, color="k", lw=0.8, ls=":")
    for ax in axes[:2]:
        ax.set_ylabel("held-out greedy pass@1")
    axes[2].set_ylabel("pass@1 minus the seed's step-0 pass@1")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Equal-budget comparison on the tiny default (mean, 95% t-interval over seeds)")
    fig.tight_layout()
    fig.savefig(out / "llm_accuracy.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    width = 0.27
    for i, m in enumerate(("rrpo", "srpo", "oracle")):
        h = summary["methods"].get(m, {}).get("reset_hist") or {}
        if not h:
            continue
        ks = np.array(sorted(int(k) for k in h))
        v = np.array([h[str(k)] for k in ks], dtype=float)
        ax.bar(ks + (i - 1) * width, v / v.sum(), width, color=COLORS[m], label=m.upper())
    ax.set_xlabel("reset step k (1 = restart from the prompt)")
    ax.set_ylabel("fraction of resets")
    ax.set_title("Where each method resets")
    ax.legend()
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(out / "llm_resets.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    for m, color in (("srpo", "tab:red"), ("rrpo", "tab:blue"), ("oracle", "tab:green")):
        for j, r in enumerate(runs.get(m, [])):
            xs = [t["step"] for t in r["train"] if t.get("loc_checked")]
            ex = [t["loc_exact"] for t in r["train"] if t.get("loc_checked")]
            ax.plot(xs, ex, "-", color=color, alpha=0.5, lw=1,
                    label=f"{m.upper()} reset step = first error (per seed)" if j == 0 and xs else None)
    ch = summary["methods"].get("srpo", {}).get("loc_chance")
    if ch is not None:
        ax.axhline(ch, color="k", lw=0.8, ls=":", label="uniform guess on SRPO's parents")
    ax.set_xlabel("training step")
    ax.set_ylabel("share of resets exactly at the first wrong thought")
    ax.set_ylim(0, 1.05)
    ax.set_title("Reset step vs the task's first wrong thought")
    ax.legend(fontsize=8, loc="center right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "llm_localization.png", dpi=120)
    plt.close(fig)


def write_tables(summary: dict, runs: dict, out: Path) -> None:
    with open(out / "llm_accuracy.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["method", "step", "samples", "tokens", "acc_mean", "acc_ci95", "gain_mean",
                                          "gain_ci95", "n_seeds"])
        w.writeheader()
        for s in summary["methods"].values():
            w.writerows(s["curve"])
    with open(out / "llm_resets.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "reset_step", "count"])
        for m, s in summary["methods"].items():
            for k, v in sorted((s["reset_hist"] or {}).items(), key=lambda kv: int(kv[0])):
                w.writerow([m, k, v])
    with open(out / "llm_localization.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "run", "step", "checked", "exact", "within1", "chance"])
        for m in ("srpo", "rrpo", "oracle"):
            for i, r in enumerate(runs.get(m, [])):
                for t in r["train"]:  # every step, also those with no checkable parent (checked = 0)
                    w.writerow([m, i, t["step"], t.get("loc_checked") or 0, t.get("loc_exact"),
                                t.get("loc_within1"), t.get("loc_chance")])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--task", default="arith")
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=ALL_METHODS)
    ap.add_argument("--seeds", nargs="+", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--prompts_per_step", type=int, default=None)
    ap.add_argument("--eval_size", type=int, default=None)
    ap.add_argument("--eval_every", type=int, default=None)
    ap.add_argument("--target_gain", type=float, default=0.05,
                    help="target accuracy = mean step-0 accuracy + this")
    ap.add_argument("--jobs", type=int, default=2, help="training runs in parallel")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run")
    ap.add_argument("--runs", default=None, help="run directory (default runs/llm_compare/<profile>)")
    ap.add_argument("--out", default=str(ROOT / "paper_figs"))
    ap.add_argument("--force", action="store_true", help="re-run finished runs")
    ap.add_argument("--progress_every", type=float, default=30.0,
                    help="seconds between progress lines (step and reward of each running run)")
    args = ap.parse_args(argv)
    prof = PROFILES[args.profile]
    for k in ("steps", "prompts_per_step", "eval_size", "eval_every", "seeds"):
        if getattr(args, k) is None:
            setattr(args, k, prof[k])
    args.extra = prof["extra"]
    args.runs = Path(args.runs or ROOT / "runs" / "llm_compare" / args.profile)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(m, s) for s in args.seeds for m in args.methods]
    t0 = time.perf_counter()
    failed = []
    stop = threading.Event()
    monitor = threading.Thread(target=report_progress, args=(args, jobs, stop, args.progress_every), daemon=True)
    monitor.start()
    try:
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as ex:
            for name, rc, secs in ex.map(lambda j: run_one(args, *j), jobs):
                print(f"  {name}: {'ok' if rc == 0 else f'FAILED rc={rc}'} ({secs:.0f} s)", flush=True)
                if rc:
                    failed.append(name)
    finally:
        stop.set()
    if failed:
        print(f"failed runs: {failed}; see runs/*/train.log", file=sys.stderr)
        return 1
    runs = {m: [read_run(run_dir(args.runs, m, s)) for s in args.seeds] for m in args.methods}
    summary = summarise(args, runs)
    plot(summary, runs, out)
    write_tables(summary, runs, out)
    cfg = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    cfg["shared_held_out"] = True
    (out / "llm_compare.json").write_text(json.dumps({"config": cfg, "summary": summary,
                                                       "seconds": time.perf_counter() - t0}, indent=1))
    print(f"{'method':8s} {'final pass@1':>18s} {'samples to target':>18s}  (target {summary['target_accuracy']:.3f})")
    for m, s in summary["methods"].items():
        reach = "not reached" if s["samples_to_target"] is None else f"{s['samples_to_target']:.0f}"
        print(f"{m:8s} {s['final_mean']:9.3f} ± {s['final_ci95']:.3f} {reach:>18s}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
