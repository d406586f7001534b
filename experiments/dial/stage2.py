"""Stage 2 of the reset experiment: training runs of every arm x length x seed, and what they measure.

Each run is ``python -m llm.train`` (resumable: a finished run is skipped, a killed one resumes from its
checkpoint) on the task at one chain length (``arith:terms=L``), scored on ONE held-out set per length
shared by every seed and arm (``eval_seed`` 0: greedy pass@1 on ``eval_size`` distinct problems plus a
sampled probe, one chain per problem at the rollouts' temperature 0.7 with the same random numbers for
every run). Seed ``s`` fixes the training prompts and their order for every arm, so arm differences are
paired by seed. The step-0 evaluation is the same for every run of a length (one model, one set) and is
computed once here with the trainer's own function (``llm.metrics.evaluate``).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]

ARMS = ("grpo", "rrpo", "noisy", "oracle", "srpo")
"""stage-2 arms (methods): start, random_failed (q = 0), noisy(q), oracle (q = 1), self"""
Q_OF = {"rrpo": 0.0, "oracle": 1.0}
"""position on the q axis of the arms other than noisy (noisy: ``Plan.q``)"""


@dataclass
class Plan:
    """What stage 2 runs."""
    model: str
    lengths: list[int]
    seeds: list[int]
    steps: int
    prompts_per_step: int
    eval_size: int
    eval_every: int
    arms: tuple = ARMS
    q: float = 0.5
    threads: int = 1
    jobs: int = 2
    extra: list = field(default_factory=list)
    inprocess: bool = False
    """run the trainings one after the other in this process (``llm.train.main``): no interpreter start-up
    per run (the smoke profile); otherwise ``jobs`` subprocesses"""

    def q_of(self, arm: str) -> float | None:
        return self.q if arm == "noisy" else Q_OF.get(arm)

    def jobs_list(self) -> list[tuple[int, str, int]]:
        return [(L, a, s) for s in self.seeds for L in self.lengths for a in self.arms]


def task_of(L: int) -> str:
    return f"arith:terms={L}"


def run_dir(runs: Path, L: int, arm: str, seed: int) -> Path:
    return Path(runs) / f"L{L}" / f"{arm}_s{seed}"


def train_command(plan: Plan, L: int, arm: str, seed: int, out: Path) -> list[str]:
    cmd = [sys.executable, "-m", "llm.train", "--method", arm, "--model", plan.model, "--task", task_of(L),
           "--steps", str(plan.steps), "--seed", str(seed), "--prompts_per_step", str(plan.prompts_per_step),
           "--eval_size", str(plan.eval_size), "--eval_every", str(plan.eval_every), "--eval_sampled", "1",
           "--eval_start", "false", "--save_every", str(plan.eval_every), "--out_dir", str(out),
           "--progress", "false", "--num_threads", str(plan.threads), "--rollout.q", str(plan.q), *plan.extra]
    if (out / "checkpoints").is_dir() and any((out / "checkpoints").iterdir()):
        cmd.append("--resume")
    return cmd


def _done_model(out: Path) -> str | None:
    """The model fingerprint a finished run recorded in its ``DONE`` marker (None: no marker, or one
    written before markers held it)."""
    try:
        return json.loads((out / "DONE").read_text()).get("model")
    except (OSError, ValueError, AttributeError):
        return None


def run_one(plan: Plan, runs: Path, L: int, arm: str, seed: int, force: bool = False,
            model_fp: str | None = None) -> tuple[str, int, float]:
    """One training run; a finished run is reused unless ``force`` or it was trained on another model
    (``model_fp``, ``llm.models.model_fingerprint``: then its directory, checkpoints included, is
    removed and the run starts over)."""
    out = run_dir(runs, L, arm, seed)
    name = f"L{L}/{arm}_s{seed}"
    if model_fp is not None and out.exists() and _done_model(out) != model_fp and (out / "DONE").exists():
        shutil.rmtree(out)  # trained on another model: nothing of it may be reused or resumed
    if (out / "DONE").exists() and not force:
        return name, 0, 0.0
    out.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    cmd = train_command(plan, L, arm, seed, out)
    with open(out / "train.log", "a") as log:
        if plan.inprocess:
            import contextlib

            from llm.train import main as train_main
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                rc = train_main(cmd[3:])
        else:
            rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    wall = time.perf_counter() - t
    if rc == 0:  # the marker keeps the run's wall time, so that a later call reusing the run still reports it
        (out / "DONE").write_text(json.dumps({"seconds": wall, "model": model_fp}) + "\n")
    return name, rc, wall


def run_seconds(plan: Plan, runs: Path) -> dict:
    """Wall seconds of the plan's finished runs as recorded when each ran (``DONE`` markers; markers of
    older versions hold no time and are counted in ``unrecorded``)."""
    total, n, unrecorded = 0.0, 0, 0
    for j in plan.jobs_list():
        done = run_dir(runs, *j) / "DONE"
        if not done.exists():
            continue
        try:
            total += float(json.loads(done.read_text())["seconds"])
            n += 1
        except (ValueError, KeyError, TypeError):
            unrecorded += 1
    return {"runs_wall": total, "runs_recorded": n, "unrecorded": unrecorded}


def _progress(plan: Plan, runs: Path, stop: threading.Event, every: float, log, model_fp: str | None = None) -> None:
    while not stop.wait(every):
        done = sum((run_dir(runs, *j) / "DONE").exists() and (model_fp is None or _done_model(run_dir(runs, *j))
                                                              == model_fp) for j in plan.jobs_list())
        log(f"    stage 2 progress: {done}/{len(plan.jobs_list())} runs done")


def run_all(plan: Plan, runs: Path, force: bool = False, progress_every: float = 60.0, log=print) -> list[str]:
    """Every run of the plan, ``plan.jobs`` at a time; returns the names of failed runs."""
    from llm.models import model_fingerprint

    failed, fp = [], model_fingerprint(plan.model)
    stop = threading.Event()
    th = threading.Thread(target=_progress, args=(plan, runs, stop, progress_every, log, fp), daemon=True)
    th.start()
    try:
        with ThreadPoolExecutor(max_workers=1 if plan.inprocess else max(1, plan.jobs)) as ex:
            for name, rc, secs in ex.map(lambda j: run_one(plan, runs, *j, force=force, model_fp=fp), plan.jobs_list()):
                if rc:
                    failed.append(name)
                    log(f"    {name}: FAILED rc={rc} (see its train.log)")
    finally:
        stop.set()
    return failed


def start_eval(plan: Plan, L: int, threads: int = 2) -> dict:
    """The step-0 evaluation of length ``L``: what every run's trainer would compute before its first step
    (the same model, held-out set, sampling seed and function), once."""
    import torch

    from llm import distributed as D
    from llm.config import parse_args
    from llm.metrics import evaluate, held_out_set
    from llm.models import load_policy

    torch.set_num_threads(threads)
    argv = train_command(plan, L, "grpo", 0, Path("unused"))[3:]  # the runs' own flags (eval and rollout settings)
    cfg = parse_args([a for a in argv if a != "--resume"])
    pol = load_policy(cfg.model)
    task = pol.get_task(cfg.task)
    ev = evaluate(pol, pol.model, task, held_out_set(task, cfg.eval_size, cfg.eval_seed), cfg.rollout,
                  D.DistInfo(), False, sampled=cfg.eval_sampled, sample_seed=cfg.eval_seed)
    return {k: v for k, v in ev.items() if k != "eval_time_s"}


def read_run(d: Path, start: dict) -> dict:
    """A run's evaluation curve (step 0 from ``start``) against trained samples and generated tokens, and its
    training records."""
    recs = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines() if x.strip()]
    train = [r for r in recs if r.get("kind") == "train"]
    evals = {r["step"]: r for r in recs if r.get("kind") == "eval"}
    evals.setdefault(0, {"step": 0, **start})
    cum_s, cum_t, s, t = {0: 0}, {0: 0}, 0, 0
    for r in train:
        s += r.get("samples", 0)
        t += r.get("tokens_generated", 0)
        cum_s[r["step"]], cum_t[r["step"]] = s, t
    curve = [dict(step=k, samples=cum_s.get(k, np.nan), tokens=cum_t.get(k, np.nan), greedy=e["eval_pass@1"],
                  sampled=e.get("eval_sampled_acc", np.nan)) for k, e in sorted(evals.items())]
    return dict(curve=curve, train=train)


def read_all(plan: Plan, runs: Path, starts: dict) -> dict:
    """``{(L, arm, seed): read_run(...)}`` for every finished run of the plan."""
    out = {}
    for L, a, s in plan.jobs_list():
        d = run_dir(runs, L, a, s)
        if (d / "DONE").exists():
            out[(L, a, s)] = read_run(d, starts[L])
    return out


def compare_runs(plan: Plan, data: dict, L: int, arms=("grpo", "rrpo", "srpo", "oracle")) -> dict:
    """The runs of one length in the format of ``experiments/llm_compare.py`` (its summary, figures and
    report topic read them): ``{method: [{"train": [...], "curve": [(step, samples, tokens, pass@1)]}]}``."""
    return {a: [dict(train=data[(L, a, s)]["train"],
                     curve=[(c["step"], c["samples"], c["tokens"], c["greedy"]) for c in data[(L, a, s)]["curve"]])
                for s in plan.seeds if (L, a, s) in data] for a in arms if a in plan.arms}
