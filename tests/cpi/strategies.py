"""Hypothesis strategies for valid random tabular MDPs and policies (with edge cases).

Edge cases drawn on purpose: one state, one action, gamma = 0, gamma near 1,
deterministic transitions, episodic (gamma = 1) chains with terminal states.
"""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

import cpi


@st.composite
def dense_mdps(draw, max_S=6, max_A=3, episodic=None):
    """A random discounted (or episodic) MDP with its dense ``(S, A, S)`` transitions."""
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    S = draw(st.integers(1, max_S))
    A = draw(st.integers(1, max_A))
    if episodic is None:
        episodic = draw(st.booleans())
    deterministic = draw(st.booleans())
    if episodic:
        # states 0..S-1 live, state S terminal; each row puts mass >= 0.2 on terminal or on
        # a later state, so every policy terminates (forward-moving chain)
        n = S + 1
        P = np.zeros((n, A, n))
        for s in range(S):
            for a in range(A):
                if deterministic:
                    P[s, a, rng.integers(s + 1, n)] = 1.0
                else:
                    w = rng.random(n) * (rng.random(n) < 0.7)
                    w[:s + 1] *= 0.8 * rng.random()  # allow loops back, but keep exit mass
                    w[S] += 0.2
                    P[s, a] = w / w.sum()
        P[S, :, S] = 1.0
        R = rng.random((n, A))
        R[S] = 0.0
        init = np.zeros(n)
        init[:S] = rng.dirichlet(np.ones(S))
        gamma = 1.0
        return cpi.TabularMDP(P, R, gamma, initial=init, terminal=[S]), P
    gamma = draw(st.sampled_from([0.0, 0.5, 0.9, 0.99, 0.999]))
    if deterministic:
        P = np.zeros((S, A, S))
        P[np.arange(S)[:, None], np.arange(A)[None, :], rng.integers(0, S, (S, A))] = 1.0
    else:
        P = rng.random((S, A, S)) * (rng.random((S, A, S)) < 0.6) + 1e-3 * (rng.random((S, A, S)) < 0.1)
        P[P.sum(-1) == 0, 0] = 1.0
        P /= P.sum(-1, keepdims=True)
    R = rng.random((S, A)) * draw(st.sampled_from([1.0, 10.0]))
    init = rng.dirichlet(np.ones(S))
    return cpi.TabularMDP(P, R, gamma, initial=init), P


@st.composite
def policies(draw, S, A):
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["dirichlet", "deterministic", "sparse"]))
    if kind == "deterministic":
        pi = np.zeros((S, A))
        pi[np.arange(S), rng.integers(0, A, S)] = 1.0
    else:
        pi = rng.dirichlet(np.ones(A), size=S)
        if kind == "sparse":
            pi *= rng.random((S, A)) < 0.6
            pi[pi.sum(1) == 0, 0] = 1.0
            pi /= pi.sum(1, keepdims=True)
    return pi


def dense_reference(P, R, gamma, pi, mu, terminal=None):
    """Independent dense-numpy reference: V, Q, d (normalised) and the effective horizon."""
    S, A = R.shape
    P = P.copy()
    term = np.zeros(S, bool) if terminal is None else terminal
    Ppi = np.einsum("sa,sat->st", pi, P)
    Ppi[term] = 0.0
    Rpi = np.where(term, 0.0, (pi * R).sum(1))
    M = np.eye(S) - gamma * Ppi
    V = np.linalg.solve(M, Rpi)
    Q = R + gamma * P @ V
    m = np.linalg.solve(M.T, mu)
    if gamma < 1:
        m[term] /= 1 - gamma
        H = 1 / (1 - gamma)
    else:
        m[term] = 0
        H = m.sum()
    return V, Q, m / m.sum(), H
