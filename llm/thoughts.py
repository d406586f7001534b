"""Thought format: how a response is cut into thoughts and where its answer sits.

A response is a sequence of *thoughts*, each ended by a delimiter (default ``</thought>``),
with the final answer in ``\\boxed{...}`` (DESIGN.md section 4, "Thought format")::

    t_1 <delim> t_2 <delim> ... t_n <delim>? ... \\boxed{a}

The markers belong to a format object so that the tiny offline default can use
one-character markers (``TINY_FORMAT``) while real models use ``</thought>`` and
``\\boxed{}`` (``DEFAULT_FORMAT``). Everything here is pure string processing.
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

