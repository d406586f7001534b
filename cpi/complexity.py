"""The reset theorem's quantities, measured one CPI iteration at a time.

The CPI-RR vs CPI-CARO theorem (``docs/resets.md``) bounds the samples *one iteration* needs:
``|A| H^2 R^2 / (tau^2 p^2)`` with the random reset, ``|A| H^2 R^2 / tau^2`` with the oracle,
where ``p = p_pi`` is the on-policy probability of reaching an improvable state. Its
per-iteration improvement is ``tau^2 p^2 / (H R)`` vs ``tau^2 p / (H R)``. This module measures
exactly those quantities for any reset distribution ``nu``:

* :func:`reference_step` - the exact CPI step under ``nu`` (``pi2`` greedy w.r.t. the exact
  ``Q_pi`` on ``supp nu``, ``Adv = E_nu E_pi2 A_pi``, ``alpha`` from the step rule) and its exact
  gain: the *exact first-iteration gain* when ``pi`` is the initial policy.
* :func:`one_step_trials` - independent Monte-Carlo CPI steps with ``n`` reset states per batch
  (the estimator of :func:`cpi.run_cpi`: ``pi2`` greedy on the pooled ``Q`` estimates of a first
  batch, ``Adv_hat`` from a fresh second batch) and the exact gain of each; for a grid of ``n``
  on nested batches (the first ``n`` states of one large batch), so a whole grid costs one batch.
* :func:`samples_per_iteration` - the *per-iteration sample size*: the smallest ``n`` with
  ``P(gain of the sampled step >= frac * gain of the reference step) >= level`` (seeded search
  on a geometric grid, isotonic fit of the success rate, log-linear interpolation).
* :func:`predicted_samples` - the normal-approximation prediction of that ``n`` from exact
  moments: ``n ~ (z_level / (1 - frac))^2 Var_nu(adv_hat) / Adv^2`` for the Kakade-Langford step
  (``alpha`` linear in ``Adv_hat``, so the gain ratio is ``Adv_hat / Adv``).

The reference is the *population* step (exact advantages on all of ``supp nu``), not the exact
step at the same sampled states: the latter gains nothing when no improvable state is sampled,
so "half of it" is then met by any step and the success rate is not monotone in ``n``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import stats
from scipy.optimize import isotonic_regression

from . import bounds as B
from .algorithms import CPIConfig, _step_constants, _step_size, mc_q_estimates
from .exact import evaluate, greedy, q_from_v, value
from .mdp import TabularMDP
from .resets import ResetDistribution

__all__ = ["ReferenceStep", "reference_step", "return_variance", "predicted_samples",
           "OneStepTrials", "one_step_trials", "SampleSize", "samples_per_iteration"]

CHUNK_STATES = 1 << 19  # reset states per batch simulated at once (memory ~ 40 MB)


@dataclass(frozen=True)
class ReferenceStep:
    """The exact CPI step under a reset distribution ``nu`` from policy ``pi``."""

    pi2: np.ndarray  # (S, A) greedy w.r.t. the exact Q_pi on supp nu, pi elsewhere
    adv: float  # Adv = E_{s~nu} E_{a~pi2} A_pi(s, a)
    alpha: float  # the step rule's alpha at Adv
    gain: float  # V^{(1-alpha) pi + alpha pi2}(D) - V^pi(D), exact


def _setup(mdp, pi, step):
    pi = mdp.uniform_policy() if pi is None else mdp.check_policy(pi)
    cfg = CPIConfig(step=step) if step != "fixed" else None
    if cfg is None:
        raise ValueError("step must be 'kakade_langford' or 'spi' (a fixed alpha does not "
                         "depend on the samples)")
    return pi, cfg, _step_constants(mdp, cfg)


def reference_step(mdp: TabularMDP, reset: ResetDistribution, *, pi=None,
                   step: str = "kakade_langford") -> ReferenceStep:
    """The exact CPI step under ``reset`` (as ``cpi.run_cpi(estimator="exact")`` takes it).

    ``pi`` defaults to the uniform policy: then ``gain`` is the exact first-iteration gain.
    Implements: Kakade & Langford 2002, section 4 (the CPI update) with the step rules of
    :mod:`cpi.algorithms`.
    """
    pi, cfg, consts = _setup(mdp, pi, step)
    ev = evaluate(mdp, pi)
    Q = q_from_v(mdp, ev.V)
    adv = Q - ev.V[:, None]
    nu = reset.distribution(mdp, pi, adv)
    pi2 = np.where((nu > 0)[:, None], greedy(Q), pi)
    adv_s = B.state_advantage(pi2, adv)
    Adv = float(nu @ adv_s)
    alpha = _step_size(cfg, mdp, consts, Adv, B.policy_distance(pi, pi2),
                       B.advantage_span(adv_s), ev.horizon)
    v_new = value(mdp, (1.0 - alpha) * pi + alpha * pi2)
    return ReferenceStep(pi2, Adv, float(alpha), float(mdp.initial @ (v_new - ev.V)))


def return_variance(mdp: TabularMDP, pi) -> np.ndarray:
    """``Var(G | s, a)`` (S, A) of one rollout return as :func:`cpi.rollout_returns` draws it.

    ``G`` is the undiscounted sum of rewards up to a terminal state (``gamma == 1``) or up to a
    Geometric(1-gamma) stop (``gamma < 1``); both have mean ``Q_pi(s, a)`` and second moment
    ``M2(s, a) = R^2 + 2 gamma R (P V)(s, a) + gamma (P M2_pi)(s, a)``: a value function with
    reward ``R^2 + 2 gamma R P V``, computed exactly the same way as ``V``.
    """
    pi = mdp.check_policy(pi)
    V = value(mdp, pi)
    Q = q_from_v(mdp, V)
    PV = (Q - mdp.R) / mdp.gamma if mdp.gamma > 0 else np.zeros_like(Q)
    R2 = mdp.R ** 2 + 2.0 * mdp.gamma * mdp.R * PV
    second = TabularMDP(mdp.P, np.where(mdp.terminal[:, None], 0.0, R2), mdp.gamma,
                        initial=mdp.initial, terminal=mdp.terminal, order=mdp.order,
                        name=f"second_moment({mdp.name})")
    M2 = q_from_v(second, value(second, pi))
    return np.maximum(M2 - Q ** 2, 0.0)


def predicted_samples(mdp: TabularMDP, reset: ResetDistribution, *, pi=None,
                      level: float = 0.9, frac: float = 0.5, n_rollouts: int = 1) -> float:
    """Normal-approximation prediction of :func:`samples_per_iteration` (Kakade-Langford step).

    With the unclipped K&L step ``alpha`` is proportional to ``Adv_hat``, so the sampled step
    gains at least ``frac`` of the reference when ``pi2`` agrees with the reference where it
    matters and ``Adv_hat >= frac * Adv``. ``Adv_hat`` averages ``n`` i.i.d. per-state estimates
    ``a_i = sum_a (pi2 - pi)(s_i, a) Q_hat(s_i, a)`` of mean ``Adv`` and variance
    ``V1 = sum_s nu(s) [sum_a (pi2 - pi)(s, a)^2 Var(G | s, a) / n_rollouts + adv_s(s)^2] - Adv^2``,
    hence ``n = (z_level / (1 - frac))^2 V1 / Adv^2``. For the random reset ``Adv = nu(s_g) A_g``
    with ``nu(s_g) ~ p / L``, so ``n ~ p^-2``; for the oracle ``nu`` does not depend on ``p``.
    """
    pi = mdp.uniform_policy() if pi is None else mdp.check_policy(pi)
    ref = reference_step(mdp, reset, pi=pi)
    adv = q_from_v(mdp, value(mdp, pi)) - value(mdp, pi)[:, None]
    nu = reset.distribution(mdp, pi, adv)
    diff = ref.pi2 - pi
    adv_s = B.state_advantage(ref.pi2, adv)
    var_s = (diff ** 2 * return_variance(mdp, pi)).sum(axis=1) / n_rollouts
    V1 = float(nu @ (var_s + adv_s ** 2) - ref.adv ** 2)
    if not ref.adv > 0:
        return float("inf")
    z = stats.norm.ppf(level) / (1.0 - frac)
    return float(z ** 2 * V1 / ref.adv ** 2)


@dataclass
class OneStepTrials:
    """Monte-Carlo CPI steps for each ``n`` in ``ns`` (rows: trials; nested batches)."""

    ns: np.ndarray  # (G,) reset states per batch (two batches per step)
    gain: np.ndarray  # (trials, G) exact gain of each sampled step
    adv_hat: np.ndarray  # (trials, G)
    alpha: np.ndarray  # (trials, G)
    rollout_steps_per_state: float  # env steps of the Q rollouts per reset state (measured)
    reset_steps_per_state: float  # env steps spent drawing one reset state (measured)
    rollouts_per_state: int  # Q-rollout trajectories per reset state: A * n_rollouts


def _check_ns(ns):
    ns = np.asarray(ns, dtype=np.int64)
    if ns.ndim != 1 or ns.size == 0 or ns.min() < 1 or np.any(np.diff(ns) <= 0):
        raise ValueError(f"ns must be a non-empty increasing list of positive integers; got {ns}")
    return ns


def one_step_trials(mdp: TabularMDP, reset: ResetDistribution, ns, trials: int, *, pi=None,
                    step: str = "kakade_langford", n_rollouts: int = 1,
                    seed: int = 0) -> OneStepTrials:
    """``trials`` independent sampled CPI steps from ``pi`` for every batch size in ``ns``.

    Each trial draws two batches of ``max(ns)`` reset states from ``reset`` and one rollout per
    (state, action) and ``n_rollouts``; the step for ``n`` uses the first ``n`` states of each
    batch, exactly as :func:`cpi.run_cpi` (``estimator="monte_carlo"``, ``n_states=n``) would take
    it. Seeded: the same arguments give the same numbers.
    """
    ns = _check_ns(ns)
    if int(trials) != trials or trials < 1:
        raise ValueError(f"trials must be a positive integer; got {trials}")
    pi, cfg, consts = _setup(mdp, pi, step)
    ev = evaluate(mdp, pi)
    adv = q_from_v(mdp, ev.V) - ev.V[:, None]
    v0 = float(mdp.initial @ ev.V)
    S, A, n_max = mdp.S, mdp.A, int(ns[-1])
    per_chunk = max(1, min(int(trials), CHUNK_STATES // n_max))
    gain = np.empty((trials, ns.size))
    adv_hat, alpha = np.empty_like(gain), np.empty_like(gain)
    steps_ro = steps_rs = 0
    for k, t0 in enumerate(range(0, int(trials), per_chunk)):
        c = min(per_chunk, int(trials) - t0)
        cs = seed + 16 * k
        s1, rs1 = reset.sample(mdp, pi, c * n_max, seed=cs, adv=adv)
        Q1, ro1 = mc_q_estimates(mdp, pi, s1, n_rollouts, seed=cs + 1)
        s2, rs2 = reset.sample(mdp, pi, c * n_max, seed=cs + 2, adv=adv)
        Q2, ro2 = mc_q_estimates(mdp, pi, s2, n_rollouts, seed=cs + 3)
        steps_ro += ro1 + ro2
        steps_rs += rs1 + rs2
        flat1 = (np.arange(c)[:, None] * S + s1.reshape(c, n_max))  # (c, n_max) into (c*S)
        Q1 = Q1.reshape(c, n_max, A)
        s2, Q2 = s2.reshape(c, n_max), Q2.reshape(c, n_max, A)
        Qsum = np.zeros((c * S, A))
        seen = np.zeros(c * S, np.bool_)
        lo = 0
        for j, n in enumerate(ns):
            idx = flat1[:, lo:n].ravel()
            for a in range(A):
                Qsum[:, a] += np.bincount(idx, weights=Q1[:, lo:n, a].ravel(), minlength=c * S)
            seen[idx] = True
            lo = n
            pi2 = np.broadcast_to(pi, (c, S, A)).copy()  # (c, S, A)
            rows = np.flatnonzero(seen)
            pi2.reshape(c * S, A)[rows] = greedy(Qsum[rows])  # greedy of the sum = of the mean
            diff = pi2 - pi[None]
            a_i = np.einsum("cna,cna->cn", diff[np.arange(c)[:, None], s2[:, :n]], Q2[:, :n])
            adv_hat[t0:t0 + c, j] = a_i.mean(axis=1)
            for t in range(c):
                dA = max(0.0, a_i[t].max()) - min(0.0, a_i[t].min())
                al = _step_size(cfg, mdp, consts, adv_hat[t0 + t, j],
                                float(np.abs(diff[t]).sum(axis=1).max()), dA, ev.horizon)
                alpha[t0 + t, j] = al
                gain[t0 + t, j] = (float(mdp.initial @ value(mdp, (1 - al) * pi + al * pi2[t]))
                                   - v0) if al > 0 else 0.0
    n_states = 2 * int(trials) * n_max
    return OneStepTrials(ns, gain, adv_hat, alpha, steps_ro / n_states, steps_rs / n_states,
                         A * int(n_rollouts))


@dataclass
class SampleSize:
    """Result of :func:`samples_per_iteration`."""

    n: float  # per-iteration sample size (reset states per batch); a lower bound if censored
    censored: bool  # True: the success rate stayed below `level` up to n_cap (n > n_cap)
    reference: ReferenceStep
    predicted: float  # predicted_samples (normal approximation)
    ns: np.ndarray = field(repr=False)  # grid of n tried
    success: np.ndarray = field(repr=False)  # success rate at each n
    trials: np.ndarray = field(repr=False)  # trials at each n
    rollout_steps_per_state: float = 0.0
    reset_steps_per_state: float = 0.0
    rollouts_per_state: int = 0

    def per_iteration(self) -> dict:
        """Cost of one iteration at ``n`` (two batches): rollout trajectories and env steps."""
        m = 2.0 * self.n
        return {"states": m, "rollouts": m * self.rollouts_per_state,
                "rollout_steps": m * self.rollout_steps_per_state,
                "reset_steps": m * self.reset_steps_per_state}


def _grid(lo, hi, per_octave):
    k = max(1, int(np.ceil(np.log2(hi / lo) * per_octave)))
    return np.unique(np.round(np.geomspace(lo, hi, k + 1)).astype(np.int64))


def samples_per_iteration(mdp: TabularMDP, reset: ResetDistribution, *, pi=None,
                          step: str = "kakade_langford", level: float = 0.9, frac: float = 0.5,
                          trials: int = 200, n_rollouts: int = 1, n_guess: float | None = None,
                          n_cap: int = 1 << 20, per_octave: int = 4, seed: int = 0) -> SampleSize:
    """Smallest ``n`` with ``P(gain(n) >= frac * reference gain) >= level``; seeded.

    Search: ``trials`` nested trials on a geometric grid (``per_octave`` points per doubling)
    from ``n_guess / 4`` to ``2 n_guess`` (``n_guess`` defaults to :func:`predicted_samples`);
    the window moves up (or down) by octaves while the success rate stays below (or starts
    above) ``level``, up to ``n_cap``. The success rates of all grid points are fitted by an
    increasing isotonic regression (weights: trials) and ``n`` is the first crossing of
    ``level``, interpolated linearly in ``log n``. When the rate never reaches ``level`` below
    ``n_cap`` the result is censored (``n = n_cap``, a lower bound).
    """
    if not 0 < level < 1 or not 0 <= frac < 1:
        raise ValueError(f"need 0 < level < 1 and 0 <= frac < 1; got level={level}, frac={frac}")
    pi, _, _ = _setup(mdp, pi, step)
    ref = reference_step(mdp, reset, pi=pi, step=step)
    tol = B.tolerance(value(mdp, pi))
    if not ref.gain > tol:
        raise ValueError(f"the exact step under the {reset.name} reset gains {ref.gain:.3g}: "
                         f"nothing for a sampled step to reach (no improvable state in supp nu?)")
    pred = predicted_samples(mdp, reset, pi=pi, level=level, frac=frac, n_rollouts=n_rollouts)
    guess = float(np.clip(n_guess if n_guess is not None else pred, 1, n_cap))
    lo, hi = max(1.0, guess / 4), min(float(n_cap), max(2.0 * guess, 2.0))
    rec = {}  # n -> (successes, trials)
    costs = []
    for attempt in range(64):
        ns = _grid(lo, hi, per_octave)
        ns = ns[~np.isin(ns, list(rec))] if rec else ns
        if ns.size:
            tr = one_step_trials(mdp, reset, ns, trials, pi=pi, step=step, n_rollouts=n_rollouts,
                                 seed=seed + 7919 * attempt)
            ok = tr.gain >= frac * ref.gain - tol
            for j, n in enumerate(ns):
                rec[int(n)] = (int(ok[:, j].sum()), int(trials))
            costs.append((tr.rollout_steps_per_state, tr.reset_steps_per_state, tr.rollouts_per_state))
        grid = np.array(sorted(rec))
        succ = np.array([rec[n][0] / rec[n][1] for n in grid])
        w = np.array([rec[n][1] for n in grid], dtype=np.float64)
        fit = isotonic_regression(succ, weights=w, increasing=True).x
        if fit[-1] < level and grid[-1] < n_cap:
            lo, hi = float(grid[-1]), min(float(n_cap), 8.0 * grid[-1])
        elif fit[0] >= level and grid[0] > 1:
            lo, hi = max(1.0, grid[0] / 8.0), float(grid[0])
        else:
            break
    k = int(np.argmax(fit >= level)) if (fit >= level).any() else -1
    if k < 0:
        n, censored = float(grid[-1]), True
    elif k == 0:
        n, censored = float(grid[0]), False
    else:
        x0, x1 = np.log(grid[k - 1]), np.log(grid[k])
        n = float(np.exp(x0 + (level - fit[k - 1]) / (fit[k] - fit[k - 1]) * (x1 - x0)))
        censored = False
    ro, rs, nro = (float(np.mean([c[i] for c in costs])) for i in range(3))
    return SampleSize(n, censored, ref, pred, grid, succ, w.astype(np.int64), ro, rs, int(nro))
