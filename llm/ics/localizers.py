"""One localizer per method: what the loop asks the model after a failed verification, how the reply
becomes a reset point, and which prompt the next chain starts from.

Every localizer answers three questions for a problem whose current chain failed:

* :meth:`Localizer.request`: the judge prompt to send (None: no call);
* :meth:`Localizer.locate`: from the reply (``round.loc_text``), the token cut of the current chain
  to keep (0: from scratch), or None for "nothing is wrong" (exit 2); fills ``round.loc_index`` /
  ``round.loc_source``;
* :meth:`Localizer.resample_prompt`: the prompt of the next chain; ``continues`` says whether that
  chain continues from the kept prefix (thought / token) or is a whole new chain (scratch / refine).

``localizer="oracle"`` (thought / token methods) uses the task's step checker instead of the model.
"""
from __future__ import annotations

from typing import Sequence

from ..localize import localization_prompt, parse_localization
from . import prompts as B
from .config import ICSConfig
from .records import Round, State


def prefix_cut(thought_ends: Sequence[int], e: int) -> int:
    """Tokens kept when resetting at thought ``e``: thoughts 1..e-1, i.e.
    ``response_ids[:thought_ends[e-2]]`` (0 tokens for e = 1)."""
    if e < 1 or e > len(thought_ends) + 1:
        raise ValueError(f"e: expected 1 <= e <= {len(thought_ends) + 1}, got {e}")
    return 0 if e == 1 else int(thought_ends[e - 2])


def oracle_index(s: State, f: int | None) -> tuple[int, str]:
    """Oracle reset: the true first error ``f``; with none found, 0 if the answer is right (the oracle
    disagrees with a wrong L3 verdict) else the last thought (wrong answer, no wrong step: e.g. a chain
    cut by the budget), redone."""
    n = len(s.sample.thoughts)
    if n == 0:
        return 1, "empty"
    if f is not None:
        return f, "oracle"
    return (0, "oracle_none") if s.res.attempts[-1].correct else (n, "oracle_none")


class Localizer:
    """Base: the thought and token methods continue from a kept prefix, optionally after the failed chain
    (``cfg.context``)."""

    continues = True

    def __init__(self, cfg: ICSConfig):
        self.cfg = cfg
        self.oracle = cfg.localizer == "oracle"

    def ground_truth(self, s: State) -> str | None:
        """The reference answer at level L1 (shown to the judge), else None."""
        return s.problem.answer if self.cfg.level == "L1" else None

    def request(self, task, s: State) -> str | None:
        raise NotImplementedError

    def locate(self, policy, task, s: State, r: Round) -> int | None:
        raise NotImplementedError

    def resample_prompt(self, task, s: State, r: Round) -> str:
        if self.cfg.context:
            return B.context_prompt(task, s.problem, s.sample.thoughts, r.loc_index)
        return s.prompt

    def _reset_at(self, s: State, r: Round, e: int) -> int | None:
        r.loc_index = e
        return None if e == 0 else prefix_cut(s.sample.thought_ends, e)


class ThoughtLocalizer(Localizer):
    """Thought-ICS: the model names the first wrong thought e (boxed; 0 = no error); keep thoughts 1..e-1."""

    def request(self, task, s: State) -> str | None:
        if self.oracle or not s.sample.thoughts:
            return None
        return localization_prompt(task, s.problem, list(s.sample.thoughts), ground_truth=self.ground_truth(s))

    def locate(self, policy, task, s: State, r: Round) -> int | None:
        if self.oracle:
            e, r.loc_source = oracle_index(s, r.true_first_error)
        elif not s.sample.thoughts:
            e, r.loc_source = 1, "empty"
        else:
            loc = parse_localization(r.loc_text, len(s.sample.thoughts), task.fmt, allow_zero=True)
            e, r.loc_source = loc.index, loc.source
        return self._reset_at(s, r, e)


class TokenLocalizer(Localizer):
    """Token-ICS: the chain as one block of text (delimiters removed); the model quotes the first wrong
    span and the chain is cut at the last whole token before the quote."""

    def request(self, task, s: State) -> str | None:
        if self.oracle:
            return None
        flat, _ = B.flatten_with_map(s.sample.text, task.fmt.delimiter)
        if not flat.strip():
            return None
        return B.token_localization_prompt(task, s.problem, flat, ground_truth=self.ground_truth(s))

    def locate(self, policy, task, s: State, r: Round) -> int | None:
        if self.oracle:
            e, r.loc_source = oracle_index(s, r.true_first_error)
            return self._reset_at(s, r, e)
        flat, idx = B.flatten_with_map(s.sample.text, task.fmt.delimiter)
        if r.loc_text is None:
            pos, r.loc_source = 0, "empty"
        else:
            pos, r.loc_source = B.locate_quote(flat, task.fmt.extract_answer(r.loc_text))
        if pos is None:
            r.loc_index = 0
            return None
        smp = s.sample
        cut = B.char_to_token_cut(policy.decode, smp.response_ids, idx[pos])
        r.loc_index = B.thought_of_token(smp.thought_ends[:len(smp.thoughts)], cut)
        return cut


class ScratchLocalizer(Localizer):
    """Resample from scratch: no judge call, a whole new chain from the task prompt."""

    continues = False

    def request(self, task, s: State) -> str | None:
        return None

    def locate(self, policy, task, s: State, r: Round) -> int | None:
        return 0

    def resample_prompt(self, task, s: State, r: Round) -> str:
        return s.prompt


class RefineLocalizer(Localizer):
    """Self-Refine: the model writes feedback on the whole answer; a new chain sees the failed chain and
    the feedback (Madaan et al. 2023)."""

    continues = False

    def request(self, task, s: State) -> str | None:
        return B.refine_feedback_prompt(task, s.problem, s.sample.thoughts, ground_truth=self.ground_truth(s))

    def locate(self, policy, task, s: State, r: Round) -> int | None:
        return 0

    def resample_prompt(self, task, s: State, r: Round) -> str:
        return B.refine_prompt(task, s.problem, s.sample.thoughts, r.loc_text or "")


LOCALIZERS = {"thought": ThoughtLocalizer, "token": TokenLocalizer, "scratch": ScratchLocalizer,
              "refine": RefineLocalizer}


def localizer_for(cfg: ICSConfig) -> Localizer:
    """The localizer of ``cfg.method``."""
    return LOCALIZERS[cfg.method](cfg)
