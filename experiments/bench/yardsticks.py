"""Machine yardsticks for the kernel benchmark: what the hardware does on the same data.

* :func:`plain_backward_pass` - the simplest numba backward pass for ``V^pi`` over the CSR
  of a heap-ordered tree (states in reverse index order; no topological order array, no
  terminal test, no policy check): what ``cpi.value`` on a tree is measured against.
* :func:`plain_pass_over_P` - one plain numba pass over every non-zero of ``P``
  (``out[row] = sum_j P[row, j] v[j]``): the cost of reading ``P`` once, the unit in which a
  Krylov solve's time is counted (``x_vs_yardstick`` = equivalent passes).
* :func:`copy_case` - ``np.copyto`` of a large array: the memory bandwidth (read + write).
* :func:`sweeps` - ``k`` value-iteration sweeps back to back.
"""
from __future__ import annotations

import numba as nb
import numpy as np

import cpi


@nb.njit(cache=True)
def plain_backward_pass(indptr, indices, data, R, pi, gamma, V):
    """``V(s) = sum_a pi(a|s) (R(s, a) + gamma sum_j P[s*A + a, j] V(j))`` for ``s = S-1 .. 0``.

    Exact for a DAG whose edges go from lower to higher indices (heap-ordered trees) when ``V``
    starts at 0 and terminal states self-loop with zero reward (they then stay 0).
    """
    S, A = R.shape
    for s in range(S - 1, -1, -1):
        v = 0.0
        for a in range(A):
            row = s * A + a
            acc = 0.0
            for k in range(indptr[row], indptr[row + 1]):
                acc += data[k] * V[indices[k]]
            v += pi[s, a] * (R[s, a] + gamma * acc)
        V[s] = v


def tree_value_plain(mdp: cpi.TabularMDP, pi):
    """``V^pi`` on a heap-ordered tree by :func:`plain_backward_pass` (allocation included)."""
    V = np.zeros(mdp.S)
    plain_backward_pass(mdp.P.indptr, mdp.P.indices, mdp.P.data, mdp.R, pi, mdp.gamma, V)
    return V


@nb.njit(cache=True)
def plain_pass_over_P(indptr, indices, data, v, out):
    """``out[row] = sum_j P[row, j] v[j]`` for every row of the CSR ``P`` (one read of ``P``)."""
    for row in range(out.shape[0]):
        acc = 0.0
        for k in range(indptr[row], indptr[row + 1]):
            acc += data[k] * v[indices[k]]
        out[row] = acc


def pass_over_P(mdp: cpi.TabularMDP, v):
    """A callable running :func:`plain_pass_over_P` once (output buffer allocated outside)."""
    out = np.empty(mdp.S * mdp.A)

    def run():
        plain_pass_over_P(mdp.P.indptr, mdp.P.indices, mdp.P.data, v, out)
        return out
    return run


def copy_case(mb: int):
    """``(callable, bytes)``: ``np.copyto`` of ``mb`` MB, bytes counted as read + write."""
    src = np.ones(mb * 2**20 // 8)
    dst = np.empty_like(src)
    return (lambda: np.copyto(dst, src)), 2 * src.nbytes


def sweeps(mdp: cpi.TabularMDP, v, k: int):
    """A callable running ``k`` value-iteration sweeps back to back from ``v`` (ping-pong
    buffers allocated once, outside the timed call); it returns None (not compared)."""
    bufs = [np.empty(mdp.S), np.empty(mdp.S)]
    act = np.empty(mdp.S, np.int64)

    def run():
        x = v
        for i in range(k):
            out = bufs[i % 2]
            cpi.bellman_sweep(mdp, x, out, act)
            x = out
    return run
