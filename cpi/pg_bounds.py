"""Bounds of policy-gradient and TD theory as pure functions returning the bound's value.

Each docstring states the inequality, its source, and whether the statement was **proved**
here (a proof sketch follows, checked by the tests on random MDPs/MRPs) or **cited** (a
constant taken from the paper that could not be re-derived; the tests then check the
stated form numerically and report its slack). Conventions: unnormalised values, normalised
occupancy (``docs/cpi.md``); ``span = max R - min R`` is the reward scale (the papers
take rewards in [0, 1], i.e. ``span = 1``).

Policy gradient
---------------
* :func:`soft_pi_contraction` / :func:`soft_pi_bound` - fixed-``alpha`` CPI contracts
  ``||V* - V^{pi_k}||_inf`` by ``1 - alpha (1 - gamma)`` (``alpha = 1``: policy iteration, ``gamma``).
* :func:`approx_pi_step_bound` - an ``eps``-greedy improvement step:
  ``||V* - V^{k+1}||_inf <= gamma ||V* - V^k||_inf + eps / (1 - gamma)``.
* :func:`npg_bound` - softmax NPG: ``log|A| / (eta T) + span / ((1 - gamma)^2 T)``.
* :func:`gradient_domination` (direct) and :func:`softmax_gradient_domination`.
* :func:`softmax_pg_bound`, :func:`projected_pg_bound`; smoothness constants.

TD(0) with linear features (Bhandari, Russo & Singal 2018)
---------------------------------------------------------
* :func:`td_inner_lemma`, :func:`td_norm_lemma` - the two key lemmas.
* :func:`mean_path_td_bound`, :func:`mean_path_td_average_bound` - mean-path rates.
* :func:`iid_td_constant_bound`, :func:`iid_td_decreasing_bound`,
  :func:`iid_td_weighted_average_bound` - i.i.d. observation noise.
* :func:`markov_td_bound` - Markov-chain sampling with projection (cited, unconfirmed constant).
* :func:`one_step_improvement_bound` - greedy over a TD-estimated ``Q``.
"""
from __future__ import annotations

import math

import numpy as np

from .checks import discount, positive


def _gamma(gamma):
    return discount(gamma, note=" for these bounds")


def _T(T, lo=1):
    if int(T) != T or T < lo:
        raise ValueError(f"T must be an integer >= {lo}; got {T}")
    return int(T)


# ============================================================================ policy gradient
def soft_pi_contraction(alpha: float, gamma: float) -> float:
    """``1 - alpha (1 - gamma)``: per-step contraction of ``||V* - V^{pi_k}||_inf`` under CPI.

    Update ``pi_{k+1} = (1 - alpha) pi_k + alpha greedy(Q^{pi_k})``, ``alpha`` in (0, 1].
    Source: Bhandari & Russo ("Global Optimality Guarantees...", policy-iteration-like
    updates; ``docs/cpi.md``). **Proved**: with ``T_pi`` the Bellman operator of ``pi`` and
    ``T`` the optimality operator, ``T_{pi_{k+1}} V^k = (1-alpha) V^k + alpha T V^k >= V^k``,
    so ``V^{k+1} >= T_{pi_{k+1}} V^k`` (monotonicity) and
    ``0 <= V* - V^{k+1} <= (1-alpha)(V* - V^k) + alpha (T V* - T V^k)
    <= (1 - alpha + alpha gamma) ||V* - V^k||_inf``.
    """
    alpha = float(alpha)
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha must lie in (0, 1]; got {alpha}")
    return 1.0 - alpha * (1.0 - _gamma(gamma))


def soft_pi_bound(gap0: float, alpha: float, gamma: float, T: int) -> np.ndarray:
    """``(T+1,)`` array ``gap0 * (1 - alpha(1 - gamma))^k``, ``k = 0..T``, bounding
    ``||V* - V^{pi_k}||_inf`` and hence ``V*(rho) - V^{pi_k}(rho)`` (proved, see
    :func:`soft_pi_contraction`; ``alpha = 1`` is policy iteration's ``gamma^k``)."""
    c = soft_pi_contraction(alpha, gamma)
    return positive("gap0", gap0, allow_zero=True) * c ** np.arange(_T(T, 0) + 1)


