"""TD(0) with linear features on Markov reward processes, and one-step policy improvement.

Notation (Bhandari, Russo & Singal 2018, "A Finite Time Analysis of Temporal Difference
Learning With Linear Function Approximation"):

* An MRP has ``P`` (S, S) row-stochastic, reward ``r`` (S,), ``gamma`` in [0, 1); ``D`` (S,)
  is its stationary distribution (required unique and positive), ``V = (I - gamma P)^{-1} r``.
* Features ``Phi`` (S, d) with full column rank ``d``; ``V_theta = Phi theta``;
  ``||x||_D^2 = sum_s D(s) x(s)^2``; ``omega = lambda_min(Phi^T D Phi) > 0``.
* TD(0) step on a transition ``(s, s')``: ``g(theta) = (r(s) + gamma phi(s')^T theta -
  phi(s)^T theta) phi(s)``; mean-path ``gbar(theta) = Phi^T D (r + gamma P Phi theta - Phi theta)``;
  the TD fixed point ``theta*`` solves ``gbar(theta*) = 0``:
  ``theta* = (Phi^T D (I - gamma P) Phi)^{-1} Phi^T D r``.
* Three observation models: mean-path (``theta <- theta + alpha gbar``), i.i.d. (``s ~ D``,
  ``s' ~ P(s, .)``) and one Markov chain (``s_{t+1} ~ P(s_t, .)``) with projection onto a
  ball of radius ``R >= ||theta*||``. Bounds: :mod:`cpi.pg_bounds`.

One-step improvement ("Optimizing Long-term Value for Auction-Based Recommender Systems via
On-Policy RL"): TD on the state-action chain of a base policy ``pi_b`` gives ``Qhat``; the
new policy is ``greedy(Qhat)`` (:func:`td_q_estimate`, :func:`one_step_improvement`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np

from . import _pg_kernels as K
from .checks import positive, step_size
from .exact import greedy, occupancy, policy_matrix, q_from_v, value
from .mdp import TabularMDP


# ----------------------------------------------------------------------------- MRPs
@dataclass(frozen=True)
class MRP:
    """A validated Markov reward process (dense; the TD theory is for small instances)."""

    P: np.ndarray  # (S, S) row-stochastic
    r: np.ndarray  # (S,) expected reward in each state
    gamma: float
    D: np.ndarray  # (S,) the unique stationary distribution, positive

    @property
    def S(self) -> int:
        return self.r.size

    def value(self) -> np.ndarray:
        """``V = (I - gamma P)^{-1} r`` (S,)."""
        return np.linalg.solve(np.eye(self.S) - self.gamma * self.P, self.r)


def stationary_distribution(P) -> np.ndarray:
    """The unique stationary distribution ``D = D P`` of a row-stochastic ``P`` (S, S).

    Raises ``ValueError`` when it is not unique (``rank(I - P) < S - 1``: several closed
    classes) or not positive (transient states, on which TD puts no weight).
    """
    P = np.asarray(P, dtype=np.float64)
    S = P.shape[0]
    M = np.eye(S) - P.T  # (S, S)
    if S > 1 and np.linalg.matrix_rank(M, tol=1e-10) < S - 1:
        raise ValueError("P has several closed classes: its stationary distribution is not unique "
                         "(use an irreducible chain, e.g. a policy with full support)")
    A = np.vstack([M, np.ones((1, S))])  # (S+1, S)
    b = np.zeros(S + 1)
    b[-1] = 1.0
    D, *_ = np.linalg.lstsq(A, b, rcond=None)
    if D.min() <= 1e-12:
        s = int(np.argmin(D))
        raise ValueError(f"the stationary distribution is not positive: state {s} has D = {D[s]:.3g} "
                         f"(transient state); TD theory needs every state recurrent")
    return D / D.sum()


def make_mrp(P, r, gamma) -> MRP:
    """Validate ``P`` (S, S) row-stochastic, ``r`` (S,) finite, ``gamma`` in [0, 1)."""
    P = np.ascontiguousarray(P, dtype=np.float64)
    r = np.ascontiguousarray(r, dtype=np.float64)
    if P.ndim != 2 or P.shape[0] != P.shape[1]:
        raise ValueError(f"P must be a square (S, S) matrix; got shape {P.shape}")
    S = P.shape[0]
    if r.shape != (S,):
        raise ValueError(f"r must have shape (S,) = ({S},); got {r.shape}")
    if not np.all(np.isfinite(P)) or P.min() < 0:
        raise ValueError("P must have finite, non-negative entries")
    bad = np.flatnonzero(np.abs(P.sum(axis=1) - 1.0) > 1e-8)
    if bad.size:
        raise ValueError(f"P row {bad[0]} sums to {P[bad[0]].sum():.12g}, not 1")
    if not np.all(np.isfinite(r)):
        raise ValueError("r must be finite")
    gamma = float(gamma)
    if not 0.0 <= gamma < 1.0:
        raise ValueError(f"gamma must lie in [0, 1) for TD(0); got {gamma}")
    return MRP(P, r, gamma, stationary_distribution(P))


def random_mrp(S: int, gamma: float, seed: int = 0, branching: int | None = None) -> MRP:
    """A random MRP: each row has ``branching`` (default ``S``) Dirichlet(1) successors (mass
    0.9), plus a cycle ``s -> s+1`` of mass 0.05 (irreducible) and a self-loop of mass 0.05
    (aperiodic, so the chain mixes); ``r ~ U[0, 1]``."""
    rng = np.random.default_rng(seed)
    b = S if branching is None else int(branching)
    P = np.zeros((S, S))
    for s in range(S):
        cols = rng.choice(S, size=b, replace=False)
        P[s, cols] = rng.dirichlet(np.ones(b))
    P = 0.9 * P
    P[np.arange(S), (np.arange(S) + 1) % S] += 0.05
    P[np.arange(S), np.arange(S)] += 0.05
    return make_mrp(P, rng.random(S), gamma)


def policy_mrp(mdp: TabularMDP, pi) -> MRP:
    """The state MRP of ``pi`` on ``mdp``: ``P_pi`` (S, S) and ``r_pi(s) = sum_a pi(a|s) R(s, a)``."""
    pi = mdp.check_policy(pi)
    return make_mrp(policy_matrix(mdp, pi).toarray(), np.einsum("sa,sa->s", pi, mdp.R), mdp.gamma)


def state_action_mrp(mdp: TabularMDP, pi) -> MRP:
    """The MRP on pairs ``(s, a)`` (index ``s*A + a``) under ``pi``: ``P((s,a) -> (s',a')) =
    P(s'|s,a) pi(a'|s')``, reward ``R(s, a)``; its value is ``Q^pi`` flattened."""
    pi = mdp.check_policy(pi)
    Psa = mdp.P.toarray()[:, :, None] * pi[None, :, :]  # (S*A, S, A)
    return make_mrp(Psa.reshape(mdp.S * mdp.A, mdp.S * mdp.A), mdp.R.ravel(), mdp.gamma)


# ----------------------------------------------------------------------------- features
def check_features(Phi, S: int, name: str = "Phi") -> np.ndarray:
    """Validate a feature matrix: shape ``(S, d)`` with ``1 <= d <= S``, finite, rank ``d``."""
    Phi = np.ascontiguousarray(Phi, dtype=np.float64)
    if Phi.ndim != 2 or Phi.shape[0] != S:
        raise ValueError(f"{name} must have shape (S, d) with S = {S} rows (one per state); "
                         f"got shape {Phi.shape}")
    d = Phi.shape[1]
    if not 1 <= d <= S:
        raise ValueError(f"{name} must have 1 <= d <= S = {S} columns; got d = {d}")
    if not np.all(np.isfinite(Phi)):
        raise ValueError(f"{name} has non-finite entries")
    rank = np.linalg.matrix_rank(Phi)
    if rank < d:
        raise ValueError(f"{name} must have full column rank d = {d} (independent features); "
                         f"got rank {rank}: drop or combine dependent columns")
    return Phi


def random_features(S: int, d: int, seed: int = 0) -> np.ndarray:
    """Gaussian features (S, d) scaled so that ``max_s ||phi(s)||_2 = 1``."""
    Phi = np.random.default_rng(seed).standard_normal((S, d))
    return Phi / np.linalg.norm(Phi, axis=1).max()


class TDProblem(NamedTuple):
    """An MRP with features and everything the TD theory needs, precomputed exactly."""

    mrp: MRP
    Phi: np.ndarray  # (S, d)
    theta_star: np.ndarray  # (d,) TD fixed point
    omega: float  # lambda_min(Phi^T D Phi)
    sigma2: float  # E_{s~D, s'~P} ||g(theta*)||^2, i.i.d. noise at the fixed point
    feature_norm: float  # max_s ||phi(s)||_2
    A_mat: np.ndarray  # (d, d) Phi^T D (I - gamma P) Phi, so gbar(theta) = b - A_mat theta
    b: np.ndarray  # (d,) Phi^T D r


def td_problem(mrp: MRP, Phi, name: str = "Phi") -> TDProblem:
    """Precompute ``theta*``, ``omega``, ``sigma^2`` for ``mrp`` and features ``Phi`` (S, d)."""
    Phi = check_features(Phi, mrp.S, name)
    D, P, g = mrp.D, mrp.P, mrp.gamma
    DPhi = D[:, None] * Phi  # (S, d)
    A_mat = DPhi.T @ (Phi - g * P @ Phi)  # (d, d)
    b = DPhi.T @ mrp.r  # (d,)
    theta_star = np.linalg.solve(A_mat, b)
    omega = float(np.linalg.eigvalsh(Phi.T @ DPhi).min())
    v = Phi @ theta_star  # (S,)
    delta = mrp.r[:, None] + g * v[None, :] - v[:, None]  # (S, S') TD error at theta*
    sigma2 = float(D @ ((np.linalg.norm(Phi, axis=1) ** 2) * (P * delta ** 2).sum(axis=1)))
    return TDProblem(mrp, Phi, theta_star, omega, sigma2,
                     float(np.linalg.norm(Phi, axis=1).max()), A_mat, b)


def expected_update(prob: TDProblem, theta) -> np.ndarray:
    """``gbar(theta) = Phi^T D (r + gamma P Phi theta - Phi theta)`` (d,)."""
    m, Phi = prob.mrp, prob.Phi
    v = Phi @ np.asarray(theta, dtype=np.float64)
    return Phi.T @ (m.D * (m.r + m.gamma * m.P @ v - v))


def value_error_sq(prob: TDProblem, theta) -> np.ndarray:
    """``||V_{theta*} - V_theta||_D^2``; ``theta`` (d,) or (n, d) -> scalar or (n,)."""
    x = (np.asarray(theta, dtype=np.float64) - prob.theta_star) @ prob.Phi.T  # (..., S)
    return x ** 2 @ prob.mrp.D


# ----------------------------------------------------------------------------- TD runs
def mean_path_td(prob: TDProblem, T: int, alpha: float | None = None, theta0=None) -> np.ndarray:
    """Mean-path TD ``theta_{t+1} = theta_t + alpha gbar(theta_t)``; returns ``(T+1, d)`` iterates.

    Default ``alpha = (1 - gamma)/4``, the step of Bhandari, Russo & Singal Theorem 2(a).
    """
    if int(T) != T or T < 0:
        raise ValueError(f"T must be an integer >= 0; got {T}")
    alpha = step_size((1.0 - prob.mrp.gamma) / 4.0 if alpha is None else alpha)
    d = prob.Phi.shape[1]
    theta = np.zeros(d) if theta0 is None else np.array(theta0, dtype=np.float64)
    if theta.shape != (d,):
        raise ValueError(f"theta0 must have shape ({d},); got {theta.shape}")
    out = np.empty((int(T) + 1, d))
    out[0] = theta
    for t in range(int(T)):
        theta = theta + alpha * (prob.b - prob.A_mat @ theta)
        out[t + 1] = theta
    return out


class TDRuns(NamedTuple):
    """``n`` independent sampled-TD runs recorded at checkpoints."""

    checkpoints: np.ndarray  # (K,) T values
    last: np.ndarray  # (n, K, d) theta_T
    avg: np.ndarray  # (n, K, d) (weighted) average of theta_0..theta_{T-1}
    err_last: np.ndarray  # (n, K) ||V* - V_{theta_T}||_D^2
    err_avg: np.ndarray  # (n, K) ||V* - V_{avg}||_D^2


Schedule = Literal["constant", "decreasing", "weighted"]


def td_schedule(prob: TDProblem, T: int, schedule: Schedule, alpha: float | None = None):
    """``(alphas (T,), weights (T,))`` for sampled TD.

    ``constant``: ``alpha`` (default ``1/sqrt(T)``), uniform average. ``decreasing``:
    ``beta/(lam + t)`` of :func:`cpi.pg_bounds.iid_td_decreasing_schedule`. ``weighted``:
    ``2/(kappa (lam + t))`` with weights ``lam + t - 1`` (:func:`cpi.pg_bounds.iid_td_weighted_schedule`).
    """
    from .pg_bounds import iid_td_decreasing_schedule, iid_td_weighted_schedule
    t = np.arange(int(T), dtype=np.float64)
    g = prob.mrp.gamma
    if schedule == "constant":
        a = step_size(1.0 / np.sqrt(max(T, 1)) if alpha is None else alpha)
        return np.full(int(T), a), np.ones(int(T))
    if schedule == "decreasing":
        beta, lam = iid_td_decreasing_schedule(g, prob.omega)
        return beta / (lam + t), np.ones(int(T))
    if schedule == "weighted":
        kappa, lam = iid_td_weighted_schedule(g, prob.omega)
        return 2.0 / (kappa * (lam + t)), lam + t - 1.0
    raise ValueError(f"schedule must be 'constant', 'decreasing' or 'weighted'; got {schedule!r}")


def sampled_td(prob: TDProblem, checkpoints, *, sampling: Literal["iid", "markov"] = "iid",
               schedule: Schedule = "constant", alpha: float | None = None,
               radius: float | None = None, n_runs: int = 1, seed: int = 0,
               theta0=None) -> TDRuns:
    """``n_runs`` sampled TD(0) runs of length ``T = max(checkpoints)``.

    ``sampling="iid"``: ``s_t ~ D``, ``s'_t ~ P(s_t, .)``; ``"markov"``: one chain started from
    ``D`` with ``s'_t = s_{t+1}``. ``radius`` projects onto ``||theta|| <= radius`` (Markov
    analysis; ``None``: no projection). Step and averaging from :func:`td_schedule`.
    """
    cps = np.unique(np.asarray(checkpoints, dtype=np.int64))
    if cps.size == 0 or cps.min() < 0:
        raise ValueError("checkpoints must be a non-empty list of integers >= 0")
    if sampling not in ("iid", "markov"):
        raise ValueError(f"sampling must be 'iid' or 'markov'; got {sampling!r}")
    T = int(cps.max())
    alphas, weights = td_schedule(prob, T, schedule, alpha)
    rad = -1.0 if radius is None else positive("radius", radius)
    m, d = prob.mrp, prob.Phi.shape[1]
    cdf = np.cumsum(m.P, axis=1)  # (S, S)
    cdf[:, -1] = 1.0
    th0 = np.zeros(d) if theta0 is None else np.array(theta0, dtype=np.float64)
    if th0.shape != (d,) or not np.all(np.isfinite(th0)):
        raise ValueError(f"theta0 must be a finite vector of shape ({d},); got shape {th0.shape}")
    if n_runs < 1:
        raise ValueError(f"n_runs must be >= 1; got {n_runs}")
    rng = np.random.default_rng(seed)
    last = np.empty((n_runs, cps.size, d))
    avg = np.empty((n_runs, cps.size, d))
    for i in range(n_runs):
        if sampling == "iid":
            s = rng.choice(m.S, size=T, p=m.D)
            s2 = np.minimum((cdf[s] <= rng.random(T)[:, None]).sum(axis=1), m.S - 1)
        else:
            chain = np.empty(T + 1, np.int64)
            K.markov_chain(cdf, int(rng.choice(m.S, p=m.D)), rng.random(T), chain)
            s, s2 = chain[:-1].copy(), chain[1:].copy()
        theta = th0.copy()
        K.td_run(prob.Phi, m.r, m.gamma, s.astype(np.int64), s2.astype(np.int64), alphas,
                 weights, rad, theta, cps, last[i], avg[i])
    return TDRuns(cps, last, avg, value_error_sq(prob, last), value_error_sq(prob, avg))


def mixing_time(P, D, eps: float, max_t: int = 100000) -> int:
    """``tau^mix(eps) = min{t : max_s TV(P^t(s, .), D) <= eps}`` (exact, by matrix powers).

    Raises ``ValueError`` if not reached by ``max_t`` (a periodic chain never mixes)."""
    P = np.asarray(P, dtype=np.float64)
    Pt = np.eye(P.shape[0])
    for t in range(int(max_t) + 1):
        if 0.5 * np.abs(Pt - D[None, :]).sum(axis=1).max() <= eps:
            return t
        Pt = Pt @ P
    raise ValueError(f"the chain does not reach TV distance {eps} from D within {max_t} steps "
                     f"(periodic or slowly mixing): the Markov-sampled TD bound needs a mixing chain")


# ----------------------------------------------------------------------------- one-step improvement
def td_q_estimate(mdp: TabularMDP, pi_b, Phi_sa) -> np.ndarray:
    """``Qhat`` (S, A): the TD(0) fixed point on the state-action chain of ``pi_b``.

    ``Phi_sa`` (S*A, d), row ``s*A + a``; weights are the stationary distribution of the
    pairs (on-policy data of the base policy).
    """
    prob = td_problem(state_action_mrp(mdp, pi_b), Phi_sa, "Phi_sa (rows s*A + a)")
    return (prob.Phi @ prob.theta_star).reshape(mdp.S, mdp.A)


class Improvement(NamedTuple):
    """One-step improvement ``pi' = greedy(Qhat)`` over a base policy, measured exactly."""

    gain: float  # V^{pi'}(rho) - V^{pi_b}(rho)
    pi_gain: float  # gain of the exact policy-iteration step greedy(Q^{pi_b})
    eps: float  # max |Qhat - Q^{pi_b}|
    min_adv_gap: float  # min_s max_a A^{pi_b}(s, a)
    action_gap: float  # min_s (top-1 minus top-2 of Q^{pi_b}(s, .)); inf if A == 1
    bound: float  # one_step_improvement_bound, a lower bound on gain
    min_state_gain: float  # min_s V^{pi'}(s) - V^{pi_b}(s)
    pi_new: np.ndarray  # (S, A)


def one_step_improvement(mdp: TabularMDP, pi_b, Q_hat, rho=None) -> Improvement:
    """Measure ``pi' = greedy(Q_hat)`` against ``pi_b`` and against the exact PI step."""
    from .pg_bounds import one_step_improvement_bound
    if not mdp.gamma < 1.0:
        raise ValueError(f"one-step improvement here needs gamma < 1; got {mdp.gamma}")
    pi_b = mdp.check_policy(pi_b, "pi_b")
    Q_hat = np.asarray(Q_hat, dtype=np.float64)
    if Q_hat.shape != (mdp.S, mdp.A):
        raise ValueError(f"Q_hat must have shape (S, A) = ({mdp.S}, {mdp.A}); got {Q_hat.shape}")
    rho = mdp.initial if rho is None else mdp.check_distribution(rho, "rho")
    Vb = value(mdp, pi_b)
    Qb = q_from_v(mdp, Vb)
    pi_new = greedy(Q_hat)
    Vn = value(mdp, pi_new)
    Vpi = value(mdp, greedy(Qb))
    srt = np.sort(Qb, axis=1)
    agap = float((srt[:, -1] - srt[:, -2]).min()) if mdp.A > 1 else np.inf
    Delta = (Qb - Vb[:, None]).max(axis=1)
    eps = float(np.abs(Q_hat - Qb).max())
    bound = one_step_improvement_bound(np.maximum(Delta, 0.0), occupancy(mdp, pi_new, rho), eps,
                                       mdp.gamma)
    return Improvement(float(rho @ (Vn - Vb)), float(rho @ (Vpi - Vb)), eps, float(Delta.min()),
                       agap, bound, float((Vn - Vb).min()), pi_new)
