"""Tasks with verifiers: problems, prompts, 0/1 rewards and (where possible) a step checker.

A task yields prompts with a checkable answer and may also return the index of the first
wrong thought of a chain: the step checker that makes the oracle reset possible
(``docs/llm.md``, "Tasks and verifiers"). Sources:

* ``"arith"``: built-in procedural multi-step arithmetic, one operation per thought, with an
  exact step checker (:class:`ArithTask`);
* ``"rg:<dataset>"``: a reasoning-gym procedural dataset scored with its own ``score_answer``
  (:class:`ReasoningGymTask`);
* a ``.jsonl`` / ``.parquet`` path with ``question`` / ``answer`` columns, GSM8K/MATH style,
  compared after number normalisation and, failing that, by ``math-verify`` (symbolic equivalence:
  ``\\frac{\\sqrt2}{2}`` = ``\\sqrt{2}/2``; :class:`FileTask`, :func:`math_equal`).

Modules: :mod:`.base` (:class:`Problem`, the split, :class:`Task`), :mod:`.answers` (answer
comparison), :mod:`.arith`, :mod:`.rg`, :mod:`.files`; this module parses task strings and builds the
task (:func:`get_task`). Every public name is importable from ``llm.tasks``. Train and test splits
are disjoint by construction (a hash of the question, :mod:`.base`).
"""
from __future__ import annotations

import re
from pathlib import Path

from .answers import MATH_MAX_CHARS, answers_match, math_equal, normalize_answer
from .arith import _EQ_RE, _OPS, ArithTask  # noqa: F401  (_EQ_RE, _OPS: used by llm.tiny)
from .base import SPLITS, Problem, Task, describe, long_prompts
from .files import FileTask
from .rg import ReasoningGymTask

__all__ = ["MATH_MAX_CHARS", "SPLITS", "ArithTask", "FileTask", "Problem", "ReasoningGymTask", "Task", "answers_match",
           "describe", "get_task", "long_prompts", "math_equal", "normalize_answer", "parse_task_spec"]


_OPTION = re.compile(r"^[A-Za-z_]\w*=[^,=:]*$")


def parse_task_spec(spec: str) -> tuple[str, dict]:
    """``"name:key=value,key=value"`` -> ``(name, {key: value})``: task options written into the task string,
    so that they travel through ``--task``, the experiments and the saved ``config.yaml`` as one value.

    The options are the part after the last ``:`` when every comma-separated piece of it is ``key=value``
    (so ``rg:chain_sum`` and file paths are left alone); values are ints when they read as ints, floats when
    they read as floats, else text. For ``arith``, ``terms=N`` fixes the chain length: ``min_terms =
    max_terms = N`` (the difficulty knob: ``arith:terms=6``)."""
    if not isinstance(spec, (str, Path)):
        raise TypeError(f"task: expected a str, got {type(spec).__name__}")
    s = str(spec)
    head, sep, tail = s.rpartition(":")
    if not sep or not head or not tail or not all(_OPTION.match(p) for p in tail.split(",")):
        return s, {}
    kw: dict = {}
    for piece in tail.split(","):
        k, v = piece.split("=", 1)
        for conv in (int, float):
            try:
                v = conv(v)
                break
            except ValueError:
                continue
        if k in kw:
            raise ValueError(f"task {s!r}: option {k!r} given twice")
        kw[k] = v
    if head == "arith" and "terms" in kw:
        n = kw.pop("terms")
        if "min_terms" in kw or "max_terms" in kw:
            raise ValueError(f"task {s!r}: give either terms or min_terms/max_terms")
        kw["min_terms"] = kw["max_terms"] = n
    return head, kw


def get_task(name_or_path: str, **kw) -> Task:
    """``"arith"`` (kw: fmt, min_terms, max_terms, digits, ops), ``"rg:<dataset>"`` (kw: fmt and
    create_dataset options) or a ``.jsonl`` / ``.parquet`` path (kw: fmt, question_key, answer_key).
    Options may also be written into the name (:func:`parse_task_spec`: ``"arith:terms=6"``,
    ``"arith:min_terms=3,max_terms=8"``, ``"rg:chain_sum:min_terms=2"``); they override keywords of the
    same name. Pass ``fmt=policy.fmt`` so prompts and answers use the policy's markers."""
    if not isinstance(name_or_path, (str, Path)):
        raise TypeError(f"name_or_path: expected a str, got {type(name_or_path).__name__}")
    s, opts = parse_task_spec(str(name_or_path))
    kw = {**kw, **opts}
    try:
        if s == "arith":
            return ArithTask(**kw)
        if s.startswith("rg:"):
            return ReasoningGymTask(s[3:], **kw)
        if s.endswith((".jsonl", ".parquet")):
            return FileTask(s, **kw)
    except TypeError as e:  # an option the task does not take
        raise ValueError(f"task {str(name_or_path)!r}: {e}") from None
    raise ValueError(f"task: expected 'arith', 'rg:<reasoning-gym dataset>' or a .jsonl/.parquet path, got {s!r}")
