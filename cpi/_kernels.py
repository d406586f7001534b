"""Private numba kernels for tabular MDPs.

Plain loops over the CSR arrays of ``P`` (shape ``(S*A, S)``, row ``s*A + a``). They never
raise on bad input: the public layer (``cpi.mdp``, ``cpi.exact``, ``cpi.sampling``) checks
shapes and converts its inputs to contiguous float64 / integer arrays before calling them.
Kernels that read a whole policy anyway (the DAG value pass, the compact ``P_pi`` build) also
check it on the way (finite, non-negative, rows summing to one within ``tol``) and return a
flag; the public layer then raises the error that names the state and action (see
``TabularMDP.check_policy``). Each kernel has a plain-NumPy reference in the tests; the math
and the layouts are in ``docs/cpi.md``.

Kept whole on purpose (~760 lines): numba compiles and caches per module, and the kernels call each other
(the Krylov solve calls the mat-vecs and the compact ``P_pi`` build); splitting them would only add
cross-module jitted imports.
"""
from __future__ import annotations

import numba as nb
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

FASTMATH_SUM = {"reassoc", "contract"}
"""fastmath flags of the vector reductions of the Krylov solve: re-association lets LLVM
vectorise a dot product (~6x faster at S = 20,000); no flag that assumes finite values, so
NaN and inf still propagate to the residual check."""


PREFETCH_AHEAD = 8
"""Rows of ``P`` requested this many rows ahead of the copy into the compact ``P_pi`` (cold
``P``, deterministic policy on the S = 20,000 garnet: 3.6 -> 1.3 ms; 4-16 all did as well)."""


@intrinsic
def _prefetch(typingctx, arr, idx):
    """Ask the CPU to bring ``arr[idx]`` into cache (LLVM ``llvm.prefetch``, read, high
    locality): a hint without side effects, for loops that read rows of ``P`` in an order the
    hardware prefetcher cannot guess."""
    sig = types.void(arr, types.intp)

    def codegen(context, builder, signature, args):
        ary, ind = args
        aryty = signature.args[0]
        a = context.make_array(aryty)(context, builder, ary)
        ptr = cgutils.get_item_pointer(context, builder, aryty, a, [ind], wraparound=False)
        i8p = ir.PointerType(ir.IntType(8))
        name = "llvm.prefetch.p0" if getattr(i8p, "is_opaque", False) else "llvm.prefetch.p0i8"
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(builder.module,
                                            ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
                                            name)
        builder.call(fn, [builder.bitcast(ptr, i8p), ir.Constant(i32, 0), ir.Constant(i32, 3),
                          ir.Constant(i32, 1)])
        return context.get_dummy_value()
    return sig, codegen


# ---------------------------------------------------------------------------------------
# Policy validation (one pass)
# ---------------------------------------------------------------------------------------


@nb.njit(cache=True)
def policy_violation(pi, tol):
    """The first violation of "``pi`` (S, A) is row-stochastic", in one pass.

    Returns ``(kind, s, a)``: ``kind == 0`` valid; ``1``: entry ``(s, a)`` is NaN, infinite or
    negative (the first in row-major order); ``2``: row ``s`` (the first such row) does not
    sum to one within ``tol`` (``a = -1``). An entry violation anywhere wins over a row sum,
    as in the NumPy reference (entries checked first, then sums).
    """
    S, A = pi.shape
    bad_row = -1
    for s in range(S):
        tot = 0.0
        for a in range(A):
            p = pi[s, a]
            if not (p >= 0.0 and p < np.inf):
                return 1, s, a
            tot += p
        if bad_row < 0 and abs(tot - 1.0) > tol:
            bad_row = s
    if bad_row >= 0:
        return 2, bad_row, -1
    return 0, -1, -1


# ---------------------------------------------------------------------------------------
# Structure: proper policies, topological order
# ---------------------------------------------------------------------------------------


