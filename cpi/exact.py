"""Exact values, advantages and occupancies of tabular policies.

Conventions (``docs/cpi.md``, "Conventions"):

* ``V^pi(s) = E[sum_t gamma^t R(s_t, a_t) | s_0 = s]`` (unnormalised), ``Q = R + gamma P V``,
  advantage ``A = Q - V``.
* occupancy ``d_{pi,mu}(s) = (1 - gamma) sum_t gamma^t Pr(s_t = s | s_0 ~ mu, pi)``, a
  normalised distribution; for ``gamma == 1`` (episodic) it is expected visits to
  non-terminal states divided by the expected episode length.
* ``effective_horizon = 1/(1-gamma)``, or the expected episode length when ``gamma == 1``,
  so that the performance-difference lemma reads, for both cases,
  ``V^{pi2}(mu) - V^{pi}(mu) = H_{pi2,mu} * E_{s~d_{pi2,mu}} E_{a~pi2}[A_pi(s,a)]``.

Dispatch: DAG MDPs use linear-time backward/forward passes; small MDPs a dense solve;
large cyclic ones iterative solves of ``(I - gamma P_pi) x = b`` on a compact ``P_pi``
(MacQueen-extrapolated Jacobi steps while they converge fast, BiCGSTAB, a residual check and
GMRES / sparse-LU fallbacks; ``docs/cpi.md``); repeated sweeps are far slower. The policy is
checked by the kernel that reads it first (one pass, no extra NumPy reductions).
"""
from __future__ import annotations

import os
from typing import NamedTuple

import numba as nb
import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from . import _kernels as K
from .mdp import TabularMDP

DENSE_MAX_S = 200  # below this, a dense LU; above, the numba Krylov solve is faster
KRYLOV_RTOL = 1e-13
"""BiCGSTAB stops when ``||b - (I - gamma P_pi) x||_2 <= KRYLOV_RTOL ||b||_2``."""
RESIDUAL_TOL = 1e-10
"""A Krylov solution is accepted when its true residual ``max |b - (I - gamma P_pi) x|`` is at
most ``RESIDUAL_TOL * max |b|``; otherwise GMRES, then a sparse LU, take over."""
JACOBI_MAX_RATE = 0.5
"""Value solves on MDPs without terminal states start with MacQueen-extrapolated Jacobi steps
(``K.extrapolated_jacobi``) while the span of the update shrinks at least this much per step
(fast-mixing chains: 17 mat-vecs instead of BiCGSTAB's 24 on the S = 20,000 garnet with a
stochastic policy); slower chains go on with BiCGSTAB from where Jacobi stopped."""
JACOBI_MAX_STEPS = 200


class Evaluation(NamedTuple):
    """Value of a policy and its occupancy from a start distribution."""

    V: np.ndarray  # (S,)
    d: np.ndarray  # (S,)
    horizon: float  # effective horizon H_{pi,mu}


# ----------------------------------------------------------------------------- helpers
def policy_matrix(mdp: TabularMDP, pi: np.ndarray) -> sp.csr_matrix:
    """``P_pi`` (S, S) with terminal rows zeroed: ``P_pi[s] = sum_a pi(a|s) P(.|s,a)``.

    Built in O(nnz) by reusing the CSR arrays of ``P`` (the ``A`` rows of a state are
    concatenated; duplicate columns are summed by the mat-vec).
    """
    P = mdp.P
    w = np.repeat(pi.ravel(), np.diff(P.indptr))
    keep = np.repeat(~mdp.terminal, mdp.A)
    w = w * np.repeat(keep, np.diff(P.indptr))
    M = sp.csr_matrix((P.data * w, P.indices, P.indptr[:: mdp.A].copy()),
                      shape=(mdp.S, mdp.S))
    return M


class _Ppi(NamedTuple):
    """Compact CSR arrays of ``P_pi`` (only actions with ``pi > 0``, terminal rows empty) and
    the common row length ``width`` (-1 when rows differ)."""

    ip: np.ndarray
    ix: np.ndarray
    dx: np.ndarray
    width: int


def _index_dtype(S: int):
    """The narrowest integer type of ``P_pi``'s column indices (``0 .. S-1``)."""
    return np.uint16 if S <= 1 << 16 else np.int32 if S <= 1 << 31 else np.int64


