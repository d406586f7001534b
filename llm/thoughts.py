"""Thought format: how a response is cut into thoughts and where its answer sits.

A response is a sequence of *thoughts*, each ended by a delimiter (default ``</thought>``),
with the final answer in ``\\boxed{...}`` (``docs/llm.md``, "Thought format")::

    t_1 <delim> t_2 <delim> ... t_n <delim>? ... \\boxed{a}

The markers belong to a format object so that the tiny offline default can use
one-character markers (``TINY_FORMAT``) while real models use ``</thought>`` and
``\\boxed{}`` (``DEFAULT_FORMAT``). Everything here is pure string processing, including the one
delimiter scanner (:class:`ThoughtScanner`) that the decode loop and :func:`thought_ends` share.
"""
from __future__ import annotations

from dataclasses import dataclass

# Bracket pairs for which the answer may nest: "\\boxed{a{b}c}" -> "a{b}c".
_PAIRS = {"{": "}", "[": "]", "(": ")", "<": ">"}


@dataclass(frozen=True)
class ThoughtFormat:
    """Markers of a thought-structured response."""

    delimiter: str = "</thought>"
    """Text that ends every thought."""
    answer_open: str = "\\boxed{"
    """Text that opens the final answer."""
    answer_close: str = "}"
    """Text that closes the final answer (brackets nest when it matches ``answer_open``'s last character)."""
    compact_prompts: bool = False
    """Use terse prompts (the tiny character-level default is trained on them); verbose instructions otherwise."""

    def __post_init__(self):
        for name in ("delimiter", "answer_open", "answer_close"):
            v = getattr(self, name)
            if not isinstance(v, str) or not v:
                raise ValueError(f"ThoughtFormat.{name}: expected a non-empty string, got {v!r}")
        if self.delimiter in self.answer_open or self.delimiter in self.answer_close:
            raise ValueError(
                f"ThoughtFormat.delimiter {self.delimiter!r} must not occur inside the answer markers "
                f"({self.answer_open!r}, {self.answer_close!r})")

    # ------------------------------------------------------------------ answers
    @property
    def _nests(self) -> bool:
        return _PAIRS.get(self.answer_open[-1]) == self.answer_close

    def _answer_spans(self, text: str) -> list[tuple[int, int, int]]:
        """(start of open marker, start of content, end of content) of every complete answer."""
        spans, i = [], 0
        while True:
            s = text.find(self.answer_open, i)
            if s < 0:
                return spans
            c = s + len(self.answer_open)
            if self._nests:
                opener, depth, j = self.answer_open[-1], 1, c
                while j < len(text) and depth:
                    if text[j] == opener:
                        depth += 1
                    elif text[j] == self.answer_close:
                        depth -= 1
                    j += 1
                if depth:
                    return spans  # unclosed: not an answer (and nothing after it can close)
                e = j - 1
            else:
                e = text.find(self.answer_close, c)
                if e < 0:
                    return spans
            spans.append((s, c, e))
            i = e + len(self.answer_close)

    def extract_answer(self, text: str) -> str | None:
        """Content of the last complete answer marker (stripped), or None when there is none."""
        spans = self._answer_spans(text)
        if not spans:
            return None
        _, c, e = spans[-1]
        return text[c:e].strip()

    def all_answers(self, text: str) -> list[str]:
        """Contents of every complete answer marker, in order."""
        return [text[c:e].strip() for _, c, e in self._answer_spans(text)]

    def box(self, answer: str) -> str:
        """Wrap ``answer`` in the answer markers."""
        return f"{self.answer_open}{answer}{self.answer_close}"

    # ----------------------------------------------------------------- thoughts
    def split(self, text: str) -> list[str]:
        """Complete thoughts of ``text``: pieces ended by the delimiter (delimiter removed, whitespace
        trimmed), plus the trailing piece when it holds an answer. Empty thoughts are kept so that the
        i-th thought always ends at the i-th delimiter."""
        pieces = text.split(self.delimiter)
        out = [p.strip() for p in pieces[:-1]]
        if self.extract_answer(pieces[-1]) is not None:
            out.append(pieces[-1].strip())
        return out

    def join(self, thoughts: list[str]) -> str:
        """Inverse of :meth:`split` for complete thoughts: every thought followed by the delimiter."""
        for i, t in enumerate(thoughts):
            if self.delimiter in t:
                raise ValueError(f"join: thought {i + 1} contains the delimiter {self.delimiter!r}: {t!r}")
        return "".join(t + self.delimiter for t in thoughts)

    def truncate_to_complete(self, text: str) -> str:
        """Cut ``text`` back to its last complete thought: through the last delimiter, or through the
        last answer's close marker if that comes later. Returns "" when there is no complete thought."""
        cut = text.rfind(self.delimiter)
        cut = cut + len(self.delimiter) if cut >= 0 else 0
        spans = self._answer_spans(text)
        if spans:
            cut = max(cut, spans[-1][2] + len(self.answer_close))
        return text[:cut]

    def numbered(self, thoughts: list[str]) -> str:
        """``"Step 1: t1\\nStep 2: t2 ..."`` (for localization prompts)."""
        return "\n".join(f"Step {i}: {t}" for i, t in enumerate(thoughts, 1))

    def to_dict(self) -> dict:
        return {"delimiter": self.delimiter, "answer_open": self.answer_open,
                "answer_close": self.answer_close, "compact_prompts": self.compact_prompts}


