"""One command from a fresh clone to the paper's figures and a results report.

    python experiments/reproduce.py --quick    # default: ~15 min on two CPU cores (+ the tiny warm start once)
    python experiments/reproduce.py --full     # larger sweeps, 5 seeds
    python experiments/reproduce.py --smoke    # tiny sizes, under a minute (tests), writes to runs/, not paper_figs/
    python experiments/reproduce.py --gpu      # print the documented GPU run (README "GPU runs")

Steps, in order (each a script that also runs on its own):

1. ``bounds``      experiments/check_bounds.py      every CPI bound on random MDPs, slack table
2. ``pg_td``       experiments/check_pg_td.py       policy-gradient and TD results, slack table, figures
3. ``resets``      experiments/reset_complexity.py  the reset theorem on the gated trap: per-iteration
                                                    samples, exact gain, end to end vs p_pi (slopes)
4. ``ippo``        experiments/iterative_ppo.py     Iterative PPO: reduction checks, batch online vs offline
5. ``tiny``        python -m llm.tiny               the warm-started tiny default (cached)
6. ``llm``         experiments/llm_dial.py          resets on the tiny transformer, the localizer's accuracy as
                                                    a dial: stage 1 (gradient signal per reset, no training),
                                                    stage 2 (GRPO / RRPO / noisy / oracle / SRPO x lengths x
                                                    seeds; its longest length is the GRPO / RRPO / SRPO / oracle
                                                    comparison of experiments/llm_compare.py)
7. ``ics``         experiments/ics_eval.py          Thought-ICS lift at L1/L2/L3 with/without ICS-A, baselines
8. ``report``      experiments/report.py            paper_figs/REPORT.md and paper_figs/README.md

Caching and resuming: a finished step leaves ``runs/reproduce/<profile>/<step>.done`` (with its
command) and is skipped on a re-run unless ``--force``, or unless one of the files it writes
(:func:`step_outputs`) is missing or empty: then it runs again, and so does ``report``, which reads
them all. A killed run starts again at the first unfinished step, and inside the ``llm`` step each
training run resumes from its checkpoint. Each step runs in its own process group: SIGTERM, SIGINT
(Ctrl-C) or SIGHUP sent to this script is forwarded to the whole group (the step and the training
runs it started), stragglers are killed after a grace period, and the script exits with 128 + the
signal number.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
STEPS = ("bounds", "pg_td", "resets", "ippo", "tiny", "llm", "ics", "report")


def step_commands(profile: str, figs: Path, runs: Path) -> dict[str, list[str]]:
    """The command of every step for a profile; ``figs`` receives figures and tables."""
    e = ROOT / "experiments"
    size = {
        "smoke": dict(bounds=["--cases", "40", "--alphas", "3"], pg_td=["--smoke"],
                      resets=["--smoke"], ippo=["--smoke"],
                      llm=["--profile", "smoke", "--model", str(runs / "micro"), "--lengths", "3", "4"],
                      ics=["--profile", "smoke", "--model", str(runs / "micro")]),
        "quick": dict(bounds=[], pg_td=[], resets=["--quick"], ippo=["--quick"], llm=["--profile", "quick"],
                      ics=["--profile", "quick"]),
        "full": dict(bounds=["--cases", "20000"], pg_td=["--full"], resets=["--full"], ippo=["--full"],
                     llm=["--profile", "full"], ics=["--profile", "full"]),
    }[profile]
    tiny = ([PY, "-c", f"from llm.tiny import micro_policy; micro_policy(0).save_pretrained({str(runs / 'micro')!r})"]
            if profile == "smoke" else [PY, "-m", "llm.tiny", "--no_eval"] if profile == "quick"
            else [PY, "-m", "llm.tiny", "--out", str(figs / "tiny_eval.json")])
    return {
        "bounds": [PY, str(e / "check_bounds.py"), "--out", str(figs / "bounds_check"), *size["bounds"]],
        "pg_td": [PY, str(e / "check_pg_td.py"), "--out", str(figs), *size["pg_td"]],
        "resets": [PY, str(e / "reset_complexity.py"), "--out", str(figs / "reset_complexity"), *size["resets"]],
        "ippo": [PY, str(e / "iterative_ppo.py"), "--out", str(figs / "iterative_ppo"), *size["ippo"]],
        "tiny": tiny,
        "llm": [PY, str(e / "llm_dial.py"), "--out", str(figs), "--runs", str(runs / "llm"), *size["llm"]],
        "ics": [PY, str(e / "ics_eval.py"), "--out", str(figs), "--runs", str(runs / "ics"), *size["ics"]],
        "report": [PY, str(e / "report.py"), "--figs", str(figs), "--profile", profile,
                   "--command", "python experiments/reproduce.py --" + profile],
    }


def step_outputs(profile: str, figs: Path, runs: Path) -> dict[str, list[Path]]:
    """The files each step must leave behind (a step whose ``.done`` marker exists but whose outputs do
    not is run again). The ``tiny`` step of quick/full builds a cache that training rebuilds on demand."""
    def f(*names: str) -> list[Path]:
        return [figs / n for n in names]

    return {
        "bounds": f("bounds_check.csv", "bounds_check.json"),
        "pg_td": f("pg_td_check.json", "pg_suboptimality.png", "pg_suboptimality.csv", "td_error.png", "td_error.csv",
                   "td_one_step.png", "td_one_step.csv"),
        "resets": f("reset_complexity.png", "reset_complexity.csv", "reset_complexity.json",
                    "reset_complexity_fits.csv"),
        "ippo": f("iterative_ppo.png", "iterative_ppo.csv", "iterative_ppo.json", "iterative_ppo_bounds.json"),
        "tiny": ([runs / "micro" / "config.json", runs / "micro" / "model.safetensors"] if profile == "smoke"
                 else f("tiny_eval.json") if profile == "full" else []),
        "llm": f("llm_dial.json", "llm_dial_stage1.png", "llm_dial_stage1.csv", "llm_dial_stage2.png",
                 "llm_dial_stage2.csv", "llm_compare.json", "llm_accuracy.png", "llm_accuracy.csv", "llm_resets.png",
                 "llm_resets.csv", "llm_localization.png", "llm_localization.csv"),
        "ics": f("ics_summary.json", "ics_lift.png", "ics_lift.csv"),
        "report": f("REPORT.md", "README.md"),
    }


def missing(paths: list[Path]) -> list[str]:
    """Names of the ``paths`` that are absent or empty."""
    return [p.name for p in paths if not (p.is_file() and p.stat().st_size > 0)]


FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
GRACE_S = 20.0
"""Seconds the step's processes get to exit after a forwarded signal before they are killed."""


