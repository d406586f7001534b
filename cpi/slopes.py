"""Log-log slopes with confidence intervals, right-censored points kept (Tobit fit).

A rate ``y ~ p^b`` is read off as the slope ``b`` of ``log y = a + b log p + sigma eps``,
``eps ~ N(0, 1)``, fitted over independent instances (one point each). A point is
*right-censored* when the experiment only knows ``y >= c`` (a run stopped by its budget before
the target): dropping it biases the slope toward 0, plugging in ``c`` does too. The censored
(Tobit) likelihood uses ``P(log y >= log c) = 1 - Phi((log c - a - b log p) / sigma)`` for it.

Intervals: Wald with the observed information, scaled by ``k/(k-2)`` and read from Student's
``t_{k-2}`` (``k`` points); with no censored point the fit *is* ordinary least squares and the
interval is exactly the OLS t-interval.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import optimize, special, stats

__all__ = ["SlopeFit", "fit_loglog", "loglog_slope", "min_detectable_slope"]


@dataclass(frozen=True)
class SlopeFit:
    slope: float  # b in log y = a + b log x
    ci_lo: float  # 95% (or `level`) interval for b
    ci_hi: float
    se: float  # standard error of b (scaled as the interval)
    intercept: float
    sigma: float  # residual sd of log y
    n: int  # points fitted (independent instances)
    n_censored: int  # of which right-censored
    method: str  # "ols" | "tobit" | "none" (fewer than 3 usable points)

    def asdict(self) -> dict:
        return asdict(self)


def _nan_fit(n, nc):
    nan = float("nan")
    return SlopeFit(nan, nan, nan, nan, nan, nan, n, nc, "none")


def _check(x, y, censored):
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    c = np.zeros(x.shape, np.bool_) if censored is None else np.asarray(censored, dtype=np.bool_)
    if x.ndim != 1 or x.shape != y.shape or c.shape != x.shape:
        raise ValueError(f"x, y and censored must be 1-d of one length; got {x.shape}, {y.shape}, "
                         f"{c.shape}")
    if np.any(~(x > 0)) or np.any(~(y > 0)) or not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("x and y must be finite and > 0 (log-log fit)")
    return np.log(x), np.log(y), c


def _negloglik(theta, X, z, cens):
    """Tobit negative log-likelihood of ``theta = (a, b, log sigma)`` and its gradient."""
    a, b, log_s = theta
    s = np.exp(log_s)
    r = (z - a - b * X) / s
    ru, rc = r[~cens], r[cens]
    lsf = special.log_ndtr(-rc)  # log(1 - Phi(r))
    nll = 0.5 * np.sum(ru ** 2) + ru.size * (log_s + 0.5 * np.log(2 * np.pi)) - np.sum(lsf)
    lam = np.exp(-0.5 * rc ** 2 - 0.5 * np.log(2 * np.pi) - lsf)  # inverse Mills ratio phi/(1 - Phi)
    Xu, Xc = X[~cens], X[cens]
    grad = -np.array([ru.sum() / s + lam.sum() / s,
                      (ru * Xu).sum() / s + (lam * Xc).sum() / s,
                      np.sum(ru ** 2) - ru.size + np.sum(lam * rc)])
    return nll, grad


def _hessian(grad, theta, h=1e-6):
    """Central differences of the analytic gradient, symmetrised."""
    k = theta.size
    H = np.empty((k, k))
    for i in range(k):
        e = np.zeros(k)
        e[i] = h
        H[i] = (grad(theta + e) - grad(theta - e)) / (2 * h)
    return 0.5 * (H + H.T)


def fit_loglog(x, y, censored=None, level: float = 0.95) -> SlopeFit:
    """Slope of ``log y`` on ``log x`` with a ``level`` interval; ``censored[i]``: ``y_i`` is a lower
    bound. OLS when nothing is censored, else the Tobit maximum-likelihood fit (module doc).

    Needs at least 3 points, 2 distinct ``x`` and one uncensored point; otherwise every field is
    NaN and ``method == "none"``.
    """
    X, z, cens = _check(x, y, censored)
    k, nc = X.size, int(cens.sum())
    if k < 3 or np.ptp(X) == 0 or nc == k:
        return _nan_fit(k, nc)
    t = stats.t.ppf(0.5 + level / 2, k - 2)
    ols = stats.linregress(X, z)
    if nc == 0:
        resid = z - ols.intercept - ols.slope * X
        sigma = float(np.sqrt(np.sum(resid ** 2) / (k - 2)))
        return SlopeFit(float(ols.slope), float(ols.slope - t * ols.stderr),
                        float(ols.slope + t * ols.stderr), float(ols.stderr),
                        float(ols.intercept), sigma, k, 0, "ols")
    s0 = max(float(np.std(z - ols.intercept - ols.slope * X)), 0.05 * max(np.ptp(z), 1e-3))
    theta0 = np.array([ols.intercept, ols.slope, np.log(s0)])
    f = lambda th: _negloglik(th, X, z, cens)  # noqa: E731
    res = optimize.minimize(f, theta0, jac=True, method="BFGS", options={"gtol": 1e-9})
    theta = res.x
    try:
        cov = np.linalg.inv(_hessian(lambda th: f(th)[1], theta)) * k / (k - 2)
        se = float(np.sqrt(cov[1, 1])) if cov[1, 1] > 0 else float("nan")
    except np.linalg.LinAlgError:
        se = float("nan")
    b = float(theta[1])
    return SlopeFit(b, b - t * se, b + t * se, se, float(theta[0]), float(np.exp(theta[2])),
                    k, nc, "tobit")


def loglog_slope(x, y) -> float:
    """Least-squares slope of ``log y`` on ``log x`` (no interval): a prediction's slope over a design."""
    X, z, _ = _check(x, y, None)
    return float(stats.linregress(X, z).slope) if X.size >= 2 and np.ptp(X) > 0 else float("nan")


def min_detectable_slope(x, sd_log_y: float, *, alpha: float = 0.05, power: float = 0.8,
                         contrast: bool = False) -> float:
    """Smallest slope difference a fit over the design ``x`` detects with the given power.

    ``(t_{1-alpha/2, k-2} + t_{power, k-2}) * sd_log_y / sqrt(sum (log x - mean)^2)``: a slope
    against a fixed value (``contrast=False``) or the difference of two independent slopes with
    the same design and noise (``contrast=True``: times ``sqrt(2)``). ``sd_log_y`` is the noise of
    one instance's ``log y`` (from a pilot run).
    """
    X = np.log(np.asarray(x, dtype=np.float64))
    k = X.size
    if k < 3:
        raise ValueError(f"need at least 3 design points; got {k}")
    se = sd_log_y / np.sqrt(np.sum((X - X.mean()) ** 2))
    m = (stats.t.ppf(1 - alpha / 2, k - 2) + stats.t.ppf(power, k - 2)) * se
    return float(m * np.sqrt(2.0) if contrast else m)