DEFAULT_FORMAT = ThoughtFormat()
"""``</thought>`` delimiters and ``\\boxed{}`` answers, verbose prompts (real models)."""

TINY_FORMAT = ThoughtFormat(delimiter=";", answer_open="[", answer_close="]", compact_prompts=True)
"""One-character markers and compact prompts used by the tiny character-level default."""



class ThoughtScanner:
    """Watches text arrive piece by piece (one decoded token at a time) and tells when a thought ends.

    ``current`` is the text of the thought being written. :meth:`append` adds a piece;
    :meth:`take_delimiter` then reports whether a delimiter was completed by that piece (searching only
    the last ``len(piece) + len(delimiter) - 1`` characters, so a step costs O(piece)) and, if so, keeps
    only the text after it. :meth:`answer_closed` reports whether the piece closed an answer.
    """

    __slots__ = ("fmt", "current", "_last")

    def __init__(self, fmt: ThoughtFormat, text: str = ""):
        self.fmt = fmt
        self.current = text.split(fmt.delimiter)[-1]
        self._last = 0

    def restart(self) -> None:
        """Start a new thought without a delimiter (a thought ended by the per-thought token cap)."""
        self.current = ""
        self._last = 0

    def append(self, piece: str) -> None:
        self.current += piece
        self._last = len(piece)

    def answer_closed(self, piece: str) -> bool:
        """The piece holds the answer's close marker and the current thought now has a complete answer."""
        return self.fmt.answer_close in piece and self.fmt.extract_answer(self.current) is not None

    def take_delimiter(self) -> bool:
        """True when the last piece completed a delimiter; the current thought then restarts after it."""
        d = self.fmt.delimiter
        at = self.current.find(d, max(0, len(self.current) - self._last - len(d) + 1))
        if at < 0:
            return False
        self.current = self.current[at + len(d):]
        return True


def thought_ends(pieces, ids: list[int], fmt: ThoughtFormat) -> list[int]:
    """Token offset where each thought of ``ids`` ends (exclusive), from the single-token texts
    ``pieces[id]`` in O(T), plus ``len(ids)`` for a trailing answer thought. Exact for tokenizers whose
    pieces concatenate to the decoded text; :func:`thought_ends_exact` is the reference otherwise."""
    scan, ends = ThoughtScanner(fmt), []
    for t, tok in enumerate(ids, 1):
        scan.append(pieces[tok])
        if scan.take_delimiter():
            ends.append(t)
    if fmt.extract_answer(scan.current) is not None:
        ends.append(len(ids))
    return ends


def thought_ends_exact(decode, ids: list[int], fmt: ThoughtFormat) -> list[int]:
    """:func:`thought_ends` for any tokenizer: the end of thought ``j`` is the smallest ``t`` with
    ``decode(ids[:t])`` holding ``j`` delimiters (binary search, O(T log T) decodes), plus ``len(ids)``
    for a trailing answer thought."""
    text = decode(ids)
    ends, lo = [], 0
    for j in range(1, text.count(fmt.delimiter) + 1):
        a, b = lo + 1, len(ids)
        while a < b:
            m = (a + b) // 2
            if decode(ids[:m]).count(fmt.delimiter) >= j:
                b = m
            else:
                a = m + 1
        ends.append(a)
        lo = a
    if fmt.extract_answer(text.split(fmt.delimiter)[-1]) is not None:
        ends.append(len(ids))
    return ends