def approx_pi_step_bound(gap: float, gamma: float, eps: float) -> float:
    """``gamma * gap + eps / (1 - gamma)`` bounds ``||V* - V^{pi_{k+1}}||_inf`` when
    ``gap = ||V* - V^{pi_k}||_inf`` and ``pi_{k+1}`` is ``eps``-greedy w.r.t. ``Q^{pi_k}``:
    ``max_a Q^k(s, a) - sum_a pi_{k+1}(a|s) Q^k(s, a) <= eps`` for every ``s``.

    Source: the approximate-policy-iteration argument behind Bhandari & Russo's linear
    convergence of PG with large steps ("On Linear Convergence...", NPG/PI link); the
    paper's exact constant was not confirmed. **Proved** here:
    ``V^{k+1} - V^k = (I - gamma P_{k+1})^{-1}(T_{k+1} V^k - V^k) >= -eps/(1-gamma)``, so
    ``V^{k+1} - T_{k+1} V^k = gamma P_{k+1}(V^{k+1} - V^k) >= -gamma eps/(1-gamma)`` and
    ``V^{k+1} >= T V^k - eps/(1-gamma)``; then ``V* - V^{k+1} <= gamma ||V* - V^k|| + eps/(1-gamma)``.
    Softmax NPG with large ``eta`` has small ``eps``: it approaches policy iteration.
    """
    g = _gamma(gamma)
    return g * positive("gap", gap, True) + positive("eps", eps, True) / (1.0 - g)


def npg_bound(T, eta: float, gamma: float, A: int, span: float = 1.0, kl0: float | None = None):
    """Softmax NPG from the uniform policy: ``V*(rho) - V^{(T)}(rho) <= log|A|/(eta T) + span/((1-gamma)^2 T)``.

    Source: Agarwal, Kakade, Lee & Mahajan 2021, Theorem 5.3 (rewards in [0, 1], i.e.
    ``span = 1``; any ``rho``, any ``eta > 0``). **Proved** (following their proof): by the
    PDL and ``pi_{t+1} = pi_t exp(eta A_t/(1-gamma)) / Z_t``,
    ``V*(rho) - V^t(rho) = E_{d*} [KL_t - KL_{t+1}] / eta + E_{d*} log Z_t / eta`` with
    ``KL_t = KL(pi*(.|s) || pi_t(.|s))``; ``log Z_t >= 0`` and ``E_{d*} log Z_t / eta <=
    (V^{t+1}(d*) - V^t(d*)) / (1-gamma)`` (improvement lemma, using ``d_{pi,d*} >= (1-gamma) d*``);
    summing, telescoping and ``V^T(d*) - V^0(d*) <= span/(1-gamma)``, ``KL_0 <= log|A|``, and
    monotone improvement (``V^{t+1} >= V^t`` pointwise) give the last-iterate bound.
    ``kl0`` replaces ``log|A|`` for a non-uniform start (``E_{d*} KL(pi*||pi_0)``).
    ``T`` may be an array (``T >= 1``).
    """
    g = _gamma(gamma)
    eta = positive("eta", eta)
    T = np.asarray(T, dtype=np.float64)
    if np.any(T < 1):
        raise ValueError("T must be >= 1 for the NPG bound")
    kl = math.log(int(A)) if kl0 is None else positive("kl0", kl0, True)
    return kl / (eta * T) + positive("span", span, True) / ((1.0 - g) ** 2 * T)


