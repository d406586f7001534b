"""Improvement bounds for Conservative Policy Iteration, as pure functions.

Conventions (``docs/cpi.md``): values ``V``, ``Q`` and advantages ``A = Q - V`` are
**unnormalised**; occupancies ``d_{pi,mu}`` are **normalised**; the effective horizon ``h`` is
``1/(1-gamma)`` (discounted) or the expected episode length (episodic, ``gamma == 1``), so that
the performance-difference lemma reads ``V^{pi2}(mu) - V^pi(mu) = h_{pi2,mu} E_{d_{pi2,mu}}
E_{pi2}[A_pi]``.

Notation shared by every function (all arrays are float64):

* ``adv_s`` (S,) - the per-state advantage of ``pi2`` over ``pi``:
  ``adv_s(s) = E_{a~pi2(.|s)} A_pi(s, a)`` (:func:`state_advantage`).
* ``Adv = E_{s~d_{pi,mu}} adv_s(s)`` - Kakade & Langford's policy advantage.
* ``eps = max_s |adv_s(s)|`` (:func:`kl_eps`), over *all* states.
* ``alpha`` in ``[0, 1]`` - the mixture step ``pi_new = (1 - alpha) pi + alpha pi2``.
* ``H`` - a bound on the episode length (finite-horizon forms), ``L = h_{pi,mu}`` the expected
  length, so that ``L * Adv = sum_{t<H} E_pi[adv_s(s_t)] = H * Adv_H`` (``Adv_H``: the
  per-depth advantages averaged over the ``H`` depths).

Every bound returns the value of its right-hand side: a *lower* bound on the realised gain
``V^{pi_new}(mu) - V^pi(mu)`` (improvement bounds) or an *upper* bound on a suboptimality
(final guarantee). ``experiments/check_bounds.py`` and ``tests/cpi/test_bounds.py`` check each
against the exact realised quantity with the tolerance :func:`tolerance`.
"""
from __future__ import annotations

import numpy as np

from .checks import discount, mixture_weight, positive

__all__ = [
    "tolerance", "state_advantage", "kl_eps", "pdl_gain", "kl_lower_bound", "kl_step_size",
    "kl_guaranteed_gain", "kl_iteration_bound", "finite_horizon_lower_bound",
    "finite_horizon_step_size", "finite_horizon_guaranteed_gain", "spi_lower_bound", "spi_step_size",
    "spi_finite_horizon_lower_bound", "spi_finite_horizon_step_size", "policy_distance",
    "advantage_span", "mismatch_coefficient", "final_guarantee", "final_guarantee_mu",
    "rr_sample_complexity", "caro_sample_complexity", "rr_improvement", "caro_improvement",
]


_EPISODIC = " (episodic MDPs use the finite-horizon forms)"


def _check_gamma(gamma):
    return discount(gamma, note=_EPISODIC)


def tolerance(V) -> float:
    """Tolerance for comparing a bound with a realised value: ``1e-9 * max(1, ||V||_inf)``.

    ``docs/cpi.md``, "Tolerances": at gamma = 0.999 float64 round-off of a zero gain is ~1e-9 when
    ``||V||`` is ~1e4, so the tolerance scales with the values compared.
    """
    return 1e-9 * max(1.0, float(np.max(np.abs(V))) if np.size(V) else 1.0)


# ----------------------------------------------------------------------------- basics
def state_advantage(pi2, adv) -> np.ndarray:
    """``adv_s(s) = sum_a pi2(a|s) A_pi(s, a)`` (S,), from ``pi2`` (S, A) and ``A_pi`` (S, A)."""
    pi2 = np.asarray(pi2, dtype=np.float64)
    adv = np.asarray(adv, dtype=np.float64)
    if pi2.shape != adv.shape or pi2.ndim != 2:
        raise ValueError(f"pi2 and adv must both have shape (S, A); got {pi2.shape} and {adv.shape}")
    return np.einsum("sa,sa->s", pi2, adv)


def kl_eps(adv_s) -> float:
    """``eps = max_s |E_{a~pi2} A_pi(s, a)|`` (Kakade & Langford 2002, Theorem 4.1)."""
    return float(np.max(np.abs(adv_s))) if np.size(adv_s) else 0.0


