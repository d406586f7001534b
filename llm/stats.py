"""Small statistics shared by the evaluations (`llm.tiny`, `llm.ics`, `experiments/dial`).

Implements: Wilson (1927), "Probable inference, the law of succession, and statistical inference".
"""
from __future__ import annotations

import math

Z95 = 1.959963984540054
"""Two-sided 95% normal quantile."""


def wilson_interval(k: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval (95% by default) of ``k`` successes in ``n`` trials; ``(nan, nan)`` when n = 0.

    ``(p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)``, clipped to [0, 1] and exact at the ends
    (``lo = 0`` when k = 0, ``hi = 1`` when k = n)."""
    if n < 0 or not 0 <= k <= n:
        raise ValueError(f"wilson_interval: need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return float("nan"), float("nan")
    p, zz = k / n, z * z
    mid = (p + zz / (2 * n)) / (1 + zz / n)
    half = z * math.sqrt(p * (1 - p) / n + zz / (4 * n * n)) / (1 + zz / n)
    return (0.0 if k == 0 else max(0.0, mid - half)), (1.0 if k == n else min(1.0, mid + half))