def gradient_domination(stationarity: float, mismatch: float, gamma: float,
                        on_policy: bool = False) -> float:
    """Direct parameterisation: ``V*(rho) - V^pi(rho) <= C * max_{pibar} (pibar - pi)^T grad_pi V^pi(mu)``.

    ``C = ||d_{pi*,rho} / mu||_inf / (1 - gamma)`` (``mismatch = ||d*/mu||``), or, with
    ``on_policy=True``, ``C = ||d_{pi*,rho} / d_{pi,mu}||_inf`` (``mismatch`` is then that ratio).
    ``stationarity`` is :func:`cpi.pg.stationarity_gap`.
    Source: Agarwal et al. 2021, Lemma 4.1. **Proved**: by the PDL,
    ``V*(rho) - V(rho) = sum_s d*(s) sum_a pi*(a|s) A(s,a) / (1-gamma) <= sum_s d*(s) max_a A(s,a)
    / (1-gamma) <= ||d*/d_{pi,mu}|| sum_s d_{pi,mu}(s) max_a A(s,a) / (1-gamma)`` (``max_a A >= 0``)
    ``= ||d*/d_{pi,mu}|| max_pibar (pibar - pi)^T grad``, and ``d_{pi,mu} >= (1-gamma) mu``.
    """
    g = _gamma(gamma)
    C = positive("mismatch", mismatch, True) * (1.0 if on_policy else 1.0 / (1.0 - g))
    return C * positive("stationarity", stationarity, True)


def softmax_gradient_domination(subopt: float, min_prob_opt: float, S: int,
                                mismatch_on_policy: float) -> float:
    """Lower bound on ``||grad_theta V^{pi_theta}(mu)||_2``:
    ``min_s pi(a*(s)|s) / (sqrt(S) ||d_{pi*,rho}/d_{pi,mu}||_inf) * (V*(rho) - V^pi(rho))``.

    Source: the softmax Lojasiewicz inequality (Mei, Xiao, Szepesvari & Schuurmans 2020, Lemma
    8; the non-uniform counterpart of Agarwal et al. Lemma 4.1). **Proved**: keep the ``S``
    entries ``(s, a*(s))`` of the gradient, ``||x||_2 >= ||x||_1/sqrt(S)``, then
    ``sum_s d(s) pi(a*|s) |A(s,a*)| >= min pi(a*|.) ||d*/d||^{-1} sum_s d*(s) A(s, a*(s))`` and the
    PDL ``sum_s d*(s) A(s, a*(s)) = (1-gamma)(V*(rho) - V(rho))`` with the ``1/(1-gamma)`` of the gradient.
    """
    if mismatch_on_policy <= 0 or not np.isfinite(mismatch_on_policy):
        return 0.0
    return (positive("min_prob_opt", min_prob_opt, True) * positive("subopt", subopt, True)
            / (math.sqrt(int(S)) * mismatch_on_policy))


def direct_smoothness(gamma: float, A: int, span: float = 1.0) -> float:
    """``beta = 2 gamma |A| span / (1 - gamma)^3``: smoothness of ``pi -> V^pi(mu)`` (direct).

    Source: Agarwal et al. 2021, Lemma D.3 (rewards in [0, 1]). **Cited**; the tests check
    ``|V(pi + tu) - V(pi) - t grad.u| <= beta t^2 ||u||^2 / 2`` on random policies and directions.
    """
    return 2.0 * _gamma(gamma) * int(A) * positive("span", span, True) / (1.0 - gamma) ** 3


def softmax_smoothness(gamma: float, span: float = 1.0) -> float:
    """``beta = 8 span / (1 - gamma)^3``: smoothness of ``theta -> V^{pi_theta}(mu)`` (softmax).

    Source: Agarwal et al. 2021, Lemma D.4 / Mei et al. 2020, Lemma 7. **Cited**; checked
    numerically like :func:`direct_smoothness`.
    """
    return 8.0 * positive("span", span, True) / (1.0 - _gamma(gamma)) ** 3