def pdl_gain(d2, adv_s, horizon2) -> float:
    """Performance-difference lemma: the *exact* gain ``V^{pi2}(mu) - V^pi(mu)``.

    ``V^{pi2}(mu) - V^pi(mu) = h_{pi2,mu} * E_{s~d_{pi2,mu}} adv_s(s)``, with ``d2 = d_{pi2,mu}``
    (normalised, (S,)) and ``horizon2 = h_{pi2,mu}`` (``1/(1-gamma)`` or the expected length
    of ``pi2``'s episodes). Implements: Kakade & Langford 2002, Lemma 6.1 (in the unnormalised
    convention of ``docs/cpi.md``).
    """
    return float(horizon2) * float(np.dot(d2, adv_s))


# ----------------------------------------------------------------------------- Kakade & Langford
def kl_lower_bound(Adv, eps, alpha, gamma) -> float:
    """K&L lower bound on the gain of the mixture ``(1-alpha) pi + alpha pi2``.

    ``V^{new}(mu) - V^pi(mu) >= alpha/(1-gamma) * (Adv - 2 alpha gamma eps / (1 - gamma(1-alpha)))``
    with ``Adv`` the policy advantage under ``d_{pi,mu}`` and ``eps = max_s |adv_s|``.
    Implements: Kakade & Langford 2002, Theorem 4.1 (their normalised ``eta`` and ``A`` give the
    same inequality after multiplying by ``1/(1-gamma)``). Discounted only (``gamma < 1``).
    """
    gamma = _check_gamma(gamma)
    alpha = mixture_weight(alpha)
    denom = 1.0 - gamma * (1.0 - alpha)
    if denom == 0.0:  # gamma = 1 - 0 impossible here; alpha = 0 and gamma = 0 gives 1
        return 0.0
    return alpha / (1.0 - gamma) * (Adv - 2.0 * alpha * gamma * eps / denom)


def kl_step_size(Adv, gamma, r_max) -> float:
    """K&L's step ``alpha = min(1, (1-gamma)^2 Adv / (4 R_max))`` (0 when ``Adv <= 0``).

    Rewards in ``[0, R_max]`` (so ``eps <= R_max/(1-gamma)``). Implements: Kakade & Langford
    2002, Corollary 4.2 (their ``(1-gamma) A / (4R)`` with normalised ``A``; ``docs/cpi.md``).
    """
    gamma = _check_gamma(gamma)
    r_max = positive("r_max", r_max)
    return float(min(1.0, max(0.0, (1.0 - gamma) ** 2 * Adv / (4.0 * r_max))))


def kl_guaranteed_gain(Adv, gamma, r_max) -> float:
    """The gain K&L's step guarantees: ``(1-gamma) Adv^2 / (8 R_max)`` (0 when ``Adv <= 0``).

    Implements: Kakade & Langford 2002, Corollary 4.2 (``A^2/(8R)`` in their normalised
    convention; ``docs/cpi.md``). Holds at ``alpha = kl_step_size(Adv, gamma, r_max)``.
    """
    gamma = _check_gamma(gamma)
    r_max = positive("r_max", r_max)
    return (1.0 - gamma) * max(Adv, 0.0) ** 2 / (8.0 * r_max)


def kl_iteration_bound(epsilon, gamma, r_max) -> int:
    """Iterations exact CPI with K&L's step can run before ``Adv < 2 epsilon / 3`` stops it.

    While not stopped ``Adv >= 2 eps/3``, so each iteration gains at least
    ``(1-gamma)(2eps/3)^2/(8R) = (1-gamma) eps^2 / (18 R)``; the value lies in
    ``[0, R/(1-gamma)]``, hence at most ``18 R^2 / ((1-gamma)^2 eps^2)`` iterations.
    Implements: Kakade & Langford 2002, Theorem 4.4 (their ``72 R^2/eps^2`` counts the
    sample-based version whose estimates are ``eps/3``-accurate; exact advantages give 18).
    """
    gamma = _check_gamma(gamma)
    epsilon = positive("epsilon", epsilon)
    r_max = positive("r_max", r_max)
    return int(np.ceil(18.0 * r_max ** 2 / ((1.0 - gamma) ** 2 * epsilon ** 2)))