@nb.njit(cache=True)
def forced_termination(csc_indptr, csc_rows, S, A, terminal):
    """States from which *every* policy reaches a terminal state with probability 1.

    Least fixed point ``W = T ∪ {s : every action has a successor in W}`` computed by
    back-propagation over the transpose of ``P`` (``csc_*``: column ``w`` lists the rows
    ``s*A + a`` with ``P[s*A + a, w] > 0``). O(nnz).
    """
    in_w = terminal.copy()
    hit = np.zeros(S * A, np.bool_)
    count = np.zeros(S, np.int64)
    stack = np.empty(S, np.int64)
    top = 0
    for s in range(S):
        if terminal[s]:
            stack[top] = s
            top += 1
    while top > 0:
        top -= 1
        w = stack[top]
        for k in range(csc_indptr[w], csc_indptr[w + 1]):
            row = csc_rows[k]
            if hit[row]:
                continue
            hit[row] = True
            s = row // A
            if in_w[s]:
                continue
            count[s] += 1
            if count[s] == A:
                in_w[s] = True
                stack[top] = s
                top += 1
    return in_w


@nb.njit(cache=True)
def topological_order(indptr, indices, S, A, terminal):
    """Kahn's algorithm on the graph ``s -> s'`` (any action, ``P > 0``), terminal rows left out.

    Returns ``(order, n)``; the graph is a DAG iff ``n == S``. A non-terminal self-loop is a
    cycle. O(nnz).
    """
    indeg = np.zeros(S, np.int64)
    for s in range(S):
        if terminal[s]:
            continue
        for k in range(indptr[s * A], indptr[(s + 1) * A]):
            indeg[indices[k]] += 1
    order = np.empty(S, np.int64)
    head = 0
    tail = 0
    for s in range(S):
        if indeg[s] == 0:
            order[tail] = s
            tail += 1
    while head < tail:
        s = order[head]
        head += 1
        if terminal[s]:
            continue
        for k in range(indptr[s * A], indptr[(s + 1) * A]):
            j = indices[k]
            indeg[j] -= 1
            if indeg[j] == 0:
                order[tail] = j
                tail += 1
    return order, tail


# ---------------------------------------------------------------------------------------
# Exact quantities
# ---------------------------------------------------------------------------------------


@nb.njit(cache=True)
def dag_value(order, indptr, indices, data, R, pi, gamma, terminal, A, V, tol):
    """Backward pass in reverse topological order: ``V(s) = sum_a pi(a|s) (R + gamma P V)``,
    ``V = 0`` on terminal states.

    Checks ``pi`` on the way (every row, terminal ones included): returns False when an entry
    is NaN, infinite or negative or a row does not sum to one within ``tol`` (``V`` is then
    meaningless); the caller raises the error that names the entry.
    """
    S = V.shape[0]
    ok = True
    for i in range(S - 1, -1, -1):
        s = order[i]
        tot = 0.0
        if terminal[s]:
            for a in range(A):
                p = pi[s, a]
                ok &= (p >= 0.0) & (p < np.inf)
                tot += p
            V[s] = 0.0
        else:
            v = 0.0
            for a in range(A):
                p = pi[s, a]
                ok &= (p >= 0.0) & (p < np.inf)
                tot += p
                if p != 0.0:
                    v += p * (R[s, a] + gamma * _row_dot(indptr, indices, data, s * A + a, V))
            V[s] = v
        ok &= abs(tot - 1.0) <= tol
    return ok


@nb.njit(cache=True)
def dag_optimal(order, indptr, indices, data, R, gamma, terminal, A, V, act):
    """Backward pass with a max: ``V*(s) = max_a (R + gamma P V*)``, first maximiser in ``act``."""
    S = V.shape[0]
    for i in range(S - 1, -1, -1):
        s = order[i]
        if terminal[s]:
            V[s] = 0.0
            act[s] = 0
        else:  # successors come later in the order: V holds their final values already
            _max_state(indptr, indices, data, R, gamma, V, V, act, s, False)


@nb.njit(cache=True)
def dag_visits(order, indptr, indices, data, pi, gamma, terminal, A, m):
    """Forward pass in topological order: discounted visit mass, ``m`` starts as ``mu``.

    Terminal states only receive mass (their absorbing self-loop is :func:`finish_visits`).
    """
    S = m.shape[0]
    for i in range(S):
        s = order[i]
        if terminal[s]:
            continue
        ms = m[s]
        if ms == 0.0:
            continue
        for a in range(A):
            w = ms * pi[s, a] * gamma
            if w == 0.0:
                continue
            row = s * A + a
            for k in range(indptr[row], indptr[row + 1]):
                m[indices[k]] += w * data[k]