def _compact(mdp: TabularMDP, pi: np.ndarray, tol: float) -> _Ppi:
    """Compact ``P_pi``; the pass that counts its entries also checks ``pi`` (raises on bad input)."""
    P = mdp.P
    ip, ix, dx, width, ok = K.compact_ppi(P.indptr, P.indices, P.data, pi, mdp.terminal,
                                          mdp.A, tol, np.empty(0, _index_dtype(mdp.S)))
    if not ok:
        mdp.check_policy(pi, tol=tol)  # raises the error naming the state and action
    return _Ppi(ip, ix, dx, int(width))


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


USABLE_CPUS = _usable_cpus()


def _own_running() -> int:
    """Threads of this process running or runnable right now (``/proc/self/task/*/stat``): the caller,
    and e.g. numba's or OpenBLAS's workers still spinning after their last parallel region."""
    n = 0
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat", "rb") as f:
                stat = f.read()
        except OSError:  # the thread ended meanwhile
            continue
        n += stat[stat.rfind(b")") + 2:stat.rfind(b")") + 3] == b"R"
    return max(n, 1)


def _runnable_others() -> int | None:
    """Tasks of other processes running or runnable right now (``/proc/loadavg``'s fourth field
    counts them machine-wide, this process's threads included: :func:`_own_running` is taken off);
    None where unknown."""
    try:
        with open("/proc/loadavg") as f:
            total = int(f.read().split()[3].split("/")[0])
        return max(total - _own_running(), 0)
    except (OSError, ValueError, IndexError):
        return None


def oversubscribed() -> bool:
    """The machine cannot give a parallel region two free CPUs right now: at most one usable CPU
    is free of other runnable tasks (:func:`_runnable_others`); where that count is unknown, the
    1-minute load average is at least the number of usable CPUs (False where neither is known).

    A parallel region then waits for threads the OS has preempted: on the 2-core development
    machine at load 7-12 one value solve on the S = 20,000 garnet took 880 ms with parallel
    mat-vecs (numba's OpenMP layer; 143 ms with its workqueue layer) against 124 ms serial; with
    ONE other process running (``nice 19``) it took 407 ms in parallel (OpenMP; 67 ms workqueue)
    against 56 ms serial. The load average, a 1-minute mean, sees such a process a minute late
    and keeps the solves serial for a minute after it stops (2026-11-30, ``docs/benchmarks.md``)."""
    others = _runnable_others()
    if others is not None:
        return USABLE_CPUS - others < 2
    try:
        return os.getloadavg()[0] >= USABLE_CPUS
    except (AttributeError, OSError):
        return False


def parallel_blocks(nnz: int) -> int:
    """How many blocks of rows a kernel over ``nnz`` non-zeros runs in parallel; 0 for serial.

    Parallel from ``K.PARALLEL_MIN_NNZ`` non-zeros when numba has more than one thread and the
    machine is not :func:`oversubscribed`. Serial and parallel kernels compute every row the
    same way, so the choice changes the speed, never the bits.
    """
    threads = nb.get_num_threads()
    if threads < 2 or nnz < K.PARALLEL_MIN_NNZ or oversubscribed():
        return 0
    return 4 * threads


