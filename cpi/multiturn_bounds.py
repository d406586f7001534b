"""Identities and bounds of the multi-turn -> single-turn reduction, as pure functions.

Source: Jiang, Bhandari, Yang, Munos & Lu 2025, "Aligning LLMs Toward Multi-Turn
Conversational Outcomes Using Iterative PPO" (the reduction: the single-turn problem with the
multi-turn ``Q^{pi_k}`` as reward model; solving it is a policy-improvement step), built on the
performance-difference lemma (Kakade & Langford 2002, Lemma 6.1; :func:`cpi.bounds.pdl_gain`).
Each docstring says whether the statement is **proved here** (a proof sketch follows, and
``experiments/iterative_ppo.py`` checks it on thousands of random conversation MDPs, reporting
the slack) or **cited**. Notation of :mod:`cpi.multiturn`; turn-level quantities:

* ``Q = Q^{pi_k}`` (C, Y), ``V = V^{pi_k}`` (C,); ``pi_new`` (C, Y) the improved turn policy;
* ``gain_c = E_{y~pi_new(.|c)} Q(c, y) - V(c)`` (C,), the *single-turn gain* at ``c``
  (:func:`single_turn_gain`): the improvement of the single-turn objective over ``pi_k``;
* ``d_new = d_{pi_new, mu}`` (normalised) and ``h = 1/(1 - gamma)`` the expected number of turns.

**The reduction identity** (proved: the performance-difference lemma at the turn level, since
``E_{pi_new} A^{pi_k}(c, .) = gain_c``): ``V^{pi_new}(mu) - V^{pi_k}(mu) = h E_{c~d_new} gain_c``,
i.e. ``cpi.bounds.pdl_gain(d_new, gain, h)``. The token-level quantities agree with the turn-level
ones because the token MDP's value at the root of ``c`` *is* the turn-level value (a response
is a path; rewards and transitions at its last token are those of the turn), and
``E_{y~pi} Q(c, y)`` is the value of the single-turn MDP at that root.

Other results here: :func:`soft_step_gain` (exact soft step), :func:`pointwise_gain_lower_bound`
(policy improvement theorem), :func:`fitted_soft_step_lower_bound` (soft step with a fitted
``Qhat``), :func:`soft_step_npg_eta` (the soft step is turn-level NPG). Reused from
:mod:`cpi.pg_bounds`: ``one_step_improvement_bound`` (greedy step on a fitted ``Qhat``),
``approx_pi_step_bound`` (an ``eps``-greedy step), ``npg_bound`` (the soft iteration's rate).
"""
from __future__ import annotations

import numpy as np

__all__ = ["single_turn_gain", "soft_step_gain", "pointwise_gain_lower_bound",
           "fitted_soft_step_lower_bound", "soft_step_npg_eta", "total_variation", "q_error_span"]


def _gamma(gamma):
    gamma = float(gamma)
    if not 0.0 <= gamma < 1.0:
        raise ValueError(f"gamma (continuation probability) must lie in [0, 1); got {gamma}")
    return gamma


def _arr(name, x, ndim):
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-d array; got shape {x.shape}")
    return x


def single_turn_gain(pi_new, Q, pi_old) -> np.ndarray:
    """``gain_c = sum_y (pi_new(y|c) - pi_old(y|c)) Q(c, y)`` (C,), all arrays (C, Y).

    With ``Q = Q^{pi_old}`` this is ``E_{pi_new} A^{pi_old}(c, .)``, the per-state advantage of
    :func:`cpi.bounds.state_advantage` at the turn level (a definition, nothing to prove).
    """
    pi_new, Q, pi_old = (_arr(n, x, 2) for n, x in (("pi_new", pi_new), ("Q", Q), ("pi_old", pi_old)))
    if not pi_new.shape == Q.shape == pi_old.shape:
        raise ValueError(f"pi_new, Q and pi_old must have the same shape (C, Y); got {pi_new.shape}, "
                         f"{Q.shape}, {pi_old.shape}")
    return np.einsum("cy,cy->c", pi_new - pi_old, Q)


def soft_step_gain(beta: float, kl_new_old, kl_old_new) -> np.ndarray:
    """The single-turn gain of the exact soft step: ``beta (KL(pi_new||pi_k) + KL(pi_k||pi_new))``.

    ``pi_new = pi_k exp(Q/beta) / Z`` per state; ``kl_*`` (C,) are the response-level KLs.
    **Proved here** (an identity): ``Q = beta log(pi_new/pi_k) + beta log Z`` on the support of
    ``pi_k``, so ``E_{pi_new} Q - E_{pi_k} Q = beta E_{pi_new} log(pi_new/pi_k) -
    beta E_{pi_k} log(pi_new/pi_k) = beta (KL(pi_new||pi_k) + KL(pi_k||pi_new)) >= 0``: the soft
    step never lowers the single-turn objective, and by :func:`pointwise_gain_lower_bound` never
    lowers any multi-turn value.
    """
    beta = float(beta)
    if not np.isfinite(beta) or beta <= 0:
        raise ValueError(f"beta must be finite and > 0; got {beta}")
    return beta * (np.asarray(kl_new_old, dtype=np.float64) + np.asarray(kl_old_new, dtype=np.float64))


