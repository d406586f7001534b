"""Scalar argument checks shared by the bound and optimiser modules (one home each).

Each returns the value as a Python ``float`` or raises ``ValueError`` (``TypeError`` for a
value that is not a real number) naming the argument and its allowed range:

* :func:`mixture_weight` - the CPI mixture step ``alpha`` of ``pi_new = (1 - alpha) pi +
  alpha pi2``: a weight in ``[0, 1]`` (``alpha = 0`` is a valid, null, step).
* :func:`step_size` - a gradient / TD step size ``eta`` or ``alpha``: finite and in
  ``(0, hi]`` (``hi`` optional). Stricter than a plain float cast: a string such as ``"0.1"``
  is a ``TypeError``, not silently converted.
* :func:`positive` - a finite scale (``r_max``, ``H``, ``tau``, a norm) that is ``> 0``, or
  ``>= 0`` with ``allow_zero``.
* :func:`discount` - ``gamma`` in ``[0, 1)``, or ``[0, 1]`` with ``allow_one``.

NaN fails every check (all comparisons with NaN are false).
"""
from __future__ import annotations

import numpy as np

__all__ = ["mixture_weight", "step_size", "positive", "discount"]


def _real(name: str, v) -> float:
    if isinstance(v, (str, bytes)):
        raise TypeError(f"{name} must be a real number; got {v!r}")
    try:
        return float(v)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number; got {v!r}") from None


def mixture_weight(alpha, name: str = "alpha") -> float:
    """A mixture weight in ``[0, 1]`` (the CPI step ``alpha``)."""
    alpha = _real(name, alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1]; got {alpha}")
    return alpha


def step_size(v, name: str = "alpha", hi: float | None = None) -> float:
    """A step size: a finite real number in ``(0, hi]`` (``(0, inf)`` without ``hi``)."""
    v = _real(name, v)
    if not np.isfinite(v) or v <= 0.0 or (hi is not None and v > hi):
        rng = f"(0, {hi}]" if hi is not None else "(0, inf)"
        raise ValueError(f"step size {name} must be finite and lie in {rng}; got {v}")
    return v


def positive(name: str, v, allow_zero: bool = False) -> float:
    """A finite real number ``> 0`` (``>= 0`` with ``allow_zero``)."""
    v = _real(name, v)
    if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{name} must be finite and {'>= 0' if allow_zero else '> 0'}; got {v}")
    return v


def discount(gamma, allow_one: bool = False, note: str = "") -> float:
    """``gamma`` in ``[0, 1)`` (``[0, 1]`` with ``allow_one``); ``note`` ends the message."""
    gamma = _real("gamma", gamma)
    if not (0.0 <= gamma and (gamma <= 1.0 if allow_one else gamma < 1.0)):
        raise ValueError(f"gamma must lie in [0, {'1]' if allow_one else '1)'}{note}; got {gamma}")
    return gamma
