"""The tabular Markov decision process and its validation.

Notation (Kakade & Langford 2002; ``docs/cpi.md``, "Conventions"):

* ``S`` states, ``A`` actions. ``P`` is stored as a CSR matrix of shape ``(S*A, S)`` whose
  row ``s*A + a`` is ``P(. | s, a)``; a dense ``(S, A, S)`` array is accepted and converted.
* ``R`` has shape ``(S, A)``: the expected reward of taking ``a`` in ``s``.
* ``gamma`` in ``[0, 1]``. ``gamma == 1`` (episodic) needs terminal states (absorbing,
  zero reward) that every policy reaches with probability one.
* ``initial`` is the start distribution ``D`` over states, shape ``(S,)``.
* A policy ``pi`` is a row-stochastic array of shape ``(S, A)``.

Finite horizons are modelled as layered MDPs (:func:`cpi.horizon.time_augment`): the time
step is part of the state, the last layer is terminal. When the transition graph is a DAG (trees,
layered MDPs), :attr:`TabularMDP.order` holds a topological order and every exact quantity
is a linear-time backward or forward pass instead of a linear solve.
"""
from __future__ import annotations

from functools import cached_property

import numpy as np
import scipy.sparse as sp

from . import _kernels as K

ROW_TOL = 1e-8
"""Tolerance on "rows sum to one" for float64 (and integer) ``P``, policies and distributions."""
ROW_TOL_EPS = 64
"""Lower-precision float inputs get ``max(ROW_TOL, ROW_TOL_EPS * eps)`` of their dtype (float32:
7.6e-6): a row normalised in float32 sums to one only within a few float32 ulps."""


