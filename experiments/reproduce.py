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
6. ``llm``         experiments/llm_compare.py       GRPO / RRPO / SRPO / oracle, equal budgets, seeds
7. ``ics``         experiments/ics_eval.py          Thought-ICS lift at L1/L2/L3 with/without ICS-A, baselines
8. ``report``      experiments/report.py            paper_figs/REPORT.md and paper_figs/README.md

Caching and resuming: a finished step leaves ``runs/reproduce/<profile>/<step>.done`` (with its
command) and is skipped on a re-run unless ``--force``; a killed run starts again at the first
unfinished step, and inside the ``llm`` step each training run resumes from its checkpoint.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
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
                      llm=["--profile", "smoke", "--model", str(runs / "micro")],
                      ics=["--profile", "smoke", "--model", str(runs / "micro")]),
        "quick": dict(bounds=[], pg_td=[], resets=["--quick"], ippo=["--quick"], llm=["--profile", "quick"],
                      ics=["--profile", "quick"]),
        "full": dict(bounds=["--cases", "20000"], pg_td=["--full"], resets=["--full"], ippo=["--full"],
                     llm=["--profile", "full"], ics=["--profile", "full"]),
    }[profile]
    tiny = ([PY, "-c", f"from llm.tiny import micro_policy; micro_policy(0).save_pretrained({str(runs / 'micro')!r})"]
            if profile == "smoke" else [PY, "-m", "llm.tiny"])
    return {
        "bounds": [PY, str(e / "check_bounds.py"), "--out", str(figs / "bounds_check"), *size["bounds"]],
        "pg_td": [PY, str(e / "check_pg_td.py"), "--out", str(figs), *size["pg_td"]],
        "resets": [PY, str(e / "reset_complexity.py"), "--out", str(figs / "reset_complexity"), *size["resets"]],
        "ippo": [PY, str(e / "iterative_ppo.py"), "--out", str(figs / "iterative_ppo"), *size["ippo"]],
        "tiny": tiny,
        "llm": [PY, str(e / "llm_compare.py"), "--out", str(figs), "--runs", str(runs / "llm"), *size["llm"]],
        "ics": [PY, str(e / "ics_eval.py"), "--out", str(figs), "--runs", str(runs / "ics"), *size["ics"]],
        "report": [PY, str(e / "report.py"), "--figs", str(figs), "--profile", profile,
                   "--command", "python experiments/reproduce.py --" + profile],
    }


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
    cmds = step_commands(profile, figs, runs)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    timings = {}
    t_all = time.perf_counter()
    for step in args.only or STEPS:
        stamp = runs / f"{step}.done"
        cmd = cmds[step]
        if stamp.exists() and not args.force and json.loads(stamp.read_text()).get("cmd") == cmd:
            print(f"[{step}] done before, skipped (--force to re-run)", flush=True)
            continue
        print(f"[{step}] {shlex.join(cmd)}", flush=True)
        t = time.perf_counter()
        rc = subprocess.call(cmd, cwd=ROOT, env=env)
        timings[step] = time.perf_counter() - t
        if rc != 0:
            print(f"[{step}] FAILED (exit {rc}) after {timings[step]:.0f} s; fix and re-run: finished steps "
                  f"are kept", file=sys.stderr)
            return rc
        stamp.write_text(json.dumps({"cmd": cmd, "seconds": timings[step]}))
        print(f"[{step}] ok ({timings[step]:.0f} s)", flush=True)
    print(f"reproduce --{profile}: all steps done in {time.perf_counter() - t_all:.0f} s; figures in {figs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
