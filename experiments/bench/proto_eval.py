"""Prototype (benchmark-only): policy evaluation without BLAS, for a proposed fix of ``cpi``.

Not part of ``cpi``; the benchmark times it beside ``cpi.evaluate`` to size a fix.
What it changes relative to ``cpi.exact._solve`` (scipy ``bicgstab`` on a ``LinearOperator``):

1. ``P_pi`` is built in O(nnz) from the CSR arrays of ``P`` keeping only the entries with
   ``pi(a|s) > 0`` (``cpi.policy_matrix`` keeps all ``A`` actions' entries, zero-weighted,
   so a deterministic policy costs ``A`` times the mat-vec work);
2. BiCGSTAB (van der Vorst 1992, SIAM J. Sci. Stat. Comput. 13(2), Alg. "Bi-CGSTAB") runs
   as one numba loop: no OpenBLAS level-1 calls, whose threads stall on a busy shared
   machine, and no Python per iteration;
3. the occupancy solves ``(I - gamma P_pi)^T m = mu`` with a scatter mat-vec (no explicit
   transpose) and does not recompute ``V``.

Same conventions as ``cpi.evaluate``: terminal rows of ``P_pi`` zeroed, the mass reaching a
terminal ``t`` is divided by ``1 - gamma`` (or dropped when ``gamma == 1``), ``d`` normalised.
"""
from __future__ import annotations

import numba as nb
import numpy as np


from cpi._kernels import bicgstab, compact_ppi  # noqa: E402,F401  (moved into cpi)


def evaluate(mdp, pi, start=None, rtol: float = 1e-13):
    """``(V, d, H)`` like ``cpi.evaluate`` for a cyclic MDP (gamma < 1), by the kernels above.

    Raises RuntimeError when the true residual is above ``1e-10 * max|b|`` (cpi would fall
    back to GMRES / sparse LU there; the prototype does not).
    """
    pi = mdp.check_policy(pi)
    mu = mdp.initial if start is None else mdp.check_distribution(start, "start")
    P = mdp.P
    ip, ix, dx = compact_ppi(P.indptr, P.indices, P.data, pi, mdp.terminal, mdp.A)
    Rpi = np.where(mdp.terminal, 0.0, np.einsum("sa,sa->s", pi, mdp.R))
    g = mdp.gamma
    V, _, res = bicgstab(ip, ix, dx, g, Rpi, False, rtol, 20 * mdp.S)
    if res > 1e-10 * max(np.abs(Rpi).max(), 1e-300):
        raise RuntimeError(f"prototype bicgstab (V) did not converge: residual {res:.2e}")
    m, _, res = bicgstab(ip, ix, dx, g, mu, True, rtol, 20 * mdp.S)
    if res > 1e-10 * max(np.abs(mu).max(), 1e-300):
        raise RuntimeError(f"prototype bicgstab (d) did not converge: residual {res:.2e}")
    if g < 1.0:
        m[mdp.terminal] /= 1.0 - g
        H = 1.0 / (1.0 - g)
    else:
        m[mdp.terminal] = 0.0
        H = float(m.sum())
    np.maximum(m, 0.0, out=m)
    return V, m / m.sum(), H


from cpi._kernels import bellman_sweep_serial as sweep_serial  # noqa: E402  (the serial prototype, now in cpi)


def sweep(mdp, V):
    """One serial value-iteration sweep; returns ``(V_out, argmax)`` like ``cpi.bellman_sweep``."""
    V = np.ascontiguousarray(V, dtype=np.float64)
    V_out = np.empty(mdp.S)
    act = np.empty(mdp.S, np.int64)
    sweep_serial(mdp.P.indptr, mdp.P.indices, mdp.P.data, mdp.R, mdp.gamma, V, V_out, act)
    return V_out, act


@nb.njit(cache=True, parallel=True)
def sweep_blocked_kernel(indptr, indices, data, R, gamma, V, V_out, act_out, nblk):
    """``cpi._kernels.bellman_sweep`` with ``prange`` over ``nblk`` contiguous blocks of
    states and a plain ``range`` inside (a running CSR pointer, no second ``indptr`` load).
    A ``prange`` directly over states compiles to a loop that is ~1.5-5x slower even on one
    thread (measured: tree d=10, NUMBA_NUM_THREADS=1: 98 ms vs 21 ms serial)."""
    S, A = R.shape
    step = (S + nblk - 1) // nblk
    for b in nb.prange(nblk):
        lo = b * step
        hi = min(S, lo + step)
        if lo >= hi:
            continue
        k = indptr[lo * A]
        for s in range(lo, hi):
            best = -np.inf
            besta = 0
            for a in range(A):
                end = indptr[s * A + a + 1]
                acc = 0.0
                while k < end:
                    acc += data[k] * V[indices[k]]
                    k += 1
                q = R[s, a] + gamma * acc
                if q > best:
                    best = q
                    besta = a
            V_out[s] = best
            act_out[s] = besta


def sweep_blocked(mdp, V, blocks_per_thread: int = 4):
    """One blocked-parallel sweep; returns ``(V_out, argmax)`` like ``cpi.bellman_sweep``."""
    V = np.ascontiguousarray(V, dtype=np.float64)
    V_out = np.empty(mdp.S)
    act = np.empty(mdp.S, np.int64)
    nblk = max(1, min(mdp.S, blocks_per_thread * nb.get_num_threads()))
    sweep_blocked_kernel(mdp.P.indptr, mdp.P.indices, mdp.P.data, mdp.R, mdp.gamma, V, V_out,
                         act, nblk)
    return V_out, act


@nb.njit(cache=True, inline="always")
def _sweep_regular_range(k, indices, data, R, gamma, V, V_out, act_out, lo, hi):
    A = R.shape[1]
    for s in range(lo, hi):
        base = s * A * k
        acc = 0.0
        for j in range(base, base + k):
            acc += data[j] * V[indices[j]]
        best = R[s, 0] + gamma * acc
        besta = 0
        for a in range(1, A):
            j0 = base + a * k
            acc = 0.0
            for j in range(j0, j0 + k):
                acc += data[j] * V[indices[j]]
            q = R[s, a] + gamma * acc
            better = q > best  # first maximiser wins, as in cpi
            besta = a if better else besta
            best = q if better else best
        V_out[s] = best
        act_out[s] = besta


@nb.njit(cache=True, parallel=True)
def sweep_regular_kernel(k, indices, data, R, gamma, V, V_out, act_out, nblk):
    """Sweep for a CSR ``P`` whose rows all have exactly ``k`` non-zeros (garnets: k =
    branching; trees and locks: k = 1): no ``indptr`` reads, branch-free argmax, blocked
    ``prange`` (``nblk == 1`` runs serially on the calling thread's block)."""
    S = R.shape[0]
    step = (S + nblk - 1) // nblk
    for b in nb.prange(nblk):
        lo = b * step
        hi = min(S, lo + step)
        if lo < hi:
            _sweep_regular_range(k, indices, data, R, gamma, V, V_out, act_out, lo, hi)


@nb.njit(cache=True)
def sweep_regular_serial(k, indices, data, R, gamma, V, V_out, act_out):
    _sweep_regular_range(k, indices, data, R, gamma, V, V_out, act_out, 0, R.shape[0])


def regular_k(mdp):
    """``k`` if every row of ``P`` has exactly ``k`` non-zeros, else None."""
    deg = np.diff(mdp.P.indptr)
    return int(deg[0]) if deg.size and np.all(deg == deg[0]) else None