def softmax_pg_bound(subopt0: float, min_prob_opt, gamma: float, S: int, mismatch: float,
                     span: float = 1.0) -> np.ndarray:
    """Sub-optimality of exact softmax PG with ``eta = 1/beta`` (``rho = mu``), ``(T+1,)`` array.

    ``1/delta_t >= 1/delta_0 + sum_{j<t} c_j^2 / (2 beta S C^2)`` with ``delta_t = V*(mu) -
    V^t(mu)``, ``c_j = min_s pi_j(a*(s)|s)`` (``min_prob_opt``, the ``T`` values of the run),
    ``C = ||d_{pi*,mu}/mu||_inf / (1 - gamma)`` (``mismatch = ||d_{pi*,mu}/mu||_inf``) and
    ``beta`` = :func:`softmax_smoothness`. Hence ``delta_t <= 2 beta S C^2 / (c^2 t)``, the
    ``O(1/t)`` rate of Mei et al. 2020, Theorem 4. **Proved** given the cited smoothness:
    ascent lemma ``delta_{t+1} <= delta_t - ||grad||^2/(2 beta)``, Lojasiewicz
    (:func:`softmax_gradient_domination` with ``||d*/d_t|| <= C``), then
    ``1/delta_{t+1} >= 1/delta_t + k_t`` from ``delta_{t+1} <= delta_t (1 - k_t delta_t)``.
    """
    c = np.asarray(min_prob_opt, dtype=np.float64)
    beta = softmax_smoothness(gamma, span)
    C = positive("mismatch", mismatch) / (1.0 - gamma)
    k = c ** 2 / (2.0 * beta * int(S) * C ** 2)  # (T,)
    d0 = positive("subopt0", subopt0, True)
    if d0 == 0:
        return np.zeros(c.size + 1)
    inv = 1.0 / d0 + np.concatenate([[0.0], np.cumsum(k)])
    return 1.0 / inv


def projected_pg_bound(T, gamma: float, S: int, A: int, mismatch: float, span: float = 1.0):
    """``min_{1<=t<=T} V*(rho) - V^{pi_t}(rho) <= 8 span sqrt(gamma |S||A| / T) ||d_{pi*,rho}/mu||_inf / (1 - gamma)^3``.

    Projected gradient ascent with ``eta = (1 - gamma)^3 / (2 gamma |A| span)`` (= 1/beta).
    Source: Agarwal et al. 2021, Theorem 4.2 (``T > 64 gamma |S||A| ||d*/mu||^2 / ((1-gamma)^6
    eps^2)``, solved for ``eps``). **Cited, constant not confirmed**: the composition
    (smooth non-convex projected-gradient rate on the gradient mapping, then
    :func:`gradient_domination`, which is proved) is standard, but the constants 64 / 8 and
    which iterate (``t <= T`` vs ``t < T``) could not be checked against the paper; the tests
    and the script check this form on random MDPs and report its (large) slack.
    """
    g = _gamma(gamma)
    T = np.asarray(T, dtype=np.float64)
    if np.any(T < 1):
        raise ValueError("T must be >= 1")
    return (8.0 * positive("span", span, True) * np.sqrt(g * int(S) * int(A) / T)
            * positive("mismatch", mismatch, True) / (1.0 - g) ** 3)


# ============================================================================ TD(0)
def td_inner_lemma(gamma: float, err_D_sq: float) -> float:
    """``(theta* - theta)^T gbar(theta) >= (1 - gamma) ||V_{theta*} - V_theta||_D^2`` (returns the RHS).

    Source: Bhandari, Russo & Singal 2018, Lemma 3. **Proved**: with ``x = Phi(theta* - theta)``,
    ``gbar(theta) = gbar(theta) - gbar(theta*) = Phi^T D (I - gamma P) x``, so the LHS is
    ``||x||_D^2 - gamma <x, P x>_D >= (1 - gamma) ||x||_D^2`` since ``||P x||_D <= ||x||_D`` for
    the stationary ``D`` (Jensen).
    """
    return (1.0 - _gamma(gamma)) * positive("err_D_sq", err_D_sq, True)


def td_norm_lemma(err_D: float, feature_norm: float = 1.0, gamma: float | None = None) -> float:
    """``||gbar(theta)||_2 <= 2 L ||V_{theta*} - V_theta||_D`` with ``L = max_s ||phi(s)||_2``.

    Source: Bhandari, Russo & Singal 2018, Lemma 4 (``L <= 1``). **Proved** (Cauchy-Schwarz):
    ``gbar = E_D[phi(s) (x(s) - gamma (P x)(s))]``, ``||gbar|| <= L ||x - gamma P x||_D <= L (1 +
    gamma) ||x||_D``. With ``gamma`` given, the tighter ``(1 + gamma) L`` is returned.
    """
    c = 2.0 if gamma is None else 1.0 + _gamma(gamma)
    return c * positive("feature_norm", feature_norm) * positive("err_D", err_D, True)