@nb.njit(cache=True)
def finish_visits(m, terminal, gamma):
    """In place, after the visit pass or solve: the mass ``m[t]`` arriving at a terminal state
    self-loops forever, so it becomes ``m[t] / (1 - gamma)`` (``gamma < 1``) or is dropped
    (``gamma == 1``: the episodic occupancy counts non-terminal visits); negative round-off of a
    Krylov solve is clipped to 0 (NaN is kept)."""
    for s in range(m.shape[0]):
        x = m[s]
        if terminal[s]:
            x = x / (1.0 - gamma) if gamma < 1.0 else 0.0
        if x < 0.0:
            x = 0.0
        m[s] = x


PARALLEL_MIN_NNZ = 500_000
"""Below this many non-zeros the serial kernel is used: a parallel region costs 0.1-20 ms of thread
wake-up on a loaded 2-core machine, more than it saves on small MDPs. Measured on the idle 2-core
machine, garnet S=20,000 (1.6M non-zeros): serial 1.68 ms (26% of copy bandwidth), parallel 0.88 ms
(49%); experiments/bench/cpi_kernels.py. Above it the public layer still runs serially on an
oversubscribed machine (``cpi.exact.parallel_blocks``)."""


@nb.njit(cache=True, inline="always")
def _row_dot(indptr, indices, data, row, V):
    acc = 0.0
    for k in range(indptr[row], indptr[row + 1]):
        acc += data[k] * V[indices[k]]
    return acc


@nb.njit(cache=True, inline="always")
def _pv(indptr, indices, data, row, V, one):
    """``sum_j P[row, j] V[j]``; ``one``: every row of P has exactly one non-zero (deterministic
    transitions: trees, locks), so the entry sits at ``row`` and ``indptr`` is not read."""
    if one:
        return data[row] * V[indices[row]]
    return _row_dot(indptr, indices, data, row, V)


@nb.njit(cache=True, inline="always")
def _q_state(indptr, indices, data, R, gamma, V, Q, s, one):
    A = R.shape[1]
    for a in range(A):
        Q[s, a] = R[s, a] + gamma * _pv(indptr, indices, data, s * A + a, V, one)


@nb.njit(cache=True, inline="always")
def _max_state(indptr, indices, data, R, gamma, V, V_out, act_out, s, one):
    A = R.shape[1]
    best = -np.inf
    besta = 0
    for a in range(A):
        q = R[s, a] + gamma * _pv(indptr, indices, data, s * A + a, V, one)
        if q > best:
            best = q
            besta = a
    V_out[s] = best
    act_out[s] = besta


@nb.njit(cache=True)
def q_from_v_serial(indptr, indices, data, R, gamma, V, Q, one=False):
    """``Q[s, a] = R[s, a] + gamma * sum_j P[s*A+a, j] V[j]``; ``one``: see :func:`_pv`."""
    for s in range(R.shape[0]):
        _q_state(indptr, indices, data, R, gamma, V, Q, s, one)


@nb.njit(cache=True, parallel=True)
def q_from_v_parallel(indptr, indices, data, R, gamma, V, Q, one=False):
    """:func:`q_from_v_serial`, parallel over states."""
    for s in nb.prange(R.shape[0]):
        _q_state(indptr, indices, data, R, gamma, V, Q, s, one)


@nb.njit(cache=True)
def bellman_sweep_serial(indptr, indices, data, R, gamma, V, V_out, act_out, one=False):
    """One value-iteration sweep: ``V_out(s) = max_a R + gamma P V``, argmax in ``act_out``;
    ``one``: see :func:`_pv`."""
    for s in range(R.shape[0]):
        _max_state(indptr, indices, data, R, gamma, V, V_out, act_out, s, one)


@nb.njit(cache=True, parallel=True)
def bellman_sweep_parallel(indptr, indices, data, R, gamma, V, V_out, act_out, one=False):
    """:func:`bellman_sweep_serial`, parallel over states."""
    for s in nb.prange(R.shape[0]):
        _max_state(indptr, indices, data, R, gamma, V, V_out, act_out, s, one)


# ---------------------------------------------------------------------------------------
# Policy evaluation on cyclic MDPs: compact P_pi and a numba BiCGSTAB (no BLAS: OpenBLAS
# level-1 threads stall on a busy shared machine; P_pi keeps only actions with pi > 0, so a
# deterministic policy costs 1/A of the mat-vec work)
# ---------------------------------------------------------------------------------------


