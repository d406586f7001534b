"""Kernel benchmark: the ``cpi`` tabular core against the machine and its peers.

Two groups of rows, each contender timed in-process, interleaved round-robin with the other
contenders of its group, medians of ``reps`` runs (method: ``docs/benchmarks.md``):

* ``evaluation`` (:mod:`eval_rows`): ``cpi.value`` / ``cpi.evaluate`` on the depth-10 thought
  tree against a plain numba backward pass over the same CSR, and ``cpi.value`` on the
  S = 20,000 garnet (stochastic and deterministic policy) against scipy from the policy
  (``P_pi = Pi P`` + ``bicgstab``), residuals reported;
* ``peers`` (:mod:`peer_rows`): evaluation, one value-iteration sweep and the set-up against
  QuantEcon, pymdptoolbox and scipy on garnets (S = 20,000 and 2,500) and the tree, with
  ``np.copyto`` as the bandwidth yardstick; peers that cannot finish run once in a child
  under a hard cap (``--cap``) and are reported as ``> cap``.

Command (run from the repository root; full run ~8-10 minutes on 2 shared cores)::

    python -m experiments.bench.cpi_kernels                    # everything (make bench)
    python -m experiments.bench.cpi_kernels --rows evaluation  # the evaluation rows only
    python -m experiments.bench.cpi_kernels --quick            # smoke run, < 1 minute

Writes ``paper_figs/bench_cpi_kernels.csv``, ``.json`` and ``.md`` (the README tables; ``--quick``
writes to a temporary directory unless ``--out`` is given) and prints the full table, the targets
(:mod:`targets`) and the README tables.
"""
from __future__ import annotations

if not __package__:  # run as a file: the sibling modules are imported relative to the package
    raise SystemExit("run from the repository root as a module: "
                     "python -m experiments.bench.cpi_kernels [--rows ...]")

import argparse  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

import cpi  # noqa: E402

from . import eval_rows, peer_rows, peers, table  # noqa: E402
from .common import FULL, QUICK, Sizes  # noqa: E402
from .targets import evaluation_targets, peer_targets  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
GROUPS = ("evaluation", "peers")