def _td_alpha(alpha, gamma, hi_div):
    alpha = float(alpha)
    hi = (1.0 - gamma) / hi_div
    if not np.isfinite(alpha) or not 0.0 < alpha <= hi * (1 + 1e-12):
        raise ValueError(f"step size alpha must lie in (0, (1-gamma)/{hi_div:g}] = (0, {hi:.6g}] "
                         f"for this bound (features with ||phi(s)||_2 <= 1); got {alpha}")
    return alpha


def mean_path_td_bound(T, alpha: float, gamma: float, omega: float, dist0_sq: float):
    """``||theta* - theta_T||_2^2 <= (1 - alpha omega (1 - gamma))^T ||theta* - theta_0||_2^2
    <= exp(-alpha omega (1-gamma) T) ||theta* - theta_0||^2`` for mean-path TD.

    ``0 < alpha <= (1 - gamma)/4``, ``||phi(s)|| <= 1``, ``omega = lambda_min(Phi^T D Phi)``.
    At ``alpha = (1-gamma)/4`` the rate is ``exp(-omega (1-gamma)^2 T / 4)``.
    Source: Bhandari, Russo & Singal 2018, Theorem 2(a). **Proved**: expand
    ``||theta* - theta_{t+1}||^2`` and use the two lemmas:
    ``... <= ||theta* - theta_t||^2 - (2 alpha (1-gamma) - 4 alpha^2) ||x_t||_D^2`` with
    ``2 alpha (1-gamma) - 4 alpha^2 >= alpha (1-gamma)`` and ``||x_t||_D^2 >= omega ||theta* - theta_t||^2``.
    """
    g = _gamma(gamma)
    alpha = _td_alpha(alpha, g, 4)
    T = np.asarray(T, dtype=np.float64)
    rate = max(1.0 - alpha * positive("omega", omega) * (1.0 - g), 0.0)
    return rate ** T * positive("dist0_sq", dist0_sq, True)


def mean_path_td_average_bound(T, alpha: float, gamma: float, dist0_sq: float):
    """``||V_{theta*} - V_{thetabar_T}||_D^2 <= ||theta* - theta_0||^2 / (alpha (1 - gamma) T)``,
    ``thetabar_T = (1/T) sum_{t<T} theta_t``; ``= 4 ||theta*-theta_0||^2 / ((1-gamma)^2 T)`` at
    ``alpha = (1-gamma)/4``. Source: Bhandari, Russo & Singal 2018, Theorem 2(a) (averaged
    iterate). **Proved**: sum the recursion of :func:`mean_path_td_bound` and apply Jensen.
    """
    g = _gamma(gamma)
    alpha = _td_alpha(alpha, g, 4)
    T = np.asarray(T, dtype=np.float64)
    if np.any(T < 1):
        raise ValueError("T must be >= 1")
    return positive("dist0_sq", dist0_sq, True) / (alpha * (1.0 - g) * T)


def iid_td_constant_bound(T, gamma: float, dist0_sq: float, sigma2: float):
    """i.i.d. TD, constant ``alpha = 1/sqrt(T)``: ``E||V_{theta*} - V_{thetabar_T}||_D^2 <=
    (||theta* - theta_0||^2 + 2 sigma^2) / ((1 - gamma) sqrt(T))``.

    ``sigma^2 = E||g_t(theta*)||^2`` (noise at the fixed point), ``||phi|| <= 1``, and
    ``1/sqrt(T) <= (1 - gamma)/8`` (else ``ValueError``). Source: Bhandari, Russo & Singal
    2018, Theorem 2(b). **Proved**: ``E||g_t(theta)||^2 <= 2 sigma^2 + 8 ||x||_D^2`` (their
    Lemma 5: ``g_t(theta) - g_t(theta*) = phi(s)(x(s) - gamma x(s'))`` and ``s' ~ D``), so
    ``e_{t+1} <= e_t - alpha (1-gamma) E||x_t||_D^2 + 2 alpha^2 sigma^2``; sum and Jensen.
    """
    g = _gamma(gamma)
    T = np.asarray(T, dtype=np.float64)
    if np.any(1.0 / np.sqrt(T) > (1.0 - g) / 8 * (1 + 1e-12)):
        raise ValueError(f"the constant-step i.i.d. TD bound needs alpha = 1/sqrt(T) <= "
                         f"(1-gamma)/8, i.e. T >= {math.ceil(64 / (1 - g) ** 2 - 1e-9)}; got T = {T.min():g}")
    return (positive("dist0_sq", dist0_sq, True) + 2.0 * positive("sigma2", sigma2, True)) / ((1.0 - g) * np.sqrt(T))