@nb.njit(cache=True)
def compact_ppi(indptr, indices, data, pi, terminal, A, tol, ix_like):
    """CSR arrays ``(ip, ix, dx)`` of ``P_pi`` (S, S): ``P_pi[s] = sum_a pi(a|s) P(.|s, a)``,
    entries with ``pi(a|s) == 0`` and terminal rows left out (duplicate columns kept; the
    mat-vec sums them); ``width``: the common length of every row when all rows have the same
    positive length, else -1 (a regular ``P_pi`` is applied without reading ``ip``); and ``ok``:
    the policy check of :func:`policy_violation` (every row, terminal ones included).

    Two passes: the first reads ``pi`` (check, counts, the list of rows ``s*A + a`` with
    ``pi > 0``), the second copies those rows of ``P``, prefetching ``PREFETCH_AHEAD`` rows
    ahead (the rows a deterministic policy picks are scattered through ``P``). ``ix`` has the dtype
    of ``ix_like`` (an empty array): the caller picks the narrowest integer type that holds the
    column indices, since every mat-vec streams them (uint16 below 65,536 states: a Jacobi step on
    the S = 20,000 garnet reads 10 bytes per entry instead of 12, ~25% faster in parallel)."""
    S = terminal.shape[0]
    ip = np.zeros(S + 1, np.int64)
    rows = np.empty(S * A, np.int64)
    weights = np.empty(S * A)
    ok = True
    width = -2
    n_rows = 0
    for s in range(S):
        n = 0
        tot = 0.0
        for a in range(A):
            p = pi[s, a]
            ok &= (p >= 0.0) & (p < np.inf)
            tot += p
            if p > 0.0 and not terminal[s]:
                row = s * A + a
                rows[n_rows] = row
                weights[n_rows] = p
                n_rows += 1
                n += indptr[row + 1] - indptr[row]
        ok &= abs(tot - 1.0) <= tol
        ip[s + 1] = ip[s] + n
        if width == -2:
            width = n
        elif width != n:
            width = -1
    if width <= 0:
        width = -1
    ix = np.empty(ip[S], ix_like.dtype)
    dx = np.empty(ip[S], np.float64)
    if not ok:
        return ip, ix, dx, width, ok
    k = 0
    for i in range(n_rows):
        if i + PREFETCH_AHEAD < n_rows:
            ahead = indptr[rows[i + PREFETCH_AHEAD]]
            _prefetch(data, ahead)
            _prefetch(indices, ahead)
        row = rows[i]
        p = weights[i]
        for j in range(indptr[row], indptr[row + 1]):
            ix[k] = indices[j]
            dx[k] = p * data[j]
            k += 1
    return ip, ix, dx, width, ok


@nb.njit(cache=True)
def ppi_matvec(ip, ix, dx, g, x, y):
    """``y = x - g P x`` for ``P`` in CSR ``(ip, ix, dx)``."""
    for s in range(x.shape[0]):
        acc = 0.0
        for k in range(ip[s], ip[s + 1]):
            acc += dx[k] * x[ix[k]]
        y[s] = x[s] - g * acc


@nb.njit(cache=True)
def ppi_matvec_regular(w, ix, dx, g, x, y):
    """:func:`ppi_matvec` when every row has ``w`` entries (row ``s`` starts at ``s*w``): the
    trip count is known before the row starts, so LLVM unrolls it (1.6x faster on 10-entry rows)."""
    for s in range(x.shape[0]):
        acc = 0.0
        base = s * w
        for j in range(w):
            acc += dx[base + j] * x[ix[base + j]]
        y[s] = x[s] - g * acc


@nb.njit(cache=True, parallel=True)
def ppi_matvec_parallel(ip, ix, dx, g, x, y, w, nblk):
    """:func:`ppi_matvec` (``w <= 0``) or :func:`ppi_matvec_regular` (``w > 0``) over ``nblk``
    contiguous blocks of rows in parallel (a ``prange`` directly over rows compiles to a slower
    loop, see :func:`bellman_sweep_parallel`)."""
    S = x.shape[0]
    step = (S + nblk - 1) // nblk
    for b in nb.prange(nblk):
        lo = b * step
        hi = min(S, lo + step)
        if w > 0:
            for s in range(lo, hi):
                acc = 0.0
                base = s * w
                for j in range(w):
                    acc += dx[base + j] * x[ix[base + j]]
                y[s] = x[s] - g * acc
        else:
            for s in range(lo, hi):
                acc = 0.0
                for k in range(ip[s], ip[s + 1]):
                    acc += dx[k] * x[ix[k]]
                y[s] = x[s] - g * acc


