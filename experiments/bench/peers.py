"""Peer implementations that the kernel benchmark times against ``cpi``.

QuantEcon ``DiscreteDP`` (state-action-pair sparse form), pymdptoolbox (``PolicyIteration``
and its private kernels), and scipy (BiCGSTAB on ``I - gamma P_pi``, a CSR mat-vec + max for a
Bellman sweep, triangular solves on a tree). The peers are benchmark-only dependencies
(``pip install -e '.[bench]'``), imported inside the functions, never by ``cpi``.

scipy's Krylov solves run with OpenBLAS limited to one thread (:func:`blas_one_thread`): on a
2-core machine shared with other jobs, its multi-threaded level-1 calls stall (scipy's
``bicgstab`` on the S = 20,000 garnet took 234-277 ms with the default threads, 30-34 ms with
one, measured 2026-11-30), so one thread is the peer's best setting.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

import cpi

SCIPY_RTOL = 1e-10
"""``rtol`` of the scipy BiCGSTAB peer (relative 2-norm residual); ``cpi`` stops at 1e-13."""


def blas_one_thread():
    """Context manager limiting BLAS to one thread (``threadpoolctl``)."""
    from threadpoolctl import threadpool_limits
    return threadpool_limits(limits=1, user_api="blas")


# ============================================================================ QuantEcon
def qe_ddp(mdp: cpi.TabularMDP):
    """QuantEcon ``DiscreteDP`` in state-action-pair form: R (L,), Q sparse CSR (L, S)."""
    from quantecon.markov import DiscreteDP
    S, A = mdp.S, mdp.A
    s_ind = np.repeat(np.arange(S), A)
    a_ind = np.tile(np.arange(A), S)
    return DiscreteDP(mdp.R.ravel(), mdp.P, mdp.gamma, s_ind, a_ind)


# ============================================================================ pymdptoolbox
def mdpt_lists(mdp: cpi.TabularMDP):
    """pymdptoolbox input: a list of A sparse (S, S) transition matrices and R (S, A)."""
    return [mdp.P[a::mdp.A].tocsr() for a in range(mdp.A)], mdp.R.copy()


def mdpt_setup(mdp: cpi.TabularMDP):
    """pymdptoolbox's constructor (input checks + conversion): the peer's set-up cost."""
    import mdptoolbox.mdp
    P, R = mdpt_lists(mdp)
    return mdptoolbox.mdp.PolicyIteration(P, R, mdp.gamma)


def mdpt_unchecked(mdp: cpi.TabularMDP, act):
    """A pymdptoolbox ``PolicyIteration`` built *without* its input checks (which densify
    and take ~140 s at S=20,000), so that its kernels can be timed on their own."""
    import mdptoolbox.mdp
    P, R = mdpt_lists(mdp)
    obj = mdptoolbox.mdp.PolicyIteration.__new__(mdptoolbox.mdp.PolicyIteration)
    obj.S, obj.A, obj.discount = mdp.S, mdp.A, mdp.gamma
    obj.P = tuple(P)
    obj.R = tuple(R[:, a].copy() for a in range(mdp.A))
    obj.policy = np.asarray(act)
    obj.verbose = False
    obj.V = np.zeros(mdp.S)
    return obj


def mdpt_eval(obj):
    """pymdptoolbox's policy evaluation: dense (S, S) ``P_pi`` and ``np.linalg.solve``."""
    obj._evalPolicyMatrix()
    return np.asarray(obj.V).ravel()


# ============================================================================ scipy
def _bicgstab(Ppi, b, gamma, rtol):
    S = b.size
    L = spla.LinearOperator((S, S), matvec=lambda x: x - gamma * (Ppi @ x), dtype=np.float64)
    with blas_one_thread():
        x, info = spla.bicgstab(L, b, x0=b.copy(), rtol=rtol, atol=0.0)
    if info != 0:
        raise RuntimeError(f"scipy bicgstab did not converge (info={info})")
    return x


def scipy_bicgstab_value(mdp: cpi.TabularMDP, act):
    """``V`` of the deterministic policy ``act`` (S,) by scipy bicgstab (rtol ``SCIPY_RTOL``);
    ``P_pi`` is the row selection ``P[s*A + act[s]]`` (the solve, with little set-up)."""
    S = mdp.S
    Ppi = mdp.P[np.arange(S) * mdp.A + act]  # (S, S) CSR
    return _bicgstab(Ppi, mdp.R[np.arange(S), act], mdp.gamma, SCIPY_RTOL)


def scipy_policy_matrix(mdp: cpi.TabularMDP, pi) -> sp.csr_matrix:
    """``P_pi = Pi P`` (S, S) by a sparse product, ``Pi`` (S, S*A) holding ``pi(a|s)`` at
    ``(s, s*A + a)``; terminal rows zeroed. Independent of ``cpi``'s own ``P_pi`` builders."""
    S, A = mdp.S, mdp.A
    live = (~mdp.terminal).astype(np.float64)
    Pi = sp.csr_matrix(((pi * live[:, None]).ravel(), np.arange(S * A),
                        np.arange(0, S * A + 1, A)), shape=(S, S * A))
    return (Pi @ mdp.P).tocsr()


def scipy_policy_value(mdp: cpi.TabularMDP, pi, rtol: float = SCIPY_RTOL):
    """``V^pi`` from a policy ``pi`` (S, A), the way a scipy user writes it: build
    ``P_pi = Pi P`` (:func:`scipy_policy_matrix`) and ``R_pi``, then bicgstab to ``rtol``."""
    Ppi = scipy_policy_matrix(mdp, pi)
    b = np.where(mdp.terminal, 0.0, np.einsum("sa,sa->s", pi, mdp.R))
    return _bicgstab(Ppi, b, mdp.gamma, rtol)


def bellman_residual(mdp: cpi.TabularMDP, pi, V) -> float:
    """``max |R_pi - (I - gamma P_pi) V| / max |R_pi|``: the final accuracy of a value ``V``,
    measured the same way for every contender (``P_pi`` from :func:`scipy_policy_matrix`)."""
    Ppi = scipy_policy_matrix(mdp, pi)
    b = np.where(mdp.terminal, 0.0, np.einsum("sa,sa->s", pi, mdp.R))
    r = b - (V - mdp.gamma * (Ppi @ V))
    return float(np.abs(r).max() / max(np.abs(b).max(), 1e-300))


def scipy_sweep(mdp: cpi.TabularMDP, v):
    """``Q = R + gamma P v`` by a CSR mat-vec, then max and argmax over actions."""
    Q = (mdp.R.ravel() + mdp.gamma * (mdp.P @ v)).reshape(mdp.S, mdp.A)
    return Q.max(axis=1), Q.argmax(axis=1)


def scipy_tree_evaluate(mdp: cpi.TabularMDP, pi):
    """V and the normalised occupancy on a DAG MDP in heap order by two sparse triangular
    solves (``scipy.sparse.linalg.spsolve_triangular``), gamma = 1, terminal rows zeroed."""
    S = mdp.S
    Ppi = scipy_policy_matrix(mdp, pi)  # (S, S), strictly upper triangular in heap order
    M = (sp.identity(S, format="csr") - mdp.gamma * Ppi).tocsr()
    live = (~mdp.terminal).astype(np.float64)
    Rpi = live * np.einsum("sa,sa->s", pi, mdp.R)
    V = spla.spsolve_triangular(M, Rpi, lower=False)
    m = spla.spsolve_triangular(M.T.tocsr(), mdp.initial, lower=True)
    m[mdp.terminal] = 0.0
    return V, m / m.sum()