def iid_td_decreasing_schedule(gamma: float, omega: float):
    """``(beta, lam)`` of the step ``alpha_t = beta/(lam + t)``: ``beta = 2/((1-gamma) omega)``,
    ``lam = 16/((1-gamma)^2 omega)`` (so ``alpha_0 = (1-gamma)/8``)."""
    g = _gamma(gamma)
    omega = positive("omega", omega)
    return 2.0 / ((1.0 - g) * omega), 16.0 / ((1.0 - g) ** 2 * omega)


def iid_td_decreasing_bound(T, gamma: float, omega: float, dist0_sq: float, sigma2: float):
    """i.i.d. TD with ``alpha_t = beta/(lam + t)`` (:func:`iid_td_decreasing_schedule`):
    ``E||theta* - theta_T||_2^2 <= nu / (lam + T)``, ``nu = max(8 sigma^2/((1-gamma)^2 omega^2),
    lam ||theta* - theta_0||^2)``; ``E||V_{theta*} - V_{theta_T}||_D^2`` is at most the same.

    Source: Bhandari, Russo & Singal 2018, Theorem 2(c). **Proved**: with
    ``alpha_t <= (1-gamma)/8``, ``e_{t+1} <= (1 - alpha_t (1-gamma) omega) e_t + 2 alpha_t^2 sigma^2``
    and ``alpha_t (1-gamma) omega = 2/(lam+t)``; induction ``e_t <= nu/(lam+t)`` needs
    ``nu (k+2) >= 2 beta^2 sigma^2 (k+1)``, true for ``nu >= 2 beta^2 sigma^2``.
    """
    beta, lam = iid_td_decreasing_schedule(gamma, omega)
    nu = max(2.0 * beta ** 2 * positive("sigma2", sigma2, True), lam * positive("dist0_sq", dist0_sq, True))
    return nu / (lam + np.asarray(T, dtype=np.float64))


def iid_td_weighted_schedule(gamma: float, omega: float):
    """``(kappa, lam)`` of the weighted-average scheme: ``alpha_t = 2/(kappa (lam + t))``,
    weights ``w_t = lam + t - 1``, ``kappa = (1-gamma) omega / 2``,
    ``lam = max(3, 32/((1-gamma)^2 omega))`` (so ``alpha_0 <= (1-gamma)/8``)."""
    g = _gamma(gamma)
    omega = positive("omega", omega)
    return (1.0 - g) * omega / 2.0, max(3.0, 32.0 / ((1.0 - g) ** 2 * omega))


