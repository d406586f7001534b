"""Seeded conversation MDP families at two levels (:func:`cpi.multiturn.two_level_mdp`).

* :func:`conversation_mdp` - random conversations: the turn-level transitions are a garnet
  (:func:`cpi.garnet`); sparse 0/1 outcomes or rewards per turn. On such MDPs one exact
  policy-iteration step from the uniform policy already closes most of the gap to the optimum.
* :func:`funnel_conversation` - a sales funnel with a delayed outcome: the big deal waits at
  the end of the funnel, a small deal can be taken at any stage, and the later stages are
  riskier under a random policy; one policy-iteration step from the uniform policy takes the
  small deal, and exact policy iteration needs ``n_stages`` steps (one per stage, backwards).
"""
from __future__ import annotations

from typing import Literal

import numpy as np

from .generators import garnet
from .multiturn import TwoLevelMDP, _int, two_level_mdp

__all__ = ["conversation_mdp", "funnel_conversation"]


def conversation_mdp(n_states: int, vocab: int, length: int, gamma: float = 0.8, *,
                     branching: int = 2, reward: Literal["sparse", "turn"] = "sparse",
                     seed: int = 0, initial=None) -> TwoLevelMDP:
    """A random conversation MDP: ``n_states`` states, ``vocab**length`` responses.

    ``P(.|c, y)`` has ``branching`` random successors with Dirichlet(1) probabilities (the
    garnet of :func:`cpi.garnet`). ``reward="sparse"``: ``outcome[c'] ~ U[0, 1]``, paid (as a 0/1
    draw) when the conversation ends after a turn that led to ``c'``; ``"turn"``: ``R(c, y) ~
    U[0, 1]`` every turn. ``gamma``: the probability that the conversation continues after a turn.
    """
    C = _int("n_states", n_states, 1)
    Y = _int("vocab", vocab, 1) ** _int("length", length, 1)
    if reward not in ("sparse", "turn"):
        raise ValueError(f"reward must be 'sparse' or 'turn'; got {reward!r}")
    b = _int("branching", branching, 1)
    if b > C:
        raise ValueError(f"branching ({b}) cannot exceed n_states ({C})")
    if not 0.0 <= float(gamma) < 1.0:
        raise ValueError(f"gamma is the probability that a conversation continues after a turn and "
                         f"must lie in [0, 1); got {gamma}")
    g = garnet(C, Y, b, gamma=gamma, seed=seed, initial=initial)
    kw = (dict(outcome=np.random.default_rng([seed, 1]).random(C)) if reward == "sparse" else dict(R=g.R))
    return two_level_mdp(g.P, gamma, vocab, length, initial=g.initial, name="conversation",
                         info={"seed": seed, "branching": b}, **kw)


def funnel_conversation(n_stages: int = 5, vocab: int = 3, length: int = 2, gamma: float = 0.95, *,
                        p_advance: float = 0.8, small_deal: float = 0.3, lose_max: float = 0.5,
                        entry=None, seed: int = 0) -> TwoLevelMDP:
    """A sales funnel: stages ``0..n_stages-1``, then ``SMALL``, ``BIG``, ``LOST`` (absorbing).

    In stage ``c`` the responses have random roles (seeded): one *advances* (to stage ``c+1``,
    from the last stage to ``BIG``) with probability ``p_advance`` (else the stage stays), one
    takes the *small deal* (to ``SMALL``), ``round(lose_max * c/(n_stages-1) * (Y-2))`` *lose*
    the customer (to ``LOST``), the rest keep the stage. Sparse outcome: a conversation that
    ends in ``BIG`` succeeds with probability 1, in ``SMALL`` with ``small_deal``, elsewhere 0.
    ``entry`` (n_stages,) is the distribution of the stage a conversation starts in (customers
    arrive at different stages; default: all in stage 0). ``info`` records the roles: ``advance`` (n_stages,),
    ``small`` (n_stages,), ``lose`` (list of arrays) and the special states.
    """
    m = _int("n_stages", n_stages, 1)
    Y = _int("vocab", vocab, 1) ** _int("length", length, 1)
    if Y < 2:
        raise ValueError(f"the funnel needs at least 2 responses (advance, small deal); vocab**length = {Y}")
    for name, v in (("p_advance", p_advance), ("small_deal", small_deal), ("lose_max", lose_max)):
        if not 0.0 <= float(v) <= 1.0:
            raise ValueError(f"{name} must lie in [0, 1]; got {v}")
    rng = np.random.default_rng(seed)
    C = m + 3
    SMALL, BIG, LOST = m, m + 1, m + 2
    P = np.zeros((C, Y, C))
    advance, small, lose = np.empty(m, np.int64), np.empty(m, np.int64), []
    for c in range(m):
        perm = rng.permutation(Y)
        n_lose = int(round(lose_max * c / max(m - 1, 1) * (Y - 2)))
        advance[c], small[c], lose_c = perm[0], perm[1], perm[2:2 + n_lose]
        lose.append(np.sort(lose_c))
        P[c, :, c] = 1.0
        P[c, lose_c] = 0.0
        P[c, lose_c, LOST] = 1.0
        P[c, small[c]] = 0.0
        P[c, small[c], SMALL] = 1.0
        P[c, advance[c]] = 0.0
        P[c, advance[c], c + 1 if c < m - 1 else BIG] += p_advance
        P[c, advance[c], c] += 1.0 - p_advance
    for s in (SMALL, BIG, LOST):
        P[s, :, s] = 1.0
    outcome = np.zeros(C)
    outcome[SMALL], outcome[BIG] = small_deal, 1.0
    initial = np.zeros(C)
    if entry is None:
        initial[0] = 1.0
    else:
        entry = np.asarray(entry, dtype=np.float64)
        if entry.shape != (m,) or entry.min() < 0 or abs(entry.sum() - 1) > 1e-8:
            raise ValueError(f"entry must be a distribution over the {m} stages; got {entry}")
        initial[:m] = entry
    info = {"seed": seed, "advance": advance, "small": small, "lose": lose, "SMALL": SMALL, "BIG": BIG,
            "LOST": LOST}
    return two_level_mdp(P, gamma, vocab, length, outcome=outcome, initial=initial, name="funnel", info=info)