class Interrupted(Exception):
    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def run_step(cmd: list[str], env: dict, grace_s: float | None = None) -> int:
    """Run ``cmd`` in a new process group and wait for it. A signal in :data:`FORWARDED` received meanwhile
    goes to the whole group (the step and everything it started); members still alive ``grace_s`` seconds
    later (default :data:`GRACE_S`) are killed, and :class:`Interrupted` is raised."""
    grace = GRACE_S if grace_s is None else grace_s
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True)
    got: list[tuple[int, float]] = []

    def forward(signum, _frame):
        got.append((signum, time.monotonic()))
        try:
            os.killpg(proc.pid, signum)
        except ProcessLookupError:
            pass

    old = {s: signal.signal(s, forward) for s in FORWARDED}
    try:
        while True:
            try:
                rc = proc.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                if got and time.monotonic() - got[0][1] > grace:
                    os.killpg(proc.pid, signal.SIGKILL)
        while got and _group_alive(proc.pid) and time.monotonic() - got[0][1] <= grace:
            time.sleep(0.1)  # the step is gone; give what it started the rest of the grace period
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    if got:
        if _group_alive(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
        raise Interrupted(got[0][0])
    return rc


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group()
    for p in ("quick", "full", "smoke", "gpu"):
        g.add_argument(f"--{p}", dest="profile", action="store_const", const=p)
    ap.add_argument("--only", nargs="+", choices=STEPS, help="run only these steps")
    ap.add_argument("--force", action="store_true", help="re-run steps that are already done")
    ap.add_argument("--figs", default=None, help="figure directory (default paper_figs/, smoke: <runs>/figs)")
    ap.add_argument("--runs", default=None, help="run/cache directory (default runs/reproduce/<profile>)")
    args = ap.parse_args(argv)
    profile = args.profile or "quick"
    if profile == "gpu":  # the GPU profile is a launch recipe, not a CPU job: print it
        text = (ROOT / "configs" / "gpu.yaml").read_text()
        print("\n".join(line[2:] for line in text.splitlines() if line.startswith("#")))
        return 0
    runs = Path(args.runs) if args.runs else ROOT / "runs" / "reproduce" / profile
    figs = Path(args.figs) if args.figs else (runs / "figs" if profile == "smoke" else ROOT / "paper_figs")
    runs.mkdir(parents=True, exist_ok=True)
    figs.mkdir(parents=True, exist_ok=True)
    cmds, outputs = step_commands(profile, figs, runs), step_outputs(profile, figs, runs)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    timings = {}
    t_all = time.perf_counter()
    for step in args.only or STEPS:
        stamp = runs / f"{step}.done"
        cmd = cmds[step]
        if stamp.exists() and not args.force and json.loads(stamp.read_text()).get("cmd") == cmd:
            gone = missing(outputs[step])
            if gone:
                print(f"[{step}] done before, but its outputs are missing or empty ({', '.join(gone)}): re-running",
                      flush=True)
            elif step == "report" and timings:
                print(f"[{step}] re-running: {', '.join(timings)} ran again", flush=True)
            else:
                print(f"[{step}] done before, skipped (--force to re-run)", flush=True)
                continue
        print(f"[{step}] {shlex.join(cmd)}", flush=True)
        t = time.perf_counter()
        try:
            rc = run_step(cmd, env)
        except Interrupted as e:
            print(f"[{step}] interrupted by {e}: forwarded to the step's processes; finished steps are kept, "
                  f"re-run to continue", file=sys.stderr, flush=True)
            return 128 + e.signum
        timings[step] = time.perf_counter() - t
        if rc != 0:
            print(f"[{step}] FAILED (exit {rc}) after {timings[step]:.0f} s; fix and re-run: finished steps "
                  f"are kept", file=sys.stderr)
            return rc
        gone = missing(outputs[step])
        if gone:
            print(f"[{step}] FAILED: exit 0 but these outputs are missing or empty: {', '.join(gone)}",
                  file=sys.stderr)
            return 1
        stamp.write_text(json.dumps({"cmd": cmd, "seconds": timings[step]}))
        print(f"[{step}] ok ({timings[step]:.0f} s)", flush=True)
    ran = f"{len(timings)} step(s) run in {time.perf_counter() - t_all:.0f} s" if timings else "nothing to run"
    print(f"reproduce --{profile}: all steps done ({ran}; the others were done before); figures in {figs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