@nb.njit(cache=True)
def ppi_rmatvec(ip, ix, dx, g, x, y):
    """``y = x - g P^T x``: a scatter over the rows, no explicit transpose is built."""
    S = x.shape[0]
    for s in range(S):
        y[s] = x[s]
    for s in range(S):
        xs = g * x[s]
        if xs != 0.0:
            for k in range(ip[s], ip[s + 1]):
                y[ix[k]] -= dx[k] * xs


@nb.njit(cache=True)
def ppi_apply(ip, ix, dx, g, x, y, transpose, w=-1, nblk=0):
    """``y = (I - g P) x`` or, with ``transpose``, ``(I - g P^T) x``; ``w > 0``: every row has
    ``w`` entries; ``nblk > 0``: the untransposed mat-vec in ``nblk`` parallel blocks."""
    if transpose:
        ppi_rmatvec(ip, ix, dx, g, x, y)
    elif nblk > 0:
        ppi_matvec_parallel(ip, ix, dx, g, x, y, w, nblk)
    elif w > 0:
        ppi_matvec_regular(w, ix, dx, g, x, y)
    else:
        ppi_matvec(ip, ix, dx, g, x, y)


@nb.njit(cache=True, inline="always")
def _jacobi_rows(ip, ix, dx, w, g, b, x, y, lo_s, hi_s):
    """Rows ``lo_s .. hi_s`` of :func:`jacobi_step`; returns the min and max of ``y - x`` there.
    The test on ``w`` sits outside the row loops (inside, it halves the speed of 10-entry rows)."""
    lo = np.inf
    hi = -np.inf
    if w > 0:
        for s in range(lo_s, hi_s):
            acc = 0.0
            base = s * w
            for j in range(w):
                acc += dx[base + j] * x[ix[base + j]]
            v = b[s] + g * acc
            d = v - x[s]
            lo = min(lo, d)
            hi = max(hi, d)
            y[s] = v
    else:
        for s in range(lo_s, hi_s):
            acc = 0.0
            for k in range(ip[s], ip[s + 1]):
                acc += dx[k] * x[ix[k]]
            v = b[s] + g * acc
            d = v - x[s]
            lo = min(lo, d)
            hi = max(hi, d)
            y[s] = v
    return lo, hi


@nb.njit(cache=True)
def jacobi_step(ip, ix, dx, w, g, b, x, y):
    """``y = b + g P x``, one Jacobi (Richardson) step on ``(I - g P) x = b``; returns the
    minimum and maximum of ``d = y - x`` (``w > 0``: every row has ``w`` entries)."""
    return _jacobi_rows(ip, ix, dx, w, g, b, x, y, 0, x.shape[0])


@nb.njit(cache=True, parallel=True)
def jacobi_step_parallel(ip, ix, dx, w, g, b, x, y, nblk):
    """:func:`jacobi_step` over ``nblk`` contiguous blocks of rows in parallel."""
    S = x.shape[0]
    step = (S + nblk - 1) // nblk
    los = np.full(nblk, np.inf)
    his = np.full(nblk, -np.inf)
    for blk in nb.prange(nblk):
        lo, hi = _jacobi_rows(ip, ix, dx, w, g, b, x, y, blk * step, min(S, (blk + 1) * step))
        los[blk] = lo
        his[blk] = hi
    return los.min(), his.max()