# ----------------------------------------------------------------------------- finite horizon
def finite_horizon_lower_bound(adv_total, eps, alpha, H) -> float:
    """Finite-horizon (undiscounted, episode length ``<= H``) form of K&L's bound.

    ``gain >= alpha * H * Adv_H - 2 alpha eps sum_{h<H} (1 - (1-alpha)^h)``, with
    ``adv_total = H * Adv_H = L * Adv = sum_{h<H} E_pi[adv_s(s_h)]``.
    Proof (K&L's coupling): the mixture follows ``pi`` for the first ``h`` steps with
    probability ``(1-alpha)^h``, so ``|E_new[adv_s(s_h)] - E_pi[adv_s(s_h)]| <= 2 eps (1 -
    (1-alpha)^h)``, and by the PDL ``gain = alpha sum_h E_new[adv_s(s_h)]``.
    Implements: the finite-horizon form of Kakade & Langford 2002, Thm 4.1 (``docs/cpi.md``,
    "bounds"); proved here by the coupling above.
    """
    alpha = mixture_weight(alpha)
    H = int(H)
    if H < 1:
        raise ValueError(f"H must be a positive integer; got {H}")
    h = np.arange(H)
    return alpha * adv_total - 2.0 * alpha * eps * float(np.sum(1.0 - (1.0 - alpha) ** h))


def finite_horizon_step_size(adv_total, eps_bound, H) -> float:
    """Step maximising the relaxed finite-horizon bound ``alpha L Adv - alpha^2 eps H(H-1)``.

    Using ``1 - (1-alpha)^h <= alpha h``: ``alpha = min(1, adv_total / (2 eps_bound H (H-1)))``,
    guaranteeing ``adv_total^2 / (4 eps_bound H (H-1))`` when unclipped (``alpha = 1`` when
    ``H == 1``: no later step can be disturbed). ``eps_bound`` is an a-priori bound on ``eps``
    (e.g. the span of returns). Derived here as K&L's Corollary 4.2 for the finite horizon.
    """
    H = int(H)
    if H < 1:
        raise ValueError(f"H must be a positive integer; got {H}")
    eps_bound = positive("eps_bound", eps_bound)
    if adv_total <= 0:
        return 0.0
    if H == 1:
        return 1.0
    return float(min(1.0, adv_total / (2.0 * eps_bound * H * (H - 1))))


def finite_horizon_guaranteed_gain(adv_total, eps_bound, H) -> float:
    """Gain guaranteed at ``alpha = finite_horizon_step_size(adv_total, eps_bound, H)``.

    The relaxed bound ``alpha adv_total - alpha^2 eps_bound H (H-1)`` at that step:
    ``adv_total^2 / (4 eps_bound H (H-1))`` when unclipped (``adv_total`` when ``H == 1``).
    Valid whenever ``eps <= eps_bound``. Derived here (finite-horizon K&L Corollary 4.2).
    """
    alpha = finite_horizon_step_size(adv_total, eps_bound, H)
    return alpha * adv_total - alpha ** 2 * eps_bound * int(H) * (int(H) - 1)


# ----------------------------------------------------------------------------- SPI
def policy_distance(pi, pi2) -> float:
    """``Delta_pi = max_s ||pi2(.|s) - pi(.|s)||_1`` (Pirotta et al. 2013, Corollary 3.6)."""
    return float(np.max(np.abs(np.asarray(pi2) - np.asarray(pi)).sum(axis=1)))


def advantage_span(adv_s) -> float:
    """``Delta_A = max_s adv_s(s) - min_s adv_s(s)`` over all states (Pirotta et al. 2013)."""
    return float(np.max(adv_s) - np.min(adv_s)) if np.size(adv_s) else 0.0


