"""Conservative Policy Iteration (Kakade & Langford 2002) with reset distributions.

One iteration, from the current policy ``pi`` and a reset distribution ``nu``
(:mod:`cpi.resets`):

1. ``pi2`` greedy w.r.t. (estimated) ``Q_pi`` on the states CPI restarts from (``supp nu``
   for the exact estimator, the sampled reset states for Monte Carlo); ``pi2 = pi`` elsewhere.
2. ``Adv_hat``, an estimate of ``E_{s~nu} E_{a~pi2} A_pi(s, a)``; stop when
   ``Adv_hat < 2 epsilon / 3`` (K&L section 6, stopping rule).
3. ``alpha`` by a step rule, ``pi <- (1 - alpha) pi + alpha pi2`` (mixture update).

Step rules (``gamma < 1`` / episodic ``gamma == 1`` with episode length ``<= H``):

* ``kakade_langford``: ``min(1, (1-gamma)^2 Adv/(4 R))`` (K&L Corollary 4.2) /
  ``min(1, L Adv / (2 A_max H (H-1)))`` (:func:`cpi.bounds.finite_horizon_step_size`).
* ``spi``: Pirotta et al. 2013, ``min(1, (1-gamma) Adv/(gamma Delta_pi Delta_A))`` / its
  finite-horizon analogue.
* ``fixed``: the configured ``alpha``.

``Adv`` in the step rules is the estimate under the reset distribution ``nu``: that is where
RR and CARO differ (CARO's ``Adv`` is not diluted by the mass ``1 - p`` of states with nothing
to improve). Estimators: ``exact`` (advantages from :mod:`cpi.exact`) and ``monte_carlo``
(``n_states`` reset states, ``n_rollouts`` rollouts per state and action, with a fresh batch for
``Adv_hat`` so that it is unbiased for the chosen ``pi2``; every environment step counted).

Every iteration also records exact diagnostics (not counted as samples): ``V^pi(D)``, the
K&L policy advantage ``Adv = E_{d_{pi,D}} E_{pi2} A_pi``, ``eps = max_s |E_{pi2} A_pi(s)|``,
the bound's predicted gain (K&L Theorem 4.1, or its finite-horizon form when ``gamma == 1``)
and the realised gain ``V^{new}(D) - V^pi(D)``; and its cost: rollout trajectories
(``2 n_states |A| n_rollouts`` per Monte-Carlo iteration), rollout and reset environment steps.
A run ends at the target (reached up to round-off), the sample budget, K&L's stopping rule,
``max_iter``, or when the oracle finds no improvable state; ``CPIResult.stop`` says which.

What the RR vs CARO rates predict for each of these quantities (per-iteration samples,
first-iteration gain, samples to a target) is in ``docs/resets.md``;
:mod:`cpi.complexity` measures the per-iteration ones.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np

from . import bounds as B
from .exact import evaluate, greedy, optimal, q_from_v as cpi_q_from_v
from .mdp import TabularMDP
from .resets import NoImprovableState, RESETS, improvable_states, make_reset, reach_probability
from .sampling import rollout_returns

__all__ = ["CPIConfig", "CPIStep", "CPIResult", "run_cpi", "mc_q_estimates", "mc_advantage",
           "advantage_bound"]

STEPS = ("kakade_langford", "spi", "fixed")
ESTIMATORS = ("exact", "monte_carlo")


@dataclass
class CPIConfig:
    """Configuration of :func:`run_cpi`. Choices are validated in ``__post_init__``."""

    reset: Literal["start", "random", "oracle", "noisy"] = "random"
    """Reset distribution ``nu`` (see :mod:`cpi.resets`)."""
    tau: float = 0.0
    """Improvability threshold of ``oracle``/``noisy`` (``max_a A_pi(s,a) > tau``); also the
    threshold of the recorded ``p_pi``."""
    q: float = 0.5
    """Localizer accuracy of ``noisy`` (0: random reset, 1: oracle)."""
    step: Literal["kakade_langford", "spi", "fixed"] = "kakade_langford"
    """Step rule for the mixture weight ``alpha``."""
    alpha: float | None = None
    """The fixed step in (0, 1]; required by ``step="fixed"``, ignored otherwise."""
    estimator: Literal["exact", "monte_carlo"] = "exact"
    """How ``Q_pi`` and ``Adv`` are obtained."""
    n_states: int = 64
    """Monte Carlo: reset states per batch (two batches per iteration: greedy, then Adv)."""
    n_rollouts: int = 1
    """Monte Carlo: rollouts per (reset state, action)."""
    epsilon: float = 1e-3
    """Target accuracy of K&L's stopping rule: stop when ``Adv_hat < 2 epsilon / 3``."""
    max_iter: int = 1000
    """Hard cap on iterations."""
    max_samples: int | None = None
    """Stop once this many environment steps (rollouts + resets) have been spent."""
    target_suboptimality: float | None = None
    """Stop once ``V*(D) - V^pi(D) <= target`` (experiments measuring samples-to-target)."""
    r_max: float | None = None
    """Reward bound ``R`` of K&L's step (default: span of ``R`` including 0), ``gamma < 1``."""
    adv_max: float | None = None
    """A-priori bound on ``|A_pi|`` for the finite-horizon K&L step (default: exact return
    span ``max_s (V_max(s) - V_min(s))``), ``gamma == 1``."""
    on_small_adv: Literal["stop", "continue"] = "stop"
    """``stop``: K&L's rule (stop when ``Adv_hat < 2 epsilon/3``). ``continue``: make no update
    that iteration and sample again (samples-to-target experiments, where a noisy estimate
    must not end the run); the run then ends by target, budget or ``max_iter``."""
    track_p: bool = True
    """Record ``p_pi`` every iteration (one sparse solve each); NaN when False."""
    seed: int = 0
    """Seed of the Monte Carlo estimator (each iteration uses ``seed + 4 * k``..)."""

    def __post_init__(self):
        if self.reset not in RESETS:
            raise ValueError(f"reset must be one of {RESETS}; got {self.reset!r}")
        if self.step not in STEPS:
            raise ValueError(f"step must be one of {STEPS}; got {self.step!r}")
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}; got {self.estimator!r}")
        if self.step == "fixed":
            if self.alpha is None:
                raise ValueError("step='fixed' needs alpha in (0, 1]; pass alpha=...")
            if not 0.0 < float(self.alpha) <= 1.0:
                raise ValueError(f"alpha must lie in (0, 1]; got {self.alpha}")
        elif self.alpha is not None:
            raise ValueError(f"alpha={self.alpha} is only used by step='fixed'; got step="
                             f"{self.step!r} (drop alpha or set step='fixed')")
        make_reset(self.reset, tau=self.tau, q=self.q)  # validates tau and q
        for name in ("n_states", "n_rollouts", "max_iter"):
            v = getattr(self, name)
            if int(v) != v or v < 1:
                raise ValueError(f"{name} must be a positive integer; got {v}")
        if not self.epsilon > 0:
            raise ValueError(f"epsilon must be > 0; got {self.epsilon}")
        for name in ("r_max", "adv_max", "target_suboptimality"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                raise ValueError(f"{name} must be > 0 when given; got {v}")
        if self.on_small_adv not in ("stop", "continue"):
            raise ValueError(f"on_small_adv must be 'stop' or 'continue'; got {self.on_small_adv!r}")
        if self.max_samples is not None and self.max_samples < 1:
            raise ValueError(f"max_samples must be >= 1 when given; got {self.max_samples}")


class CPIStep(NamedTuple):
    """One iteration's record (exact diagnostics are not counted in the samples)."""

    value: float  # V^pi(D) before the update
    suboptimality: float  # V*(D) - V^pi(D)
    adv_hat: float  # estimate of E_nu E_pi2 A_pi that the step rule used
    adv: float  # exact K&L policy advantage E_{d_{pi,D}} E_pi2 A_pi
    eps: float  # exact max_s |E_pi2 A_pi(s, .)|
    alpha: float
    predicted: float  # bound's lower bound on the gain (K&L Thm 4.1 / finite-horizon form)
    realised: float  # V^{new}(D) - V^pi(D)
    p_improvable: float  # p_pi: probability pi reaches {max_a A_pi > tau}
    rollout_steps: int  # environment steps of this iteration's Q rollouts
    reset_steps: int  # environment steps spent drawing reset states
    samples: int  # cumulative rollout + reset steps after this iteration
    rollouts: int = 0  # trajectories of this iteration's Q rollouts (n_states * A * n_rollouts per batch)


@dataclass
class CPIResult:
    pi: np.ndarray  # (S, A) final policy
    history: list  # list[CPIStep]
    stop: str  # "converged" | "no_improvable_state" | "target" | "max_samples" | "max_iter"
    config: CPIConfig
    value: float  # V^pi(D) of the final policy
    suboptimality: float  # V*(D) - V^pi(D) of the final policy
    samples: int  # total environment steps
    rollouts: int = 0  # total Q-rollout trajectories

    def table(self) -> dict:
        """History as a dict of arrays (one entry per :class:`CPIStep` field)."""
        return {f: np.array([getattr(h, f) for h in self.history]) for f in CPIStep._fields}


# ----------------------------------------------------------------------------- Monte Carlo
def mc_q_estimates(mdp: TabularMDP, pi, states, n_rollouts: int = 1, seed: int = 0):
    """Monte Carlo ``Q_pi(s, a)`` for every sampled state and action.

    Returns ``(Q_hat (n, A), steps)``: ``Q_hat[i, a]`` averages ``n_rollouts`` returns of
    rollouts from ``states[i]`` whose first action is ``a`` (unbiased, see
    :func:`cpi.rollout_returns`); ``steps`` counts every environment step.
    """
    states = np.asarray(states, dtype=np.int64)
    n, A, m = states.size, mdp.A, int(n_rollouts)
    starts = np.repeat(states, A * m)  # (n*A*m,) ordered (state, action, rollout)
    acts = np.tile(np.repeat(np.arange(A), m), n)
    ro = rollout_returns(mdp, pi, starts, acts, seed=seed)
    return ro.returns.reshape(n, A, m).mean(axis=2), ro.steps


def mc_advantage(mdp: TabularMDP, pi, pi2, states, n_rollouts: int = 1, seed: int = 0):
    """Unbiased Monte Carlo ``E_{s~nu} E_{a~pi2} A_pi(s, a)`` from states ``s_i ~ nu``.

    Per state ``adv_i = sum_a (pi2(a|s_i) - pi(a|s_i)) Q_hat(s_i, a)`` (``E_pi A_pi = 0``).
    Returns ``(mean, standard error, per-state estimates (n,), steps)``.
    """
    pi = mdp.check_policy(pi)
    pi2 = mdp.check_policy(pi2, "pi2")
    states = np.asarray(states, dtype=np.int64)
    if states.size == 0:
        raise ValueError("states is empty: need at least one reset state")
    Qh, steps = mc_q_estimates(mdp, pi, states, n_rollouts, seed)
    a = np.einsum("na,na->n", pi2[states] - pi[states], Qh)
    se = a.std(ddof=1) / np.sqrt(a.size) if a.size > 1 else np.inf
    return float(a.mean()), float(se), a, steps


def advantage_bound(mdp: TabularMDP) -> float:
    """``max_s (V_max(s) - V_min(s))``: bounds ``|A_pi(s, a)|`` for every policy.

    ``V_max`` is the optimal value, ``V_min`` the minimal one (optimal value of ``-R``); both
    ``Q_pi(s, a)`` and ``V_pi(s)`` lie in ``[V_min(s), V_max(s)]``.
    """
    vmax, _ = optimal(mdp)
    neg = TabularMDP(mdp.P, -mdp.R, mdp.gamma, initial=mdp.initial, terminal=mdp.terminal,
                     order=mdp.order, name="neg")
    vmin = -optimal(neg)[0]
    span = float(np.max(vmax - vmin))
    return span if span > 0 else 1.0


# ----------------------------------------------------------------------------- CPI
def _step_size(cfg, mdp, consts, adv_hat, delta_pi, delta_A, L):
    if cfg.step == "fixed":
        return float(cfg.alpha)
    if mdp.gamma < 1.0:
        if cfg.step == "kakade_langford":
            return B.kl_step_size(adv_hat, mdp.gamma, consts["r_max"])
        return B.spi_step_size(adv_hat, delta_pi, delta_A, mdp.gamma)
    if cfg.step == "kakade_langford":
        return B.finite_horizon_step_size(L * adv_hat, consts["adv_max"], consts["H"])
    return B.spi_finite_horizon_step_size(L * adv_hat, delta_pi, delta_A, consts["H"])


def _step_constants(mdp, cfg) -> dict:
    """The constants of the step rules: ``r_max`` (discounted), ``H`` and ``adv_max`` (episodic)."""
    consts = {}
    if mdp.gamma < 1.0:
        span = max(float(mdp.R.max()), 0.0) - min(float(mdp.R.min()), 0.0)
        consts["r_max"] = cfg.r_max or (span if span > 0 else 1.0)
    else:
        H = mdp.max_length
        if H is None:
            raise ValueError("gamma == 1 needs a bound on episode length (a DAG MDP or "
                             "horizon=...) for CPI's finite-horizon step rules and bound")
        consts["H"] = int(H)
        if cfg.step == "kakade_langford":
            consts["adv_max"] = cfg.adv_max or advantage_bound(mdp)
    return consts


def _estimate_exact(mdp, pi, Q, adv, reset):
    nu = reset.distribution(mdp, pi, adv)
    pi2 = np.where((nu > 0)[:, None], greedy(Q), pi)
    adv_s = B.state_advantage(pi2, adv)
    return pi2, float(nu @ adv_s), B.advantage_span(adv_s), 0, 0


def _estimate_mc(mdp, pi, reset, adv, cfg, seed):
    s1, r1 = reset.sample(mdp, pi, cfg.n_states, seed=seed, adv=adv)
    Qh, st1 = mc_q_estimates(mdp, pi, s1, cfg.n_rollouts, seed=seed + 1)
    uniq, inv = np.unique(s1, return_inverse=True)
    Qsum = np.zeros((uniq.size, mdp.A))
    np.add.at(Qsum, inv, Qh)  # pool repeated reset states
    pi2 = pi.copy()
    pi2[uniq] = greedy(Qsum / np.bincount(inv)[:, None])
    s2, r2 = reset.sample(mdp, pi, cfg.n_states, seed=seed + 2, adv=adv)
    mean, _, a, st2 = mc_advantage(mdp, pi, pi2, s2, cfg.n_rollouts, seed=seed + 3)
    delta_A = max(0.0, a.max()) - min(0.0, a.min())  # adv_s = 0 where pi2 = pi
    return pi2, mean, float(delta_A), st1 + st2, r1 + r2


def run_cpi(mdp: TabularMDP, config: CPIConfig | None = None, pi0=None, **overrides) -> CPIResult:
    """Run Conservative Policy Iteration with a reset distribution; returns a :class:`CPIResult`.

    ``config`` fields may be overridden by keyword (``run_cpi(mdp, reset="oracle", tau=0.1)``).
    ``pi0`` defaults to the uniform policy. Episodic MDPs (``gamma == 1``) need a bound on the
    episode length (a DAG or ``horizon=``) for the finite-horizon step rules and bound.
    Implements: Kakade & Langford 2002, section 4 (CPI) and section 6 (sample-based CPI).
    """
    cfg = config if config is not None else CPIConfig()
    if overrides:
        cfg = dataclasses.replace(cfg, **overrides)
    elif not isinstance(cfg, CPIConfig):
        raise TypeError(f"config must be a CPIConfig; got {type(cfg).__name__}")
    pi = mdp.uniform_policy() if pi0 is None else mdp.check_policy(pi0, "pi0").copy()
    reset = make_reset(cfg.reset, tau=cfg.tau, q=cfg.q)
    D = mdp.initial
    consts = _step_constants(mdp, cfg)
    V_star = optimal(mdp)[0]
    vstar = float(D @ V_star)
    tol = B.tolerance(V_star)  # "target reached" up to round-off (0.5000000000000002 x sub0 is 0.5 x sub0)

    history, samples, rollouts, stop = [], 0, 0, "max_iter"
    ev = evaluate(mdp, pi)
    for k in range(cfg.max_iter):
        v = float(D @ ev.V)
        if cfg.target_suboptimality is not None and vstar - v <= cfg.target_suboptimality + tol:
            stop = "target"
            break
        if cfg.max_samples is not None and samples >= cfg.max_samples:
            stop = "max_samples"
            break
        Q = cpi_q_from_v(mdp, ev.V)
        adv = Q - ev.V[:, None]  # (S, A)
        try:
            if cfg.estimator == "exact":
                pi2, adv_hat, delta_A, ro, rs = _estimate_exact(mdp, pi, Q, adv, reset)
            else:
                pi2, adv_hat, delta_A, ro, rs = _estimate_mc(mdp, pi, reset, adv, cfg,
                                                             cfg.seed + 4 * k)
        except NoImprovableState:
            stop = "no_improvable_state"
            break
        samples += ro + rs
        n_ro = 0 if cfg.estimator == "exact" else 2 * cfg.n_states * mdp.A * cfg.n_rollouts
        rollouts += n_ro
        if adv_hat < 2.0 * cfg.epsilon / 3.0:
            history.append(_record(mdp, pi, pi2, adv, ev, v, vstar, adv_hat, 0.0, v, cfg,
                                   ro, rs, samples, consts, n_ro))
            if cfg.on_small_adv == "stop":
                stop = "converged"
                break
            continue
        alpha = _step_size(cfg, mdp, consts, adv_hat, B.policy_distance(pi, pi2), delta_A,
                           ev.horizon)
        pi_new = (1.0 - alpha) * pi + alpha * pi2
        ev_new = evaluate(mdp, pi_new)
        history.append(_record(mdp, pi, pi2, adv, ev, v, vstar, adv_hat, alpha,
                               float(D @ ev_new.V), cfg, ro, rs, samples, consts, n_ro))
        pi, ev = pi_new, ev_new
    v = float(D @ ev.V)
    return CPIResult(pi, history, stop, cfg, v, vstar - v, samples, rollouts)


def _record(mdp, pi, pi2, adv, ev, v, vstar, adv_hat, alpha, v_new, cfg, ro, rs, samples,
            consts, n_ro):
    adv_s = B.state_advantage(pi2, adv)
    Adv, eps = float(ev.d @ adv_s), B.kl_eps(adv_s)
    if mdp.gamma < 1.0:
        pred = B.kl_lower_bound(Adv, eps, alpha, mdp.gamma)
    else:
        pred = B.finite_horizon_lower_bound(ev.horizon * Adv, eps, alpha, consts["H"])
    p = (reach_probability(mdp, pi, improvable_states(mdp, pi, cfg.tau, adv)) if cfg.track_p
         else float("nan"))
    return CPIStep(v, vstar - v, float(adv_hat), Adv, eps, float(alpha), float(pred),
                   v_new - v, p, int(ro), int(rs), int(samples), int(n_ro))