@nb.njit(cache=True)
def extrapolated_jacobi(ip, ix, dx, w, g, b, x0, tol, max_rate, maxiter, nblk):
    """Jacobi steps ``x <- b + g P x`` with MacQueen's extrapolation, for a *stochastic* ``P``
    (every row sums to one; ``0 <= g < 1``).

    With ``d = x_{k+1} - x_k``, the solution lies between ``x_{k+1} + g/(1-g) min d`` and
    ``x_{k+1} + g/(1-g) max d`` (MacQueen 1966; Porteus 1971; Puterman 1994, section 6.6.3), and
    the midpoint ``x = x_{k+1} + g/(1-g) (min d + max d)/2`` has the residual
    ``b - (I - g P) x = g P (d - mid d)``, at most ``g (max d - min d)/2`` in every entry. The
    component of the error along the constant vector (eigenvalue ``1 - g`` of ``I - g P``, the
    slow one at ``g`` near 1) is removed exactly, so the span of ``d`` shrinks at the rate of the
    chain's other eigenvalues: a fast-mixing chain converges in fewer mat-vecs than BiCGSTAB,
    with no inner products. Stops when ``g span(d)/2 <= tol`` (returns ``True``) or when, over
    the last four steps, the span shrank by less than ``max_rate`` per step (the span of one
    step is noisy), or after ``maxiter`` steps (returns ``False``: the caller continues with a
    Krylov method from ``x``). Returns ``(x, steps, converged)``. The residual bound assumes
    exact row sums: the caller checks the true residual.
    """
    S = b.shape[0]
    x = x0.copy()
    y = np.empty(S)
    spans = np.empty(maxiter + 1)
    lo = hi = 0.0
    it = 0
    done = False
    while it < maxiter:
        if nblk > 0:
            lo, hi = jacobi_step_parallel(ip, ix, dx, w, g, b, x, y, nblk)
        else:
            lo, hi = jacobi_step(ip, ix, dx, w, g, b, x, y)
        x, y = y, x
        span = hi - lo
        spans[it] = span
        it += 1
        if not span == span:  # NaN: give up, the Krylov fallback reports it
            break
        if g * span / 2.0 <= tol:
            done = True
            break
        if it >= 5 and span > max_rate ** 4 * spans[it - 5]:
            break
    c = g / (1.0 - g) * (lo + hi) / 2.0
    for s in range(S):
        x[s] += c
    return x, it, done


@nb.njit(cache=True, fastmath=FASTMATH_SUM)
def _dot(u, v):
    acc = 0.0
    for i in range(u.shape[0]):
        acc += u[i] * v[i]
    return acc


@nb.njit(cache=True)
def bicgstab(ip, ix, dx, w, g, b, x0, transpose, rtol, maxiter, nblk):
    """Solve ``(I - g P) x = b`` (or the transposed system) from ``x0`` by BiCGSTAB (van der
    Vorst 1992, SIAM J. Sci. Stat. Comput. 13(2), Alg. Bi-CGSTAB) until
    ``||r||_2 <= rtol ||b||_2``; returns ``(x, iters, res)`` where ``res`` is the true residual
    ``max |b - (I - gP) x|`` at exit. ``w``, ``nblk``: see :func:`ppi_apply`. On a breakdown
    (``rho == 0``, ``omega == 0``) it restarts with the current residual as shadow residual. A
    starting point that already meets the tolerance costs one mat-vec."""
    S = b.shape[0]
    x = x0.copy()
    r = np.empty(S)
    ppi_apply(ip, ix, dx, g, x, r, transpose, w, nblk)
    for i in range(S):
        r[i] = b[i] - r[i]
    tol = rtol * np.sqrt(_dot(b, b))
    rh = r.copy()
    p = np.zeros(S)
    v = np.zeros(S)
    s = np.empty(S)
    t = np.empty(S)
    rho = alpha = omega = 1.0
    it = 0
    resets = 0
    rn = _dot(r, r)
    while np.sqrt(rn) > tol and it < maxiter:
        it += 1
        rho_new = _dot(rh, r)
        if rho_new == 0.0 or omega == 0.0:
            # breakdown: restart with the current residual as the shadow residual
            if resets >= 50:
                break
            resets += 1
            for i in range(S):
                rh[i] = r[i]
                p[i] = 0.0
                v[i] = 0.0
            rho = alpha = omega = 1.0
            rho_new = rn
        beta = (rho_new / rho) * (alpha / omega)
        for i in range(S):
            p[i] = r[i] + beta * (p[i] - omega * v[i])
        ppi_apply(ip, ix, dx, g, p, v, transpose, w, nblk)
        rv = _dot(rh, v)
        if rv == 0.0:
            omega = 0.0  # forces a restart
            continue
        alpha = rho_new / rv
        for i in range(S):
            s[i] = r[i] - alpha * v[i]
        if np.sqrt(_dot(s, s)) <= tol:
            for i in range(S):
                x[i] += alpha * p[i]
            break
        ppi_apply(ip, ix, dx, g, s, t, transpose, w, nblk)
        tt = _dot(t, t)
        omega = _dot(t, s) / tt if tt > 0.0 else 0.0
        for i in range(S):
            x[i] += alpha * p[i] + omega * s[i]
            r[i] = s[i] - omega * t[i]
        rn = _dot(r, r)
        rho = rho_new
    if it > 0:
        ppi_apply(ip, ix, dx, g, x, r, transpose, w, nblk)
        for i in range(S):
            r[i] = b[i] - r[i]
    res = 0.0
    for i in range(S):
        d = abs(r[i])
        if d > res or d != d:  # a NaN residual stays NaN and fails every check
            res = d
    return x, it, res