def spi_lower_bound(Adv, delta_pi, delta_A, alpha, gamma) -> float:
    """Safe Policy Iteration bound on the gain of the mixture step.

    ``gain >= alpha Adv/(1-gamma) - alpha^2 gamma Delta_pi Delta_A / (2 (1-gamma)^2)``.
    Proof sketch: ``gain = alpha/(1-gamma) E_{d_new} adv_s`` and
    ``|E_{d_new} adv_s - E_d adv_s| <= ||d_new - d||_1 Delta_A / 2`` with
    ``||d_new - d||_1 <= gamma alpha Delta_pi / (1-gamma)`` (their Corollary 3.2).
    Implements: Pirotta, Restelli, Pecorino & Calandriello 2013, Safe Policy Iteration (ICML),
    Corollary 3.6 (unnormalised ``J``, normalised ``d``: same convention as here). Since
    ``Delta_pi <= 2`` and ``Delta_A <= 2 eps``, it is never weaker than K&L's relaxed bound.
    """
    gamma = _check_gamma(gamma)
    alpha = mixture_weight(alpha)
    return alpha * Adv / (1.0 - gamma) - alpha ** 2 * gamma * delta_pi * delta_A / (
        2.0 * (1.0 - gamma) ** 2)


def spi_step_size(Adv, delta_pi, delta_A, gamma) -> float:
    """SPI's step ``alpha* = min(1, (1-gamma) Adv / (gamma Delta_pi Delta_A))`` (0 if Adv <= 0).

    The maximiser of :func:`spi_lower_bound`; its guaranteed gain is
    ``Adv^2 / (2 gamma Delta_pi Delta_A)`` when unclipped. Implements: Pirotta et al. 2013,
    Corollary 3.6 and the USPI step of their section 4.
    """
    gamma = _check_gamma(gamma)
    if Adv <= 0:
        return 0.0
    den = gamma * delta_pi * delta_A
    return 1.0 if den <= 0 else float(min(1.0, (1.0 - gamma) * Adv / den))


def spi_finite_horizon_lower_bound(adv_total, delta_pi, delta_A, alpha, H) -> float:
    """Finite-horizon SPI: ``gain >= alpha L Adv - alpha^2 Delta_pi Delta_A H(H-1)/4``.

    The state law at step ``h`` moves by at most ``h alpha Delta_pi`` in L1 (one step moves it
    by ``alpha Delta_pi``), so ``|E_new adv_s(s_h) - E_pi adv_s(s_h)| <= h alpha Delta_pi
    Delta_A / 2``; sum over ``h < H``. ``Delta_A`` must include terminal states (0).
    Derived here from Pirotta et al. 2013, Corollary 3.6, for the undiscounted finite horizon.
    """
    alpha = mixture_weight(alpha)
    H = int(H)
    if H < 1:
        raise ValueError(f"H must be a positive integer; got {H}")
    return alpha * adv_total - alpha ** 2 * delta_pi * delta_A * H * (H - 1) / 4.0


def spi_finite_horizon_step_size(adv_total, delta_pi, delta_A, H) -> float:
    """Maximiser of :func:`spi_finite_horizon_lower_bound`:
    ``min(1, 2 adv_total / (Delta_pi Delta_A H (H-1)))`` (0 if ``adv_total <= 0``)."""
    H = int(H)
    if adv_total <= 0:
        return 0.0
    den = delta_pi * delta_A * H * (H - 1)
    return 1.0 if den <= 0 else float(min(1.0, 2.0 * adv_total / den))


# ----------------------------------------------------------------------------- final guarantee
def mismatch_coefficient(d_target, d_ref) -> float:
    """``|| d_target / d_ref ||_inf`` (inf where ``d_ref = 0 < d_target``; 0/0 counts as 0).

    The distribution-mismatch coefficient of Kakade & Langford 2002, Theorem 4.5 / Agarwal et
    al. 2021, Definition 3.1 (``d_target = d_{pi*,D}``, ``d_ref = d_{pi,mu}`` or ``mu``); the one
    definition for :mod:`cpi.bounds` and :mod:`cpi.pg_bounds` (whose ``mismatch`` arguments
    are its value).
    """
    d_target = np.asarray(d_target, dtype=np.float64)
    d_ref = np.asarray(d_ref, dtype=np.float64)
    if d_target.shape != d_ref.shape or d_target.ndim != 1:
        raise ValueError(f"d_target and d_ref must be vectors of the same shape (S,); got "
                         f"{d_target.shape} and {d_ref.shape}")
    pos = d_target > 0
    if np.any(pos & (d_ref <= 0)):
        return float("inf")
    return float(np.max(d_target[pos] / d_ref[pos])) if pos.any() else 0.0


