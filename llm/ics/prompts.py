"""Prompts and span arithmetic for Thought-ICS and its baselines (`llm.ics.prompts`).

Everything here is a pure function of text / token ids so the tests can check it by hand:

* the L3 self-verification prompt and its YES/NO verdict parser;
* the ``context`` prompt that shows the failed chain before the task prompt;
* Token-ICS: the unstructured view of a chain (thought delimiters removed, with a map back to
  the raw text), the "quote the first wrong span" prompt, locating the quote, and turning a
  character position into a token cut;
* Self-Refine style feedback and revision prompts.

Implements: "Structure Enables Effective Self-Localization of Errors in LLMs" (Thought-ICS,
2026) for the loop, and Madaan et al. 2023 (Self-Refine) for the revise-the-whole-answer baseline.
"""
from __future__ import annotations

import re
from collections.abc import Sequence

from ..localize import parse_verdict, verification_prompt
from ..localize import steps_block as _steps_block

__all__ = ["parse_verdict", "verification_prompt"]  # re-exported: they live in llm.localize

NO_ERROR_QUOTE = "NONE"
"""What the Token-ICS localizer boxes to say that the solution has no wrong span (exit 2)."""

def majority_verified(votes: Sequence[bool | None]) -> bool:
    """Verified iff strictly more than half of the k votes are YES (unparseable votes count as NO).

    ``#yes > k / 2``; a tie (even k) is "needs correction", the conservative reading.
    """
    if len(votes) == 0:
        raise ValueError("votes: expected at least one verdict, got none")
    return sum(v is True for v in votes) * 2 > len(votes)


def context_prompt(task, problem, thoughts: Sequence[str], e: int | None) -> str:
    """Resample prompt of the ``context`` mode: the failed chain, then the ordinary task prompt.

    The task prompt comes last so the response (and the kept prefix) still starts right after it.
    ``e`` is the localized first wrong step (None for methods without localization).
    """
    where = f" The first wrong step is step {e}." if e else ""
    if getattr(task.fmt, "compact_prompts", False):
        return f"Wrong{f' at {e}' if e else ''}:\n{_steps_block(task.fmt, thoughts)}\n{task.prompt(problem)}"
    return (
        f"A previous attempt at the next problem is wrong.{where}\n"
        f"{_steps_block(task.fmt, thoughts)}\n\n{task.prompt(problem)}"
    )


# ----------------------------------------------------------------------------- Token-ICS
def flatten_with_map(text: str, delimiter: str) -> tuple[str, list[int]]:
    """Unstructured view of a chain: each thought delimiter becomes one space.

    Returns ``(flat, idx)`` with ``len(idx) == len(flat) + 1``: ``flat[i]`` comes from
    ``text[idx[i]]`` (a space that replaced a delimiter maps to the delimiter's first char) and
    ``idx[len(flat)] == len(text)``, so any flat position maps back to a raw position.
    """
    flat: list[str] = []
    idx: list[int] = []
    i = 0
    while i < len(text):
        if delimiter and text.startswith(delimiter, i):
            flat.append(" ")
            idx.append(i)
            i += len(delimiter)
        else:
            flat.append(text[i])
            idx.append(i)
            i += 1
    idx.append(len(text))
    return "".join(flat), idx


def token_localization_prompt(task, problem, flat: str, *, ground_truth: str | None = None) -> str:
    """Token-ICS localizer: the solution as one block of text; quote the first wrong span."""
    fmt = task.fmt
    if getattr(fmt, "compact_prompts", False):
        gt = "" if ground_truth is None else f" ({ground_truth})"
        return f"T:{problem.question}\n{flat}\nWrong{gt}. First wrong part?\n"
    gt = f" The correct answer is {ground_truth}." if ground_truth is not None else ""
    return (
        f"Problem:\n{problem.question}\n\nSolution:\n{flat}\n\nThe final answer of this solution is "
        f"wrong.{gt} Find the first place where the solution goes wrong. Do not solve the problem "
        "again. Copy the first wrong part of the solution exactly and end with "
        f"{fmt.answer_open}<copied text>{fmt.answer_close}; write "
        f"{fmt.answer_open}{NO_ERROR_QUOTE}{fmt.answer_close} if nothing is wrong.\n"
    )


