"""The Krylov path of policy evaluation (cyclic MDPs), forced on small MDPs so that it can be
checked against dense solves: values, occupancies, warm starts, breakdown restarts."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import cpi
from cpi import exact

from .strategies import dense_mdps, dense_reference, policies


@pytest.fixture
def krylov(monkeypatch):
    monkeypatch.setattr(exact, "DENSE_MAX_S", 0)


@given(st.data())
def test_krylov_matches_dense_reference(data):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(exact, "DENSE_MAX_S", 0)
        _check_krylov_case(data)


def _check_krylov_case(data):
    mdp, P = data.draw(dense_mdps(max_S=8))
    pi = data.draw(policies(mdp.S, mdp.A))
    V, Q, d, H = dense_reference(P, mdp.R, mdp.gamma, pi, mdp.initial, mdp.terminal)
    ev = cpi.evaluate(mdp, pi)
    tol = 1e-9 * max(1.0, np.abs(V).max())
    np.testing.assert_allclose(ev.V, V, atol=tol, rtol=0)
    np.testing.assert_allclose(ev.d, d, atol=1e-9, rtol=0)
    assert ev.horizon == pytest.approx(H, rel=1e-9)
    guess = V + data.draw(st.sampled_from([0.0, 1.0, -3.0]))
    np.testing.assert_allclose(cpi.value(mdp, pi, guess=guess), V, atol=tol, rtol=0)


def test_warm_start_saves_iterations_and_keeps_accuracy(krylov):
    from cpi import _kernels as K
    mdp = cpi.garnet(400, 4, 5, 0.99, seed=7)
    pi = np.random.default_rng(0).dirichlet(np.ones(4), size=mdp.S)
    V = cpi.value(mdp, pi)
    ppi = exact._compact(mdp, pi, 1e-8)
    b = np.einsum("sa,sa->s", pi, mdp.R)
    _, it_cold, res_cold = K.bicgstab(*ppi, mdp.gamma, b, b, False, exact.KRYLOV_RTOL, 8000, 0)
    _, it_warm, res_warm = K.bicgstab(*ppi, mdp.gamma, b, V + 1e-6, False, exact.KRYLOV_RTOL,
                                      8000, 0)
    assert it_warm < it_cold and max(res_cold, res_warm) < 1e-10 * np.abs(b).max()
    with pytest.raises(ValueError, match=r"guess must have shape \(S,\) = \(400,\)"):
        cpi.value(mdp, pi, guess=np.zeros(3))
    with pytest.raises(ValueError, match="guess must be finite"):
        cpi.value(mdp, pi, guess=np.full(400, np.nan))


@pytest.mark.parametrize("sparse_pi", [False, True])
def test_matvec_variants_agree_with_dense(sparse_pi):
    """CSR, regular-row and parallel mat-vecs give the same bits; all match dense algebra."""
    from cpi import _kernels as K
    mdp = cpi.garnet(300, 3, 4, 0.9, seed=1)
    pi = mdp.uniform_policy()
    if sparse_pi:  # rows of different lengths: no regular layout
        pi[::3] = [1.0, 0.0, 0.0]
    ip, ix, dx, w = exact._compact(mdp, pi, 1e-8)
    assert w == (-1 if sparse_pi else 12)
    x = np.random.default_rng(0).random(mdp.S)
    Ppi = cpi.policy_matrix(mdp, pi).toarray()
    ref = x - 0.9 * Ppi @ x
    ys = {}
    for name, args in {"csr": (-1, 0), "regular": (w, 0), "par_csr": (-1, 7), "par": (w, 5)}.items():
        if name in ("regular",) and w < 0:
            continue
        ys[name] = np.empty(mdp.S)
        K.ppi_apply(ip, ix, dx, 0.9, x, ys[name], False, *args)
        np.testing.assert_allclose(ys[name], ref, atol=1e-14)
    for y in ys.values():
        np.testing.assert_array_equal(y, ys["csr"])
    y = np.empty(mdp.S)
    K.ppi_apply(ip, ix, dx, 0.9, x, y, True, w, 4)  # transposed: always the serial scatter
    np.testing.assert_allclose(y, x - 0.9 * Ppi.T @ x, atol=1e-14)
    b = mdp.R.mean(1)
    xs, _, _ = K.bicgstab(ip, ix, dx, w, 0.9, b, b, False, 1e-13, 1000, 0)
    xp, _, _ = K.bicgstab(ip, ix, dx, w, 0.9, b, b, False, 1e-13, 1000, 4)
    np.testing.assert_allclose(xs, xp, atol=1e-12)
    np.testing.assert_allclose(xs, np.linalg.solve(np.eye(mdp.S) - 0.9 * Ppi, b), atol=1e-11)


def test_breakdown_restart_on_a_restart_lock(krylov):
    # a restart lock makes plain BiCGSTAB break down (rho = 0) after two steps
    mdp = cpi.combination_lock(30, 3, gamma=0.95, wrong="restart")
    pi = cpi.lock_policy(mdp, 0.7)
    V, _, d, _ = dense_reference(mdp.P_dense(), mdp.R, mdp.gamma, pi, mdp.initial, mdp.terminal)
    ev = cpi.evaluate(mdp, pi)
    np.testing.assert_allclose(ev.V, V, atol=1e-10)
    np.testing.assert_allclose(ev.d, d, atol=1e-10)


def test_optimal_with_warm_started_policy_iteration():
    mdp = cpi.garnet(300, 4, 3, 0.95, seed=2)  # above DENSE_MAX_S: Krylov solves
    Vs, pis = cpi.optimal(mdp)
    Vn, act = cpi.bellman_sweep(mdp, Vs)
    np.testing.assert_allclose(Vn, Vs, atol=1e-9 * np.abs(Vs).max())
    np.testing.assert_array_equal(pis.argmax(1), act)


def test_extrapolated_jacobi_bound_and_bail_out():
    """MacQueen's extrapolation: the residual is at most g span(d)/2 (exact row sums); a fast
    chain converges, a periodic one (span never shrinks) hands over to BiCGSTAB."""
    from cpi import _kernels as K
    mdp = cpi.garnet(500, 4, 8, 0.99, seed=3)
    pi = np.random.default_rng(2).dirichlet(np.ones(4), size=mdp.S)
    ip, ix, dx, w = exact._compact(mdp, pi, 1e-8)
    b = np.einsum("sa,sa->s", pi, mdp.R)
    Ppi = cpi.policy_matrix(mdp, pi).toarray()
    for steps in (1, 3, 6):
        x, it, done = K.extrapolated_jacobi(ip, ix, dx, w, 0.99, b, b, 0.0, 0.5, steps, 0)
        xk = _plain_jacobi(Ppi, b, steps - 1)  # the iterate before the last step
        y = b + 0.99 * Ppi @ xk
        span = np.ptp(y - xk)
        r = b - (x - 0.99 * Ppi @ x)
        assert it == steps and not done
        assert np.abs(r).max() <= 0.99 * span / 2 * (1 + 1e-9) + 1e-13
    x, it, done = K.extrapolated_jacobi(ip, ix, dx, w, 0.99, b, b, 1e-12, 0.5, 200, 0)
    assert done and it < 40
    np.testing.assert_allclose(x, np.linalg.solve(np.eye(mdp.S) - 0.99 * Ppi, b), atol=1e-9)
    # a deterministic cycle 0 -> 1 -> ... -> S-1 -> 0: every eigenvalue has modulus one
    S = 300
    ring = np.zeros((S, 1, S))
    ring[np.arange(S), 0, (np.arange(S) + 1) % S] = 1.0
    R = np.random.default_rng(0).random((S, 1))
    loop = cpi.TabularMDP(ring, R, 0.99)
    ip, ix, dx, w = exact._compact(loop, loop.uniform_policy(), 1e-8)
    _, it, done = K.extrapolated_jacobi(ip, ix, dx, w, 0.99, R[:, 0], R[:, 0], 1e-12, 0.5, 200, 0)
    assert not done and it == 5
    V = np.linalg.solve(np.eye(S) - 0.99 * ring[:, 0, :], R[:, 0])
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(exact, "DENSE_MAX_S", 0)
        np.testing.assert_allclose(cpi.value(loop, loop.uniform_policy()), V, rtol=1e-10)


def _plain_jacobi(Ppi, b, k):
    x = b.copy()
    for _ in range(k):
        x = b + 0.99 * Ppi @ x
    return x


def test_parallel_only_when_big_and_not_oversubscribed(monkeypatch):
    """The parallel / serial choice changes the speed, never the bits."""
    import numba as nb
    big = exact.K.PARALLEL_MIN_NNZ
    monkeypatch.setattr(exact, "_runnable_others", lambda: 0)
    threads = nb.get_num_threads()
    assert exact.parallel_blocks(big - 1) == 0
    assert exact.parallel_blocks(big) == (4 * threads if threads > 1 and exact.USABLE_CPUS > 1 else 0)
    # other tasks runnable right now leave fewer than two CPUs free
    monkeypatch.setattr(exact, "_runnable_others", lambda: exact.USABLE_CPUS - 1)
    assert exact.oversubscribed() and exact.parallel_blocks(10 * big) == 0
    # no /proc/loadavg: the 1-minute load average decides
    monkeypatch.setattr(exact, "_runnable_others", lambda: None)
    monkeypatch.setattr(exact.os, "getloadavg", lambda: (float(exact.USABLE_CPUS), 0.0, 0.0))
    assert exact.oversubscribed() and exact.parallel_blocks(10 * big) == 0
    monkeypatch.setattr(exact.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert not exact.oversubscribed()
    monkeypatch.setattr(exact, "_runnable_others", lambda: exact.USABLE_CPUS - 1)  # the serial run
    mdp = cpi.garnet(7000, 8, 10, 0.99, seed=0)  # 560,000 non-zeros
    pi = np.random.default_rng(0).dirichlet(np.ones(8), size=mdp.S)
    v = np.random.default_rng(1).random(mdp.S)
    serial = (cpi.value(mdp, pi), cpi.bellman_sweep(mdp, v), cpi.q_from_v(mdp, v))
    monkeypatch.setattr(exact.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    monkeypatch.setattr(exact, "_runnable_others", lambda: 0)  # the parallel run
    par = (cpi.value(mdp, pi), cpi.bellman_sweep(mdp, v), cpi.q_from_v(mdp, v))
    np.testing.assert_array_equal(serial[0], par[0])
    np.testing.assert_array_equal(serial[1][0], par[1][0])
    np.testing.assert_array_equal(serial[1][1], par[1][1])
    np.testing.assert_array_equal(serial[2], par[2])


def test_runnable_others_counts_other_tasks():
    """``/proc/loadavg`` counts the caller among the runnable tasks: the others are >= 0."""
    others = exact._runnable_others()
    assert others is None or others >= 0


def test_compact_column_indices_take_the_narrowest_type_and_the_same_bits():
    """``P_pi``'s column indices are uint16 below 65,536 states (less to stream per mat-vec); the
    solve gives the same bits as with int32 indices."""
    assert exact._index_dtype(1 << 16) == np.uint16 and exact._index_dtype((1 << 16) + 1) == np.int32
    assert exact._index_dtype((1 << 31) + 1) == np.int64
    mdp = cpi.garnet(400, 4, 5, 0.95, seed=3)
    pi = np.random.default_rng(4).dirichlet(np.ones(4), size=mdp.S)
    ppi = exact._compact(mdp, pi, 1e-8)
    assert ppi.ix.dtype == np.uint16
    P = mdp.P
    ip, ix32, dx, w, ok = exact.K.compact_ppi(P.indptr, P.indices, P.data, pi, mdp.terminal, mdp.A, 1e-8,
                                              np.empty(0, np.int32))
    assert ok and ix32.dtype == np.int32
    np.testing.assert_array_equal(ix32, ppi.ix)
    b = np.einsum("sa,sa->s", pi, mdp.R)
    x16 = exact.K.bicgstab(ppi.ip, ppi.ix, ppi.dx, ppi.width, mdp.gamma, b, b, False, 1e-13, 1000, 0)
    x32 = exact.K.bicgstab(ip, ix32, dx, w, mdp.gamma, b, b, False, 1e-13, 1000, 0)
    np.testing.assert_array_equal(x16[0], x32[0])
