"""Logged conversations and turn-level ``Q`` fitted from them (Monte Carlo and TD).

Iterative PPO (Jiang et al. 2025; ``docs/iterative_ppo.md``) fits ``Q^{pi_k}(c, y)`` from
conversations logged under the deployed policy ``pi_k``; this module holds the logger and two
estimators on a :class:`cpi.multiturn.TwoLevelMDP`:

* :func:`fit_q_mc` - Monte Carlo: the mean return from every logged turn ``(c, y)`` on
  (every-visit; unbiased per visit, consistent).
* :func:`fit_q_td` - TD / fitted Q evaluation: the fixed point of batch TD(0) (LSTD-Q) with
  one-hot features on the logged transitions, with the expected-SARSA target
  ``r + gamma_hat sum_y' pi_k(y'|c') Q(c', y')``. With one-hot features that fixed point is
  ``Q^{pi_k}`` of the certainty-equivalent MDP (empirical ``P``, ``R`` and continuation
  probability; Sutton 1988, sec. 6), computed exactly by :func:`cpi.exact.q_values`;
  :func:`cpi.td.td_q_estimate` on that MDP gives the same numbers (tested).

Pairs never logged get the pooled statistics of their conversation state (so ``Qhat(c, y)``
estimates ``V^{pi_k}(c)``: zero advantage); states never logged get the pooled statistics of
all data. Counts are what the report calls samples: conversations and turns.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .exact import q_values
from .mdp import TabularMDP
from .multiturn import TwoLevelMDP

__all__ = ["Conversations", "log_conversations", "fit_q_mc", "fit_q_td", "certainty_equivalent_mdp",
           "q_error"]


class Conversations(NamedTuple):
    """Logged conversations, one row per turn (rows of a conversation in turn order)."""

    conv: np.ndarray  # (T,) conversation index in [0, n)
    turn: np.ndarray  # (T,) turn number within its conversation
    c: np.ndarray  # (T,) conversation state
    y: np.ndarray  # (T,) response
    r: np.ndarray  # (T,) observed reward (sparse: the 0/1 outcome on the last turn, else 0)
    c_next: np.ndarray  # (T,) the state the response led to
    ended: np.ndarray  # (T,) bool, the conversation ended after this turn
    G: np.ndarray  # (T,) return from this turn on: sum of r over this and later turns
    n: int  # number of conversations

    @property
    def turns(self) -> int:
        return int(self.c.size)


def log_conversations(tl: TwoLevelMDP, pi_turn, n: int, seed: int = 0, start=None) -> Conversations:
    """Simulate ``n`` conversations under the turn policy ``pi_turn`` (C, Y).

    Drawing ``y ~ pi(.|c)`` is drawing its tokens one by one from the token policy that
    induces ``pi_turn``. After a turn ``(c, y)``: ``c' ~ P(.|c, y)``; the conversation ends with
    probability ``1 - gamma``; the reward is ``R(c, y)`` (``"turn"``) or, ``"sparse"``, a 0/1
    outcome with success probability ``outcome[c']`` on the turn it ends. ``start`` (C,)
    defaults to ``tl.turn.initial``.
    """
    if not isinstance(tl, TwoLevelMDP):
        raise TypeError(f"tl must be a cpi.multiturn.TwoLevelMDP; got {type(tl).__name__}")
    pi_turn = tl.turn.check_policy(pi_turn, "pi_turn")
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(f"n (number of conversations) must be an integer >= 1; got {n!r}")
    n = int(n)
    mu = tl.turn.initial if start is None else tl.turn.check_distribution(start, "start")
    rng = np.random.default_rng(seed)
    C, Y = tl.C, tl.Y
    cdf_pi = np.cumsum(pi_turn, axis=1)  # (C, Y)
    cdf_pi[:, -1] = 1.0
    cdf_P = np.cumsum(tl.turn.P.toarray(), axis=1)  # (C*Y, C)
    cdf_P[:, -1] = 1.0
    c = np.minimum(np.searchsorted(np.cumsum(mu), rng.random(n), side="right"), C - 1)
    alive = np.arange(n)
    rounds = []
    t = 0
    while alive.size:
        cc = c[alive]
        y = np.minimum((cdf_pi[cc] <= rng.random(alive.size)[:, None]).sum(axis=1), Y - 1)
        cn = np.minimum((cdf_P[cc * Y + y] <= rng.random(alive.size)[:, None]).sum(axis=1), C - 1)
        ended = rng.random(alive.size) >= tl.gamma
        if tl.reward == "sparse":
            r = np.where(ended, rng.random(alive.size) < tl.outcome[cn], False).astype(np.float64)
        else:
            r = tl.turn.R[cc, y]
        rounds.append((alive, np.full(alive.size, t), cc, y, r, cn, ended))
        c[alive] = cn
        alive = alive[~ended]
        t += 1
    G = []
    later = np.zeros(n)  # return of each conversation from the next turn on
    for alive_t, _, _, _, r, _, ended in reversed(rounds):
        g = r + np.where(ended, 0.0, later[alive_t])
        later[alive_t] = g
        G.append(g)
    cols = [np.concatenate(x) for x in zip(*rounds)]
    order = np.lexsort((cols[1], cols[0]))  # by conversation, then turn
    G = np.concatenate(G[::-1])
    return Conversations(*(x[order] for x in cols), G[order], n)


def _pooled(tl: TwoLevelMDP, logs: Conversations, value: np.ndarray) -> np.ndarray:
    """Per-pair means of ``value`` (C*Y, k), falling back to the state's, then all data's mean."""
    C, Y = tl.C, tl.Y
    pair = logs.c * Y + logs.y
    n_pair = np.bincount(pair, minlength=C * Y)
    n_state = np.bincount(logs.c, minlength=C)
    s_pair = np.stack([np.bincount(pair, w, minlength=C * Y) for w in value.T], axis=1)  # (C*Y, k)
    s_state = np.stack([np.bincount(logs.c, w, minlength=C) for w in value.T], axis=1)  # (C, k)
    glob = value.mean(axis=0)
    state = np.where(n_state[:, None] > 0, s_state / np.maximum(n_state, 1)[:, None], glob)
    return np.where(n_pair[:, None] > 0, s_pair / np.maximum(n_pair, 1)[:, None], np.repeat(state, Y, axis=0))


def _check_logs(tl, logs):
    if not isinstance(logs, Conversations):
        raise TypeError(f"logs must be cpi.multiturn_fit.Conversations; got {type(logs).__name__}")
    if logs.turns == 0:
        raise ValueError("logs hold no turns: log at least one conversation")
    if logs.c.max() >= tl.C or logs.y.max() >= tl.Y:
        raise ValueError(f"logs do not match this MDP (C = {tl.C}, Y = {tl.Y})")


def fit_q_mc(tl: TwoLevelMDP, logs: Conversations) -> np.ndarray:
    """Monte Carlo ``Qhat(c, y)`` (C, Y): the mean logged return ``G`` of the turns at ``(c, y)``."""
    _check_logs(tl, logs)
    return _pooled(tl, logs, logs.G[:, None])[:, 0].reshape(tl.C, tl.Y)


def certainty_equivalent_mdp(tl: TwoLevelMDP, logs: Conversations) -> TabularMDP:
    """The turn-level MDP estimated from logs: empirical ``P(c'|c, y)`` and mean reward per logged
    pair (pooled fallbacks, see the module docstring) and continuation probability
    ``gamma_hat = 1 - (#ended / #turns)`` (pooled: in this model it does not depend on the pair)."""
    _check_logs(tl, logs)
    C, Y = tl.C, tl.Y
    onehot = np.zeros((logs.turns, C))
    onehot[np.arange(logs.turns), logs.c_next] = 1.0
    stats = _pooled(tl, logs, np.concatenate([logs.r[:, None], onehot], axis=1))  # (C*Y, 1 + C)
    P_hat = stats[:, 1:]
    gamma_hat = 1.0 - logs.ended.sum() / logs.turns
    return TabularMDP(P_hat / P_hat.sum(axis=1, keepdims=True), stats[:, 0].reshape(C, Y), gamma_hat,
                      initial=tl.turn.initial, name="certainty_equivalent")


def fit_q_td(tl: TwoLevelMDP, logs: Conversations, pi_turn) -> np.ndarray:
    """TD / fitted-Q ``Qhat`` (C, Y): ``Q^{pi}`` of :func:`certainty_equivalent_mdp`, the fixed point
    of batch TD(0) with one-hot features on the logs. ``pi_turn`` (C, Y) is the logging policy
    whose ``Q`` is fitted (the target uses its expectation over the next response)."""
    pi_turn = tl.turn.check_policy(pi_turn, "pi_turn")
    return q_values(certainty_equivalent_mdp(tl, logs), pi_turn)


def q_error(tl: TwoLevelMDP, Q_hat, Q, pi_turn) -> float:
    """Root mean squared error of ``Q_hat`` under the logging distribution:
    ``sqrt(sum_c d_{pi}(c) sum_y pi(y|c) (Q_hat - Q)^2)`` with ``d_pi`` the turn-level occupancy."""
    from .exact import occupancy
    d = occupancy(tl.turn, pi_turn)
    return float(np.sqrt(d @ (np.asarray(pi_turn) * (np.asarray(Q_hat) - np.asarray(Q)) ** 2).sum(axis=1)))