# ---------------------------------------------------------------------------------------
# Sampling (serial: numba's per-thread RNG, seeded inside the kernel, is reproducible)
# ---------------------------------------------------------------------------------------


@nb.njit(cache=True)
def _draw(cdf):
    u = np.random.random() * cdf[-1]
    lo = 0
    hi = cdf.shape[0] - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if cdf[mid] > u:
            hi = mid
        else:
            lo = mid + 1
    return lo


@nb.njit(cache=True)
def _draw_action(pi, s, A):
    u = np.random.random()
    acc = 0.0
    last = 0
    for a in range(A):
        p = pi[s, a]
        if p > 0.0:
            last = a
            acc += p
            if u < acc:
                return a
    return last


@nb.njit(cache=True)
def _draw_next(indptr, indices, data, row):
    u = np.random.random()
    acc = 0.0
    lo = indptr[row]
    hi = indptr[row + 1]
    for k in range(lo, hi):
        acc += data[k]
        if u < acc:
            return indices[k]
    return indices[hi - 1]


@nb.njit(cache=True)
def rollouts(indptr, indices, data, R, pi, gamma, terminal, starts, first_actions,
             geometric, max_steps, seed, returns, lengths):
    """Monte-Carlo returns from given start states (and optional forced first actions).

    ``first_actions[i] < 0`` means "follow pi from the start". With ``geometric`` the episode
    stops after each step with probability ``1 - gamma`` and the *undiscounted* sum is
    returned (an unbiased estimate of the discounted value); otherwise rewards are
    discounted and the episode runs to a terminal state or ``max_steps``.
    Returns the total number of environment steps.
    """
    np.random.seed(seed)
    A = R.shape[1]
    total = 0
    for i in range(starts.shape[0]):
        s = starts[i]
        G = 0.0
        disc = 1.0
        t = 0
        while t < max_steps and not terminal[s]:
            if t == 0 and first_actions[i] >= 0:
                a = first_actions[i]
            else:
                a = _draw_action(pi, s, A)
            G += disc * R[s, a]
            s = _draw_next(indptr, indices, data, s * A + a)
            t += 1
            if geometric:
                if np.random.random() >= gamma:
                    break
            else:
                disc *= gamma
        returns[i] = G
        lengths[i] = t
        total += t
    return total


@nb.njit(cache=True)
def occupancy_states(indptr, indices, data, pi, gamma, terminal, start_cdf, n, horizon,
                     seed, out):
    """Draw ``n`` states from ``d_{pi,mu}``; returns the environment steps used.

    ``gamma < 1``: run for a Geometric(1 - gamma) time T (P(T = t) = (1-gamma) gamma^t) and
    return s_T (a terminal state absorbs). ``gamma == 1`` (episodic, lengths <= horizon):
    draw t uniform in [0, horizon), run t steps, reject if the episode ended first; the
    accepted s_t has law ``E[visits(s)] / E[length]``.
    """
    np.random.seed(seed)
    A = pi.shape[1]
    total = 0
    got = 0
    while got < n:
        s = _draw(start_cdf)
        if gamma < 1.0:
            while np.random.random() < gamma and not terminal[s]:
                a = _draw_action(pi, s, A)
                s = _draw_next(indptr, indices, data, s * A + a)
                total += 1
            out[got] = s
            got += 1
        else:
            t = np.random.randint(0, horizon)
            ok = not terminal[s]
            for _ in range(t):
                a = _draw_action(pi, s, A)
                s = _draw_next(indptr, indices, data, s * A + a)
                total += 1
                if terminal[s]:
                    ok = False
                    break
            if ok:
                out[got] = s
                got += 1
    return total