def pointwise_gain_lower_bound(gain, gamma: float) -> float:
    """``min_c V^{pi_new}(c) - V^{pi_k}(c) >= min_c gain_c`` if that is >= 0, else ``>= min_c gain_c / (1 - gamma)``.

    The policy improvement theorem (Howard 1960; via the PDL of Kakade & Langford 2002).
    **Proved here**: ``V^{pi_new} - V^{pi_k} = (I - gamma P_new)^{-1} gain = sum_t gamma^t
    P_new^t gain``; every term is ``>= gamma^t min gain``; when ``min gain >= 0`` the terms
    ``t >= 1`` are ``>= 0`` and the first is ``>= min gain``, otherwise summing gives
    ``min gain / (1 - gamma)``. So a step that does not lower the single-turn objective at
    any state does not lower the multi-turn value at any state.
    """
    g = float(np.min(gain))
    return g if g >= 0 else g / (1.0 - _gamma(gamma))


def total_variation(p, q) -> np.ndarray:
    """``TV(p(.|c), q(.|c)) = (1/2) sum_y |p - q|`` (C,) for turn policies (C, Y)."""
    return 0.5 * np.abs(_arr("p", p, 2) - _arr("q", q, 2)).sum(axis=1)


def q_error_span(Q_hat, Q) -> np.ndarray:
    """``span_y (Q - Q_hat)(c, .) = max_y - min_y`` (C,): the part of a fitted ``Q``'s error that can
    change a decision (a per-state constant offset changes none)."""
    e = _arr("Q", Q, 2) - _arr("Q_hat", Q_hat, 2)
    return e.max(axis=1) - e.min(axis=1)


def fitted_soft_step_lower_bound(d_new, horizon: float, beta: float, skl_hat, tv, err_span) -> float:
    """Soft step on a fitted ``Qhat``: ``V^{new}(mu) - V^{pi_k}(mu) >= h E_{d_new}[beta SKL_hat - TV err_span]``.

    ``pi_new = pi_k exp(Qhat/beta)/Z``; ``skl_hat`` (C,) ``= KL(pi_new||pi_k) + KL(pi_k||pi_new)``;
    ``tv`` (C,) ``= TV(pi_new, pi_k)`` (:func:`total_variation`); ``err_span`` (C,) ``= span_y(Q -
    Qhat)`` (:func:`q_error_span`); ``d_new`` (C,) and ``horizon = 1/(1-gamma)`` as in the module
    docstring. **Proved here**: ``gain_c = (E_new - E_k) Qhat + (E_new - E_k)(Q - Qhat)``; the first
    term is ``beta SKL_hat`` (:func:`soft_step_gain` with ``Qhat``) and ``(E_p - E_q) f >= -TV(p, q)
    span(f)`` for any ``f``; the reduction identity turns the per-state bound into the gain.
    With an exact ``Q`` (``err_span = 0``) it is the identity ``h E_{d_new} beta SKL``.
    """
    d_new = _arr("d_new", d_new, 1)
    per_state = (float(beta) * np.asarray(skl_hat, dtype=np.float64)
                 - np.asarray(tv, dtype=np.float64) * np.asarray(err_span, dtype=np.float64))  # (C,)
    seen = d_new > 0  # states the new policy never visits do not enter the bound
    if not np.all(np.isfinite(per_state[seen])):
        bad = int(np.flatnonzero(seen & ~np.isfinite(per_state))[0])
        raise ValueError(f"fitted_soft_step_lower_bound: non-finite term at visited state {bad} (skl_hat "
                         f"{np.asarray(skl_hat)[bad]}): in float64 pi_k exp(Qhat/beta)/Z underflowed to 0 "
                         "on a response pi_k keeps, so KL(pi_k || pi_new) is infinite; use a larger beta")
    return float(horizon) * float(d_new[seen] @ per_state[seen])


def soft_step_npg_eta(beta: float, gamma: float) -> float:
    """The step ``eta = (1 - gamma)/beta`` at which turn-level NPG (:func:`cpi.natural_pg`,
    ``pi_{t+1} ∝ pi_t exp(eta A_t/(1-gamma))``) *is* Iterative PPO with the exact ``Q`` and the
    exact ``beta``-regularised single-turn maximiser. **Proved here**: ``A = Q - V`` differs from
    ``Q`` by a per-state constant, which the normalisation removes, so both updates are
    ``pi_k exp(Q^{pi_k}/beta) / Z``; hence :func:`cpi.pg_bounds.npg_bound` with this ``eta``
    bounds its sub-optimality (Agarwal et al. 2021, Thm 5.3, proved in :mod:`cpi.pg_bounds`).
    """
    beta = float(beta)
    if not np.isfinite(beta) or beta <= 0:
        raise ValueError(f"beta must be finite and > 0; got {beta}")
    return (1.0 - _gamma(gamma)) / beta
