"""``python -m llm.ics``: Thought-ICS and its baselines on one model and task; per-problem JSONL, summaries
and a table. The command line is made from :class:`ICSArgs` with tyro (``llm.cli``): every
``ICSConfig`` field is a flag with its docstring and default, plus what the command needs (model, task,
problems, device, output). Several methods and localizers run one after the other on the same problems.

    python -m llm.ics --model tiny --task arith --level L2 --n 200
    python -m llm.ics --model tiny --level L2 --method all --localizer model oracle --max_iters 5
"""
from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence, get_args

from .config import TINY_BUDGET, ICSConfig, LocalizerKind, Method, run_label
from .io import write_run
from .loop import run_ics
from .metrics import format_summary, summarize

MethodChoice = Literal["thought", "token", "scratch", "refine", "all"]


@dataclass
class ICSArgs(ICSConfig):
    """Thought-ICS and baselines on one model and task; writes per-problem JSONL and a summary table."""

    method: tuple[MethodChoice, ...] = ("thought",)
    """one or more of thought (Thought-ICS), token (Token-ICS), scratch, refine; "all" = every method"""
    localizer: tuple[LocalizerKind, ...] = ("model",)
    """"model" and/or "oracle" (the task's first_error: the upper bound; thought/token only)"""
    max_thoughts: int | None = None
    """per chain (None: 8 for the tiny default, 20 otherwise)"""
    max_thought_tokens: int | None = None
    """per-thought token cap (None: 16 for the tiny default, 256 otherwise)"""
    model: str = "tiny"
    """"tiny" (the offline default), a local HF model directory or a cached hub name"""
    task: str = "arith"
    """"arith", "rg:<dataset>" or a .jsonl / .parquet file"""
    n: int = 200
    """problems (drawn from --split with --seed)"""
    split: Literal["train", "test"] = "test"
    """which split the problems come from"""
    device: str = "cpu"
    """torch device of the model, e.g. cpu, cuda, cuda:1"""
    dtype: str | None = None
    """model dtype (auto, float32, bfloat16, float16; None: as saved)"""
    threads: int = 0
    """torch CPU threads (0: torch's default)"""
    out: str = "runs/ics"
    """output directory: <run>.jsonl, <run>.summary.json, summary.txt"""
    progress: bool = True
    """show a progress bar per run on stderr"""

    def __post_init__(self) -> None:  # the per-run ICSConfig objects validate the shared fields
        if self.n < 1:
            raise ValueError(f"n: expected an int >= 1, got {self.n!r}")
        self.configs()

    def configs(self) -> dict[str, ICSConfig]:
        """One ICSConfig per (method, localizer) pair asked for, labelled like ``"thought-oracle L2"``."""
        d = ICSConfig()
        budget = TINY_BUDGET if self.model == "tiny" else dict(max_thoughts=d.max_thoughts,
                                                              max_thought_tokens=d.max_thought_tokens)
        shared = {f.name: getattr(self, f.name) for f in dataclasses.fields(ICSConfig)}
        shared.update(max_thoughts=self.max_thoughts if self.max_thoughts is not None else budget["max_thoughts"],
                      max_thought_tokens=(self.max_thought_tokens if self.max_thought_tokens is not None
                                          else budget["max_thought_tokens"]))
        methods = list(get_args(Method)) if "all" in self.method else list(dict.fromkeys(self.method))
        out = {}
        for m in methods:
            for loc in dict.fromkeys(self.localizer):
                if loc == "oracle" and m not in ("thought", "token"):
                    continue
                cfg = ICSConfig(**{**shared, "method": m, "localizer": loc,
                                   "context": self.context and m in ("thought", "token")})
                out[run_label(cfg)] = cfg
        if not out:
            raise ValueError(f"--localizer oracle needs --method thought or token (got {methods})")
        return out


def parse_command_line(argv: Sequence[str] | None = None) -> tuple[ICSArgs, frozenset[str]]:
    """The command's arguments (defaults < ``--config`` YAML < flags) and the fields given explicitly."""
    import yaml

    from ..cli import parse

    def load(path: str) -> ICSArgs:
        p = Path(path)
        if not p.is_file():
            raise ValueError(f"--config: file {str(p)!r} not found")
        d = yaml.safe_load(p.read_text()) or {}
        names = {f.name for f in dataclasses.fields(ICSArgs)}
        if set(d) - names:
            raise ValueError(f"unknown key(s) {sorted(set(d) - names)} in {path}; valid keys: {sorted(names)}")
        return ICSArgs(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    return parse(ICSArgs, None if argv is None else list(argv), prog="python -m llm.ics",
                 description=ICSArgs.__doc__, load=load,
                 aliases={"votes": "verify_votes", "no_progress": ("progress", False)})


def load_model_and_task(model: str, task: str, *, device: str = "cpu", dtype=None, threads: int = 0):
    """The policy (``llm.models.load_policy``) and the task with the settings saved beside it (the tiny
    default's arith difficulty); shared by the CLI and ``experiments/ics_eval.py``."""
    import torch

    from ..models import load_policy
    if threads:
        torch.set_num_threads(threads)
    policy = load_policy(model, device=device, dtype=dtype)
    return policy, policy.get_task(task)


def main(argv: Sequence[str] | None = None) -> dict[str, dict]:
    """Run every configured method on the same problems; print and return the summaries."""
    try:
        args, _ = parse_command_line(argv)
    except ValueError as e:
        print(f"llm.ics: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    configs = args.configs()  # validated before a model is loaded
    import torch

    policy, task = load_model_and_task(args.model, args.task, device=args.device, dtype=args.dtype,
                                       threads=args.threads)
    problems = task.sample(args.n, args.seed, split=args.split)
    out_dir = Path(args.out)
    summaries = {}
    for label, cfg in configs.items():
        gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
        results = run_ics(policy, task, problems, cfg, progress=args.progress, generator=gen)
        summaries[label] = summarize(results)
        path = write_run(out_dir, label, cfg, results, summaries[label])
        print(f"wrote {path}", file=sys.stderr)
    table = format_summary(summaries)
    head = f"model={args.model} task={args.task} n={len(problems)} split={args.split} seed={args.seed}"
    (out_dir / "summary.txt").write_text(head + "\n" + table + "\n")
    print(head)
    print(table)
    return summaries
