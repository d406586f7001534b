"""Every bound of cpi.pg_bounds on random MDPs (hypothesis): proved ones must hold, cited
constants (smoothness, projected PG) are checked in the form stated; invalid steps raise."""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from cpi import garnet, occupancy, optimal, value
from cpi import pg_bounds as B
from cpi.bounds import mismatch_coefficient
from cpi.pg import (direct_gradient, natural_pg, projected_pg, reward_span, softmax_gradient,
                    softmax_pg, softmax_policy, stationarity_gap)
from cpi.td import one_step_improvement

mdp_args = st.tuples(st.integers(2, 7), st.integers(1, 4), st.sampled_from([0.0, 0.5, 0.9]),
                     st.integers(0, 10**6))


def make(args):
    S, A, gamma, seed = args
    return garnet(S, A, min(2, S), gamma=gamma, seed=seed), np.random.default_rng(seed)


def tol(x):
    return 1e-9 * max(1.0, np.abs(x).max())


def test_closed_forms_hand_values():
    assert B.soft_pi_contraction(0.5, 0.9) == pytest.approx(0.95)
    assert B.soft_pi_contraction(1.0, 0.9) == pytest.approx(0.9)  # policy iteration
    np.testing.assert_allclose(B.soft_pi_bound(2.0, 1.0, 0.5, 3), [2, 1, 0.5, 0.25])
    # log 4 / (2 * 10) + 1 / (0.25 * 10)
    assert B.npg_bound(10, 2.0, 0.5, 4) == pytest.approx(math.log(4) / 20 + 0.4)
    assert B.approx_pi_step_bound(1.0, 0.5, 0.1) == pytest.approx(0.7)
    # 8 * sqrt(0.5 * 2 * 3 / 3) * 2 / 0.125 = 128
    assert B.projected_pg_bound(3, 0.5, 2, 3, 2.0) == pytest.approx(128.0)
    assert B.direct_smoothness(0.5, 3) == pytest.approx(24.0)
    assert B.softmax_smoothness(0.5) == pytest.approx(64.0)
    assert mismatch_coefficient([0.5, 0.5, 0], [0.25, 0.5, 0.25]) == 2.0
    assert mismatch_coefficient([0.5, 0.5], [1.0, 0.0]) == math.inf


def test_invalid_arguments_raise():
    for a in (0.0, 1.1, -1):
        with pytest.raises(ValueError, match="alpha must lie in"):
            B.soft_pi_contraction(a, 0.9)
    with pytest.raises(ValueError, match="eta must be finite and > 0"):
        B.npg_bound(5, 0.0, 0.9, 3)
    with pytest.raises(ValueError, match="gamma must lie in"):
        B.npg_bound(5, 1.0, 1.0, 3)
    with pytest.raises(ValueError, match=r"alpha must lie in \(0, \(1-gamma\)/4\]"):
        B.mean_path_td_bound(10, 0.1, 0.9, 0.1, 1.0)
    with pytest.raises(ValueError, match="T >= 6400"):
        B.iid_td_constant_bound(100, 0.9, 1.0, 1.0)


@given(mdp_args)
def test_gradient_domination_holds(args):
    mdp, rng = make(args)
    pi = rng.dirichlet(np.ones(mdp.A), size=mdp.S)
    mu = rng.dirichlet(np.ones(mdp.S))
    rho = rng.dirichlet(np.ones(mdp.S))
    Vs, pis = optimal(mdp)
    sub = rho @ (Vs - value(mdp, pi))
    stat = stationarity_gap(direct_gradient(mdp, pi, mu), pi)
    d_star = occupancy(mdp, pis, rho)
    on = B.gradient_domination(stat, mismatch_coefficient(d_star, occupancy(mdp, pi, mu)),
                               mdp.gamma, on_policy=True)
    off = B.gradient_domination(stat, mismatch_coefficient(d_star, mu), mdp.gamma)
    assert sub <= on + tol(Vs) and on <= off + tol(Vs)


@given(mdp_args)
def test_softmax_lojasiewicz_holds(args):
    mdp, rng = make(args)
    theta = rng.normal(size=(mdp.S, mdp.A)) * 2
    pi = softmax_policy(theta)
    mu = rng.dirichlet(np.ones(mdp.S))
    Vs, pis = optimal(mdp)
    sub = mu @ (Vs - value(mdp, pi))
    c = pi[np.arange(mdp.S), np.argmax(pis, axis=1)].min()
    C = mismatch_coefficient(occupancy(mdp, pis, mu), occupancy(mdp, pi, mu))
    lower = B.softmax_gradient_domination(max(sub, 0.0), c, mdp.S, C)
    assert np.linalg.norm(softmax_gradient(mdp, theta, mu)) >= lower - tol(Vs)