def locate_quote(flat: str, quote: str | None) -> tuple[int | None, str]:
    """Position in ``flat`` where the quoted span starts, and how it was found.

    Returns ``(pos, source)``: ``source`` is "quote" (exact, first occurrence), "quote_fuzzy"
    (case- and whitespace-insensitive match), "none" (the model boxed NONE: pos is None, i.e.
    no error) or "fallback" (no box, empty quote, or not found: pos 0, resample from scratch).
    """
    if quote is None:
        return 0, "fallback"
    q = quote.strip()
    if q.upper() == NO_ERROR_QUOTE:
        return None, "none"
    if not q:
        return 0, "fallback"
    pos = flat.find(q)
    if pos >= 0:
        return pos, "quote"
    pattern = r"\s+".join(re.escape(w) for w in q.split())
    m = re.search(pattern, flat, flags=re.IGNORECASE)
    if m:
        return m.start(), "quote_fuzzy"
    return 0, "fallback"


def char_to_token_cut(decode, response_ids: Sequence[int], char_pos: int) -> int:
    """Largest token count ``t`` with ``len(decode(response_ids[:t])) <= char_pos``.

    Keeping ``response_ids[:t]`` keeps only whole tokens that end at or before ``char_pos``.
    Binary search; assumes decoded length is non-decreasing in ``t`` (true for a tokenizer's
    decode of a growing prefix).
    """
    lo, hi = 0, len(response_ids)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(decode(list(response_ids[:mid]))) <= char_pos:
            lo = mid
        else:
            hi = mid - 1
    return lo


def thought_of_token(thought_ends: Sequence[int], cut: int) -> int:
    """1-based index of the thought a token cut falls in: the number of thoughts that end at or
    before ``cut``, plus one (``len(thought_ends) + 1`` past the last complete thought).

    A cut exactly at a thought boundary keeps that whole thought and resets the next one, the
    same as the Thought-ICS reset index ``e``.
    """
    return sum(1 for t in thought_ends if t <= cut) + 1


# ----------------------------------------------------------------------------- Self-Refine
def refine_feedback_prompt(task, problem, thoughts: Sequence[str], *,
                           ground_truth: str | None = None) -> str:
    """Self-Refine feedback step: say what is wrong with the solution, without re-solving."""
    if getattr(task.fmt, "compact_prompts", False):
        gt = "" if ground_truth is None else f" ({ground_truth})"
        return f"R:{problem.question}\n{_steps_block(task.fmt, thoughts)}\nWrong{gt}. Why?\n"
    gt = f" The correct answer is {ground_truth}." if ground_truth is not None else ""
    return (
        f"Problem:\n{problem.question}\n\nSolution:\n{_steps_block(task.fmt, thoughts)}\n\n"
        f"The final answer of this solution is wrong.{gt} Briefly explain what is wrong. "
        "Do not write a new solution.\n"
    )


def refine_prompt(task, problem, thoughts: Sequence[str], feedback: str) -> str:
    """Self-Refine revision step: failed solution + feedback, then the task prompt (fresh chain)."""
    if getattr(task.fmt, "compact_prompts", False):
        return (f"Wrong:\n{_steps_block(task.fmt, thoughts)}\nFix: {feedback.strip()}\n"
                f"{task.prompt(problem)}")
    return (
        f"A previous attempt at the next problem is wrong.\n{_steps_block(task.fmt, thoughts)}\n"
        f"Feedback: {feedback.strip()}\nWrite a corrected solution.\n\n{task.prompt(problem)}"
    )
