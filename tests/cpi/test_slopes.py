"""Log-log slopes: OLS equivalence, the censored (Tobit) fit on synthetic censored data, MDE."""
import numpy as np
import pytest
from scipy import stats

from cpi.slopes import fit_loglog, loglog_slope, min_detectable_slope


def test_without_censoring_it_is_ols_with_the_t_interval():
    rng = np.random.default_rng(0)
    x = np.geomspace(0.05, 0.8, 9)
    y = np.exp(2 - 1.5 * np.log(x) + 0.2 * rng.standard_normal(9))
    f = fit_loglog(x, y)
    r = stats.linregress(np.log(x), np.log(y))
    t = stats.t.ppf(0.975, 7)
    assert f.method == "ols" and f.n_censored == 0
    assert f.slope == pytest.approx(r.slope, abs=1e-12)
    assert (f.ci_lo, f.ci_hi) == pytest.approx((r.slope - t * r.stderr, r.slope + t * r.stderr), abs=1e-12)
    assert loglog_slope(x, y) == pytest.approx(r.slope, abs=1e-12)


def test_censored_fit_recovers_a_known_slope():
    """y = e^1 p^-2 with log-normal noise, right-censored at a budget: the budget cuts the small-p
    end. The Tobit fit recovers -2; plugging the budget in (or dropping the censored runs) does not."""
    rng = np.random.default_rng(1)
    x = np.geomspace(0.05, 0.8, 12)
    cap = np.exp(1 - 2 * np.log(0.15))
    tobit, plug, drop, cover = [], [], [], 0
    for _ in range(100):
        y = np.exp(1 - 2 * np.log(x) + 0.3 * rng.standard_normal(x.size))
        cens = y > cap
        yc = np.minimum(y, cap)
        f = fit_loglog(x, yc, cens)
        tobit.append(f.slope)
        cover += f.ci_lo <= -2 <= f.ci_hi
        plug.append(fit_loglog(x, yc).slope)
        drop.append(fit_loglog(x[~cens], yc[~cens]).slope)
    assert f.method == "tobit" and f.n_censored > 0
    assert np.mean(tobit) == pytest.approx(-2.0, abs=0.06)  # sd of the mean ~0.02
    assert np.mean(plug) > -1.6  # plugging the budget in flattens the slope
    assert cover / 100 >= 0.85  # Wald interval: nominal 0.95, measured ~0.9 with ~40% censored


def test_degenerate_inputs():
    f = fit_loglog([0.1, 0.2, 0.4], [1, 2, 3], [True, True, True])
    assert f.method == "none" and np.isnan(f.slope)
    assert fit_loglog([0.1, 0.2], [1, 2]).method == "none"
    with pytest.raises(ValueError, match="> 0"):
        fit_loglog([0.1, 0.2, 0.0], [1, 2, 3])
    with pytest.raises(ValueError, match="one length"):
        fit_loglog([0.1, 0.2, 0.3], [1, 2])


def test_min_detectable_slope_by_hand():
    x = np.exp([0.0, 1.0, 2.0])  # sum of squares of log x about the mean = 2
    m = (stats.t.ppf(0.975, 1) + stats.t.ppf(0.8, 1)) * 0.5 / np.sqrt(2)
    assert min_detectable_slope(x, 0.5) == pytest.approx(m)
    assert min_detectable_slope(x, 0.5, contrast=True) == pytest.approx(m * np.sqrt(2))