def iid_td_weighted_average_bound(T, gamma: float, omega: float, dist0_sq: float, sigma2: float):
    """i.i.d. TD, ``O(1/T)`` averaged iterate: ``E||V_{theta*} - V_{thetatilde_T}||_D^2 <=
    2 / ((1-gamma) W_T) * (kappa (lam-1)(lam-2) ||theta*-theta_0||^2 / 2 + 4 sigma^2 T / kappa)``.

    ``thetatilde_T = sum_{t<T} w_t theta_t / W_T``, ``W_T = sum_{t<T} w_t = T(T-1)/2 + T(lam-1)``,
    schedule of :func:`iid_td_weighted_schedule`. Source: the ``O(1/T)`` i.i.d. rate of
    Bhandari, Russo & Singal 2018, Theorem 2(c), in averaged-iterate form. **Proved** here
    (weighted averaging as in Lacoste-Julien, Schmidt & Bach 2012): split
    ``alpha_t (1-gamma) a_t >= alpha_t(1-gamma) a_t/2 + kappa alpha_t e_t``, divide by ``alpha_t``,
    multiply by ``w_t``; the ``e_t`` terms telescope exactly; Jensen on the weighted mean.
    """
    g = _gamma(gamma)
    kappa, lam = iid_td_weighted_schedule(g, omega)
    T = np.asarray(T, dtype=np.float64)
    if np.any(T < 1):
        raise ValueError("T must be >= 1")
    W = T * (T - 1) / 2.0 + T * (lam - 1.0)
    head = kappa * (lam - 1.0) * (lam - 2.0) * positive("dist0_sq", dist0_sq, True) / 2.0
    return 2.0 / ((1.0 - g) * W) * (head + 4.0 * positive("sigma2", sigma2, True) * T / kappa)


def markov_td_bound(T, gamma: float, dist0_sq: float, G: float, tau_mix: float):
    """Projected TD on one Markov chain, ``alpha = 1/sqrt(T)``, radius ``R >= ||theta*||``:
    ``E||V_{theta*} - V_{thetabar_T}||_D^2 <= (||theta*-theta_0||^2 + G^2 (9 + 12 tau_mix)) /
    (2 sqrt(T) (1 - gamma))`` with ``G = r_max + 2R`` and ``tau_mix = tau^mix(1/sqrt(T))``.

    Source: Bhandari, Russo & Singal 2018, Theorem 3(a). **Cited, constants not confirmed**
    (recalled from the paper, not re-derived: the mixing-time argument was not reproduced);
    the script checks this form on random MRPs and reports its slack.
    """
    g = _gamma(gamma)
    T = np.asarray(T, dtype=np.float64)
    return ((positive("dist0_sq", dist0_sq, True) + positive("G", G, True) ** 2 * (9.0 + 12.0 * positive("tau_mix", tau_mix, True)))
            / (2.0 * np.sqrt(T) * (1.0 - g)))


def one_step_improvement_bound(adv_gap, d_new, eps: float, gamma: float) -> float:
    """``V^{pi'}(rho) - V^{pi_b}(rho) >= (E_{s~d_{pi',rho}} Delta(s) - 2 eps) / (1 - gamma)``.

    ``pi' = greedy(Qhat)``, ``eps = max_{s,a} |Qhat(s,a) - Q^{pi_b}(s,a)|``, ``Delta(s) = max_a
    A^{pi_b}(s, a) >= 0`` (``adv_gap``, (S,)), ``d_new = d_{pi',rho}`` (S,). So ``pi'`` improves
    on ``pi_b`` everywhere (``V^{pi'} >= V^{pi_b}``) whenever ``2 eps <= min_s Delta(s)``, and it is
    exactly the policy-iteration step when ``2 eps`` is below the action gap of ``Q^{pi_b}``.
    Source: the one-step policy improvement of "Optimizing Long-term Value for Auction-Based
    Recommender Systems via On-Policy RL" (greedy over a TD-learned ``Q`` of the base policy).
    **Proved**: ``Q^b(s, a') >= Qhat(s, a') - eps >= Qhat(s, a*) - eps >= Q^b(s, a*) - 2 eps`` so
    ``A^b(s, pi'(s)) >= Delta(s) - 2 eps``; the PDL turns this into the bound (and, state-wise,
    ``V^{pi'} - V^b = (I - gamma P_{pi'})^{-1} A^b(., pi'(.)) >= (min Delta - 2 eps)/(1-gamma)``).
    """
    g = _gamma(gamma)
    adv_gap = np.asarray(adv_gap, dtype=np.float64)
    d_new = np.asarray(d_new, dtype=np.float64)
    if adv_gap.shape != d_new.shape:
        raise ValueError(f"adv_gap and d_new must have the same shape; got {adv_gap.shape}, {d_new.shape}")
    return float((d_new @ adv_gap - 2.0 * positive("eps", eps, True)) / (1.0 - g))