def parse_rows(text: str) -> tuple[str, ...]:
    """``--rows``: ``all`` or a comma-separated subset of :data:`GROUPS`."""
    if text == "all":
        return GROUPS
    groups = tuple(g.strip() for g in text.split(",") if g.strip())
    bad = [g for g in groups if g not in GROUPS]
    if bad or not groups:
        raise argparse.ArgumentTypeError(f"--rows takes 'all' or a comma-separated subset of "
                                         f"{', '.join(GROUPS)}; got {text!r}")
    return groups


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m experiments.bench.cpi_kernels",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=parse_rows, default=GROUPS,
                    help="row groups to run: 'all' (default) or a comma-separated subset of "
                         f"{', '.join(GROUPS)}")
    ap.add_argument("--quick", action="store_true", help="small sizes, < 1 minute (smoke run)")
    ap.add_argument("--cap", type=float, default=None, help="cap (s) on each capped peer run")
    ap.add_argument("--reps", type=int, default=None,
                    help="timed repetitions (>= 5; the fast evaluation rows use 3x, >= 21)")
    ap.add_argument("--out", type=str, default=None,
                    help="output stem (default paper_figs/bench_cpi_kernels; --quick: a temp dir)")
    ap.add_argument("--child", type=str, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--S", type=int, default=None, help=argparse.SUPPRESS)
    return ap


def sizes(args) -> Sizes:
    cfg = dict(QUICK if args.quick else FULL)
    if args.cap is not None:
        cfg["cap_s"] = args.cap
    if args.reps is not None:
        cfg["reps"] = args.reps
        cfg["reps_fast"] = max(3 * args.reps, cfg["reps_fast"])
    return Sizes(**cfg)


def _version(dist: str):
    try:
        from importlib.metadata import version
        return version(dist)
    except Exception:  # noqa: BLE001 - a peer that is not installed is reported as None
        return None


def metadata(argv, sz: Sizes, groups) -> dict:
    import numba
    import scipy
    return dict(
        command="python -m experiments.bench.cpi_kernels " + " ".join(argv),
        groups=list(groups), sizes=asdict(sz), cpu=platform.processor() or platform.machine(),
        cpus_usable=len(os.sched_getaffinity(0)), numba_threads=numba.get_num_threads(),
        numba_threading_layer=None, python=platform.python_version(),
        versions=dict(numpy=np.__version__, scipy=scipy.__version__, numba=numba.__version__,
                      quantecon=_version("quantecon"), pymdptoolbox=_version("pymdptoolbox"),
                      threadpoolctl=_version("threadpoolctl")),
        loadavg_start=tuple(round(x, 2) for x in os.getloadavg()), date=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        scipy_rtol=peers.SCIPY_RTOL, cpi_krylov_rtol=cpi.exact.KRYLOV_RTOL,
        cpi_commit=_git_rev(),
    )


def main(argv=None):
    import sys
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    if args.child:
        return peer_rows.child(args.child, args.S)
    sz = sizes(args)
    if args.out:
        stem = Path(args.out)
    elif args.quick:
        stem = Path(tempfile.mkdtemp(prefix="bench_cpi_quick_")) / "bench_cpi_kernels"
    else:
        stem = REPO / "paper_figs" / "bench_cpi_kernels"
    meta = metadata(argv, sz, args.rows)
    t_start = time.perf_counter()

    def log(msg):
        print(f"[{time.perf_counter() - t_start:7.1f} s] {msg}", flush=True)

    log(f"numba threads {meta['numba_threads']} (usable CPUs {meta['cpus_usable']}); load "
        f"average at start {tuple(round(x, 2) for x in meta['loadavg_start'])}; cpi code: last "
        f"commit touching cpi/ = {meta['cpi_commit']}")
    rows, targets = [], []
    if "evaluation" in args.rows:
        ev = eval_rows.bench_tree_eval(sz, log) + eval_rows.bench_garnet_eval(sz, log)
        rows += ev
        targets += evaluation_targets(ev)
    if "peers" in args.rows:
        pr = peer_rows.bench_garnet(sz.garnet_S, sz, capped=True, log=log, repo=REPO)
        pr += peer_rows.bench_garnet(sz.garnet_small_S, sz, capped=False, log=log, repo=REPO)
        pr += peer_rows.bench_tree(sz, log)
        rows += pr
        targets += peer_targets(pr, (sz.garnet_S, sz.garnet_small_S))
    import numba
    try:
        meta["numba_threading_layer"] = numba.threading_layer()
    except ValueError:  # only known after a parallel kernel ran
        pass
    meta["loadavg_end"] = tuple(round(x, 2) for x in os.getloadavg())
    meta["wall_s"] = time.perf_counter() - t_start

    print()
    print(table.table(rows))
    print()
    print("\n".join(table.target_lines(targets)))
    print()
    print("README tables:\n")
    print(table.readme_tables(rows))
    print()
    print(f"numba threads {meta['numba_threads']} ({meta['numba_threading_layer']}), load average "
          f"start {tuple(round(x, 2) for x in meta['loadavg_start'])} end "
          f"{tuple(round(x, 2) for x in meta['loadavg_end'])}; wall {meta['wall_s']:.0f} s")
    csv_path, json_path = table.write(stem, meta, rows, targets)
    print(f"wrote {csv_path} and {json_path}")
    return rows, targets


def _git_rev():
    """Last commit touching cpi/ (+ "-dirty" when cpi/ has uncommitted changes), or None."""
    try:
        rev = subprocess.run(["git", "log", "-1", "--format=%h", "--", "cpi"], cwd=REPO,
                             capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "cpi"], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return rev + ("-dirty" if dirty else "") if rev else None
    except (OSError, subprocess.SubprocessError):
        return None


if __name__ == "__main__":
    main()
