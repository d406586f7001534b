"""Seeded MDP families: garnets, thought trees, combination locks.

* :func:`garnet` - random MDPs (Archibald et al. 1995): each ``(s, a)`` has ``branching``
  distinct successors with Dirichlet(1) probabilities; rewards uniform in [0, 1].
* :func:`thought_tree` - the tabular twin of an LLM reasoning chain: a ``branching``-ary tree
  of depth ``depth``; an action is one thought (one child); each candidate thought of a
  clean node is erroneous with probability ``p_error`` (at least one is correct); after the
  first error every state is "after the first error"; the 0/1 outcome at a leaf succeeds
  with ``p_success`` on a clean chain and ``p_recover`` after an error.
* :func:`combination_lock` - a chain of ``H`` states with one correct action each; a wrong
  action ends the episode (or restarts it). Under a policy that picks the correct action
  with probability ``q``, state ``h`` is reached with probability ``q^h``: the on-policy
  probability of reaching the improvable states is controlled.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .mdp import TabularMDP


def _check_int(name, v, lo):
    if int(v) != v or v < lo:
        raise ValueError(f"{name} must be an integer >= {lo}; got {v}")
    return int(v)


def _check_prob(name, v):
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1]; got {v}")
    return float(v)


def _regular_indptr(n_rows: int, k: int) -> np.ndarray:
    """CSR row pointers of ``n_rows`` rows with ``k`` non-zeros each, in int64 (int32 would wrap
    past 2^31 non-zeros; ``TabularMDP`` narrows them to int32 where they fit)."""
    return np.arange(0, n_rows * k + 1, k, dtype=np.int64)


def garnet(S: int, A: int, branching: int, gamma: float = 0.99, seed: int = 0,
           initial=None) -> TabularMDP:
    """A random garnet MDP with ``S*A*branching`` non-zeros (CSR; int32 indices where they fit).

    Successors are distinct, drawn uniformly; probabilities are Dirichlet(1) (sorted uniform
    cuts); rewards ``R ~ U[0, 1]``; start distribution uniform unless given.
    """
    S = _check_int("S", S, 1)
    A = _check_int("A", A, 1)
    b = _check_int("branching", branching, 1)
    if b > S:
        raise ValueError(f"branching ({b}) cannot exceed the number of states ({S})")
    rng = np.random.default_rng(seed)
    N = S * A
    cols = np.sort(rng.integers(0, S, size=(N, b)), axis=1)
    dup = np.flatnonzero((np.diff(cols, axis=1) == 0).any(axis=1)) if b > 1 else np.array([], int)
    for row in dup:  # rare when S >> b
        cols[row] = np.sort(rng.choice(S, size=b, replace=False))
    cuts = np.sort(rng.random((N, b - 1)), axis=1)
    probs = np.diff(np.concatenate([np.zeros((N, 1)), cuts, np.ones((N, 1))], axis=1), axis=1)
    probs = np.maximum(probs, 1e-12)
    probs /= probs.sum(axis=1, keepdims=True)
    col_dtype = np.int32 if S < 2**31 else np.int64
    P = sp.csr_matrix((probs.ravel(), cols.ravel().astype(col_dtype), _regular_indptr(N, b)),
                      shape=(N, S))
    R = rng.random((S, A))
    return TabularMDP(P, R, gamma, initial=initial, name=f"garnet(S={S},A={A},b={b})",
                      info={"seed": seed})


def thought_tree(depth: int, branching: int, p_error: float, *, p_success: float = 1.0,
                 p_recover: float = 0.0, seed: int = 0) -> TabularMDP:
    """A reasoning tree: each action is a thought, errors are rare or common by ``p_error``.

    States are the nodes of a complete ``branching``-ary tree of depth ``depth`` in heap
    order (root 0; children of ``i`` are ``b*i + 1 .. b*i + b``; action ``a`` goes to child
    ``a``). Leaves are terminal. Entering a leaf pays its outcome probability: ``p_success``
    if no thought on the path was erroneous, else ``p_recover``. ``gamma = 1``.

    ``info`` holds: ``after_error`` (S,) bool - the path to the state contains an error;
    ``first_error`` (S,) bool - the state is reached by the first erroneous thought;
    ``depth_of`` (S,) int; ``error_action`` (S, A) bool - taking ``a`` in ``s`` is the first
    error of the chain (only at clean states).
    """
    depth = _check_int("depth", depth, 1)
    b = _check_int("branching", branching, 1)
    p_error = _check_prob("p_error", p_error)
    p_success = _check_prob("p_success", p_success)
    p_recover = _check_prob("p_recover", p_recover)
    rng = np.random.default_rng(seed)
    n_nodes = sum(b ** k for k in range(depth + 1))
    n_internal = n_nodes - b ** depth
    after = np.zeros(n_nodes, np.bool_)
    level = np.zeros(n_nodes, np.int64)
    lo = 0  # first node of the current level
    for k in range(depth):
        width = b ** k
        parents = np.arange(lo, lo + width)
        edge_err = rng.random((width, b)) < p_error
        clean = ~after[parents]
        all_bad = clean & edge_err.all(axis=1)
        edge_err[np.flatnonzero(all_bad), rng.integers(0, b, size=int(all_bad.sum()))] = False
        children = b * parents[:, None] + 1 + np.arange(b)[None, :]  # (width, b)
        after[children] = after[parents][:, None] | edge_err
        level[children] = k + 1
        lo += width
    parent = np.zeros(n_nodes, np.int64)
    parent[1:] = (np.arange(1, n_nodes) - 1) // b
    first = after & ~after[parent]
    first[0] = False

    S, A = n_nodes, b
    src = np.arange(S)
    nxt = np.where(src[:, None] < n_internal, b * src[:, None] + 1 + np.arange(b)[None, :],
                   src[:, None])  # leaves self-loop
    P = sp.csr_matrix((np.ones(S * A), nxt.ravel(), np.arange(S * A + 1)), shape=(S * A, S))
    R = np.zeros((S, A))
    last = np.arange(n_internal - b ** (depth - 1), n_internal)  # nodes at depth - 1
    kids = b * last[:, None] + 1 + np.arange(b)[None, :]
    R[last] = np.where(after[kids], p_recover, p_success)
    terminal = src >= n_internal
    initial = np.zeros(S)
    initial[0] = 1.0
    error_action = np.zeros((S, A), np.bool_)
    internal = np.arange(n_internal)
    ch = b * internal[:, None] + 1 + np.arange(b)[None, :]
    error_action[internal] = first[ch]
    info = {"after_error": after, "first_error": first, "depth_of": level,
            "error_action": error_action, "depth": depth, "p_error": p_error, "seed": seed}
    return TabularMDP(P, R, 1.0, initial=initial, terminal=terminal, order=np.arange(S),
                      horizon=depth, info=info,
                      name=f"thought_tree(depth={depth},b={b},p_error={p_error})")


def combination_lock(H: int, A: int, *, gamma: float = 1.0, wrong: str = "terminal",
                     seed: int = 0) -> TabularMDP:
    """A combination lock of length ``H`` with ``A`` actions.

    States ``0..H-1`` form the chain, ``H`` is the goal (terminal), ``H + 1`` the failure
    state (terminal). In state ``h`` the correct action ``info["correct"][h]`` (random,
    seeded) moves to ``h + 1`` and entering the goal pays 1; any other action moves to the
    failure state (``wrong="terminal"``, episodic) or back to state 0 (``wrong="restart"``,
    needs ``gamma < 1``). Start: state 0.
    """
    H = _check_int("H", H, 1)
    A = _check_int("A", A, 2)
    if wrong not in ("terminal", "restart"):
        raise ValueError(f"wrong must be 'terminal' or 'restart'; got {wrong!r}")
    rng = np.random.default_rng(seed)
    correct = rng.integers(0, A, size=H)
    S = H + 2
    goal, fail = H, H + 1
    nxt = np.empty((S, A), np.int64)
    nxt[:H] = fail if wrong == "terminal" else 0
    nxt[np.arange(H), correct] = np.arange(1, H + 1)
    nxt[goal] = goal
    nxt[fail] = fail
    P = sp.csr_matrix((np.ones(S * A), nxt.ravel(), np.arange(S * A + 1)), shape=(S * A, S))
    R = np.zeros((S, A))
    R[H - 1, correct[H - 1]] = 1.0
    initial = np.zeros(S)
    initial[0] = 1.0
    info = {"correct": correct, "goal": goal, "fail": fail, "wrong": wrong}
    return TabularMDP(P, R, gamma, initial=initial, terminal=[goal, fail], info=info,
                      horizon=H if wrong == "terminal" else None,
                      name=f"lock(H={H},A={A},{wrong})")


def lock_policy(mdp: TabularMDP, q: float) -> np.ndarray:
    """Policy on a :func:`combination_lock` taking the correct action with probability ``q``
    (the rest spread uniformly over wrong actions); uniform on terminal states."""
    q = _check_prob("q", q)
    if "correct" not in mdp.info:
        raise ValueError("lock_policy needs an MDP made by combination_lock")
    A = mdp.A
    pi = np.full((mdp.S, A), 1.0 / A)
    correct = mdp.info["correct"]
    H = correct.size
    pi[:H] = (1.0 - q) / (A - 1)
    pi[np.arange(H), correct] = q
    return pi
