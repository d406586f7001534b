"""Seeded MDP families: garnets, thought trees, combination locks, gated traps.

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
* :func:`gated_trap` - the family where ``p_pi`` is the only thing that moves: the root enters,
  with probability ``p``, a branch holding exactly one improvable state at a fixed depth, else
  an isomorphic safe branch; Bernoulli leaf rewards (see ``docs/resets.md``).
* :func:`bernoulli_leaves` - any episodic MDP whose reward is paid on entering a terminal
  state, with that reward made a 0/1 outcome of the same mean (noisy returns, as LLM rewards).
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


def bernoulli_leaves(mdp: TabularMDP, *, lo: float = 0.0, hi: float = 1.0) -> TabularMDP:
    """``mdp`` with its terminal payout made a Bernoulli outcome of the same (affine) mean.

    A *payout* transition is an ``(s, a)`` whose successors are all terminal. Each one now moves
    to a new state ``WIN`` with probability ``r = lo + (hi - lo) R(s, a)`` and to ``LOSE``
    otherwise (reward 0 on the transition); ``WIN`` pays 1 and ``LOSE`` 0 on their single
    step into a new terminal state ``END``. So every return is 0 or 1 and, since each episode
    makes exactly one payout transition, ``V_new(s) = lo + (hi - lo) V(s)`` on the states of
    ``mdp`` (advantages scale by ``hi - lo``); episodes are one step longer.

    Requires ``gamma == 1`` (episodic), ``R`` in ``[0, 1]`` on payout transitions, ``R == 0`` on
    every other transition, and no ``(s, a)`` that ends the episode only with some probability.
    The new states are ``S, S+1, S+2`` (``WIN``, ``LOSE``, ``END``), listed in
    ``info["payout_states"]``; per-state arrays in ``info`` keep covering the first ``S`` states
    (``mdp``'s terminal states stay terminal and become unreachable).
    """
    lo, hi = _check_prob("lo", lo), _check_prob("hi", hi)
    if lo > hi:
        raise ValueError(f"lo must be <= hi; got lo={lo}, hi={hi}")
    if mdp.gamma != 1.0:
        raise ValueError(f"bernoulli_leaves needs an episodic MDP (gamma == 1); got gamma={mdp.gamma}")
    S, A = mdp.S, mdp.A
    P = mdp.P.tocsr()
    live = np.repeat(~mdp.terminal, A)  # (S*A,) rows of non-terminal states
    term_mass = P @ mdp.terminal.astype(np.float64)  # (S*A,)
    payout = live & (term_mass > 1.0 - 1e-12)
    partial = live & (term_mass > 1e-12) & ~payout
    R = mdp.R.ravel()
    if partial.any():
        row = int(np.flatnonzero(partial)[0])
        raise ValueError(f"state {row // A}, action {row % A} ends the episode with probability "
                         f"{term_mass[row]:.3g}: bernoulli_leaves needs each transition to end it "
                         f"surely or not at all")
    bad = live & ~payout & (R != 0.0)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(f"R[{row // A}, {row % A}] = {R[row]} on a transition that does not end the "
                         f"episode: bernoulli_leaves needs rewards only on the final transition")
    bad = payout & ((R < 0.0) | (R > 1.0))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(f"R[{row // A}, {row % A}] = {R[row]} must lie in [0, 1] to be a probability")
    win, lose, end = S, S + 1, S + 2
    coo = P.tocoo()
    keep = ~payout[coo.row]
    rows, cols, vals = [coo.row[keep]], [coo.col[keep]], [coo.data[keep]]
    pay = np.flatnonzero(payout)
    r = lo + (hi - lo) * R[pay]
    rows += [pay, pay]
    cols += [np.full(pay.size, win), np.full(pay.size, lose)]
    vals += [r, 1.0 - r]
    for s, nxt in ((win, end), (lose, end), (end, end)):
        rows.append(s * A + np.arange(A))
        cols.append(np.full(A, nxt))
        vals.append(np.ones(A))
    P_new = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                          shape=((S + 3) * A, S + 3))
    R_new = np.zeros((S + 3, A))
    R_new[win] = 1.0
    terminal = np.concatenate([mdp.terminal, [False, False, True]])
    initial = np.concatenate([mdp.initial, [0.0, 0.0, 0.0]])
    info = {**mdp.info, "payout_states": (win, lose, end), "base": mdp.name}
    return TabularMDP(P_new, R_new, 1.0, initial=initial, terminal=terminal,
                      horizon=None if mdp.horizon is None else mdp.horizon + 1, info=info,
                      name=f"bernoulli({mdp.name})")


def gated_trap(p: float, *, n_actions: int = 3, depth: int = 3, gate_depth: int = 1,
               r_good: float = 0.8, r_bad: float = 0.2, seed: int = 0) -> TabularMDP:
    """A gated trap: the on-policy probability of reaching the one improvable state is ``p``.

    Decision levels ``0 .. depth-1`` then one payout step (episodes last ``depth + 1`` steps,
    whatever ``p`` and the policy). The root (level 0; every action the same) enters the *trap*
    branch with probability ``p`` and the *safe* branch otherwise. Each branch is a chain down
    to level ``gate_depth``: there the trap's *gate* has one good action
    (``info["good_action"]``, drawn from ``seed``) leading to a track whose last decision pays
    Bernoulli(``r_good``) and ``n_actions - 1`` bad ones leading to a Bernoulli(``r_bad``) track;
    the safe branch's mirror state leads, whatever the action, to a Bernoulli(``r_good``)
    track. Every other state has identical actions, so under every policy the gate is the only
    state with a non-zero advantage: ``A_pi(gate, good) = (1 - pi(good|gate)) (r_good -
    r_bad)``, reached with probability exactly ``p``. ``V*(root) = r_good`` and the uniform
    policy's suboptimality is ``p (1 - 1/|A|) (r_good - r_bad)``. The payout is a 0/1 outcome
    (:func:`bernoulli_leaves`): with ``r_bad = 1 - r_good`` every track's return has the same
    variance, so Monte-Carlo noise, ``H``, ``|A|`` and rollout lengths do not depend on ``p``.

    ``info``: ``gate`` (state), ``mirror`` (the safe branch's twin of the gate), ``good_action``,
    ``p``, ``gate_depth``, ``trap`` (S,) bool (states of the trap branch), ``payout_states``.
    """
    p = _check_prob("p", p)
    A = _check_int("n_actions", n_actions, 2)
    depth = _check_int("depth", depth, 2)
    g = _check_int("gate_depth", gate_depth, 1)
    if g > depth - 1:
        raise ValueError(f"gate_depth must lie in [1, depth - 1] = [1, {depth - 1}]; got {g}")
    r_good, r_bad = _check_prob("r_good", r_good), _check_prob("r_bad", r_bad)
    if not r_good > r_bad:
        raise ValueError(f"r_good must exceed r_bad (else nothing is improvable); got {r_good} <= {r_bad}")
    good = int(np.random.default_rng(seed).integers(0, A))
    base, trap = _trap_base(p, A, depth, g, r_good, r_bad, good)
    base.info["seed"] = seed
    mdp = bernoulli_leaves(base)
    mdp.info["trap"] = np.concatenate([trap, [False, False, False]])
    mdp.name = base.name
    return mdp


def _trap_base(p, A, depth, g, r_good, r_bad, good):
    """The gated trap with expected payouts on its last decisions (before :func:`bernoulli_leaves`)."""
    n_after = depth - 1 - g  # levels g+1 .. depth-1 on each track
    # state layout: root | trap chain (levels 1..g) | good track | bad track |
    #               safe chain (levels 1..g) | safe track | leaf (terminal, before bernoulli_leaves)
    trap0 = 1
    good0 = trap0 + g
    bad0 = good0 + n_after
    safe0 = bad0 + n_after
    safe_track0 = safe0 + g
    leaf = safe_track0 + n_after
    S = leaf + 1
    nxt = np.zeros((S, A), np.int64)
    R = np.zeros((S, A))
    rows, cols, vals = [], [], []

    def chain(first, n, last_to, r_last):
        """States first..first+n-1 in a line; the last goes to ``last_to`` (or pays r_last)."""
        for k in range(n):
            s = first + k
            if k < n - 1:
                nxt[s] = s + 1
            elif last_to is not None:
                nxt[s] = last_to
            else:
                nxt[s], R[s] = leaf, r_last

    gate, mirror = trap0 + g - 1, safe0 + g - 1
    chain(trap0, g - 1, gate, None)
    chain(safe0, g - 1, mirror, None)
    chain(good0, n_after, None, r_good)
    chain(bad0, n_after, None, r_bad)
    chain(safe_track0, n_after, None, r_good)
    if n_after:
        nxt[gate], nxt[gate, good] = bad0, good0
        nxt[mirror] = safe_track0
    else:  # the gate is the last decision: it pays directly
        nxt[gate], R[gate] = leaf, r_bad
        R[gate, good] = r_good
        nxt[mirror], R[mirror] = leaf, r_good
    nxt[leaf] = leaf
    for s in range(1, S):
        rows.append(s * A + np.arange(A))
        cols.append(nxt[s])
        vals.append(np.ones(A))
    rows.append(np.arange(A).repeat(2))  # the root: trap with probability p, safe otherwise
    cols.append(np.tile([trap0, safe0], A))
    vals.append(np.tile([p, 1.0 - p], A))
    P = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(S * A, S))
    P.eliminate_zeros()
    initial = np.zeros(S)
    initial[0] = 1.0
    trap = np.zeros(S, np.bool_)
    trap[trap0:safe0] = True
    base = TabularMDP(P, R, 1.0, initial=initial, terminal=[leaf], horizon=depth,
                      info={"gate": gate, "mirror": mirror, "good_action": good, "p": p,
                            "gate_depth": g},
                      name=f"gated_trap(p={p:.4g},A={A},depth={depth},gate={g})")
    return base, trap
