"""Final-answer comparison: exact normalisation of numbers and text (:func:`normalize_answer`) and
symbolic equivalence with ``math-verify`` under a bounded input size (:func:`math_equal`)."""
from __future__ import annotations

import re
from fractions import Fraction

_NUM_CLEAN = re.compile(r"\\!|\\,|\\ |\\%|%|\$|\\\$|,|\s")


def normalize_answer(s: str) -> str:
    """Canonical text of an answer: strip ``\\text{}``, ``$``, thousands commas, spaces, a trailing
    period; numbers (integers, decimals, ``a/b``, ``\\frac{a}{b}``) become an exact reduced fraction
    string (``"0.50"``, ``"1/2"`` and ``"\\frac{1}{2}"`` all give ``"1/2"``; ``"3.0"`` gives ``"3"``)."""
    s = s.strip()
    s = re.sub(r"\\text\{([^}]*)\}", r"\1", s)
    s = re.sub(r"\\(?:d|t)?frac\{([^{}]+)\}\{([^{}]+)\}", r"\1/\2", s)
    s = _NUM_CLEAN.sub("", s).rstrip(".")
    if s.startswith("+"):
        s = s[1:]
    try:
        if "/" in s:
            a, b = s.split("/")
            q = Fraction(Fraction(a), Fraction(b))
        else:
            q = Fraction(s)
    except (ValueError, ZeroDivisionError):
        return s.lower()
    return str(q.numerator) if q.denominator == 1 else f"{q.numerator}/{q.denominator}"


def answers_match(pred: str | None, gold: str) -> bool:
    """True iff both answers normalise to the same text (see :func:`normalize_answer`)."""
    return pred is not None and normalize_answer(pred) == normalize_answer(gold)


MATH_MAX_CHARS = 200
"""Longest answer (either side) handed to math-verify; longer ones are compared as text only."""
_TOO_HEAVY = re.compile(r"\d{41}|(\^|\*\*)[^^*]*(\^|\*\*)[^^*]*(\^|\*\*)|\d{4,}\s*!")


class _NoTimeoutNotice:
    """Drops math-verify's notice that its timeout is off (it is off on purpose, see :func:`math_equal`)."""

    def filter(self, record) -> bool:
        return not str(record.msg).startswith("Timeout is disabled")


def _math_verify():
    import logging

    import math_verify

    for name in ("math_verify.parser", "math_verify.grader"):
        lg = logging.getLogger(name)
        if not any(isinstance(f, _NoTimeoutNotice) for f in lg.filters):
            lg.addFilter(_NoTimeoutNotice())
    return math_verify


def math_equal(pred: str | None, gold: str) -> bool:
    """Symbolic equivalence of two final answers with ``math-verify`` (LaTeX or plain expressions, e.g.
    ``\\frac{\\sqrt2}{2}`` and ``\\sqrt{2}/2``, ``1/2`` and ``0.5``, ``x^2+1`` and ``1+x^2``).

    math-verify bounds its own work with ``signal.alarm``, which raises outside the main thread (a
    tokenizer or data-loader thread, some launchers); it is called here with that timeout disabled, and
    the work is bounded instead by refusing inputs sympy could take long on: more than
    :data:`MATH_MAX_CHARS` characters, three or more exponents, a number of more than 40 digits, or the
    factorial of a number of four or more digits. Refused inputs are not equal (the caller's text
    comparison already ran). Implements: Hugging Face math-verify (Kydlicek et al., 2025).
    """
    if pred is None:
        return False
    for s in (pred, gold):
        if len(s) > MATH_MAX_CHARS or _TOO_HEAVY.search(s):
            return False
    mv = _math_verify()
    g = mv.parse(f"${gold}$", parsing_timeout=None)
    p = mv.parse(f"${pred}$", parsing_timeout=None)
    if not g or not p:
        return False
    return bool(mv.verify(g, p, timeout_seconds=None))
