"""Monte-Carlo access to a tabular MDP, counting every environment step.

Sample-based CPI (Kakade & Langford 2002, section 6) needs two primitives: states drawn
from an occupancy ``d_{pi,mu}`` (or from a reset distribution) and unbiased estimates of
``Q_pi(s, a)`` from rollouts. Both are seeded numba kernels; each call returns how many
environment steps it took so that sample complexity is measured, not guessed.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import _kernels as K
from .mdp import TabularMDP


class Rollouts(NamedTuple):
    returns: np.ndarray  # (n,) one return per start
    lengths: np.ndarray  # (n,) steps taken by each rollout
    steps: int  # total environment steps


def _cdf(mdp: TabularMDP, dist, name) -> np.ndarray:
    mu = mdp.check_distribution(dist, name)
    return np.cumsum(mu)


def sample_from(dist, n: int, seed: int = 0) -> np.ndarray:
    """``n`` i.i.d. indices from a probability vector (reset distributions use this)."""
    dist = np.asarray(dist, dtype=np.float64)
    if dist.ndim != 1 or dist.min() < 0 or not np.isfinite(dist).all() or dist.sum() <= 0:
        raise ValueError("dist must be a non-negative finite vector with positive mass")
    rng = np.random.default_rng(seed)
    return rng.choice(dist.size, size=int(n), p=dist / dist.sum())


def sample_states(mdp: TabularMDP, pi, n: int, start=None, seed: int = 0):
    """Draw ``n`` states from ``d_{pi,start}`` by simulation; returns ``(states, steps)``.

    ``gamma < 1``: the state at a Geometric(1 - gamma) time. ``gamma == 1``: the state at a
    uniform time in ``[0, max_length)``, rejected when the episode has ended (exact for the
    normalised episodic occupancy; needs a DAG or a declared horizon).
    """
    pi = mdp.check_policy(pi)
    if n < 0:
        raise ValueError(f"n must be >= 0; got {n}")
    cdf = _cdf(mdp, mdp.initial if start is None else start, "start")
    H = 1
    if mdp.gamma == 1.0:
        H = mdp.max_length
        if H is None:
            raise ValueError("sampling the episodic occupancy needs a bound on episode length: "
                             "a DAG MDP or horizon=...")
    out = np.empty(int(n), np.int64)
    steps = K.occupancy_states(mdp.P.indptr, mdp.P.indices, mdp.P.data, pi, mdp.gamma,
                               mdp.terminal, cdf, int(n), int(H), int(seed), out)
    return out, int(steps)


def rollout_returns(mdp: TabularMDP, pi, starts, first_actions=None, *, seed: int = 0,
                    geometric=None, max_steps: int | None = None) -> Rollouts:
    """Returns of rollouts from ``starts`` (optionally forcing the first action).

    With ``first_actions`` the mean return estimates ``Q_pi(s, a)``; without, ``V_pi(s)``.
    ``geometric`` (default: ``gamma < 1``) stops each step with probability ``1 - gamma`` and
    sums rewards undiscounted: unbiased for the discounted value with a finite expected
    length ``1/(1-gamma)``. Otherwise rewards are discounted and rollouts run to a terminal
    state (``max_steps`` caps them; default the MDP's length bound or 10^6).
    """
    pi = mdp.check_policy(pi)
    starts = np.ascontiguousarray(starts, dtype=np.int64)
    if starts.ndim != 1 or (starts.size and (starts.min() < 0 or starts.max() >= mdp.S)):
        raise ValueError(f"starts must be a 1-d array of states in [0, {mdp.S})")
    if first_actions is None:
        fa = np.full(starts.shape, -1, np.int64)
    else:
        fa = np.ascontiguousarray(first_actions, dtype=np.int64)
        if fa.shape != starts.shape or (fa.size and (fa.min() < 0 or fa.max() >= mdp.A)):
            raise ValueError(f"first_actions must match starts and lie in [0, {mdp.A})")
    if geometric is None:
        geometric = mdp.gamma < 1.0
    if max_steps is None:
        max_steps = mdp.max_length if mdp.max_length is not None else 10**6
        if geometric:
            max_steps = 10**9
    returns = np.empty(starts.size)
    lengths = np.empty(starts.size, np.int64)
    steps = K.rollouts(mdp.P.indptr, mdp.P.indices, mdp.P.data, mdp.R, pi, mdp.gamma,
                       mdp.terminal, starts, fa, bool(geometric), int(max_steps), int(seed),
                       returns, lengths)
    return Rollouts(returns, lengths, int(steps))
