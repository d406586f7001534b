"""Multi-turn conversations as two-level MDPs, and the single-turn problem of Iterative PPO.

Notation (Jiang, Bhandari, Yang, Munos & Lu 2025, "Aligning LLMs Toward Multi-Turn
Conversational Outcomes Using Iterative PPO"; ``docs/iterative_ppo.md``):

* **Turn level.** Conversation states ``c`` in ``0..C-1``; a *response* ``y`` in
  ``0..Y-1`` is one action, ``Y = vocab**length``; ``P(c'|c, y)``, ``R(c, y)``; after each turn
  the conversation continues with probability ``gamma`` and ends otherwise, so the turn-level
  values are those of the discounted MDP ``tl.turn`` (``gamma`` = continuation probability).
* **Token level.** Inside a turn the response is generated token by token: a ``vocab``-ary
  tree of depth ``length`` per conversation state. Token state ``c * n_nodes + n`` is node
  ``n`` (heap order: root 0, children of ``n`` are ``vocab*n + 1 + v``) of the tree of ``c``;
  the last state ``END`` is terminal. A response is a root-to-leaf path, ``y`` its leaf's
  rank (lexicographic in the tokens). ``tl.token`` is an ordinary episodic ``TabularMDP``
  (``gamma = 1``): the last token of a turn pays ``R(c, y)`` and moves to the root of ``c'``
  with probability ``gamma P(c'|c, y)``, to ``END`` otherwise. Every exact routine of
  :mod:`cpi.exact` applies to both levels; ``V_token(root of c) = V_turn(c)``
  (proved in ``docs/iterative_ppo.md``, checked by ``experiments/iterative_ppo.py``).
* A token policy ``pi`` has shape ``(S_token, vocab)``; the turn policy it induces,
  ``pi(y|c) = prod_j pi(y_j | c, y_<j)``, has shape ``(C, Y)`` (:meth:`TwoLevelMDP.turn_policy`);
  :meth:`TwoLevelMDP.token_policy` factorises a turn policy back.

**The single-turn problem** for a policy ``pi_k`` with turn-level ``Q = Q^{pi_k}`` (C, Y): for
every ``c``, maximise ``E_{y ~ pi(.|c)} Q(c, y) - beta KL(pi(.|c) || pi_k(.|c))`` over token
policies. It is the RLHF problem with ``Q`` as the reward model; :func:`single_turn_mdp`
writes it as a token-level ``TabularMDP`` (one tree per ``c``, reward ``Q(c, y)`` at the last
token), :func:`single_turn_maximiser` solves it exactly token by token.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from .mdp import TabularMDP

__all__ = ["TwoLevelMDP", "two_level_mdp", "single_turn_mdp", "single_turn_values",
           "single_turn_maximiser", "soft_improvement", "response_kl"]


def _int(name, v, lo):
    if isinstance(v, bool) or int(v) != v or v < lo:
        raise ValueError(f"{name} must be an integer >= {lo}; got {v!r}")
    return int(v)


@dataclass(frozen=True, eq=False)
class TwoLevelMDP:
    """A conversation MDP at two levels: ``token`` (S_token, vocab) and ``turn`` (C, Y).

    Made by :func:`two_level_mdp` (families: :mod:`cpi.multiturn_generators`); holds the tree
    layout that maps one level to the other.
    """

    token: TabularMDP  # episodic, states c * n_nodes + node, then END
    turn: TabularMDP  # discounted, C states, Y = vocab**length actions
    vocab: int
    length: int
    reward: str  # "sparse" | "turn"
    outcome: np.ndarray | None = None  # (C,) success probability when a conversation ends in c (sparse)
    info: dict = field(default_factory=dict)

    # ------------------------------------------------------------------ layout
    @property
    def C(self) -> int:
        return self.turn.S

    @property
    def Y(self) -> int:
        return self.turn.A

    @property
    def gamma(self) -> float:
        return self.turn.gamma

    @property
    def n_nodes(self) -> int:
        """Internal nodes of one response tree: ``sum_{j < length} vocab**j``."""
        return sum(self.vocab ** j for j in range(self.length))

    @property
    def end(self) -> int:
        """Index of the terminal token state."""
        return self.C * self.n_nodes

    @property
    def offsets(self) -> np.ndarray:
        """``(length + 1,)``: heap index of the first node at each depth (the last: first leaf)."""
        return np.cumsum([0] + [self.vocab ** j for j in range(self.length)])

    def roots(self) -> np.ndarray:
        """Token states of the turn starts, ``c * n_nodes`` (C,)."""
        return np.arange(self.C) * self.n_nodes

    def paths(self):
        """``(nodes, tokens)``, each ``(Y, length)``: the tree nodes a response passes and its tokens."""
        V, L = self.vocab, self.length
        y = np.arange(self.Y)
        tokens = np.stack([(y // V ** (L - 1 - j)) % V for j in range(L)], axis=1)  # (Y, L)
        nodes = np.zeros((self.Y, L), np.int64)
        for j in range(1, L):
            nodes[:, j] = V * nodes[:, j - 1] + 1 + tokens[:, j - 1]
        return nodes, tokens

    # ------------------------------------------------------------------ maps between levels
    def turn_policy(self, pi) -> np.ndarray:
        """``pi(y|c) = prod_j pi(y_j | c, y_<j)`` (C, Y) from a token policy (S_token, vocab)."""
        pi = self.token.check_policy(pi)
        nodes, tokens = self.paths()
        states = self.roots()[:, None, None] + nodes[None]  # (C, Y, L)
        return pi[states, tokens[None]].prod(axis=2)

    def token_policy(self, pi_turn) -> np.ndarray:
        """The token policy (S_token, vocab) whose turn policy is ``pi_turn`` (C, Y).

        ``pi(v | c, node) = pi_turn(subtree of the child) / pi_turn(subtree of the node)``;
        uniform at nodes ``pi_turn`` never reaches (and at ``END``).
        """
        pi_turn = self.turn.check_policy(pi_turn, "pi_turn")
        V, C = self.vocab, self.C
        pi = np.full((self.token.S, V), 1.0 / V)
        body = pi[:-1].reshape(C, self.n_nodes, V)  # view
        off = self.offsets
        for j in range(self.length):
            mass = pi_turn.reshape(C, V ** j, V, -1).sum(axis=3)  # (C, nodes at depth j, V)
            tot = mass.sum(axis=2, keepdims=True)
            body[:, off[j]:off[j + 1]] = np.where(tot > 0, mass / np.where(tot > 0, tot, 1.0), 1.0 / V)
        return pi

    def uniform_policy(self) -> np.ndarray:
        return self.token.uniform_policy()


def _tree_rows(C: int, V: int, L: int):
    """Within-turn transitions ``(rows, cols)`` of every non-last-level token, and the
    ``(c, y)`` pair of every last-level row, for the token layout of :class:`TwoLevelMDP`."""
    n_nodes = sum(V ** j for j in range(L))
    first_last = n_nodes - V ** (L - 1)  # first node at depth L - 1
    node = np.arange(n_nodes)
    inner = node[:first_last]  # nodes whose children are nodes
    c = np.arange(C)
    rows_in = ((c[:, None, None] * n_nodes + inner[None, :, None]) * V + np.arange(V)).ravel()
    cols_in = (c[:, None, None] * n_nodes + V * inner[None, :, None] + 1 + np.arange(V)).ravel()
    last = node[first_last:]
    rows_last = ((c[:, None, None] * n_nodes + last[None, :, None]) * V + np.arange(V))  # (C, V^(L-1), V)
    y_last = np.broadcast_to((V * last[:, None] + 1 + np.arange(V)) - n_nodes, rows_last.shape)
    c_last = np.broadcast_to(c[:, None, None], rows_last.shape)
    return n_nodes, rows_in, cols_in, rows_last.ravel(), c_last.ravel(), y_last.ravel()


def two_level_mdp(P, gamma: float, vocab: int, length: int, *, outcome=None, R=None, initial=None,
                  name: str = "conversation", info: dict | None = None) -> TwoLevelMDP:
    """The two-level MDP of a turn-level conversation model with ``vocab**length`` responses.

    ``P``: ``(C, Y, C)`` dense or ``(C*Y, C)`` (sparse or dense), ``P(c'|c, y)``, ``Y =
    vocab**length``; ``gamma`` in [0, 1): the probability that the conversation continues after
    a turn. Exactly one of

    * ``outcome`` (C,) in [0, 1] - sparse reward: a conversation ending right after a turn that
      led to ``c'`` succeeds with probability ``outcome[c']`` (a 0/1 reward in logged
      conversations, nothing before); the expected turn reward is
      ``R(c, y) = (1 - gamma) sum_c' P(c'|c, y) outcome[c']``;
    * ``R`` (C, Y) - a reward paid at every turn.

    ``initial`` (C,): the first conversation state's distribution (default uniform).
    """
    V = _int("vocab", vocab, 1)
    L = _int("length", length, 1)
    Y = V ** L
    gamma = float(gamma)
    if not 0.0 <= gamma < 1.0:
        raise ValueError(f"gamma is the probability that a conversation continues after a turn and "
                         f"must lie in [0, 1); got {gamma}")
    if (outcome is None) == (R is None):
        raise ValueError("give exactly one of outcome (sparse reward at the end) and R (reward per turn)")
    if sp.issparse(P):
        P = sp.csr_matrix(P, dtype=np.float64)
    else:
        P = np.asarray(P, dtype=np.float64)
        P = P.reshape(-1, P.shape[-1]) if P.ndim == 3 else P
    C = P.shape[1]
    if P.ndim != 2 or P.shape[0] != C * Y:
        raise ValueError(f"P must have shape (C, Y, C) or (C*Y, C) with Y = vocab**length = {Y}; got {P.shape}")
    if outcome is not None:
        outcome = np.array(outcome, dtype=np.float64)
        if outcome.shape != (C,) or not np.all((outcome >= 0) & (outcome <= 1)):
            raise ValueError(f"outcome must be a vector of C = {C} success probabilities in [0, 1]")
        R = (1.0 - gamma) * np.asarray(P @ outcome).reshape(C, Y)
    turn = TabularMDP(P, R, gamma, initial=initial, name=f"{name}(C={C},Y={Y})")

    n_nodes, rows_in, cols_in, rows_last, c_last, y_last = _tree_rows(C, V, L)
    S = C * n_nodes + 1
    end = S - 1
    nxt = turn.P[c_last * Y + y_last].tocoo()  # successors of every last-level row
    rows = [rows_in, rows_last[nxt.row], rows_last, end * V + np.arange(V)]
    cols = [cols_in, nxt.col.astype(np.int64) * n_nodes, np.full(rows_last.size, end), np.full(V, end)]
    vals = [np.ones(rows_in.size), gamma * nxt.data, np.full(rows_last.size, 1.0 - gamma), np.ones(V)]
    Pt = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(S * V, S))
    Rt = np.zeros((S, V))
    Rt.ravel()[rows_last] = turn.R[c_last, y_last]
    init = np.zeros(S)
    init[np.arange(C) * n_nodes] = turn.initial
    token = TabularMDP(Pt, Rt, 1.0, initial=init, terminal=[end], name=f"{name}_tokens(C={C},V={V},L={L})")
    return TwoLevelMDP(token, turn, V, L, "turn" if outcome is None else "sparse", outcome, dict(info or {}))


# ----------------------------------------------------------------------------- single-turn problem
def _check_Q(tl: TwoLevelMDP, Q, name="Q") -> np.ndarray:
    Q = np.ascontiguousarray(Q, dtype=np.float64)
    if Q.shape != (tl.C, tl.Y):
        raise ValueError(f"{name} must have shape (C, Y) = ({tl.C}, {tl.Y}); got {Q.shape}")
    if not np.all(np.isfinite(Q)):
        raise ValueError(f"{name} must be finite")
    return Q


def single_turn_mdp(tl: TwoLevelMDP, Q, weights=None) -> TabularMDP:
    """The single-turn problem as a token-level MDP: one response tree per conversation state.

    Same states and actions as ``tl.token``; the last token of a response ``y`` in the tree of
    ``c`` pays ``Q(c, y)`` and ends the episode. Its value at the root of ``c`` under a token
    policy ``pi`` is ``E_{y ~ pi(.|c)} Q(c, y)`` (:func:`single_turn_values`). ``weights`` (C,),
    the distribution of prompts, is the start distribution (default ``tl.turn.initial``); only
    vanilla policy gradients depend on it.
    """
    Q = _check_Q(tl, Q)
    C, V, L = tl.C, tl.vocab, tl.length
    w = tl.turn.initial if weights is None else tl.turn.check_distribution(weights, "weights")
    n_nodes, rows_in, cols_in, rows_last, c_last, y_last = _tree_rows(C, V, L)
    S = C * n_nodes + 1
    end = S - 1
    rows = np.concatenate([rows_in, rows_last, end * V + np.arange(V)])
    cols = np.concatenate([cols_in, np.full(rows_last.size + V, end)])
    P = sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(S * V, S))
    R = np.zeros((S, V))
    R.ravel()[rows_last] = Q[c_last, y_last]
    init = np.zeros(S)
    init[np.arange(C) * n_nodes] = w
    return TabularMDP(P, R, 1.0, initial=init, terminal=[end], order=np.arange(S), horizon=L,
                      name=f"single_turn(C={C},V={V},L={L})")


def single_turn_values(tl: TwoLevelMDP, Q, pi_turn) -> np.ndarray:
    """``J_c = E_{y ~ pi(.|c)} Q(c, y)`` (C,) from a turn policy (C, Y) (the turn-level side)."""
    return np.einsum("cy,cy->c", tl.turn.check_policy(pi_turn, "pi_turn"), _check_Q(tl, Q))


def single_turn_maximiser(tl: TwoLevelMDP, Q, beta: float = 0.0, pi_ref=None):
    """The exact solution of the single-turn problem, computed token by token.

    ``beta == 0``: the greedy response, ``pi(v | c, node) = 1`` for the first token whose
    subtree holds ``max_y Q(c, y)``; ``W(node) = max_v W(child)``. ``beta > 0``: the maximiser
    of ``E_pi Q - beta KL(pi || pi_ref)`` is ``pi_ref(y|c) exp(Q(c,y)/beta) / Z(c)``; token by
    token ``pi(v | node) = pi_ref(v | node) exp((W(child) - W(node)) / beta)`` with the soft
    value ``W(node) = beta log sum_v pi_ref(v|node) exp(W(child)/beta)`` and ``W(leaf y) = Q(c, y)``
    (one backward pass over the depths). ``pi_ref`` is a token policy (S_token, vocab).

    Returns ``(pi (S_token, vocab), W (C,))`` with ``W`` the optimal objective at each root
    (``max_y Q(c, y)``, or ``beta log E_{pi_ref} exp(Q/beta)``).
    """
    Q = _check_Q(tl, Q)
    beta = float(beta)
    if not np.isfinite(beta) or beta < 0:
        raise ValueError(f"beta (KL coefficient) must be finite and >= 0; got {beta}")
    C, V, off = tl.C, tl.vocab, tl.offsets
    if beta > 0:
        if pi_ref is None:
            raise ValueError("beta > 0 needs pi_ref, the token policy the KL is measured to")
        ref = tl.token.check_policy(pi_ref, "pi_ref")[:-1].reshape(C, tl.n_nodes, V)
    pi = np.full((tl.token.S, V), 1.0 / V)
    body = pi[:-1].reshape(C, tl.n_nodes, V)  # view
    W = Q  # (C, V**(j+1)) values of the nodes one level below depth j
    for j in range(tl.length - 1, -1, -1):
        child = W.reshape(C, V ** j, V)
        if beta == 0:
            p = np.zeros_like(child)
            np.put_along_axis(p, child.argmax(axis=2)[..., None], 1.0, axis=2)
            W = child.max(axis=2)
        else:
            r = ref[:, off[j]:off[j + 1]]
            with np.errstate(divide="ignore"):
                logits = np.where(r > 0, np.log(r) + child / beta, -np.inf)
            m = logits.max(axis=2, keepdims=True)
            z = np.exp(logits - m)
            Z = z.sum(axis=2, keepdims=True)
            p = z / Z
            W = beta * (m + np.log(Z))[..., 0]
        body[:, off[j]:off[j + 1]] = p
    return pi, W.reshape(C)


def soft_improvement(pi_turn, Q, beta: float) -> np.ndarray:
    """The turn-level soft step ``pi(y|c) exp(Q(c,y)/beta) / Z(c)`` (C, Y); ``beta == 0``: greedy
    (first maximiser). The independent reference for :func:`single_turn_maximiser`."""
    pi_turn = np.asarray(pi_turn, dtype=np.float64)
    Q = np.asarray(Q, dtype=np.float64)
    if pi_turn.shape != Q.shape or pi_turn.ndim != 2:
        raise ValueError(f"pi_turn and Q must both have shape (C, Y); got {pi_turn.shape}, {Q.shape}")
    if beta == 0:
        out = np.zeros_like(Q)
        out[np.arange(Q.shape[0]), Q.argmax(axis=1)] = 1.0
        return out
    with np.errstate(divide="ignore"):
        logits = np.where(pi_turn > 0, np.log(pi_turn) + Q / beta, -np.inf)
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def response_kl(tl: TwoLevelMDP, pi, pi_ref) -> np.ndarray:
    """``KL(pi(.|c) || pi_ref(.|c))`` over whole responses (C,), summed token by token.

    Chain rule: ``KL(node) = sum_v pi(v|node) [log(pi(v|node)/pi_ref(v|node)) + KL(child)]``,
    ``KL(leaf) = 0`` (a backward pass over the depths); ``inf`` where ``pi`` puts mass on a
    token ``pi_ref`` excludes. Token policies (S_token, vocab).
    """
    pi = tl.token.check_policy(pi)[:-1].reshape(tl.C, tl.n_nodes, tl.vocab)
    ref = tl.token.check_policy(pi_ref, "pi_ref")[:-1].reshape(tl.C, tl.n_nodes, tl.vocab)
    with np.errstate(divide="ignore", invalid="ignore"):
        logr = np.where(pi > 0, np.log(pi) - np.log(ref), 0.0)
    off, V = tl.offsets, tl.vocab
    below = np.zeros((tl.C, V ** tl.length))
    for j in range(tl.length - 1, -1, -1):
        p, lr = pi[:, off[j]:off[j + 1]], logr[:, off[j]:off[j + 1]]
        with np.errstate(invalid="ignore"):
            below = np.where(p > 0, p * (lr + below.reshape(tl.C, V ** j, V)), 0.0).sum(axis=2)
    return below.reshape(tl.C)