def final_guarantee(max_adv, gamma, d_opt, d_pi_mu) -> float:
    """Suboptimality bound when no policy has advantage above ``max_adv``.

    If ``max_{pi2} Adv(pi2; pi, mu) <= eps`` (the greedy policy attains the max) then for any
    start distribution ``D``: ``V*(D) - V^pi(D) <= eps/(1-gamma) || d_{pi*,D} / d_{pi,mu} ||_inf``.
    Implements: Kakade & Langford 2002, Theorem 4.5 (first inequality; unnormalised ``V``).
    """
    gamma = _check_gamma(gamma)
    c = mismatch_coefficient(d_opt, d_pi_mu)
    return 0.0 if max_adv <= 0 and np.isfinite(c) else max_adv / (1.0 - gamma) * c


def final_guarantee_mu(max_adv, gamma, d_opt, mu) -> float:
    """The looser form ``eps/(1-gamma)^2 || d_{pi*,D} / mu ||_inf`` (uses ``d_{pi,mu} >=
    (1-gamma) mu``). Implements: Kakade & Langford 2002, Theorem 4.5 (second inequality)."""
    gamma = _check_gamma(gamma)
    c = mismatch_coefficient(d_opt, mu)
    return 0.0 if max_adv <= 0 and np.isfinite(c) else max_adv / (1.0 - gamma) ** 2 * c


# ----------------------------------------------------------------------------- RR vs CARO
def _rr_caro_args(n_actions, H, r_max, tau, p):
    n_actions = positive("n_actions", n_actions)
    H = positive("H", H)
    r_max = positive("r_max", r_max)
    tau = positive("tau", tau)
    p = float(p)
    if not 0.0 < p <= 1.0:
        raise ValueError(f"p (the on-policy probability of reaching an improvable state) must "
                         f"lie in (0, 1]; got {p}")
    return n_actions, H, r_max, tau, p


def rr_sample_complexity(n_actions, H, r_max, tau, p) -> float:
    """CPI with random reset: ``|A| H^2 R^2 / (tau^2 p^2)`` samples (order, constants dropped).

    ``p`` is the on-policy probability of reaching an improvable state (``max_a A > tau``).
    Implements: "Credit Assignment with Resets in Language Model Reasoning" (2026), the CPI-RR
    sample-complexity theorem (``docs/cpi.md``, References; an ``O(.)`` rate, so only ratios
    and slopes are meaningful: slope -2 in ``p`` on log-log axes).
    """
    A, H, R, tau, p = _rr_caro_args(n_actions, H, r_max, tau, p)
    return A * H ** 2 * R ** 2 / (tau ** 2 * p ** 2)


def caro_sample_complexity(n_actions, H, r_max, tau, p=1.0) -> float:
    """CPI with the credit-assignment reset oracle: ``|A| H^2 R^2 / tau^2`` (independent of ``p``).

    Implements: "Credit Assignment with Resets in Language Model Reasoning" (2026), CPI-CARO
    theorem (``docs/cpi.md``, References; ``O(.)``: slope 0 in ``p``). ``p`` is accepted (and
    validated) only so that the two rates share a signature.
    """
    A, H, R, tau, _ = _rr_caro_args(n_actions, H, r_max, tau, p)
    return A * H ** 2 * R ** 2 / tau ** 2


def rr_improvement(H, r_max, tau, p) -> float:
    """Per-iteration improvement of CPI-RR: ``tau^2 p^2 / (H R)`` (``Omega(.)``, slope 2 in p).

    Implements: the same paper's per-iteration improvement statement (taken from a secondary
    summary of the paper, ``docs/cpi.md``, References).
    """
    _, H, R, tau, p = _rr_caro_args(1, H, r_max, tau, p)
    return tau ** 2 * p ** 2 / (H * R)


def caro_improvement(H, r_max, tau, p) -> float:
    """Per-iteration improvement of CPI-CARO: ``tau^2 p / (H R)`` (``Omega(.)``, slope 1 in p).

    Implements: the same paper's per-iteration improvement statement (taken from a secondary
    summary of the paper, ``docs/cpi.md``, References).
    """
    _, H, R, tau, p = _rr_caro_args(1, H, r_max, tau, p)
    return tau ** 2 * p / (H * R)