def _solve(mdp: TabularMDP, ppi: _Ppi | None, pi: np.ndarray, b: np.ndarray, transpose: bool,
           guess=None) -> np.ndarray:
    """Solve ``(I - gamma P_pi) x = b`` (or the transposed system), terminal rows of ``P_pi`` zeroed.

    Small ``S`` (``ppi is None``): dense LU. Otherwise numba loops on the compact ``P_pi``,
    started from ``guess`` (default ``b``): for the value of an MDP without terminal states
    (``P_pi`` stochastic) first MacQueen-extrapolated Jacobi steps while they converge fast
    (``JACOBI_MAX_RATE``), then BiCGSTAB (van der Vorst 1992) to ``KRYLOV_RTOL`` (one mat-vec
    when Jacobi got there); if the true residual is above ``RESIDUAL_TOL max|b|``, scipy GMRES,
    then a sparse LU.
    """
    g = mdp.gamma
    S = mdp.S
    if ppi is None:
        M = np.eye(S) - g * policy_matrix(mdp, pi).toarray()
        return np.linalg.solve(M.T if transpose else M, b)
    x0 = b if guess is None else guess
    nblk = parallel_blocks(ppi.ip[-1])
    if not transpose and not mdp.terminal.any():
        # ||r||_2 <= sqrt(S) ||r||_inf: the Jacobi bound then meets BiCGSTAB's own criterion.
        # K._dot, not ``b @ b``: a BLAS call wakes OpenBLAS's threads, which then spin on the
        # cores the parallel mat-vecs need (2.1x slower on 2 cores, see ``docs/benchmarks.md``)
        tol_inf = KRYLOV_RTOL * np.sqrt(K._dot(b, b) / S)
        x0, _, _ = K.extrapolated_jacobi(ppi.ip, ppi.ix, ppi.dx, ppi.width, g, b, x0, tol_inf,
                                         JACOBI_MAX_RATE, JACOBI_MAX_STEPS, nblk)
    x, _, res = K.bicgstab(ppi.ip, ppi.ix, ppi.dx, ppi.width, g, b, x0, transpose,
                           KRYLOV_RTOL, 20 * S, nblk)
    scale = np.abs(b).max() or 1.0
    if res <= RESIDUAL_TOL * scale:
        return x
    Ppi = sp.csr_matrix((ppi.dx, ppi.ix.astype(np.int64), ppi.ip), shape=(S, S))
    op = Ppi.T if transpose else Ppi  # CSC view: no copy
    L = spla.LinearOperator((S, S), matvec=lambda y: y - g * (op @ y), dtype=np.float64)
    x, info = spla.gmres(L, b, x0=x if np.all(np.isfinite(x)) else None,
                         rtol=KRYLOV_RTOL, atol=0.0, restart=50, maxiter=50 * S)
    if np.abs(b - L.matvec(x)).max() > RESIDUAL_TOL * scale:  # last resort: exact sparse LU
        M = sp.identity(S, format="csc") - g * op.tocsc()
        x = spla.spsolve(M, b)
    return x


def _operator(mdp: TabularMDP, pi: np.ndarray, tol: float) -> _Ppi | None:
    """What the cyclic solves need: ``None`` for the dense path (``pi`` checked here), else the
    compact ``P_pi`` (``pi`` checked while it is built)."""
    if mdp.S <= DENSE_MAX_S:
        mdp.check_policy(pi, tol=tol)
        return None
    return _compact(mdp, pi, tol)


def _check_guess(mdp: TabularMDP, guess):
    if guess is None:
        return None
    guess = np.ascontiguousarray(guess, dtype=np.float64)
    if guess.shape != (mdp.S,):
        raise ValueError(f"guess must have shape (S,) = ({mdp.S},); got {guess.shape}")
    if not np.all(np.isfinite(guess)):
        raise ValueError("guess must be finite")
    return guess


# ----------------------------------------------------------------------------- values
def value(mdp: TabularMDP, pi, guess=None) -> np.ndarray:
    """``V^pi`` (S,): the solution of ``V = R_pi + gamma P_pi V`` (``V = 0`` on terminals).

    ``guess`` (S,), optional: a starting vector for the Krylov solve of a large cyclic MDP
    (e.g. the previous policy's value inside policy iteration; fewer iterations when close,
    the same accuracy either way). Ignored by the DAG pass and the dense solve.
    """
    pi, tol = mdp.as_policy(pi)
    return _value(mdp, pi, tol, _check_guess(mdp, guess))


def _value(mdp: TabularMDP, pi: np.ndarray, tol: float, guess=None, ppi=None) -> np.ndarray:
    """``V^pi`` with ``pi`` checked by the kernel that reads it (shape already checked)."""
    if mdp.order is not None:
        V = np.zeros(mdp.S)
        if not K.dag_value(mdp.order, mdp.P.indptr, mdp.P.indices, mdp.P.data, mdp.R, pi,
                           mdp.gamma, mdp.terminal, mdp.A, V, tol):
            mdp.check_policy(pi, tol=tol)  # raises the error naming the state and action
        return V
    if ppi is None:
        ppi = _operator(mdp, pi, tol)
    Rpi = np.where(mdp.terminal, 0.0, np.einsum("sa,sa->s", pi, mdp.R))
    return _solve(mdp, ppi, pi, Rpi, False, guess)