@settings(max_examples=30)
@given(mdp_args, st.floats(1e-3, 1.0))
def test_cited_smoothness_constants(args, t):
    # |V(x + t u) - V(x) - t grad.u| <= beta t^2 ||u||^2 / 2 along feasible directions
    mdp, rng = make(args)
    span = reward_span(mdp)
    pi = rng.dirichlet(np.ones(mdp.A), size=mdp.S)
    target = rng.dirichlet(np.ones(mdp.A), size=mdp.S)
    u = target - pi  # pi + t u stays a policy for t in [0, 1]
    mu = mdp.initial
    V = lambda p: mu @ value(mdp, p)  # noqa: E731
    lhs = abs(V(pi + t * u) - V(pi) - t * np.sum(direct_gradient(mdp, pi, mu) * u))
    assert lhs <= B.direct_smoothness(mdp.gamma, mdp.A, span) * t ** 2 * (u ** 2).sum() / 2 + 1e-12
    theta = rng.normal(size=(mdp.S, mdp.A))
    w = rng.normal(size=(mdp.S, mdp.A))
    Vt = lambda th: mu @ value(mdp, softmax_policy(th))  # noqa: E731
    lhs = abs(Vt(theta + t * w) - Vt(theta) - t * np.sum(softmax_gradient(mdp, theta, mu) * w))
    assert lhs <= B.softmax_smoothness(mdp.gamma, span) * t ** 2 * (w ** 2).sum() / 2 + 1e-12


@settings(max_examples=20)
@given(mdp_args, st.floats(0.05, 20.0))
def test_npg_rate_holds(args, eta):
    mdp, rng = make(args)
    rho = rng.dirichlet(np.ones(mdp.S))
    tr = natural_pg(mdp, 25, eta, rho=rho)
    b = B.npg_bound(np.arange(1, 26), eta, mdp.gamma, mdp.A, reward_span(mdp))
    assert np.all(tr.subopt[1:] <= b + tol(tr.gap_inf[0]))


@settings(max_examples=15)
@given(mdp_args)
def test_softmax_pg_rate_holds(args):
    mdp, _ = make(args)
    T = 20
    tr = softmax_pg(mdp, T)  # eta = 1/beta, rho = mu = initial
    d_star = occupancy(mdp, optimal(mdp)[1], mdp.initial)
    b = B.softmax_pg_bound(tr.subopt[0], tr.min_prob_opt[:T], mdp.gamma, mdp.S,
                           mismatch_coefficient(d_star, mdp.initial), reward_span(mdp))
    assert np.all(tr.subopt <= b + tol(tr.gap_inf[0]))


@settings(max_examples=15)
@given(mdp_args)
def test_projected_pg_cited_rate_holds(args):
    mdp, _ = make(args)
    T = 20
    tr = projected_pg(mdp, T)
    d_star = occupancy(mdp, optimal(mdp)[1], mdp.initial)
    C = mismatch_coefficient(d_star, mdp.initial)
    b = B.projected_pg_bound(np.arange(1, T + 1), mdp.gamma, mdp.S, mdp.A, C, reward_span(mdp))
    best = np.minimum.accumulate(tr.subopt[1:])
    assert np.all(best <= b + tol(tr.gap_inf[0]))


@settings(max_examples=30)
@given(mdp_args, st.floats(0.0, 3.0))
def test_one_step_improvement_bound_and_gap_conditions(args, noise):
    mdp, rng = make(args)
    pi_b = rng.dirichlet(np.ones(mdp.A), size=mdp.S)
    Vb = value(mdp, pi_b)
    Qb = mdp.R + mdp.gamma * (mdp.P_dense() @ Vb)
    Q_hat = Qb + noise * rng.uniform(-1, 1, size=Qb.shape) * rng.uniform() ** 2
    imp = one_step_improvement(mdp, pi_b, Q_hat)
    t = tol(Vb)
    assert imp.gain >= imp.bound - t
    if 2 * imp.eps <= imp.min_adv_gap:  # below the advantage gap: improves in every state
        assert imp.min_state_gain >= -t
    if 2 * imp.eps < imp.action_gap:  # below the action gap: exactly the PI step
        assert imp.gain == pytest.approx(imp.pi_gain, abs=t)


def test_one_step_improvement_fails_for_a_large_error():
    # Qhat = -Q^b picks the worst action everywhere: the "improvement" loses value
    mdp = garnet(6, 3, 2, gamma=0.9, seed=1)
    pi_b = mdp.uniform_policy()
    Qb = mdp.R + mdp.gamma * (mdp.P_dense() @ value(mdp, pi_b))
    bad = one_step_improvement(mdp, pi_b, -Qb)
    good = one_step_improvement(mdp, pi_b, Qb)
    assert good.gain > 0 and good.gain == pytest.approx(good.pi_gain)
    assert bad.gain < 0 and 2 * bad.eps > bad.min_adv_gap
