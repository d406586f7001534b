"""Policy optimisers: exact gradients vs finite differences of an independent dense value,
simplex projection vs its variational characterisation, monotonicity/contraction of the
traces, NPG -> policy iteration for large steps, and input validation."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from cpi import TabularMDP, garnet, optimal, q_values, value
from cpi.pg import (PGConfig, direct_gradient, natural_pg, policy_iteration, project_simplex,
                    projected_pg, run_pg, soft_policy_iteration, softmax_gradient, softmax_pg,
                    softmax_policy)


def dense_value(mdp, pi, mu):
    """Reference V^pi(mu) = mu^T (I - gamma P_pi)^{-1} r_pi for ANY (S, A) array pi (dense)."""
    P = mdp.P_dense()  # (S, A, S)
    Ppi = np.einsum("sa,sat->st", pi, P)
    rpi = np.einsum("sa,sa->s", pi, mdp.R)
    return mu @ np.linalg.solve(np.eye(mdp.S) - mdp.gamma * Ppi, rpi)


def rand_policy(rng, S, A):
    return rng.dirichlet(np.ones(A), size=S)


mdp_args = st.tuples(st.integers(2, 7), st.integers(1, 4), st.sampled_from([0.0, 0.5, 0.9]),
                     st.integers(0, 10**6))


def make(args):
    S, A, gamma, seed = args
    return garnet(S, A, min(2, S), gamma=gamma, seed=seed), np.random.default_rng(seed)


@given(mdp_args)
def test_direct_gradient_matches_finite_differences(args):
    mdp, rng = make(args)
    pi = rand_policy(rng, mdp.S, mdp.A)
    mu = rng.dirichlet(np.ones(mdp.S))
    g = direct_gradient(mdp, pi, mu)
    h = 1e-5
    fd = np.empty_like(pi)
    for s in range(mdp.S):
        for a in range(mdp.A):
            E = np.zeros_like(pi)
            E[s, a] = h
            fd[s, a] = (dense_value(mdp, pi + E, mu) - dense_value(mdp, pi - E, mu)) / (2 * h)
    np.testing.assert_allclose(g, fd, atol=1e-6 * max(1.0, np.abs(fd).max()), rtol=0)


@given(mdp_args)
def test_softmax_gradient_matches_finite_differences(args):
    mdp, rng = make(args)
    theta = rng.normal(size=(mdp.S, mdp.A)) * 2
    mu = rng.dirichlet(np.ones(mdp.S))
    g = softmax_gradient(mdp, theta, mu)
    h = 1e-5
    fd = np.empty_like(theta)
    for s in range(mdp.S):
        for a in range(mdp.A):
            E = np.zeros_like(theta)
            E[s, a] = h
            fd[s, a] = (dense_value(mdp, softmax_policy(theta + E), mu)
                        - dense_value(mdp, softmax_policy(theta - E), mu)) / (2 * h)
    np.testing.assert_allclose(g, fd, atol=1e-6 * max(1.0, np.abs(fd).max()), rtol=0)


def test_softmax_policy_hand_values():
    pi = softmax_policy([[0.0, np.log(3.0)], [1000.0, 0.0]])
    np.testing.assert_allclose(pi, [[0.25, 0.75], [1.0, 0.0]])


def test_project_simplex_hand_values():
    # equal entries -> uniform; already inside -> unchanged; y = (0.6, 0.2): tau = -0.1
    np.testing.assert_allclose(project_simplex([[0.5, 0.5, 0.5]]), [[1 / 3] * 3])
    np.testing.assert_allclose(project_simplex([[0.2, 0.3, 0.5]]), [[0.2, 0.3, 0.5]])
    np.testing.assert_allclose(project_simplex([[0.6, 0.2]]), [[0.7, 0.3]])
    np.testing.assert_allclose(project_simplex([[2.0, 0.0, -1.0]]), [[1.0, 0.0, 0.0]])


@given(st.integers(1, 6), st.integers(1, 5), st.integers(0, 10**6), st.floats(0.01, 100))
def test_project_simplex_variational_inequality(S, A, seed, scale):
    # x = Proj(y) iff x in simplex and (y - x).(z - x) <= 0 for every z in simplex (vertices suffice)
    Y = np.random.default_rng(seed).normal(size=(S, A)) * scale
    X = project_simplex(Y)
    assert X.min() >= 0
    np.testing.assert_allclose(X.sum(axis=1), 1.0, atol=1e-12)
    for s in range(S):
        for a in range(A):
            z = np.zeros(A)
            z[a] = 1.0
            assert (Y[s] - X[s]) @ (z - X[s]) <= 1e-9 * (1 + np.abs(Y[s]).max())


@settings(max_examples=25)
@given(mdp_args, st.floats(0.05, 1.0))
def test_soft_pi_contraction_each_step(args, alpha):
    mdp, _ = make(args)
    tr = soft_policy_iteration(mdp, 15, alpha)
    c = 1 - alpha * (1 - mdp.gamma)
    tol = 1e-10 * max(1.0, tr.gap_inf[0])
    assert np.all(tr.gap_inf[1:] <= c * tr.gap_inf[:-1] + tol)
    assert np.all(tr.subopt >= -tol) and np.all(tr.subopt <= tr.gap_inf + tol)
    np.testing.assert_array_equal(tr.steps, alpha)


@settings(max_examples=15)
@given(mdp_args)
def test_policy_iteration_contracts_and_reaches_optimum(args):
    mdp, _ = make(args)
    tr = policy_iteration(mdp, 25)
    tol = 1e-10 * max(1.0, tr.gap_inf[0])
    assert np.all(tr.gap_inf[1:] <= mdp.gamma * tr.gap_inf[:-1] + tol)
    np.testing.assert_allclose(value(mdp, tr.pi), optimal(mdp)[0], atol=1e-9)


@settings(max_examples=25)
@given(mdp_args, st.floats(0.01, 10.0))
def test_npg_improves_monotonically(args, eta):
    mdp, _ = make(args)
    tr = natural_pg(mdp, 20, eta)
    tol = 1e-10 * max(1.0, tr.gap_inf[0])
    assert np.all(np.diff(tr.subopt) <= tol)  # V^{t+1} >= V^t pointwise (Agarwal Lemma 5.7)


@settings(max_examples=20)
@given(mdp_args)
def test_npg_large_step_is_policy_iteration_step(args):
    # one NPG step from a positive policy -> greedy(Q^pi) as eta -> infinity (unique argmax)
    mdp, rng = make(args)
    pi0 = rand_policy(rng, mdp.S, mdp.A)
    Q = q_values(mdp, pi0)
    srt = np.sort(Q, axis=1)
    if mdp.A > 1 and (srt[:, -1] - srt[:, -2]).min() < 1e-4:
        return  # near-tie: the limit is a split, not PI's tie-break
    pi_pi = policy_iteration(mdp, 1, pi0=pi0).pi
    errs = [np.abs(natural_pg(mdp, 1, eta, theta0=np.log(pi0)).pi - pi_pi).max()
            for eta in (1.0, 1e8)]
    assert errs[-1] < 1e-6
    assert errs[-1] <= errs[0] + 1e-12


@settings(max_examples=20)
@given(mdp_args)
def test_npg_large_eta_tracks_policy_iteration_trace(args):
    # with eta_t growing geometrically NPG is an eps_t-greedy PI: its gap follows PI's gamma^t
    mdp, _ = make(args)
    T = 12
    npg = natural_pg(mdp, T, 1e3 * 4.0 ** np.arange(T))
    tol = 1e-8 * max(1.0, npg.gap_inf[0])
    assert np.all(npg.gap_inf[1:] <= mdp.gamma * npg.gap_inf[:-1]
                  + npg.greedy_error / (1 - mdp.gamma) + tol)
    bound = npg.gap_inf[0]
    for t in range(T):  # unrolled: gap_T <= gamma^T gap_0 + sum_t gamma^(T-1-t) eps_t / (1-gamma)
        bound = mdp.gamma * bound + npg.greedy_error[t] / (1 - mdp.gamma)
    assert npg.gap_inf[-1] <= bound + tol
    slow = natural_pg(mdp, T, 1.0)  # small steps are far from greedy
    assert npg.greedy_error.sum() <= slow.greedy_error.sum() + tol


@settings(max_examples=15)
@given(mdp_args)
def test_gradient_methods_ascend(args):
    mdp, _ = make(args)
    for tr in (projected_pg(mdp, 15), softmax_pg(mdp, 15)):
        tol = 1e-10 * max(1.0, abs(tr.objective).max())
        assert np.all(np.diff(tr.objective) >= -tol), tr.method  # eta = 1/beta: ascent lemma


def test_trace_shapes_and_steps():
    mdp = garnet(6, 3, 2, gamma=0.8, seed=3)
    for cfg in (PGConfig("projected", 5), PGConfig("softmax", 5, 0.1), PGConfig("npg", 5, 2.0),
                PGConfig("soft_pi", 5, 0.5), PGConfig("pi", 5)):
        tr = run_pg(mdp, cfg)
        assert tr.subopt.shape == (6,) and tr.steps.shape == (5,) and tr.greedy_error.shape == (5,)
        assert tr.method == cfg.method
        V = value(mdp, tr.pi)
        np.testing.assert_allclose(tr.subopt[-1], mdp.initial @ (optimal(mdp)[0] - V), atol=1e-12)


def test_invalid_inputs_raise():
    mdp = garnet(5, 2, 2, gamma=0.9, seed=0)
    for bad in (0.0, -1.0, np.nan, np.inf):
        with pytest.raises(ValueError, match="step size eta"):
            projected_pg(mdp, 3, bad)
        with pytest.raises(ValueError, match="step size eta"):
            softmax_pg(mdp, 3, bad)
        with pytest.raises(ValueError, match="step size eta"):
            natural_pg(mdp, 3, bad)
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match=r"alpha must be finite and lie in \(0, 1.0\]"):
            soft_policy_iteration(mdp, 3, bad)
    with pytest.raises(ValueError, match="sequence of T = 3"):
        natural_pg(mdp, 3, [1.0, 2.0])
    with pytest.raises(TypeError, match="real number"):
        natural_pg(mdp, 3, "big")
    with pytest.raises(ValueError, match="integer >= 0"):
        policy_iteration(mdp, -1)
    with pytest.raises(ValueError, match="theta0 must be"):
        softmax_pg(mdp, 2, theta0=np.zeros((5, 3)))
    ep = TabularMDP(np.array([[[0.0, 1.0]], [[0.0, 1.0]]]), np.array([[1.0], [0.0]]), 1.0,
                    terminal=[1])
    with pytest.raises(ValueError, match="gamma < 1"):
        natural_pg(ep, 2, 1.0)
    with pytest.raises(ValueError, match="method must be one of"):
        PGConfig("reinforce")
    with pytest.raises(ValueError, match="needs step=eta"):
        PGConfig("npg")
    with pytest.raises(ValueError, match="needs step=alpha"):
        PGConfig("soft_pi")