def q_from_v(mdp: TabularMDP, V: np.ndarray) -> np.ndarray:
    """``Q(s, a) = R(s, a) + gamma sum_s' P(s'|s,a) V(s')`` (S, A)."""
    V = np.ascontiguousarray(V, dtype=np.float64)
    if V.shape != (mdp.S,):
        raise ValueError(f"V must have shape ({mdp.S},); got {V.shape}")
    Q = np.empty((mdp.S, mdp.A))
    kern = K.q_from_v_parallel if parallel_blocks(mdp.P.nnz) else K.q_from_v_serial
    kern(mdp.P.indptr, mdp.P.indices, mdp.P.data, mdp.R, mdp.gamma, V, Q, mdp.one_per_row)
    return Q


def q_values(mdp: TabularMDP, pi) -> np.ndarray:
    """``Q^pi`` (S, A)."""
    return q_from_v(mdp, value(mdp, pi))


def advantages(mdp: TabularMDP, pi) -> np.ndarray:
    """``A^pi = Q^pi - V^pi`` (S, A); zero on terminal states."""
    V = value(mdp, pi)
    return q_from_v(mdp, V) - V[:, None]


# ----------------------------------------------------------------------------- occupancy
def _visits(mdp: TabularMDP, pi: np.ndarray, mu: np.ndarray, ppi=None) -> np.ndarray:
    """Discounted visit mass ``m = sum_t gamma^t Pr(s_t = .)`` (``pi`` already checked), with
    the terminal mass and round-off handled by ``K.finish_visits`` (see the module doc)."""
    if mdp.order is not None:
        m = mu.copy()
        K.dag_visits(mdp.order, mdp.P.indptr, mdp.P.indices, mdp.P.data, pi, mdp.gamma,
                     mdp.terminal, mdp.A, m)
    else:
        m = _solve(mdp, ppi, pi, mu, True)
    K.finish_visits(m, mdp.terminal, mdp.gamma)
    return m


def _occupancy(mdp, pi, mu, ppi=None):
    """``(d, H)`` for a checked ``pi``."""
    m = _visits(mdp, pi, mu, ppi)
    total = m.sum()
    if mdp.gamma < 1.0:
        H = 1.0 / (1.0 - mdp.gamma)
    else:
        H = float(total)
        if H <= 0.0:
            raise ValueError("the start distribution puts all its mass on terminal states: "
                             "the episodic occupancy is undefined")
    m /= total
    return m, H


def _start(mdp: TabularMDP, start) -> np.ndarray:
    return mdp.initial if start is None else mdp.check_distribution(start, "start")


def evaluate(mdp: TabularMDP, pi, start=None, guess=None) -> Evaluation:
    """``V^pi``, ``d_{pi,start}`` and the effective horizon in one call (``guess``: see :func:`value`)."""
    pi, tol = mdp.as_policy(pi)
    mu = _start(mdp, start)
    guess = _check_guess(mdp, guess)
    ppi = _operator(mdp, pi, tol) if mdp.order is None else None
    V = _value(mdp, pi, tol, guess, ppi)
    return Evaluation(V, *_occupancy(mdp, pi, mu, ppi))


def _checked_operator(mdp, pi):
    """Check ``pi`` (S, A) and build what the occupancy solve needs."""
    pi, tol = mdp.as_policy(pi)
    if mdp.order is not None:
        return mdp.check_policy(pi, tol=tol), None
    return pi, _operator(mdp, pi, tol)


def occupancy(mdp: TabularMDP, pi, start=None) -> np.ndarray:
    """``d_{pi,start}`` (S,), normalised (sums to one). ``start`` defaults to ``mdp.initial``."""
    pi, ppi = _checked_operator(mdp, pi)
    return _occupancy(mdp, pi, _start(mdp, start), ppi)[0]


def effective_horizon(mdp: TabularMDP, pi, start=None) -> float:
    """``1/(1-gamma)``, or the expected episode length under ``pi`` from ``start`` if ``gamma == 1``."""
    if mdp.gamma < 1.0:
        return 1.0 / (1.0 - mdp.gamma)
    pi, ppi = _checked_operator(mdp, pi)
    return _occupancy(mdp, pi, _start(mdp, start), ppi)[1]


