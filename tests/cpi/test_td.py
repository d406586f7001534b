"""TD(0) with linear features: references by dense algebra and plain loops; the two lemmas
and the rates of Bhandari, Russo & Singal 2018 on random MRPs (hypothesis); validation."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from cpi import garnet, q_values
from cpi import pg_bounds as B
from cpi import _pg_kernels as K
from cpi.td import (check_features, expected_update, make_mrp, mean_path_td, mixing_time,
                    one_step_improvement, random_features, random_mrp, sampled_td,
                    state_action_mrp, td_problem, td_q_estimate, value_error_sq)

mrp_args = st.tuples(st.integers(2, 8), st.floats(0.0, 0.95), st.integers(0, 10**6), st.data())


def make(args):
    S, gamma, seed, data = args
    d = data.draw(st.integers(1, S))
    m = random_mrp(S, gamma, seed=seed, branching=data.draw(st.integers(1, S)))
    return td_problem(m, random_features(S, d, seed + 1)), np.random.default_rng(seed)


def test_stationary_distribution_and_value_against_references():
    m = random_mrp(6, 0.7, seed=3, branching=2)
    D = np.linalg.matrix_power(m.P.T, 2000) @ np.full(6, 1 / 6)  # power iteration
    np.testing.assert_allclose(m.D, D, atol=1e-10)
    V = np.zeros(6)
    for _ in range(500):
        V = m.r + m.gamma * m.P @ V
    np.testing.assert_allclose(m.value(), V, atol=1e-10)


def test_tabular_features_recover_the_value_and_q():
    m = random_mrp(5, 0.8, seed=0)
    p = td_problem(m, np.eye(5))
    np.testing.assert_allclose(p.Phi @ p.theta_star, m.value(), atol=1e-10)
    mdp = garnet(5, 2, 5, gamma=0.8, seed=2)
    pi = np.random.default_rng(0).dirichlet(np.ones(2), size=5)
    np.testing.assert_allclose(td_q_estimate(mdp, pi, np.eye(10)), q_values(mdp, pi), atol=1e-9)
    np.testing.assert_allclose(state_action_mrp(mdp, pi).value().reshape(5, 2), q_values(mdp, pi),
                               atol=1e-9)


@settings(max_examples=30)
@given(mrp_args)
def test_fixed_point_is_projected_bellman_solution(args):
    p, _ = make(args)
    m, Phi, D = p.mrp, p.Phi, p.mrp.D
    G = Phi.T @ (D[:, None] * Phi)
    Pi = Phi @ np.linalg.solve(G, Phi.T * D)  # D-projection
    v = Phi @ p.theta_star
    # normal-equation residual Phi^T D (r + gamma P v - v) = 0: backward stable, so tight
    res = Phi.T @ (D * (m.r + m.gamma * m.P @ v - v))
    scale = (np.abs(Phi.T) @ (D * (np.abs(m.r) + np.abs(v) + m.gamma * m.P @ np.abs(v)))).max()
    assert np.abs(res).max() <= 1e-12 * max(1.0, scale), (res, scale)
    # forward form v = Pi T v: its error grows with cond(Phi^T D Phi) (transient states give D ~ 1e-5)
    tol = max(1e-8, 100 * np.linalg.cond(G) * np.finfo(float).eps) * max(1, abs(v).max())
    np.testing.assert_allclose(v, Pi @ (m.r + m.gamma * m.P @ v), atol=tol)
    # sigma^2 by an explicit double loop
    sig = sum(D[s] * m.P[s, t] * (m.r[s] + m.gamma * v[t] - v[s]) ** 2 * Phi[s] @ Phi[s]
              for s in range(m.S) for t in range(m.S))
    assert p.sigma2 == pytest.approx(sig, rel=1e-9, abs=1e-12)


@given(mrp_args)
def test_td_lemmas_hold(args):
    p, rng = make(args)
    g = p.mrp.gamma
    for _ in range(5):
        theta = p.theta_star + rng.normal(size=p.theta_star.shape) * rng.uniform(0.01, 10)
        gbar = expected_update(p, theta)
        err2 = value_error_sq(p, theta)
        t = 1e-10 * max(1.0, err2)
        assert (p.theta_star - theta) @ gbar >= B.td_inner_lemma(g, err2) - t
        assert np.linalg.norm(gbar) <= B.td_norm_lemma(np.sqrt(err2), p.feature_norm) + t
        assert np.linalg.norm(gbar) <= B.td_norm_lemma(np.sqrt(err2), p.feature_norm, g) + t


@given(mrp_args)
def test_mean_path_rates_hold(args):
    p, rng = make(args)
    g = p.mrp.gamma
    alpha = (1 - g) / 4
    theta0 = rng.normal(size=p.theta_star.shape) * 3
    T = 200
    th = mean_path_td(p, T, alpha, theta0)
    dist = ((th - p.theta_star) ** 2).sum(axis=1)
    ts = np.arange(T + 1)
    assert np.all(dist <= B.mean_path_td_bound(ts, alpha, g, p.omega, dist[0]) * (1 + 1e-9) + 1e-12)
    assert np.all(dist <= np.exp(-p.omega * (1 - g) ** 2 * ts / 4) * dist[0] * (1 + 1e-9) + 1e-12)
    avg = np.cumsum(th[:-1], axis=0) / ts[1:, None]  # mean of theta_0..theta_{T-1}
    assert np.all(value_error_sq(p, avg)
                  <= B.mean_path_td_average_bound(ts[1:], alpha, g, dist[0]) * (1 + 1e-9) + 1e-12)


def td_reference(Phi, r, gamma, s, s2, alphas, weights, radius, theta):
    """Plain-loop reference of the numba kernel; returns (theta_T, weighted average)."""
    acc, W = np.zeros_like(theta), 0.0
    for t in range(len(s)):
        acc += weights[t] * theta
        W += weights[t]
        theta = theta + alphas[t] * (r[s[t]] + gamma * Phi[s2[t]] @ theta - Phi[s[t]] @ theta) * Phi[s[t]]
        if radius > 0 and np.linalg.norm(theta) > radius:
            theta = theta * radius / np.linalg.norm(theta)
    return theta, acc / W


@pytest.mark.parametrize("radius", [-1.0, 0.3])
def test_td_kernel_matches_reference(radius):
    rng = np.random.default_rng(0)
    S, d, T = 6, 3, 300
    Phi, r = random_features(S, d, 1), rng.random(S)
    s, s2 = rng.integers(0, S, T), rng.integers(0, S, T)
    alphas, weights = rng.uniform(0.01, 0.3, T), rng.uniform(0.5, 2, T)
    cps = np.array([1, 50, 300])
    last, avg = np.empty((3, d)), np.empty((3, d))
    K.td_run(Phi, r, 0.9, s, s2, alphas, weights, radius, np.zeros(d), cps, last, avg)
    for k, c in enumerate(cps):
        th, av = td_reference(Phi, r, 0.9, s[:c], s2[:c], alphas, weights, radius, np.zeros(d))
        np.testing.assert_allclose(last[k], th, atol=1e-12)
        np.testing.assert_allclose(avg[k], av, atol=1e-12)


def test_markov_chain_kernel_matches_loop():
    m = random_mrp(5, 0.5, seed=3, branching=3)
    cdf = np.cumsum(m.P, axis=1)
    u = np.random.default_rng(0).random(500)
    out = np.empty(501, np.int64)
    K.markov_chain(cdf, 2, u, out)
    s, ref = 2, [2]
    for x in u:  # inverse CDF: first j with cdf[s, j] > u (last state if rounding leaves none)
        s = int(min(np.searchsorted(cdf[s], x, side="right"), 4))
        ref.append(s)
    np.testing.assert_array_equal(out, ref)


def test_markov_chain_kernel_frequencies():
    m = random_mrp(4, 0.5, seed=0)
    cdf = np.cumsum(m.P, axis=1)
    out = np.empty(200001, np.int64)
    K.markov_chain(cdf, 0, np.random.default_rng(1).random(200000), out)
    np.testing.assert_allclose(np.bincount(out, minlength=4) / out.size, m.D, atol=0.01)


def test_iid_td_rates_hold_on_average():
    # Monte-Carlo mean over runs vs the proved expectation bounds (slack is large)
    m = random_mrp(6, 0.8, seed=4)
    p = td_problem(m, random_features(6, 3, 5))
    e0 = float(p.theta_star @ p.theta_star)  # theta_0 = 0
    cps = np.array([100, 1000, 3000])
    w = sampled_td(p, cps, schedule="weighted", n_runs=20, seed=0)
    assert np.all(w.err_avg.mean(0) <= B.iid_td_weighted_average_bound(cps, 0.8, p.omega, e0, p.sigma2))
    dec = sampled_td(p, cps, schedule="decreasing", n_runs=20, seed=1)
    dist = ((dec.last - p.theta_star) ** 2).sum(-1).mean(0)
    assert np.all(dist <= B.iid_td_decreasing_bound(cps, 0.8, p.omega, e0, p.sigma2))
    c = sampled_td(p, [1600], schedule="constant", n_runs=20, seed=2)
    assert c.err_avg.mean() <= B.iid_td_constant_bound(1600, 0.8, e0, p.sigma2)
    R = np.linalg.norm(p.theta_star)
    mk = sampled_td(p, [1600], sampling="markov", radius=R, n_runs=20, seed=3)
    assert np.all(np.linalg.norm(mk.last, axis=-1) <= R * (1 + 1e-12))
    tau = mixing_time(m.P, m.D, 1 / 40)
    assert mk.err_avg.mean() <= B.markov_td_bound(1600, 0.8, e0, m.r.max() + 2 * R, tau)


def test_mixing_time_rejects_a_periodic_chain():
    cyc = make_mrp([[0.0, 1.0], [1.0, 0.0]], [0.0, 1.0], 0.5)
    with pytest.raises(ValueError, match="periodic"):
        mixing_time(cyc.P, cyc.D, 0.1, max_t=50)


def test_mixing_time_against_brute_force():
    m = random_mrp(5, 0.5, seed=2, branching=2)
    t = mixing_time(m.P, m.D, 0.01)
    tv = lambda k: 0.5 * np.abs(np.linalg.matrix_power(m.P, k) - m.D).sum(1).max()  # noqa: E731
    assert tv(t) <= 0.01 and (t == 0 or tv(t - 1) > 0.01)


def test_one_step_improvement_with_td_features():
    mdp = garnet(6, 3, 3, gamma=0.9, seed=0)
    pi_b = np.random.default_rng(0).dirichlet(np.ones(3), size=6)
    exact = one_step_improvement(mdp, pi_b, td_q_estimate(mdp, pi_b, np.eye(18)))
    assert exact.eps < 1e-9 and exact.gain == pytest.approx(exact.pi_gain) and exact.gain > 0
    coarse = one_step_improvement(mdp, pi_b, td_q_estimate(mdp, pi_b, random_features(18, 2, 0)))
    assert coarse.eps > exact.eps and coarse.gain >= coarse.bound - 1e-9


def test_invalid_features_and_steps_raise():
    m = random_mrp(4, 0.5, seed=0)
    with pytest.raises(ValueError, match=r"shape \(S, d\) with S = 4 rows"):
        td_problem(m, np.eye(5))
    with pytest.raises(ValueError, match=r"shape \(S, d\)"):
        td_problem(m, np.ones(4))
    with pytest.raises(ValueError, match="1 <= d <= S"):
        check_features(np.ones((4, 5)), 4)
    with pytest.raises(ValueError, match="full column rank d = 2.*got rank 1"):
        td_problem(m, np.ones((4, 2)))
    with pytest.raises(ValueError, match="non-finite"):
        td_problem(m, np.full((4, 1), np.nan))
    p = td_problem(m, np.eye(4))
    for bad in (0.0, -0.1, np.nan):
        with pytest.raises(ValueError, match="step size alpha"):
            mean_path_td(p, 5, bad)
        with pytest.raises(ValueError, match="step size alpha"):
            sampled_td(p, [5], alpha=bad)
    with pytest.raises(ValueError, match=r"Phi_sa \(rows s\*A \+ a\) must have shape"):
        td_q_estimate(garnet(3, 2, 2, gamma=0.5, seed=0), np.full((3, 2), 0.5), np.eye(5))
    with pytest.raises(ValueError, match="theta0 must be"):
        sampled_td(p, [5], theta0=np.zeros(3))
    with pytest.raises(ValueError, match="schedule must be"):
        sampled_td(p, [5], schedule="adam")
    with pytest.raises(ValueError, match="not unique"):
        make_mrp(np.eye(3), np.zeros(3), 0.5)
    with pytest.raises(ValueError, match="not positive"):
        make_mrp([[0.5, 0.5], [0.0, 1.0]], [0.0, 1.0], 0.5)
    with pytest.raises(ValueError, match=r"gamma must lie in \[0, 1\)"):
        make_mrp(np.full((2, 2), 0.5), np.zeros(2), 1.0)


@settings(max_examples=10)
@given(mrp_args)
def test_iid_td_expectation_bounds_on_random_mrps(args):
    # the bounds are on expectations: the Monte-Carlo mean minus 4 standard errors must not exceed them
    p, _ = make(args)
    g, e0 = p.mrp.gamma, float(p.theta_star @ p.theta_star)
    cps = np.array([10, 100, 1000])
    seed = int(args[2])
    lo = lambda e: e.mean(0) - 4 * e.std(0, ddof=1) / np.sqrt(e.shape[0])  # noqa: E731
    w = sampled_td(p, cps, schedule="weighted", n_runs=12, seed=seed)
    assert np.all(lo(w.err_avg) <= B.iid_td_weighted_average_bound(cps, g, p.omega, e0, p.sigma2))
    dec = sampled_td(p, cps, schedule="decreasing", n_runs=12, seed=seed + 1)
    assert np.all(lo(((dec.last - p.theta_star) ** 2).sum(-1))
                  <= B.iid_td_decreasing_bound(cps, g, p.omega, e0, p.sigma2) * (1 + 1e-12))
