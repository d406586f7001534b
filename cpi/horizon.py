"""Finite horizons as layered DAG MDPs (``docs/cpi.md``, "Episodic and finite-horizon MDPs").

:func:`time_augment` turns an MDP (or raw ``P``, ``R``) and a horizon ``H`` into the MDP whose
state ``h*S + s`` is "state ``s`` at step ``h``": a DAG, so every exact quantity on it is one
linear-time pass, and its value at layer 0 is the ``H``-step value of the base.
"""
from __future__ import annotations

import os

import numpy as np
import scipy.sparse as sp

from .mdp import TabularMDP


def _memory_bytes() -> int | None:
    """Physical memory of this machine in bytes, or None where unknown."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


AUGMENT_BYTES_PER_NNZ = 64
"""Peak bytes per non-zero while :func:`time_augment` builds the layered ``P`` (COO triplets,
their concatenation and the CSR conversion); used to refuse sizes that cannot fit up front."""


def time_augment(mdp, H: int, gamma: float | None = None, *, initial=None,
                 terminal=None) -> TabularMDP:
    """The ``H``-step finite-horizon version of an MDP as a layered DAG MDP.

    State ``h*S + s`` is "state ``s`` at step ``h``" for ``h < H``; one extra terminal state
    ``H*S`` ends every episode after ``H`` steps (and absorbs the base's terminal states).
    Its value at layer 0 is the ``H``-step value of the base, discounted by ``gamma``.

    Parameters
    ----------
    mdp : TabularMDP or (P, R)
        The base MDP, or its raw transitions and rewards (validated as by :class:`TabularMDP`,
        with ``initial`` and ``terminal``): an undiscounted finite-horizon problem on a cyclic
        ``P`` cannot be a ``TabularMDP`` with ``gamma == 1`` itself, but its layered version can.
    H : int
        The horizon (number of steps), ``>= 1``.
    gamma : float, optional
        Discount of the layered MDP; default: the base MDP's ``gamma``, or ``1.0`` for raw
        ``(P, R)``.
    initial, terminal : optional
        Only with raw ``(P, R)``: the base's start distribution and terminal states.

    Raises
    ------
    ValueError
        For ``H < 1``, for input a :class:`TabularMDP` rejects, and, before allocating, when the
        layered MDP would not fit in this machine's memory (``AUGMENT_BYTES_PER_NNZ`` bytes per
        non-zero while it is built).
    """
    if isinstance(mdp, TabularMDP):
        if initial is not None or terminal is not None:
            raise TypeError("initial and terminal are given with raw (P, R) only; a TabularMDP "
                            "carries its own")
        base = mdp
    elif isinstance(mdp, (tuple, list)) and len(mdp) == 2:
        # gamma = 0 only validates P, R, initial and terminal (no properness check needed:
        # the layered MDP is a DAG whatever P's cycles)
        base = TabularMDP(mdp[0], mdp[1], 0.0, initial=initial, terminal=terminal, name="mdp")
        gamma = 1.0 if gamma is None else gamma
    else:
        raise TypeError(f"mdp must be a cpi.TabularMDP or a pair (P, R); got {type(mdp).__name__}")
    if int(H) != H or H < 1:
        raise ValueError(f"H must be a positive integer; got {H}")
    H = int(H)
    gamma = base.gamma if gamma is None else gamma
    S, A = base.S, base.A
    end = H * S  # the single terminal state closing every episode
    P = base.P.tocoo()
    live = ~base.terminal[P.row // A]
    n_term = int(base.terminal.sum())
    nnz = H * (int(live.sum()) + n_term * A) + A
    need = nnz * AUGMENT_BYTES_PER_NNZ + 4 * (end + 1) * A * 8
    have = _memory_bytes()
    if have is not None and need > have:
        raise ValueError(f"time_augment with H = {H} would build an MDP with {end + 1:,} states "
                         f"and {nnz:,} non-zeros, about {need / 1e9:.3g} GB while it is built; "
                         f"this machine has {have / 1e9:.3g} GB")
    r, c, p = P.row[live], P.col[live], P.data[live]
    rows, cols, vals = [], [], []
    for h in range(H):
        rows.append(h * S * A + r)
        cols.append(np.full(c.shape, end) if h == H - 1 else (h + 1) * S + c)
        vals.append(p)
        for s in np.flatnonzero(base.terminal):  # the base's terminal states stay absorbing
            rows.append((h * S + s) * A + np.arange(A))
            cols.append(np.full(A, h * S + s))
            vals.append(np.ones(A))
    rows.append(end * A + np.arange(A))
    cols.append(np.full(A, end))
    vals.append(np.ones(A))
    Pa = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                       shape=((end + 1) * A, end + 1))
    R = np.zeros((end + 1, A))
    R[:end] = np.tile(np.where(base.terminal[:, None], 0.0, base.R), (H, 1))
    term = np.zeros(end + 1, np.bool_)
    term[end] = True
    term[:end] = np.tile(base.terminal, H)
    init = np.zeros(end + 1)
    init[:S] = base.initial
    return TabularMDP(Pa, R, gamma, initial=init, terminal=term,
                      horizon=H, name=f"{base.name}[H={H}]", info={"base": base.name, "H": H})
