"""Reset (restart) distributions: where sample-based CPI restarts its rollouts.

A reset distribution maps ``(mdp, pi)`` to a distribution ``nu`` over states (S,) and can
sample from it, returning the environment steps that sampling took (``docs/resets.md``, which
also states the CPI-RR vs CPI-CARO rates and which quantity each of their slopes is about):

========== =========================================================== ======================================
name       ``nu``                                                       LLM analogue (``llm.resets``, same names)
========== =========================================================== ======================================
``start``  ``D`` (the MDP's initial distribution)                       ``start``: fresh chains only (GRPO)
``random`` ``d_{pi,D}``: uniform along on-policy trajectories (RR)      ``random``: a uniform thought of a
                                                                        uniform fresh chain; RRPO is
                                                                        ``random_failed``, a uniform thought
                                                                        of a *failed* chain (a weak oracle)
``oracle`` ``d_{pi,D}`` restricted to improvable states                 ``oracle``: the task's step checker
           ``{s : max_a A_pi(s,a) > tau}``, renormalised (CARO)         names the first wrong thought
``noisy``  ``q * oracle + (1 - q) * random`` (self-localizer)           ``noisy(q)``: the checker's first error
                                                                        w.p. ``q``, else uniform over the
                                                                        failed chain's thoughts
--         --                                                           ``self`` (SRPO): the model localizes
                                                                        its own error; its measured hit rate
                                                                        places it on the ``q`` axis
========== =========================================================== ======================================

Sampling costs: ``start`` draws from ``D`` for free; ``random`` simulates ``pi`` from ``D``
(:func:`cpi.sample_states`, every step counted); ``oracle`` is the exact law of an on-policy
state *conditioned on being improvable*: it is drawn by rejection from on-policy states and
the steps of the rejected draws are counted too (``reset_steps``; about ``L/p`` steps per state
with ``p`` the improvable mass). CPI reports rollout steps and reset steps separately, because
the paper's CARO rate assumes the oracle's localisation is free.

When no state is improvable (``pi`` is ``tau``-greedy on its own occupancy) the oracle has no
support: ``on_empty="raise"`` (default) raises :class:`NoImprovableState` (a ``ValueError``);
``on_empty="random"`` falls back to RR. ``noisy`` always falls back to RR for its oracle part.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from .exact import advantages, occupancy, policy_matrix
from .mdp import TabularMDP
from .sampling import sample_from, sample_states

__all__ = ["NoImprovableState", "ResetDistribution", "Start", "RandomReset", "Oracle", "Noisy",
           "make_reset", "improvable_states", "reach_probability", "roundoff", "RESETS"]

RESETS = ("start", "random", "oracle", "noisy")


class NoImprovableState(ValueError):
    """Raised by the oracle reset when no state has ``max_a A_pi(s, a) > tau``."""


def _check_tau(tau):
    tau = float(tau)
    if not tau >= 0 or not np.isfinite(tau):
        raise ValueError(f"tau (the improvability threshold) must be finite and >= 0; got {tau}")
    return tau


def roundoff(mdp: TabularMDP) -> float:
    """Round-off allowance on advantages: ``1e-10 * max(1, max|R| * h)``.

    ``h`` is the longest episode (DAGs / declared horizons), ``1/(1-gamma)`` when discounted,
    else 1; ``max|R| * h`` bounds ``|V|``. ``A = Q - V`` of actions that are exactly equal is
    ``~1e-16 |V|`` in float64 (``V`` averages the ``Q``), so with ``tau = 0`` a state whose actions
    are all the same would otherwise count as improvable.
    """
    h = mdp.max_length if mdp.gamma == 1.0 else 1.0 / (1.0 - mdp.gamma)
    return 1e-10 * max(1.0, float(np.abs(mdp.R).max()) * float(h or 1.0))


def improvable_states(mdp: TabularMDP, pi, tau: float, adv=None) -> np.ndarray:
    """Bool mask (S,): ``max_a A_pi(s, a) > tau`` on non-terminal states.

    Up to round-off: an advantage must exceed ``tau`` by more than :func:`roundoff`.
    ``adv`` (S, A) may pass precomputed advantages ``A_pi``.
    """
    tau = _check_tau(tau)
    adv = advantages(mdp, pi) if adv is None else np.asarray(adv, dtype=np.float64)
    if adv.shape != (mdp.S, mdp.A):
        raise ValueError(f"adv must have shape (S, A) = ({mdp.S}, {mdp.A}); got {adv.shape}")
    return (adv.max(axis=1) > tau + roundoff(mdp)) & ~mdp.terminal


def reach_probability(mdp: TabularMDP, pi, mask, start=None) -> float:
    """``p_pi``: probability that an episode of ``pi`` from ``start`` ever visits ``mask``.

    Solves ``x = 1[mask] + (1 - 1[mask]) gamma P_pi x`` (``x = 0`` on terminal states): for
    ``gamma == 1`` the hitting probability; for ``gamma < 1`` the probability of hitting the
    set before a Geometric(1-gamma) stop (the discounted analogue).
    """
    pi = mdp.check_policy(pi)
    mu = mdp.initial if start is None else mdp.check_distribution(start, "start")
    mask = np.asarray(mask, dtype=np.bool_)
    if mask.shape != (mdp.S,):
        raise ValueError(f"mask must have shape ({mdp.S},); got {mask.shape}")
    keep = (~mask & ~mdp.terminal).astype(np.float64)
    M = sp.diags(keep) @ policy_matrix(mdp, pi)
    b = mask.astype(np.float64)
    x = spla.spsolve((sp.identity(mdp.S, format="csc") - mdp.gamma * M).tocsc(), b)
    return float(np.clip(mu @ x, 0.0, 1.0))


@dataclass(frozen=True)
class ResetDistribution:
    """Base class: ``distribution(mdp, pi)`` -> (S,) and ``sample(...)`` -> (states, steps)."""

    @property
    def name(self) -> str:
        raise NotImplementedError

    def distribution(self, mdp: TabularMDP, pi, adv=None) -> np.ndarray:
        """The reset distribution ``nu`` (S,), normalised."""
        raise NotImplementedError

    def sample(self, mdp: TabularMDP, pi, n: int, seed: int = 0, adv=None):
        """``n`` states from ``nu``; returns ``(states (n,), steps)`` (steps spent finding them)."""
        raise NotImplementedError

    @staticmethod
    def _n(n):
        if int(n) != n or n < 0:
            raise ValueError(f"n must be a non-negative integer; got {n}")
        return int(n)


@dataclass(frozen=True)
class Start(ResetDistribution):
    """``nu = D``: restart only from the MDP's initial distribution (GRPO's fresh samples)."""

    @property
    def name(self):
        return "start"

    def distribution(self, mdp, pi, adv=None):
        return mdp.initial.copy()

    def sample(self, mdp, pi, n, seed=0, adv=None):
        return sample_from(mdp.initial, self._n(n), seed), 0


@dataclass(frozen=True)
class RandomReset(ResetDistribution):
    """``nu = d_{pi,D}``: a uniformly random state along on-policy trajectories (RR / RRPO)."""

    @property
    def name(self):
        return "random"

    def distribution(self, mdp, pi, adv=None):
        return occupancy(mdp, pi)

    def sample(self, mdp, pi, n, seed=0, adv=None):
        return sample_states(mdp, pi, self._n(n), seed=seed)


@dataclass(frozen=True)
class Oracle(ResetDistribution):
    """CARO: ``nu(s) ∝ d_{pi,D}(s) 1[max_a A_pi(s,a) > tau]`` (exact advantages: an oracle).

    Attributes
    ----------
    tau : float >= 0
        Improvability threshold: a state is improvable when some action's advantage exceeds it.
    on_empty : "raise" | "random"
        What to do when no visited state is improvable: raise :class:`NoImprovableState`, or
        fall back to the random reset.
    """

    tau: float = 0.0
    on_empty: Literal["raise", "random"] = "raise"

    def __post_init__(self):
        _check_tau(self.tau)
        if self.on_empty not in ("raise", "random"):
            raise ValueError(f"on_empty must be 'raise' or 'random'; got {self.on_empty!r}")

    @property
    def name(self):
        return "oracle"

    def _mask_and_d(self, mdp, pi, adv):
        d = occupancy(mdp, pi)
        mask = improvable_states(mdp, pi, self.tau, adv) & (d > 0)
        return mask, d

    def _empty(self):
        if self.on_empty == "raise":
            raise NoImprovableState(
                f"oracle reset (tau={self.tau}) has no support: no state visited by pi has an "
                f"action with advantage > tau; pi is tau-greedy on its occupancy (stop CPI, lower "
                f"tau, or use Oracle(on_empty='random'))")

    def distribution(self, mdp, pi, adv=None):
        mask, d = self._mask_and_d(mdp, pi, adv)
        mass = d[mask].sum()
        if mass <= 0:
            self._empty()
            return d
        return np.where(mask, d, 0.0) / mass

    def sample(self, mdp, pi, n, seed=0, adv=None):
        n = self._n(n)
        mask, d = self._mask_and_d(mdp, pi, adv)
        p = float(d[mask].sum())
        if p <= 0:
            self._empty()
            return sample_states(mdp, pi, n, seed=seed)
        out, steps, got, k = np.empty(n, np.int64), 0, 0, 0
        while got < n:  # rejection from on-policy states; batches sized by the known mass
            m = int(min(1.2 * (n - got) / p + 16, 5e6))
            s, st = sample_states(mdp, pi, m, seed=seed + 7919 * k)
            k += 1
            steps += st
            s = s[mask[s]][: n - got]
            out[got:got + s.size] = s
            got += s.size
        return out, steps


@dataclass(frozen=True)
class Noisy(ResetDistribution):
    """Self-localizer: with probability ``q`` an oracle state, else a random (RR) state.

    ``q = 0`` is the random reset, ``q = 1`` the oracle. With no improvable state the oracle
    part falls back to RR (so ``nu = d_{pi,D}``).
    """

    q: float = 0.5
    tau: float = 0.0

    def __post_init__(self):
        q = float(self.q)
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"q (the localizer's accuracy) must lie in [0, 1]; got {self.q}")
        _check_tau(self.tau)

    @property
    def name(self):
        return "noisy"

    def distribution(self, mdp, pi, adv=None):
        d = occupancy(mdp, pi)
        orc = Oracle(self.tau, on_empty="random").distribution(mdp, pi, adv)
        return self.q * orc + (1.0 - self.q) * d

    def sample(self, mdp, pi, n, seed=0, adv=None):
        n = self._n(n)
        rng = np.random.default_rng(seed)
        k = int(rng.binomial(n, self.q))
        s1, st1 = Oracle(self.tau, on_empty="random").sample(mdp, pi, k, seed=seed + 1, adv=adv)
        s2, st2 = sample_states(mdp, pi, n - k, seed=seed + 2)
        states = np.concatenate([s1, s2])
        rng.shuffle(states)
        return states, st1 + st2


def make_reset(name: str, *, tau: float = 0.0, q: float = 0.5,
               on_empty: str = "raise") -> ResetDistribution:
    """Build a reset distribution by name: ``start``, ``random``, ``oracle(tau)``, ``noisy(q, tau)``."""
    if name == "start":
        return Start()
    if name == "random":
        return RandomReset()
    if name == "oracle":
        return Oracle(tau, on_empty)
    if name == "noisy":
        return Noisy(q, tau)
    raise ValueError(f"unknown reset {name!r}; expected one of {RESETS}")