def policy_advantage(mdp: TabularMDP, pi, pi2, start=None) -> float:
    """``Adv(pi2; pi, mu) = E_{s~d_{pi,mu}} E_{a~pi2(.|s)} [A_pi(s, a)]``.

    Implements: Kakade & Langford 2002, Definition 4.1 (policy advantage), with the
    unnormalised ``A`` of ``docs/cpi.md``.
    """
    pi = mdp.check_policy(pi)
    pi2 = mdp.check_policy(pi2, "pi2")
    ev = evaluate(mdp, pi, start)
    adv = q_from_v(mdp, ev.V) - ev.V[:, None]
    return float(ev.d @ np.einsum("sa,sa->s", pi2, adv))


# ----------------------------------------------------------------------------- control
def greedy(Q, tol: float = 0.0) -> np.ndarray:
    """Deterministic greedy policy (S, A): one-hot on the first ``argmax_a Q(s, a)``.

    With ``tol > 0`` an action within ``tol`` of the max counts as maximal (first one wins).
    """
    Q = np.asarray(Q, dtype=np.float64)
    if Q.ndim != 2:
        raise ValueError(f"Q must have shape (S, A); got {Q.shape}")
    if tol > 0:
        a = np.argmax(Q >= Q.max(axis=1, keepdims=True) - tol, axis=1)
    else:
        a = np.argmax(Q, axis=1)
    pi = np.zeros_like(Q)
    pi[np.arange(Q.shape[0]), a] = 1.0
    return pi


def bellman_sweep(mdp: TabularMDP, V, V_out=None, act_out=None):
    """One value-iteration sweep ``V_out = max_a (R + gamma P V)``; returns ``(V_out, argmax)``."""
    V = np.ascontiguousarray(V, dtype=np.float64)
    if V.shape != (mdp.S,):
        raise ValueError(f"V must have shape ({mdp.S},); got {V.shape}")
    V_out = np.empty(mdp.S) if V_out is None else V_out
    act_out = np.empty(mdp.S, np.int64) if act_out is None else act_out
    kern = K.bellman_sweep_parallel if parallel_blocks(mdp.P.nnz) else K.bellman_sweep_serial
    kern(mdp.P.indptr, mdp.P.indices, mdp.P.data, mdp.R, mdp.gamma, V, V_out, act_out, mdp.one_per_row)
    return V_out, act_out


def optimal(mdp: TabularMDP, max_iter: int = 1000):
    """``(V*, pi*)``: optimal values and a deterministic optimal policy.

    DAGs: one backward pass with a max. Otherwise Howard's policy iteration with exact
    evaluation (each solve starts from the previous policy's value); the current action is
    kept unless another improves it by more than ``1e-12 * max(1, |V|)`` (no cycling on ties). Policy iteration terminates in finitely
    many steps (Puterman 1994, Thm 6.4.2).
    """
    if mdp.order is not None:
        V = np.zeros(mdp.S)
        act = np.zeros(mdp.S, np.int64)
        K.dag_optimal(mdp.order, mdp.P.indptr, mdp.P.indices, mdp.P.data, mdp.R, mdp.gamma,
                      mdp.terminal, mdp.A, V, act)
        pi = np.zeros((mdp.S, mdp.A))
        pi[np.arange(mdp.S), act] = 1.0
        return V, pi
    act = np.argmax(mdp.R, axis=1)
    pi = np.zeros((mdp.S, mdp.A))
    V = None
    for _ in range(max_iter):
        pi[:] = 0.0
        pi[np.arange(mdp.S), act] = 1.0
        V = value(mdp, pi, guess=V)  # warm start: the previous policy's value
        Q = q_from_v(mdp, V)
        tol = 1e-12 * max(1.0, np.abs(V).max())
        best = np.argmax(Q, axis=1)
        improve = Q[np.arange(mdp.S), best] > Q[np.arange(mdp.S), act] + tol
        if not improve.any():
            return V, pi
        act = np.where(improve, best, act)
    raise RuntimeError(f"policy iteration did not converge in {max_iter} iterations")
