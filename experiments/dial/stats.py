"""Statistics of the reset experiment on a transformer: intervals, Holm, power, crossings.

Pure functions of numbers (each tested in ``tests/test_llm_resets.py``):

* :func:`wilson` - Wilson score interval of a proportion (Wilson 1927);
* :func:`t_interval` - mean and 95% Student-t half-width; :func:`paired_test` - one-sample t-test of
  per-seed paired differences (mean, half-width at a given level, two-sided p);
* :func:`holm` - Holm's step-down adjusted p-values (Holm 1979) and :func:`holm_levels` - the confidence
  level of each contrast's interval that agrees with Holm's decisions (the contrast of rank ``i`` among
  ``m``, smallest p first, gets level ``1 - alpha / (m - i + 1)``: an interval excludes 0 exactly when
  its step of the procedure rejects, as long as the earlier steps rejected);
* :func:`mde_paired`, :func:`seeds_needed` - the minimum detectable effect of a paired t-test and the
  number of seeds that detects a given effect (two-sided ``alpha``, power ``1 - beta``, noncentral-t
  approximation ``(t_{1-alpha/2, n-1} + t_{1-beta, n-1}) sd / sqrt(n)``);
* :func:`crossing` - the first interpolated crossing of a target by a curve (None: censored, never
  reached); :func:`area` - the normalised area under a curve (its mean height over the x range);
* :func:`samples_for_snr` - prompts needed for a mean estimate with a given signal-to-noise ratio.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import stats

from llm.stats import wilson_interval as wilson  # noqa: F401  (re-exported)


def t_interval(x: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Mean and the half-width of a Student-t interval at ``level`` (half-width nan with one value)."""
    x = np.asarray(x, dtype=float)
    if x.size == 0:
        return float("nan"), float("nan")
    m = float(x.mean())
    if x.size < 2:
        return m, float("nan")
    return m, float(stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))


def paired_test(d: Sequence[float], level: float = 0.95) -> dict:
    """One-sample t-test of paired differences ``d`` (one per seed): mean, sd, n, the half-width of the
    interval at ``level`` and the two-sided p-value of "mean = 0" (nan with fewer than two values)."""
    d = np.asarray(d, dtype=float)
    n = int(d.size)
    mean, half = t_interval(d, level)
    if n < 2:
        return dict(mean=mean, sd=float("nan"), n=n, half=float("nan"), level=level, p=float("nan"))
    sd = float(d.std(ddof=1))
    if sd == 0.0:
        p = 1.0 if mean == 0.0 else 0.0
    else:
        p = float(2 * stats.t.sf(abs(mean) / (sd / math.sqrt(n)), n - 1))
    return dict(mean=mean, sd=sd, n=n, half=half, level=level, p=p)


def holm(pvals: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order (nan stays nan and counts as not rejected)."""
    p = np.asarray(pvals, dtype=float)
    m = len(p)
    order = sorted(range(m), key=lambda i: (math.isnan(p[i]), p[i]))
    adj = [float("nan")] * m
    running = 0.0
    for rank, i in enumerate(order):
        if math.isnan(p[i]):
            continue
        running = max(running, min(1.0, (m - rank) * p[i]))
        adj[i] = running
    return adj


def holm_levels(pvals: Sequence[float], alpha: float = 0.05) -> list[float]:
    """Confidence level of each contrast's interval under Holm: rank ``i`` (0-based, smallest p first) gets
    ``1 - alpha / (m - i)``. A nan p-value gets the most conservative level ``1 - alpha / m``."""
    p = np.asarray(pvals, dtype=float)
    m = len(p)
    order = sorted(range(m), key=lambda i: (math.isnan(p[i]), p[i]))
    out = [1 - alpha / m] * m
    for rank, i in enumerate(order):
        if not math.isnan(p[i]):
            out[i] = 1 - alpha / (m - rank)
    return out


def mde_paired(sd: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """Minimum detectable mean difference of a two-sided paired t-test with ``n`` pairs of standard deviation
    ``sd`` at level ``alpha`` and the given power (inf with fewer than two pairs)."""
    if n < 2 or not math.isfinite(sd):
        return float("inf")
    return float((stats.t.ppf(1 - alpha / 2, n - 1) + stats.t.ppf(power, n - 1)) * sd / math.sqrt(n))


def seeds_needed(delta: float, sd: float, alpha: float = 0.05, power: float = 0.8, cap: int = 10_000) -> int:
    """Smallest ``n >= 2`` whose :func:`mde_paired` is at most ``|delta|`` (``cap`` when none below it is)."""
    if delta == 0 or not math.isfinite(sd) or not math.isfinite(delta):
        return cap
    for n in range(2, cap + 1):
        if mde_paired(sd, n, alpha, power) <= abs(delta):
            return n
    return cap


def crossing(x: Sequence[float], y: Sequence[float], target: float) -> float | None:
    """The first ``x`` where the piecewise-linear curve ``(x, y)`` reaches ``target`` (``y >= target``),
    interpolated between the two evaluations around it; None when it never does (a censored run)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"crossing: x and y must be 1-D of one length, got {x.shape} and {y.shape}")
    for j in range(len(x)):
        if y[j] >= target:
            if j == 0:
                return float(x[0])
            return float(x[j - 1] + (target - y[j - 1]) * (x[j] - x[j - 1]) / (y[j] - y[j - 1]))
    return None


def area(x: Sequence[float], y: Sequence[float]) -> float:
    """Normalised area under the piecewise-linear curve: ``int y dx / (x_last - x_first)`` (the mean
    height over the range; ``y[0]`` for a single point)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) == 1:
        return float(y[0])
    return float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)) / (x[-1] - x[0]))


def samples_for_snr(mean: float, sd: float, snr: float = 2.0) -> float:
    """Independent draws needed for the mean of draws with this mean and sd to reach ``mean / se = snr``:
    ``(snr sd / mean)^2`` (inf when the mean is not positive: the draws point away on average)."""
    if not mean > 0:
        return float("inf")
    return float((snr * sd / mean) ** 2)
