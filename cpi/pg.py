"""Policy optimisers with exact gradients on discounted tabular MDPs.

Notation (Agarwal, Kakade, Lee & Mahajan 2021, "On the Theory of Policy Gradient Methods";
Bhandari & Russo, "Global Optimality Guarantees for Policy Gradient Methods" and "On Linear
Convergence of Policy Gradient Methods for Finite MDPs"; ``docs/cpi.md``):

* ``mu`` (S,) is the distribution whose value ``V^pi(mu)`` the optimiser ascends (the
  gradient's start distribution); ``rho`` (S,) is where sub-optimality is measured,
  ``V*(rho) - V^{pi_t}(rho)``. Both default to ``mdp.initial``.
* Values are unnormalised; ``d_{pi,mu}`` is the normalised discounted occupancy, so the
  policy gradient theorem reads, for the direct parameterisation ``pi(a|s)``,
  ``dV^pi(mu)/dpi(a|s) = d_{pi,mu}(s) Q^pi(s, a) / (1 - gamma)`` and, for the softmax
  parameterisation ``pi = softmax(theta)`` row-wise,
  ``dV/dtheta(s, a) = d_{pi,mu}(s) pi(a|s) A^pi(s, a) / (1 - gamma)``
  (Agarwal et al. eq. (4)-(5) / Lemma C.1). Proved here from
  ``V(mu) = mu^T (I - gamma P_pi)^{-1} r_pi``: ``P_pi`` and ``r_pi`` are linear in ``pi`` and
  ``(1 - gamma) mu^T (I - gamma P_pi)^{-1} = d_{pi,mu}^T``; the tests compare with central
  finite differences.

Optimisers (each returns a :class:`PGTrace` with the sub-optimality trace and the steps):

* :func:`projected_pg` - ``pi <- Proj_simplex(pi + eta grad_pi V(mu))`` (Agarwal et al. sec. 4).
* :func:`softmax_pg` - ``theta <- theta + eta grad_theta V(mu)`` (Agarwal et al. sec. 5).
* :func:`natural_pg` - softmax NPG, ``theta <- theta + eta A^pi / (1 - gamma)``, i.e.
  ``pi_{t+1} ∝ pi_t exp(eta A_t / (1 - gamma))`` (Agarwal et al. sec. 5.3, Kakade 2001).
* :func:`soft_policy_iteration` - CPI with a fixed ``alpha``:
  ``pi <- (1 - alpha) pi + alpha greedy(Q^pi)`` (Kakade & Langford 2002; Bhandari & Russo).
* :func:`policy_iteration` - ``pi <- greedy(Q^pi)`` (Howard 1960), ties kept on the current action.

Only ``gamma < 1``: the rates in :mod:`cpi.pg_bounds` are for discounted MDPs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from .exact import evaluate, greedy, optimal, q_from_v
from .checks import step_size
from .mdp import TabularMDP

Method = Literal["projected", "softmax", "npg", "soft_pi", "pi"]
METHODS = ("projected", "softmax", "npg", "soft_pi", "pi")


# ----------------------------------------------------------------------------- helpers
def _check_discounted(mdp: TabularMDP) -> None:
    if not isinstance(mdp, TabularMDP):
        raise TypeError(f"mdp must be a cpi.TabularMDP; got {type(mdp).__name__}")
    if not mdp.gamma < 1.0:
        raise ValueError(f"policy-gradient optimisers need a discounted MDP (gamma < 1); "
                         f"{mdp.name} has gamma = {mdp.gamma}")


def _check_T(T) -> int:
    if int(T) != T or T < 0:
        raise ValueError(f"T (number of iterations) must be an integer >= 0; got {T}")
    return int(T)


def reward_span(mdp: TabularMDP) -> float:
    """``max R - min R`` over non-terminal states: the reward scale of the rates (the papers take
    rewards in [0, 1]). Floored at ``1e-12`` so that default steps ``1/beta`` stay finite."""
    R = mdp.R[~mdp.terminal] if (~mdp.terminal).any() else mdp.R
    return max(float(R.max() - R.min()), 1e-12)


def softmax_policy(theta) -> np.ndarray:
    """Row-wise softmax ``pi(a|s) = exp(theta(s,a)) / sum_b exp(theta(s,b))`` (S, A), stable."""
    theta = np.asarray(theta, dtype=np.float64)
    if theta.ndim != 2:
        raise ValueError(f"theta must have shape (S, A); got {theta.shape}")
    z = np.exp(theta - theta.max(axis=1, keepdims=True))  # (S, A), max entry 1 per row
    return z / z.sum(axis=1, keepdims=True)


def project_simplex(Y) -> np.ndarray:
    """Euclidean projection of each row of ``Y`` (S, A) onto the probability simplex.

    ``x = max(y - tau, 0)`` with ``tau`` the threshold making the row sum to one, found by
    sorting (Held, Wolfe & Crowder 1974; Duchi et al. 2008, Fig. 1). O(S A log A).
    """
    Y = np.asarray(Y, dtype=np.float64)
    if Y.ndim != 2 or not np.all(np.isfinite(Y)):
        raise ValueError(f"Y must be a finite (S, A) array; got shape {Y.shape}")
    S, A = Y.shape
    U = -np.sort(-Y, axis=1)  # (S, A) descending
    css = np.cumsum(U, axis=1) - 1.0  # (S, A)
    k = np.arange(1, A + 1)
    cond = U - css / k > 0  # (S, A), true on a prefix
    rho = A - 1 - np.argmax(cond[:, ::-1], axis=1)  # last index where cond holds
    tau = css[np.arange(S), rho] / (rho + 1)
    return np.maximum(Y - tau[:, None], 0.0)


def _eval(mdp, pi, mu, guess=None):
    ev = evaluate(mdp, pi, mu, guess=guess)
    return ev.V, q_from_v(mdp, ev.V), ev.d


def direct_gradient(mdp: TabularMDP, pi, mu=None) -> np.ndarray:
    """``grad_pi V^pi(mu)`` (S, A) ``= d_{pi,mu}(s) Q^pi(s, a) / (1 - gamma)``.

    Implements: Agarwal et al. 2021, eq. (4) (policy gradient theorem, direct
    parameterisation); the derivative treats the ``S*A`` entries of ``pi`` as free.
    """
    _check_discounted(mdp)
    _, Q, d = _eval(mdp, mdp.check_policy(pi), mu)
    return d[:, None] * Q / (1.0 - mdp.gamma)


def softmax_gradient(mdp: TabularMDP, theta, mu=None) -> np.ndarray:
    """``grad_theta V^{pi_theta}(mu)`` (S, A) ``= d(s) pi(a|s) A(s, a) / (1 - gamma)``.

    Implements: Agarwal et al. 2021, Lemma C.1 (softmax policy gradient).
    """
    _check_discounted(mdp)
    pi = softmax_policy(theta)
    V, Q, d = _eval(mdp, mdp.check_policy(pi, "softmax(theta)"), mu)
    return d[:, None] * pi * (Q - V[:, None]) / (1.0 - mdp.gamma)


def stationarity_gap(grad, pi) -> float:
    """``max_{pibar} (pibar - pi)^T grad = sum_s (max_a grad(s,a) - sum_a pi(a|s) grad(s,a))``.

    The first-order stationarity measure of gradient domination (Agarwal et al. Lemma 4.1);
    the max over policies is attained by a deterministic one, state by state.
    """
    grad = np.asarray(grad, dtype=np.float64)
    pi = np.asarray(pi, dtype=np.float64)
    return float((grad.max(axis=1) - (pi * grad).sum(axis=1)).sum())


# ----------------------------------------------------------------------------- result
@dataclass
class PGTrace:
    """The run of one optimiser: per-iterate quantities ``t = 0..T`` and the steps ``t < T``."""

    method: str
    subopt: np.ndarray  # (T+1,) V*(rho) - V^{pi_t}(rho)
    gap_inf: np.ndarray  # (T+1,) ||V* - V^{pi_t}||_inf
    objective: np.ndarray  # (T+1,) V^{pi_t}(mu), the ascended objective
    steps: np.ndarray  # (T,) step size used at iteration t (eta or alpha)
    min_prob_opt: np.ndarray  # (T+1,) min_s pi_t(a*(s)|s) for the optimal pi* of cpi.optimal
    greedy_error: np.ndarray  # (T,) max_s [max_a Q_t(s,a) - sum_a pi_{t+1}(a|s) Q_t(s,a)]
    pi: np.ndarray  # (S, A) final policy
    info: dict = field(default_factory=dict)


class _Recorder:
    def __init__(self, mdp, mu, rho, method, T):
        self.mdp, self.method = mdp, method
        self.mu = mdp.initial if mu is None else mdp.check_distribution(mu, "mu")
        self.rho = mdp.initial if rho is None else mdp.check_distribution(rho, "rho")
        self.Vstar, pistar = optimal(mdp)
        self.astar = np.argmax(pistar, axis=1)
        self.sub, self.gap, self.obj, self.minp, self.steps, self.gerr = [], [], [], [], [], []
        self.Q_prev = None
        self.V_prev = None

    def record(self, pi):
        """Evaluate ``pi`` (a Krylov solve starts from the previous iterate's value); returns
        ``(V, Q, d)`` and stores the trace entries."""
        V, Q, d = _eval(self.mdp, pi, self.mu, guess=self.V_prev)
        self.V_prev = V
        if self.Q_prev is not None:  # how greedy this policy is w.r.t. the previous Q
            Qp = self.Q_prev
            self.gerr.append(float((Qp.max(axis=1) - (pi * Qp).sum(axis=1)).max()))
        self.Q_prev = Q
        self.sub.append(float(self.rho @ (self.Vstar - V)))
        self.gap.append(float(np.abs(self.Vstar - V).max()))
        self.obj.append(float(self.mu @ V))
        self.minp.append(float(pi[np.arange(self.mdp.S), self.astar].min()))
        return V, Q, d

    def result(self, pi, **info):
        return PGTrace(self.method, np.array(self.sub), np.array(self.gap), np.array(self.obj),
                       np.array(self.steps, dtype=np.float64), np.array(self.minp),
                       np.array(self.gerr), pi, info)


def _start_policy(mdp, pi0):
    return mdp.uniform_policy() if pi0 is None else mdp.check_policy(pi0, "pi0").copy()


# ----------------------------------------------------------------------------- optimisers
def projected_pg(mdp: TabularMDP, T: int, eta: float | None = None, *, mu=None, rho=None,
                 pi0=None) -> PGTrace:
    """Projected gradient ascent on the direct parameterisation.

    ``pi_{t+1} = Proj_simplex(pi_t + eta * d_{pi_t,mu} Q^{pi_t} / (1 - gamma))``.
    Default ``eta = 1/beta`` with ``beta = 2 gamma |A| span(R) / (1 - gamma)^3`` the smoothness
    constant of Agarwal et al. (Lemma D.3, rewards in [0, 1] scaled by ``span(R)``), the step of
    their Theorem 4.2.
    """
    _check_discounted(mdp)
    T = _check_T(T)
    if eta is None:
        from .pg_bounds import direct_smoothness
        eta = 1.0 / max(direct_smoothness(mdp.gamma, mdp.A, reward_span(mdp)), 1e-12)
    eta = step_size(eta, "eta")
    rec = _Recorder(mdp, mu, rho, "projected", T)
    pi = _start_policy(mdp, pi0)
    for _ in range(T):
        V, Q, d = rec.record(pi)
        grad = d[:, None] * Q / (1.0 - mdp.gamma)  # (S, A)
        pi = project_simplex(pi + eta * grad)
        rec.steps.append(eta)
    rec.record(pi)
    return rec.result(pi)


def softmax_pg(mdp: TabularMDP, T: int, eta: float | None = None, *, mu=None, rho=None,
               theta0=None) -> PGTrace:
    """Exact softmax policy gradient ascent ``theta <- theta + eta grad_theta V(mu)``.

    Default ``eta = (1 - gamma)^3 / (8 span(R))``, one over the softmax smoothness constant
    (Agarwal et al. Theorem 5.1 uses ``eta <= (1-gamma)^3/8`` for rewards in [0, 1]).
    ``theta0`` defaults to zeros (uniform policy).
    """
    _check_discounted(mdp)
    T = _check_T(T)
    if eta is None:
        from .pg_bounds import softmax_smoothness
        eta = 1.0 / softmax_smoothness(mdp.gamma, reward_span(mdp))
    eta = step_size(eta, "eta")
    theta = _check_theta(mdp, theta0)
    rec = _Recorder(mdp, mu, rho, "softmax", T)
    for _ in range(T):
        pi = softmax_policy(theta)
        V, Q, d = rec.record(pi)
        theta = theta + eta * d[:, None] * pi * (Q - V[:, None]) / (1.0 - mdp.gamma)
        rec.steps.append(eta)
    pi = softmax_policy(theta)
    rec.record(pi)
    return rec.result(pi, theta=theta)


def _check_theta(mdp, theta0):
    if theta0 is None:
        return np.zeros((mdp.S, mdp.A))
    theta = np.array(theta0, dtype=np.float64)
    if theta.shape != (mdp.S, mdp.A) or not np.all(np.isfinite(theta)):
        raise ValueError(f"theta0 must be a finite array of shape (S, A) = ({mdp.S}, {mdp.A}); "
                         f"got shape {theta.shape}")
    return theta


def natural_pg(mdp: TabularMDP, T: int, eta, *, mu=None, rho=None, theta0=None) -> PGTrace:
    """Softmax natural policy gradient: ``theta <- theta + eta A^{pi_theta} / (1 - gamma)``.

    Equivalently ``pi_{t+1}(a|s) ∝ pi_t(a|s) exp(eta A_t(s, a) / (1 - gamma))`` (Agarwal et
    al. 2021, eq. (17) and Lemma 5.7). ``eta`` is a number or a sequence of ``T`` numbers
    (e.g. growing steps, under which NPG approaches policy iteration). The update does not
    depend on ``mu`` (the Fisher preconditioner cancels ``d_{pi,mu}``) when ``mu > 0``.
    """
    _check_discounted(mdp)
    T = _check_T(T)
    if np.ndim(eta) == 0:
        etas = np.full(T, step_size(eta, "eta"))
    else:
        etas = np.asarray(eta, dtype=np.float64)
        if etas.shape != (T,):
            raise ValueError(f"eta must be a number or a sequence of T = {T} numbers; got shape "
                             f"{etas.shape}")
        for e in etas:
            step_size(e, "eta")
    theta = _check_theta(mdp, theta0)
    rec = _Recorder(mdp, mu, rho, "npg", T)
    for t in range(T):
        pi = softmax_policy(theta)
        V, Q, _ = rec.record(pi)
        theta = theta + etas[t] * (Q - V[:, None]) / (1.0 - mdp.gamma)
        theta -= theta.max(axis=1, keepdims=True)  # shift-invariant; keeps exp() in range
        rec.steps.append(etas[t])
    pi = softmax_policy(theta)
    rec.record(pi)
    return rec.result(pi, theta=theta)


def soft_policy_iteration(mdp: TabularMDP, T: int, alpha: float, *, mu=None, rho=None,
                          pi0=None) -> PGTrace:
    """CPI with a fixed step: ``pi_{t+1} = (1 - alpha) pi_t + alpha greedy(Q^{pi_t})``.

    Implements: the exact-advantage conservative update of Kakade & Langford 2002 with a fixed
    ``alpha`` in (0, 1]; contraction in :func:`cpi.pg_bounds.soft_pi_contraction`.
    """
    _check_discounted(mdp)
    T = _check_T(T)
    alpha = step_size(alpha, "alpha", hi=1.0)
    rec = _Recorder(mdp, mu, rho, "soft_pi", T)
    pi = _start_policy(mdp, pi0)
    for _ in range(T):
        V, Q, _ = rec.record(pi)
        pi = (1.0 - alpha) * pi + alpha * greedy(Q)
        rec.steps.append(alpha)
    rec.record(pi)
    return rec.result(pi)


def policy_iteration(mdp: TabularMDP, T: int, *, mu=None, rho=None, pi0=None) -> PGTrace:
    """Howard's policy iteration for exactly ``T`` steps: ``pi_{t+1} = greedy(Q^{pi_t})``.

    The current action is kept unless another beats it by ``1e-12 max(1, ||V||_inf)`` (no
    cycling on ties); a stochastic ``pi0`` is first replaced by a greedy policy of its Q.
    The recorded step is 1 (soft policy iteration with ``alpha = 1``).
    """
    _check_discounted(mdp)
    T = _check_T(T)
    rec = _Recorder(mdp, mu, rho, "pi", T)
    pi = _start_policy(mdp, pi0)
    for _ in range(T):
        V, Q, _ = rec.record(pi)
        tol = 1e-12 * max(1.0, np.abs(V).max())
        cur = np.argmax(pi, axis=1)
        best = np.argmax(Q, axis=1)
        rows = np.arange(mdp.S)
        deterministic = pi.max(axis=1) == 1.0
        keep = deterministic & (Q[rows, best] <= Q[rows, cur] + tol)
        act = np.where(keep, cur, best)
        pi = np.zeros_like(pi)
        pi[rows, act] = 1.0
        rec.steps.append(1.0)
    rec.record(pi)
    return rec.result(pi)


# ----------------------------------------------------------------------------- config + dispatch
@dataclass
class PGConfig:
    """One optimiser run; saved beside every result of ``experiments/check_pg_td.py``."""

    method: Method = "npg"
    """Which optimiser: "projected", "softmax", "npg", "soft_pi" or "pi"."""
    T: int = 100
    """Number of iterations; the trace has ``T + 1`` entries."""
    step: float | None = None
    """``eta`` for projected/softmax/npg (None: the theory default; npg needs a value),
    ``alpha`` in (0, 1] for soft_pi; ignored by pi."""

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}; got {self.method!r}")
        _check_T(self.T)
        if self.method == "npg" and self.step is None:
            raise ValueError("method 'npg' needs step=eta (e.g. step=1.0); it has no default")
        if self.method == "soft_pi":
            if self.step is None:
                raise ValueError("method 'soft_pi' needs step=alpha in (0, 1]")
            step_size(self.step, "alpha", hi=1.0)
        elif self.step is not None and self.method != "pi":
            step_size(self.step, "eta")


def run_pg(mdp: TabularMDP, cfg: PGConfig, *, mu=None, rho=None) -> PGTrace:
    """Dispatch a :class:`PGConfig` to its optimiser, from the uniform policy."""
    if cfg.method == "projected":
        return projected_pg(mdp, cfg.T, cfg.step, mu=mu, rho=rho)
    if cfg.method == "softmax":
        return softmax_pg(mdp, cfg.T, cfg.step, mu=mu, rho=rho)
    if cfg.method == "npg":
        return natural_pg(mdp, cfg.T, cfg.step, mu=mu, rho=rho)
    if cfg.method == "soft_pi":
        return soft_policy_iteration(mdp, cfg.T, cfg.step, mu=mu, rho=rho)
    return policy_iteration(mdp, cfg.T, mu=mu, rho=rho)
