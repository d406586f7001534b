"""What one run of the loop records: every chain (``Attempt``), every round (``Round``) and the problem's
outcome (``ProblemResult``, one JSONL line); ``State`` is the loop's per-problem working state."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .config import EXITS


@dataclass
class Attempt:
    """One chain of the loop (the first one or a resample)."""

    text: str
    n_thoughts: int
    answer: str | None
    correct: bool
    finish: str
    reset_at: int | None = None
    """Thought index e this chain was resampled from (prefix = thoughts 1..e-1); None: fresh."""
    prefix_tokens: int = 0


@dataclass
class Round:
    """One verify (+ localize + resample) round on the current chain."""

    iteration: int
    verified: bool
    verdicts: list[str] = field(default_factory=list)
    """L3: the raw verdict completions; empty at L1/L2 (the reward is the verifier)."""
    votes_yes: int = 0
    votes_unparseable: int = 0
    judge_overflow: int = 0
    """Judge prompts of this round (verdicts, the localization call) too long for the model's context:
    not sent, their reply empty (an unparseable verdict; the localizer's fallback)."""
    loc_text: str | None = None
    """Raw localizer (or Self-Refine feedback) completion; None when no call was made."""
    loc_index: int | None = None
    """Reset thought e (0 = "no error"); for Token-ICS the thought the reset point falls in."""
    loc_source: str | None = None
    """boxed / step / fallback (parse_localization), quote / quote_fuzzy / none (Token-ICS),
    oracle / oracle_none, empty (no complete thought: reset to the start without a call)."""
    true_first_error: int | None = None
    """task.first_error of the chain, when the task has a step checker and finds one."""
    resample_correct: bool | None = None
    """Whether the chain resampled in this round is correct (None: no resample)."""


@dataclass
class ProblemResult:
    """Everything the loop did on one problem (one line of the JSONL)."""

    id: str
    answer: str
    method: str
    level: str
    exit: int = 0
    """1 verified, 2 disagreement (localizer says no error), 3 max iterations (0 while running)."""
    question: str = ""
    attempts: list[Attempt] = field(default_factory=list)
    rounds: list[Round] = field(default_factory=list)

    @property
    def first_correct(self) -> bool:
        return self.attempts[0].correct

    @property
    def final_correct(self) -> bool:
        return self.attempts[-1].correct

    @property
    def final_correct_a(self) -> bool:
        """Thought-ICS-A: the first answer is kept on exits (2) and (3)."""
        return self.final_correct if self.exit == 1 else self.first_correct

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(first_correct=self.first_correct, final_correct=self.final_correct,
                 final_correct_a=self.final_correct_a, exit_name=EXITS.get(self.exit))
        return d


class State:
    """A problem in the loop: its prompt, its result so far and the current chain."""

    def __init__(self, task, problem):
        self.problem = problem
        self.prompt = task.prompt(problem)
        self.res = ProblemResult(id=str(problem.id), answer=str(problem.answer), method="", level="",
                                 question=str(problem.question))
        self.sample = None  # current chain (a Policy Sample)

    def add(self, task, sample, reset_at=None):
        self.sample = sample
        self.res.attempts.append(Attempt(
            text=sample.text, n_thoughts=len(sample.thoughts), answer=sample.answer,
            correct=bool(task.reward(self.problem, sample.text) >= 1.0), finish=sample.finish,
            reset_at=reset_at, prefix_tokens=int(sample.prefix_len)))
