"""Self-localization: ask a model for the wrong thought of a failed chain, and parse its reply.

Used by SRPO (reset step = the model's own localization) and Thought-ICS (``docs/llm.md``).

* Verbose prompt (real models, ``DEFAULT_FORMAT``): the instructions of the paper's localization prompt
  ("Credit Assignment with Resets in LM Reasoning", L2 feedback), in our words: the chain's answer is
  wrong; name the step where the error *originates* (the decision that derailed the reasoning), not
  the later step where it becomes visible (the symptom); a step is wrong if its claims cannot be
  justified from the problem and the earlier steps; do not re-solve; commit to exactly one step and end
  with ``box(N)``. The ground truth is shown only at ICS level L1. Rollouts wrap it in the model's chat
  template when it has one (``RolloutConfig.loc_chat_template``).
* Compact prompt (``fmt.compact_prompts``, the tiny character-level default, which is trained on it):
  the task's prompt and the chain exactly as the model wrote it (its thoughts joined by the delimiter),
  then the question ``\nWrong. First wrong step?\n``. The prompt starts with the parent chain's own
  token ids, so the rollouts reuse the parent's KV cache for it and only the question is prefilled
  (``llm.decode``, ``kv_from``).

Parsing (:func:`parse_localization`, the paper's rule): the last answer box if it holds an integer
``0 <= N <= n`` (0 means "no error"; it maps to step 1 unless ``allow_zero``), else the last
``Step N`` if ``1 <= N <= n``, else step 1. Every fallback is named in ``Localization.source``.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from .thoughts import ThoughtFormat

SOURCES = ("boxed", "zero", "step", "fallback")
"""How a localization was read: ``boxed`` (an in-range box), ``zero`` (a box holding 0, mapped to step 1),
``step`` (no usable box: the last "Step N" in range), ``fallback`` (neither: step 1)."""

LOC_TOKENS_VERBOSE = 4096
"""Default token budget of a localization reply with the verbose prompt (the paper's
``localization_max_tokens``)."""

LOC_TOKENS_COMPACT = 96
"""Default token budget of a localization reply with the compact prompt (the tiny default's replies run up
to 88 tokens on 6-term chains; 64 cut 15% of them)."""

_INT = re.compile(r"^[-+]?\d+$")
_STEP = re.compile(r"[Ss]tep\s+(\d+)")


def default_loc_tokens(fmt: ThoughtFormat) -> int:
    """Token budget of a localization reply when none is configured: :data:`LOC_TOKENS_COMPACT` for
    compact prompts, else :data:`LOC_TOKENS_VERBOSE`."""
    return LOC_TOKENS_COMPACT if fmt.compact_prompts else LOC_TOKENS_VERBOSE


def localization_prompt(task, problem, thoughts: list[str], *, ground_truth: str | None = None) -> str:
    """Prompt asking for the step where the error of ``thoughts`` (a chain whose answer is wrong)
    originates (module docstring). The tiny default is trained on the compact form."""
    if not thoughts:
        raise ValueError("thoughts: expected at least one thought to localize, got []")
    fmt: ThoughtFormat = task.fmt
    if fmt.compact_prompts:
        gt = "" if ground_truth is None else f" ({ground_truth})"
        return f"{task.prompt(problem)}{fmt.delimiter.join(thoughts)}\nWrong{gt}. First wrong step?\n"
    steps, n = fmt.numbered(thoughts), len(thoughts)
    gt = "" if ground_truth is None else f" The correct final answer is {ground_truth}."
    box = fmt.box("N")
    return (
        "Your task is to locate the first erroneous step in your previous solution to this problem.\n\n"
        f"Problem:\n{problem.question}\n\n"
        f"Your reasoning, split into numbered steps:\n{steps}\n\n"
        f"The final answer of this reasoning is wrong, so at least one step contains an error.{gt} "
        "Look for the step where the error originates: the step whose decision or action first took the "
        "reasoning off course, not the later step where the wrong result becomes visible. A misread problem, "
        "an unjustified assumption or a flawed deduction can look harmless for several steps before it "
        "surfaces in the answer. A step is erroneous if its claims cannot be justified from the problem "
        "statement and the earlier correct steps alone. Find the originating step, not the symptom.\n\n"
        "Do not solve the problem again. Your only task is to give the number of the step where the error "
        "originates.\n\n"
        "Requirements:\n"
        f"- Commit to exactly one step number, from 1 to {n}.\n"
        "- Stop at the first step you cannot justify.\n"
        f"- End your reply with {box} on a line of its own, where N is the number of that step in the list "
        f"above (not the answer to the problem). Write nothing after {box}.\n"
    )


@dataclass
class Localization:
    """A parsed localization: the 1-based step index (0 = "no error" when allowed), how it was found and the
    integer in the last box (None when the last box holds no integer, or there is no box)."""

    index: int
    source: str  # one of SOURCES
    boxed: int | None = None

    def __post_init__(self):
        if self.source not in SOURCES:
            raise ValueError(f"Localization.source: expected one of {SOURCES}, got {self.source!r}")

    @property
    def box_out_of_range(self) -> bool:
        """The last box held an integer outside ``[0, n]`` (so a fallback was used)."""
        return self.boxed is not None and self.source in ("step", "fallback")


def last_boxed_int(text: str, fmt: ThoughtFormat) -> int | None:
    """Integer in the LAST answer box of ``text`` (the last occurrence of ``fmt.answer_open``, brackets
    nesting as in ``ThoughtFormat``); None when that box is unclosed or does not hold an integer."""
    at = text.rfind(fmt.answer_open)
    if at < 0:
        return None
    rest = text[at:]
    spans = fmt._answer_spans(rest)
    if not spans or spans[0][0] != 0:
        return None
    content = rest[spans[0][1]:spans[0][2]].strip()
    return int(content) if _INT.match(content) else None


def parse_localization(text: str, n_thoughts: int, fmt: ThoughtFormat, *, allow_zero: bool = False) -> Localization:
    """The paper's rule: the last box's integer ``N`` if ``0 <= N <= n`` (``N = 0`` gives step 1 with source
    ``"zero"``, or index 0 when ``allow_zero``: Thought-ICS's "no error"); else the last ``Step N`` if
    ``1 <= N <= n`` (``"step"``); else step 1 (``"fallback"``; 0 when ``n = 0`` and ``allow_zero``).
    An out-of-range box is never clipped: it falls through to the "Step N" rule."""
    if not isinstance(n_thoughts, int) or isinstance(n_thoughts, bool) or n_thoughts < (0 if allow_zero else 1):
        raise ValueError(f"n_thoughts: expected an int >= {0 if allow_zero else 1}, got {n_thoughts!r}")
    boxed = last_boxed_int(text, fmt)
    if boxed is not None and 0 <= boxed <= n_thoughts:
        if boxed == 0 and not allow_zero:
            return Localization(index=1, source="zero", boxed=0)
        return Localization(index=boxed, source="boxed", boxed=boxed)
    steps = _STEP.findall(text)
    if steps and 1 <= int(steps[-1]) <= n_thoughts:
        return Localization(index=int(steps[-1]), source="step", boxed=boxed)
    return Localization(index=min(1, n_thoughts), source="fallback", boxed=boxed)


# --------------------------------------------------------------------------- verification (L3)
_YES = {"YES", "Y", "TRUE", "CORRECT"}
_NO = {"NO", "N", "FALSE", "INCORRECT", "WRONG"}


def steps_block(fmt, thoughts: Sequence[str]) -> str:
    """The numbered steps of a prompt (or a placeholder when there are none)."""
    return fmt.numbered(list(thoughts)) if thoughts else "(no complete steps)"


def verification_prompt(task, problem, thoughts: Sequence[str], answer: str | None) -> str:
    """L3 self-verification prompt: problem, numbered steps, final answer; ask for a boxed YES/NO."""
    fmt = task.fmt
    box = lambda s: f"{fmt.answer_open}{s}{fmt.answer_close}"
    ans = answer if answer is not None else "(no final answer)"
    if getattr(fmt, "compact_prompts", False):
        return f"V:{problem.question}\n{steps_block(fmt, thoughts)}\nAnswer {ans}. Correct?\n"
    return (
        f"Problem:\n{problem.question}\n\nProposed solution:\n{steps_block(fmt, thoughts)}\n"
        f"Final answer: {ans}\n\n"
        "Check the solution step by step. Is the final answer correct? Answer YES or NO and end "
        f"with {box('YES')} or {box('NO')}.\n"
    )


def parse_verdict(text: str, fmt) -> bool | None:
    """Boxed YES/NO verdict -> True / False; None when unparseable (the caller counts it as NO).

    The last boxed expression is read (``fmt.extract_answer``); its first word, upper-cased and
    stripped of punctuation, must be one of YES/Y/TRUE/CORRECT or NO/N/FALSE/INCORRECT/WRONG.
    """
    box = fmt.extract_answer(text)
    if box is None:
        return None
    words = re.findall(r"[A-Za-z]+", box)
    if not words:
        return None
    w = words[0].upper()
    return True if w in _YES else False if w in _NO else None