def row_tolerance(dtype) -> float:
    """Tolerance on "sums to one" for an input of ``dtype``: :data:`ROW_TOL` for float64 and
    exact types, ``ROW_TOL_EPS`` machine epsilons for lower-precision floats."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f" and dtype.itemsize < 8:
        return max(ROW_TOL, ROW_TOL_EPS * float(np.finfo(dtype).eps))
    return ROW_TOL


def _state_action(row: int, A: int) -> str:
    return f"state {row // A}, action {row % A}"


class TabularMDP:
    """A validated finite MDP with sparse transitions.

    Parameters
    ----------
    P : scipy.sparse matrix (S*A, S) or ndarray (S, A, S) or (S*A, S)
        Transition probabilities; row ``s*A + a`` is ``P(. | s, a)``.
    R : ndarray (S, A)
        Expected rewards, finite.
    gamma : float in [0, 1]
        Discount. ``gamma == 1`` requires ``terminal`` states reached under every policy.
    initial : ndarray (S,), optional
        Start distribution ``D``; default uniform over non-terminal states.
    terminal : bool mask (S,) or index array, optional
        Absorbing zero-reward states (every action self-loops with probability one).
    horizon : int, optional
        A declared bound on the episode length: checked, the graph must be a DAG whose
        longest path has at most ``horizon`` steps. For a finite horizon on a general MDP
        build the layered MDP with :func:`cpi.time_augment`.
    order : int array (S,), optional
        A topological order of the states (generators pass it); checked in O(nnz).
    info : dict, optional
        Generator metadata (e.g. which states lie after the first error of a thought tree).
    name : str
        A label for messages and tables.

    Raises
    ------
    ValueError
        Naming the problem and where: a shape, a negative or NaN entry, a row that does not
        sum to one, ``gamma`` outside [0, 1], ``gamma == 1`` without proper termination.
    """

    def __init__(self, P, R, gamma, initial=None, terminal=None, horizon=None, order=None,
                 info=None, name="mdp"):
        R = np.ascontiguousarray(R, dtype=np.float64)
        if R.ndim != 2:
            raise ValueError(f"R must have shape (S, A); got an array with shape {R.shape}")
        S, A = R.shape
        if S < 1 or A < 1:
            raise ValueError(f"R must have at least one state and one action; got shape {R.shape}")
        self.S, self.A, self.name = S, A, name
        self.P = self._check_P(P, S, A)
        bad = np.argwhere(~np.isfinite(R))
        if bad.size:
            s, a = bad[0]
            raise ValueError(f"R[{s}, {a}] is {R[s, a]}: rewards must be finite")
        self.R = R

        gamma = float(gamma)
        if not 0.0 <= gamma <= 1.0 or np.isnan(gamma):
            raise ValueError(f"gamma must lie in [0, 1]; got {gamma}")
        self.gamma = gamma

        self.terminal = self._check_terminal(terminal)
        self.initial = self._check_distribution(
            initial if initial is not None else self._uniform_nonterminal(), "initial")

        self.info = dict(info or {})
        self._order = None
        if order is not None:
            self._order = self._check_order(order)
        if gamma == 1.0:
            self._check_proper()
        self.horizon = None
        if horizon is not None:
            self.horizon = self._check_horizon(horizon)

    # ------------------------------------------------------------------ validation
    @staticmethod
    def _check_P(P, S, A):
        tol = row_tolerance(P.dtype if hasattr(P, "dtype") else np.float64)
        if sp.issparse(P):
            P = sp.csr_matrix(P, dtype=np.float64)
            if P.shape != (S * A, S):
                raise ValueError(
                    f"sparse P must have shape (S*A, S) = ({S * A}, {S}) for R of shape "
                    f"({S}, {A}); got {P.shape}")
        else:
            P = np.asarray(P, dtype=np.float64)
            if P.shape == (S, A, S):
                P = P.reshape(S * A, S)
            elif P.shape != (S * A, S):
                raise ValueError(
                    f"P must have shape (S, A, S) = ({S}, {A}, {S}) or (S*A, S); got {P.shape}")
            P = sp.csr_matrix(P)
        P.sum_duplicates()
        P.sort_indices()
        if P.data.size and not np.all(np.isfinite(P.data)):
            k = int(np.flatnonzero(~np.isfinite(P.data))[0])
            row = int(np.searchsorted(P.indptr, k, side="right") - 1)
            raise ValueError(f"P entry for {_state_action(row, A)}, next state "
                             f"{P.indices[k]} is {P.data[k]}: probabilities must be finite")
        if P.data.size and P.data.min() < 0:
            k = int(np.argmin(P.data))
            row = int(np.searchsorted(P.indptr, k, side="right") - 1)
            raise ValueError(f"P has a negative entry {P.data[k]} for {_state_action(row, A)}, "
                             f"next state {P.indices[k]}")
        P.eliminate_zeros()
        sums = np.asarray(P.sum(axis=1)).ravel()
        bad = np.flatnonzero(np.abs(sums - 1.0) > tol)
        if bad.size:
            row = int(bad[0])
            raise ValueError(f"P row for {_state_action(row, A)} sums to {sums[row]:.12g}, "
                             f"not 1 ({bad.size} such rows)")
        idx = np.int32 if S < 2**31 - 1 and P.nnz < 2**31 - 1 else np.int64
        P.indices = P.indices.astype(idx, copy=False)
        P.indptr = P.indptr.astype(idx, copy=False)
        return P

    def _check_terminal(self, terminal):
        S, A = self.S, self.A
        mask = np.zeros(S, dtype=np.bool_)
        if terminal is not None:
            t = np.asarray(terminal)
            if t.dtype == np.bool_:
                if t.shape != (S,):
                    raise ValueError(f"terminal mask must have shape ({S},); got {t.shape}")
                mask = t.copy()
            else:
                if t.ndim > 1:
                    raise ValueError(f"terminal must be a bool mask ({S},) or a 1-d array of state "
                                     f"indices; got shape {t.shape}")
                t = t.ravel()
                if t.size and t.dtype.kind not in "iuf":
                    raise ValueError(f"terminal must be a bool mask or integer state indices; got "
                                     f"dtype {t.dtype}")
                if t.size and t.dtype.kind == "f":
                    frac = ~np.isfinite(t) | (t != np.round(t))
                    if frac.any():  # e.g. 2.7 would silently become state 2
                        k = int(np.flatnonzero(frac)[0])
                        raise ValueError(f"terminal indices must be integers; got {t[k]} at "
                                         f"position {k}")
                if t.size and (t.min() < 0 or t.max() >= S):
                    raise ValueError(f"terminal indices must lie in [0, {S}); got {t.min()}..{t.max()}")
                mask[t.astype(np.int64)] = True
        for s in np.flatnonzero(mask):
            for a in range(A):
                row = s * A + a
                lo, hi = self.P.indptr[row], self.P.indptr[row + 1]
                if hi - lo != 1 or self.P.indices[lo] != s:
                    raise ValueError(f"terminal state {s} is not absorbing: action {a} leaves it")
                if self.R[s, a] != 0.0:
                    raise ValueError(f"terminal state {s} has reward R[{s}, {a}] = {self.R[s, a]}; "
                                     f"terminal states must have zero reward")
        return mask

    def _uniform_nonterminal(self):
        free = ~self.terminal
        if not free.any():
            raise ValueError("every state is terminal: nothing to start from")
        return free / free.sum()

    def _check_distribution(self, mu, name):
        tol = row_tolerance(getattr(mu, "dtype", np.float64))
        mu = np.ascontiguousarray(mu, dtype=np.float64)
        if mu.shape != (self.S,):
            raise ValueError(f"{name} must have shape (S,) = ({self.S},); got {mu.shape}")
        if not np.all(np.isfinite(mu)) or mu.min() < 0:
            s = int(np.flatnonzero(~(np.isfinite(mu) & (mu >= 0)))[0])
            raise ValueError(f"{name}[{s}] = {mu[s]}: a distribution must be finite and non-negative")
        if abs(mu.sum() - 1.0) > tol:
            raise ValueError(f"{name} sums to {mu.sum():.12g}, not 1")
        return mu

    def _check_order(self, order):
        order = np.ascontiguousarray(order, dtype=np.int64)
        if order.shape != (self.S,) or not np.array_equal(np.sort(order), np.arange(self.S)):
            raise ValueError(f"order must be a permutation of range({self.S})")
        pos = np.empty(self.S, np.int64)
        pos[order] = np.arange(self.S)
        rows = np.repeat(np.arange(self.S * self.A) // self.A, np.diff(self.P.indptr))
        live = ~self.terminal[rows]
        back = live & (pos[self.P.indices] <= pos[rows])
        if back.any():
            k = int(np.flatnonzero(back)[0])
            raise ValueError(f"order is not topological: state {rows[k]} leads to state "
                             f"{self.P.indices[k]}, which does not come later")
        return order

    def _check_proper(self):
        if not self.terminal.any():
            raise ValueError("gamma == 1 needs terminal states (absorbing, zero reward) reached "
                             "under every policy; pass terminal=..., or build a finite-horizon "
                             "MDP with cpi.time_augment(mdp, H)")
        csc = self.P.tocsc()
        ok = K.forced_termination(csc.indptr.astype(np.int64), csc.indices.astype(np.int64),
                                  self.S, self.A, self.terminal)
        if not ok.all():
            s = int(np.flatnonzero(~ok)[0])
            raise ValueError(f"gamma == 1 but some policy never terminates from state {s} "
                             f"({int((~ok).sum())} such states): every policy must reach a "
                             f"terminal state with probability one")

    def _check_horizon(self, H):
        H = int(H)
        if H < 1:
            raise ValueError(f"horizon must be a positive integer; got {H}")
        if self.order is None:
            raise ValueError("horizon needs a DAG (every path ends in a terminal state); this MDP "
                             "has a cycle: use cpi.time_augment(mdp, H) for a finite horizon")
        if self.longest_path > H:
            raise ValueError(f"horizon {H} is shorter than the longest path ({self.longest_path} steps)")
        return H

    # ------------------------------------------------------------------ structure
    @property
    def order(self):
        """A topological order of the states, or ``None`` when the graph has a cycle."""
        if self._order is None and not getattr(self, "_order_checked", False):
            self._order_checked = True
            order, n = K.topological_order(self.P.indptr, self.P.indices, self.S, self.A,
                                           self.terminal)
            if n == self.S:
                self._order = order
        return self._order

    @cached_property
    def longest_path(self) -> int:
        """Longest number of steps before a terminal state (DAG only)."""
        if self.order is None:
            raise ValueError("longest_path is defined for DAG MDPs only")
        # longest path = optimal value with reward 1 per non-terminal step, gamma = 1
        ones = np.where(self.terminal[:, None], 0.0, np.ones((self.S, self.A)))
        V = np.zeros(self.S)
        act = np.zeros(self.S, np.int64)
        K.dag_optimal(self.order, self.P.indptr, self.P.indices, self.P.data, ones, 1.0,
                      self.terminal, self.A, V, act)
        return int(round(V.max()))

    @cached_property
    def one_per_row(self) -> bool:
        """Every (s, a) row of ``P`` has exactly one non-zero (deterministic transitions: trees,
        locks, chains); the Q / sweep kernels then skip ``indptr`` (2.2x faster sweep on the
        1.4M-state tree)."""
        return bool(np.all(np.diff(self.P.indptr) == 1))

    @property
    def max_length(self):
        """An upper bound on episode length: ``horizon``, else the DAG's longest path, else None."""
        if self.horizon is not None:
            return self.horizon
        return self.longest_path if self.order is not None else None

    @property
    def nbytes_P(self) -> int:
        """Bytes of the CSR arrays of ``P`` (data + indices + indptr)."""
        return self.P.data.nbytes + self.P.indices.nbytes + self.P.indptr.nbytes

    def P_dense(self) -> np.ndarray:
        """Dense ``(S, A, S)`` copy of ``P`` (small MDPs, tests)."""
        return self.P.toarray().reshape(self.S, self.A, self.S)

    def as_policy(self, pi, name="pi") -> tuple[np.ndarray, float]:
        """``(pi, tol)``: ``pi`` as a contiguous float64 ``(S, A)`` array (shape checked, entries
        *not*) and the row-sum tolerance of its input dtype (:func:`row_tolerance`). For the
        kernels that check the entries while they read them (``cpi.value``, ``cpi.evaluate``);
        everything else calls :meth:`check_policy`."""
        tol = row_tolerance(getattr(pi, "dtype", np.float64))
        pi = np.ascontiguousarray(pi, dtype=np.float64)
        if pi.shape != (self.S, self.A):
            raise ValueError(f"{name} must have shape (S, A) = ({self.S}, {self.A}); got {pi.shape}")
        return pi, tol

    def check_policy(self, pi, name="pi", tol=None) -> np.ndarray:
        """Validate a row-stochastic ``(S, A)`` policy; returns it as contiguous float64.

        One numba pass over ``pi`` (``cpi._kernels.policy_violation``). Raises ``ValueError``
        naming the first bad entry (``pi[s, a] = -0.5``: NaN, infinite or negative; row-major
        order) or, if every entry is fine, the first row that does not sum to one within
        ``tol`` (default: :func:`row_tolerance` of the input dtype; callers holding a float64
        copy of a float32 policy pass the float32 tolerance).
        """
        pi, dtype_tol = self.as_policy(pi, name)
        tol = dtype_tol if tol is None else tol
        kind, s, a = K.policy_violation(pi, tol)
        if kind == 1:
            raise ValueError(f"{name}[{s}, {a}] = {pi[s, a]}: policy entries must be finite and >= 0")
        if kind == 2:
            raise ValueError(f"{name} is not row-stochastic: row for state {s} sums to "
                             f"{pi[s].sum():.12g}")
        return pi

    def check_distribution(self, mu, name="mu") -> np.ndarray:
        """Validate a distribution over states; returns it as contiguous float64."""
        return self._check_distribution(mu, name)

    def uniform_policy(self) -> np.ndarray:
        return np.full((self.S, self.A), 1.0 / self.A)

    def __repr__(self):
        kind = "DAG" if self._order is not None else "MDP"
        return (f"TabularMDP({self.name!r}, S={self.S}, A={self.A}, gamma={self.gamma}, "
                f"nnz={self.P.nnz}, terminal={int(self.terminal.sum())}, {kind})")
