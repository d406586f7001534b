"""Small timing helpers for the benchmarks in ``experiments/bench``.

* :func:`interleaved` - round-robin timing of several callables (one call of each per round),
  so that slow drifts of a shared, noisy machine hit every contender alike; quote medians.
* :func:`run_capped` - run a peer in a child process with a hard wall-clock cap on the timed
  part (its set-up is not counted against the cap), for peers that may not finish.
* :func:`summary` - median / min / max / inter-quartile spread of a list of seconds.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Callable

import numpy as np


def interleaved(cases: dict[str, Callable[[], object]], reps: int, warmup: int = 1):
    """Time each callable ``reps`` times, one call of each per round.

    Returns ``(times, results)``: ``times[name]`` is the list of seconds (``reps`` of them),
    ``results[name]`` the return value of the last call (for accuracy checks).
    """
    if reps < 1:
        raise ValueError(f"reps must be >= 1; got {reps}")
    results = {}
    for name, f in cases.items():
        for _ in range(warmup):
            results[name] = f()
    times = {name: [] for name in cases}
    for _ in range(reps):
        for name, f in cases.items():
            t0 = time.perf_counter()
            results[name] = f()
            times[name].append(time.perf_counter() - t0)
    return times, results


def summary(ts) -> dict:
    """Median, min, max and relative inter-quartile range (IQR / median) of seconds ``ts``."""
    ts = np.asarray(ts, dtype=np.float64)
    q1, med, q3 = np.percentile(ts, [25, 50, 75])
    return {"median": float(med), "min": float(ts.min()), "max": float(ts.max()),
            "rel_iqr": float((q3 - q1) / med) if med > 0 else 0.0, "n": int(ts.size)}


def run_capped(argv: list[str], cap: float, setup_cap: float = 600.0, cwd=None) -> dict:
    """Run ``python argv...`` as a child with a hard cap of ``cap`` seconds on its timed part.

    Protocol: the child prints the line ``READY`` (flushed) when its set-up is done, then
    does the timed work and prints one JSON object on its last stdout line. The cap clock
    starts at ``READY``. Returns the child's JSON plus ``{"status": "ok"}``, or
    ``{"status": "timeout", "cap_s": cap}`` when the cap (or ``setup_cap`` for the set-up)
    ran out - the child is then killed - or ``{"status": "error", ...}``. ``cwd``: the child's
    working directory (``python -m`` finds its module from there).
    """
    proc = subprocess.Popen([sys.executable, *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=cwd)
    try:
        t0 = time.perf_counter()
        line = ""
        while line.strip() != "READY":
            line = proc.stdout.readline()
            if line == "" and proc.poll() is not None:
                return {"status": "error", "stderr": proc.stderr.read()[-2000:]}
            if time.perf_counter() - t0 > setup_cap:
                proc.kill()
                proc.wait()
                return {"status": "timeout", "cap_s": setup_cap, "where": "set-up"}
        t_start = time.perf_counter()
        try:
            out, err = proc.communicate(timeout=cap)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            return {"status": "timeout", "cap_s": cap,
                    "wall_s": time.perf_counter() - t_start}
        if proc.returncode != 0:
            return {"status": "error", "stderr": err[-2000:]}
        res = json.loads(out.strip().splitlines()[-1])
        res["status"] = "ok"
        return res
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
