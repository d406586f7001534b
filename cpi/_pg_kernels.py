"""Private numba loops for sampled TD(0) (:mod:`cpi.td`). They never validate: the public
layer passes contiguous float64 / int64 arrays. Plain-NumPy references live in the tests."""
from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(cache=True)
def markov_chain(cdf, s0, u, out):
    """``out[0] = s0``, ``out[t+1] = first j with cdf[out[t], j] > u[t]`` (inverse-CDF sampling)."""
    S = cdf.shape[1]
    s = s0
    out[0] = s
    for t in range(u.size):
        row = cdf[s]
        j = 0
        while j < S - 1 and row[j] <= u[t]:
            j += 1
        s = j
        out[t + 1] = s


@nb.njit(cache=True)
def td_run(Phi, r, gamma, s, s2, alphas, weights, radius, theta, checkpoints, out_last, out_avg):
    """Run ``theta <- Proj_radius(theta + alpha_t (r[s_t] + gamma phi(s2_t).theta - phi(s_t).theta) phi(s_t))``.

    ``theta`` (d,) is updated in place. At each checkpoint ``T_k`` (sorted, ``<= len(s)``)
    writes ``theta_{T_k}`` to ``out_last[k]`` and ``sum_{t<T_k} w_t theta_t / sum w_t`` to
    ``out_avg[k]``. ``radius <= 0`` means no projection.
    """
    d = theta.size
    acc = np.zeros(d)
    wsum = 0.0
    k = 0
    K = checkpoints.size
    T = s.size
    for t in range(T + 1):
        while k < K and checkpoints[k] == t:
            for i in range(d):
                out_last[k, i] = theta[i]
                out_avg[k, i] = acc[i] / wsum if wsum > 0 else theta[i]
            k += 1
        if t == T:
            break
        a = s[t]
        b = s2[t]
        va = 0.0
        vb = 0.0
        for i in range(d):
            va += Phi[a, i] * theta[i]
            vb += Phi[b, i] * theta[i]
        w = weights[t]
        for i in range(d):
            acc[i] += w * theta[i]
        wsum += w
        delta = r[a] + gamma * vb - va
        step = alphas[t] * delta
        nrm = 0.0
        for i in range(d):
            theta[i] += step * Phi[a, i]
            nrm += theta[i] * theta[i]
        if radius > 0.0:
            nrm = np.sqrt(nrm)
            if nrm > radius:
                for i in range(d):
                    theta[i] *= radius / nrm
