"""Self-localization: ask a model for the FIRST wrong thought of a failed chain, and parse its reply.

Used by SRPO (reset step = the model's own localization) and Thought-ICS (``docs/llm.md``):
the model sees the problem and its numbered steps, is told the answer is wrong (the ground
truth only at ICS level L1), must name the first step that cannot be justified from the problem
and the earlier steps, not re-solve, and end with ``box(N)``. Parsing: the last boxed integer,
else the last "Step N", else 1; clipped to ``[1, n]``; 0 means step 1 unless ``allow_zero``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .thoughts import ThoughtFormat

SOURCES = ("boxed", "step", "fallback")
_INT = re.compile(r"^[-+]?\d+$")
_STEP = re.compile(r"[Ss]tep\s*(\d+)")


def localization_prompt(task, problem, thoughts: list[str], *, ground_truth: str | None = None) -> str:
    """Prompt asking for the first unjustified step of ``thoughts`` (a chain whose answer is wrong).
    The tiny default is trained on exactly this text (compact form, ``task.fmt.compact_prompts``)."""
    if not thoughts:
        raise ValueError("thoughts: expected at least one thought to localize, got []")
    fmt: ThoughtFormat = task.fmt
    steps = fmt.numbered(thoughts)
    if fmt.compact_prompts:
        gt = "" if ground_truth is None else f" ({ground_truth})"
        return f"L:{problem.question}\n{steps}\nWrong{gt}. First wrong step?\n"
    gt = "" if ground_truth is None else f" The correct final answer is {ground_truth}."
    return (
        f"Problem:\n{problem.question}\n\n"
        f"A proposed solution, split into numbered steps:\n{steps}\n\n"
        f"The final answer of this solution is wrong.{gt} "
        "Find the FIRST step that cannot be justified from the problem and the earlier steps. "
        "Do not solve the problem again. Explain briefly, then end your reply with the number of that "
        f"step in {fmt.box('N')}, for example {fmt.box('2')}.\n"
    )


@dataclass
class Localization:
    """A parsed localization: the 1-based step index (0 = "no error" when allowed) and how it was found."""

    index: int
    source: str  # one of SOURCES

    def __post_init__(self):
        if self.source not in SOURCES:
            raise ValueError(f"Localization.source: expected one of {SOURCES}, got {self.source!r}")


def parse_localization(text: str, n_thoughts: int, fmt: ThoughtFormat, *, allow_zero: bool = False) -> Localization:
    """Last boxed integer, else last ``Step N``, else 1 (``"fallback"``); clipped to ``[lo, n]`` with
    ``lo = 0`` if ``allow_zero`` (Thought-ICS: 0 = no error) else 1 (so 0 maps to step 1)."""
    if not isinstance(n_thoughts, int) or n_thoughts < (0 if allow_zero else 1):
        raise ValueError(f"n_thoughts: expected an int >= {0 if allow_zero else 1}, got {n_thoughts!r}")
    lo = 0 if allow_zero else 1
    idx, source = None, "fallback"
    for a in reversed(fmt.all_answers(text)):
        a = a.replace("Step", "").replace("step", "").strip()
        if _INT.match(a):
            idx, source = int(a), "boxed"
            break
    if idx is None:
        steps = _STEP.findall(text)
        if steps:
            idx, source = int(steps[-1]), "step"
    if idx is None:
        return Localization(index=min(1, n_thoughts), source="fallback")
    return Localization(index=max(lo, min(n_thoughts, idx)), source=source)
