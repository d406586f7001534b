"""Scalar argument checks (``cpi.checks``): accepted ranges and the messages."""
import math

import numpy as np
import pytest

from cpi import checks


def test_mixture_weight_is_a_closed_unit_interval():
    assert checks.mixture_weight(0) == 0.0 and checks.mixture_weight(1) == 1.0
    for bad in (-0.1, 1.5, math.nan):
        with pytest.raises(ValueError, match=r"alpha must lie in \[0, 1\]"):
            checks.mixture_weight(bad)


def test_step_size_is_finite_positive_and_a_number():
    assert checks.step_size(np.float32(0.5), "eta") == 0.5
    assert checks.step_size(1.0, hi=1.0) == 1.0
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match=r"step size eta must be finite and lie in \(0, inf\)"):
            checks.step_size(bad, "eta")
    with pytest.raises(ValueError, match=r"\(0, 1.0\]"):
        checks.step_size(1.5, hi=1.0)
    with pytest.raises(TypeError, match="alpha must be a real number; got '0.1'"):
        checks.step_size("0.1")
    with pytest.raises(TypeError, match="real number"):
        checks.step_size(None)


def test_positive_and_discount():
    assert checks.positive("H", 3) == 3.0 and checks.positive("eps", 0, allow_zero=True) == 0.0
    with pytest.raises(ValueError, match="H must be finite and > 0; got 0.0"):
        checks.positive("H", 0)
    with pytest.raises(ValueError, match="eps must be finite and >= 0"):
        checks.positive("eps", -1, allow_zero=True)
    assert checks.discount(0.0) == 0.0 and checks.discount(1.0, allow_one=True) == 1.0
    with pytest.raises(ValueError, match=r"gamma must lie in \[0, 1\) here; got 1.0"):
        checks.discount(1.0, note=" here")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        checks.discount(math.nan, allow_one=True)
