"""What every task shares: :class:`Problem`, the disjoint train/test split, the :class:`Task` base class
(prompt, reward, step checker interface), and the prompt-length check of a problem set.

Train and test splits are disjoint by construction: a problem belongs to the test split iff a hash of
its question falls in the test bucket (1 in 5), so the same question can never be drawn in both.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from ..thoughts import DEFAULT_FORMAT, ThoughtFormat
from .answers import answers_match

SPLITS = ("train", "test")


@dataclass
class Problem:
    """One problem: an id, the question text, the reference answer and task-specific metadata."""

    id: str
    question: str
    answer: str
    meta: dict = field(default_factory=dict)


def _in_split(question: str, split: str) -> bool:
    """Deterministic disjoint split: test iff sha256(question) mod 5 == 0."""
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {SPLITS}, got {split!r}")
    h = int(hashlib.sha256(question.encode()).hexdigest()[:8], 16)
    return (h % 5 == 0) == (split == "test")


def _check_n_seed(n, seed):
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"n: expected a non-negative int, got {n!r}")
    if not isinstance(seed, int):
        raise TypeError(f"seed: expected an int, got {type(seed).__name__}")


class Task:
    """Base class. Subclasses set ``name`` and implement :meth:`_generate`."""

    name: str = "task"
    has_step_checker: bool = False

    def __init__(self, fmt: ThoughtFormat = DEFAULT_FORMAT):
        if not isinstance(fmt, ThoughtFormat):
            raise TypeError(f"fmt: expected a ThoughtFormat, got {type(fmt).__name__}")
        self.fmt = fmt

    def sample(self, n: int, seed: int, split: str = "train") -> list[Problem]:
        """``n`` problems of ``split``, a deterministic function of ``(n, seed, split)``."""
        raise NotImplementedError

    def prompt(self, problem: Problem) -> str:
        """Text given to the model; the response starts right after it."""
        if self.fmt.compact_prompts:
            return f"Q:{problem.question}\n"
        return (f"{problem.question}\n\nSolve step by step. End every step with {self.fmt.delimiter} and "
                f"put the final answer in {self.fmt.box('...')}.\n\n")

    def answer_correct(self, problem: Problem, answer: str) -> bool:
        return answers_match(answer, problem.answer)

    def reward(self, problem: Problem, response: str) -> float:
        """1.0 iff the response's last answer is correct; 0.0 when wrong or absent."""
        ans = self.fmt.extract_answer(response)
        if ans is None:
            return 0.0
        return 1.0 if self.answer_correct(problem, ans) else 0.0

    def first_error(self, problem: Problem, thoughts: list[str]) -> int | None:
        """1-based index of the first wrong thought, None if none is found."""
        raise NotImplementedError(f"task {self.name!r} has no step checker (has_step_checker=False)")


def long_prompts(task: Task, problems: list[Problem], tokenizer, limit: int) -> list[tuple[Problem, int]]:
    """``(problem, prompt tokens)`` of each distinct problem whose encoded prompt (special tokens included)
    has at least ``limit`` tokens: no room left for a response in a context of ``limit`` tokens."""
    uniq = list({p.id: p for p in problems}.values())
    if not uniq:
        return []
    ids = tokenizer([task.prompt(p) for p in uniq], add_special_tokens=True)["input_ids"]
    return [(p, len(x)) for p, x in zip(uniq, ids) if len(x) >= limit]


def describe(problem: Problem) -> str:
    """A problem as a reader finds it: the file row (and line) for a data file, else its id."""
    where = problem.meta.get("where")
    return f"{problem.id.rsplit(':', 1)[0]} {where}" if where else f"problem {problem.id[:60]!r}"
