"""Every bound of cpi/bounds.py against independent dense-numpy realised quantities."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import cpi
from cpi import bounds as B

from .strategies import dense_mdps, dense_reference, policies

ALPHAS = st.one_of(st.sampled_from([1.0, 0.999, 0.5, 1e-3]), st.floats(1e-4, 1.0))


def _gain(P, mdp, pi, pi2, alpha):
    """Realised V^{new}(D) - V^pi(D) and pieces, all from the dense reference."""
    V, Q, d, H = dense_reference(P, mdp.R, mdp.gamma, pi, mdp.initial, mdp.terminal)
    pn = (1 - alpha) * pi + alpha * pi2
    Vn, _, dn, Hn = dense_reference(P, mdp.R, mdp.gamma, pn, mdp.initial, mdp.terminal)
    adv = Q - V[:, None]
    return mdp.initial @ (Vn - V), adv, d, H, dn, Hn, V, Vn


def _tol(*Vs):
    return 1e-9 * max(1.0, max(np.abs(v).max() for v in Vs))


@st.composite
def tiny_adversarial(draw):
    """2 states, gamma near 1, deterministic P, often one action (the hard case of ``docs/cpi.md``, Tolerances)."""
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    A = draw(st.sampled_from([1, 2]))
    P = np.zeros((2, A, 2))
    P[np.arange(2)[:, None], np.arange(A)[None, :], rng.integers(0, 2, (2, A))] = 1.0
    R = rng.random((2, A)) * draw(st.sampled_from([1.0, 10.0]))
    gamma = draw(st.sampled_from([0.99, 0.999, 0.9999]))
    return cpi.TabularMDP(P, R, gamma, initial=rng.dirichlet(np.ones(2))), P


MDPS = st.one_of(dense_mdps(episodic=False), tiny_adversarial())


@given(st.data())
def test_pdl_equality_to_1e10(data):
    mdp, P = data.draw(st.one_of(dense_mdps(), tiny_adversarial()))
    pi = data.draw(policies(mdp.S, mdp.A))
    pi2 = data.draw(policies(mdp.S, mdp.A))
    real, adv, d, H, dn, Hn, V, Vn = _gain(P, mdp, pi, pi2, 1.0)
    pdl = B.pdl_gain(dn, B.state_advantage(pi2, adv), Hn)
    assert abs(pdl - real) <= 1e-10 * max(1.0, np.abs(V).max(), np.abs(Vn).max())


@given(st.data(), ALPHAS)
def test_kl_theorem_41_and_spi_hold(data, alpha):
    mdp, P = data.draw(MDPS)
    pi = data.draw(policies(mdp.S, mdp.A))
    greedy_pi2 = data.draw(st.booleans())
    pi2 = None if greedy_pi2 else data.draw(policies(mdp.S, mdp.A))
    if greedy_pi2:
        V, Q, *_ = dense_reference(P, mdp.R, mdp.gamma, pi, mdp.initial)
        pi2 = np.eye(mdp.A)[Q.argmax(1)]
    real, adv, d, H, dn, Hn, V, Vn = _gain(P, mdp, pi, pi2, alpha)
    adv_s = B.state_advantage(pi2, adv)
    Adv, eps = d @ adv_s, np.abs(adv_s).max()
    tol = _tol(V, Vn)
    assert real >= B.kl_lower_bound(Adv, eps, alpha, mdp.gamma) - tol
    dpi = np.abs(pi2 - pi).sum(1).max()
    dA = adv_s.max() - adv_s.min()
    spi = B.spi_lower_bound(Adv, dpi, dA, alpha, mdp.gamma)
    assert real >= spi - tol
    # SPI is never weaker than K&L's relaxed form alpha h Adv - 2 alpha^2 eps gamma h^2
    h = 1 / (1 - mdp.gamma)
    assert spi >= alpha * h * Adv - 2 * alpha ** 2 * eps * mdp.gamma * h ** 2 - tol


@given(st.data())
def test_kl_and_spi_step_sizes_guarantee_their_gain(data):
    mdp, P = data.draw(MDPS)
    pi = data.draw(policies(mdp.S, mdp.A))
    V, Q, d, H = dense_reference(P, mdp.R, mdp.gamma, pi, mdp.initial)
    pi2 = np.eye(mdp.A)[Q.argmax(1)]
    adv_s = (pi2 * (Q - V[:, None])).sum(1)
    Adv = d @ adv_s
    rmax = max(mdp.R.max(), 1e-12)  # rewards in [0, R] in the strategies
    a = B.kl_step_size(Adv, mdp.gamma, rmax)
    assert a == pytest.approx(min(1, (1 - mdp.gamma) ** 2 * max(Adv, 0) / (4 * rmax)))
    real = _gain(P, mdp, pi, pi2, a)[0]
    assert real >= B.kl_guaranteed_gain(Adv, mdp.gamma, rmax) - _tol(V)
    dpi, dA = np.abs(pi2 - pi).sum(1).max(), adv_s.max() - adv_s.min()
    a = B.spi_step_size(Adv, dpi, dA, mdp.gamma)
    real = _gain(P, mdp, pi, pi2, a)[0]
    assert real >= B.spi_lower_bound(Adv, dpi, dA, a, mdp.gamma) - _tol(V)


@given(st.integers(1, 5), st.integers(2, 3), st.floats(0, 0.6), st.integers(0, 10**6), ALPHAS)
def test_finite_horizon_forms_on_thought_trees(depth, b, p_err, seed, alpha):
    mdp = cpi.thought_tree(depth, b, p_err, p_success=0.9, p_recover=0.2, seed=seed)
    rng = np.random.default_rng(seed)
    P = mdp.P_dense()
    pi = rng.dirichlet(np.ones(b), size=mdp.S)
    pi2 = np.eye(b)[rng.integers(0, b, mdp.S)] if seed % 2 else None
    V, Q, d, L = dense_reference(P, mdp.R, 1.0, pi, mdp.initial, mdp.terminal)
    if pi2 is None:
        pi2 = np.eye(b)[Q.argmax(1)]
    real, adv, d, L, dn, Ln, V, Vn = _gain(P, mdp, pi, pi2, alpha)
    adv_s = (pi2 * adv).sum(1)
    assert L == pytest.approx(depth)  # every chain has exactly `depth` thoughts
    eps = np.abs(adv_s).max()
    tol = _tol(V, Vn)
    assert real >= B.finite_horizon_lower_bound(L * d @ adv_s, eps, alpha, depth) - tol
    dpi, dA = np.abs(pi2 - pi).sum(1).max(), adv_s.max() - adv_s.min()
    assert real >= B.spi_finite_horizon_lower_bound(L * d @ adv_s, dpi, dA, alpha, depth) - tol
    # the finite-horizon step's guarantee (returns lie in [0, 1]: |A| <= 1)
    a = B.finite_horizon_step_size(L * d @ adv_s, 1.0, depth)
    real_a = _gain(P, mdp, pi, pi2, a)[0]
    assert real_a >= B.finite_horizon_guaranteed_gain(L * d @ adv_s, 1.0, depth) - tol


@given(st.data())
def test_final_guarantee_with_mismatch_coefficient(data):
    mdp, P = data.draw(MDPS)
    pi = data.draw(policies(mdp.S, mdp.A))
    mu = np.random.default_rng(data.draw(st.integers(0, 999))).dirichlet(np.ones(mdp.S))
    Vs, pis = cpi.optimal(mdp)
    V, Q, _, _ = dense_reference(P, mdp.R, mdp.gamma, pi, mdp.initial)
    _, _, d_mu, _ = dense_reference(P, mdp.R, mdp.gamma, pi, mu)
    _, _, d_opt, _ = dense_reference(P, mdp.R, mdp.gamma, pis, mdp.initial)
    max_adv = d_mu @ (Q - V[:, None]).max(1)
    sub = mdp.initial @ (Vs - V)
    tol = _tol(Vs, V)
    b1 = B.final_guarantee(max_adv, mdp.gamma, d_opt, d_mu)
    b2 = B.final_guarantee_mu(max_adv, mdp.gamma, d_opt, mu)
    assert sub <= b1 + tol
    assert b1 <= b2 + tol  # d_{pi,mu} >= (1 - gamma) mu


def test_hand_computed_values():
    # alpha/(1-g) (Adv - 2 a g eps / (1 - g (1 - a))) = 1 * (1 - 0.5 / 0.75) = 1/3
    assert B.kl_lower_bound(1.0, 1.0, 0.5, 0.5) == pytest.approx(1 / 3)
    # (1-g)^2 Adv/(4R) = 0.25 * 2 / 4 = 0.125 ; (1-g) Adv^2/(8R) = 0.5 * 4 / 8 = 0.25
    assert B.kl_step_size(2.0, 0.5, 1.0) == pytest.approx(0.125)
    assert B.kl_guaranteed_gain(2.0, 0.5, 1.0) == pytest.approx(0.25)
    # sum_{h<3} (1 - 0.5^h) = 0 + 0.5 + 0.75 ; 0.5*3 - 2*0.5*1*1.25 = 0.25
    assert B.finite_horizon_lower_bound(3.0, 1.0, 0.5, 3) == pytest.approx(0.25)
    # SPI: a Adv/(1-g) - a^2 g dpi dA/(2(1-g)^2) = 0.5*1/0.5 - 0.25*0.5*2*1/(2*0.25) = 0.5
    assert B.spi_lower_bound(1.0, 2.0, 1.0, 0.5, 0.5) == pytest.approx(0.5)
    assert B.mismatch_coefficient([0.5, 0.5, 0], [0.25, 0.5, 0.25]) == 2.0
    assert B.mismatch_coefficient([0.5, 0.5], [1.0, 0.0]) == np.inf
    # iteration bound 18 R^2 / ((1-g)^2 eps^2) = 18 / (0.25 * 0.01) = 7200
    assert B.kl_iteration_bound(0.1, 0.5, 1.0) == 7200


def test_rr_vs_caro_rates():
    p = np.array([1.0, 0.1, 0.01])
    rr = np.array([B.rr_sample_complexity(4, 10, 1, 0.1, x) for x in p])
    caro = np.array([B.caro_sample_complexity(4, 10, 1, 0.1, x) for x in p])
    assert rr[0] == pytest.approx(4 * 100 / 0.01)  # |A| H^2 R^2 / tau^2
    np.testing.assert_allclose(rr / caro, 1 / p ** 2)
    np.testing.assert_allclose(np.diff(np.log(rr)) / np.diff(np.log(p)), -2)
    imp = np.array([B.caro_improvement(10, 1, 0.1, x) / B.rr_improvement(10, 1, 0.1, x) for x in p])
    np.testing.assert_allclose(imp, 1 / p)


@pytest.mark.parametrize("call", [
    lambda: B.kl_lower_bound(0.1, 0.1, 1.5, 0.9),
    lambda: B.kl_lower_bound(0.1, 0.1, -0.1, 0.9),
    lambda: B.kl_lower_bound(0.1, 0.1, 0.5, 1.0),
    lambda: B.kl_step_size(0.1, 0.9, 0.0),
    lambda: B.finite_horizon_lower_bound(1.0, 1.0, 0.5, 0),
    lambda: B.rr_sample_complexity(2, 5, 1, 0.1, 0.0),
    lambda: B.rr_sample_complexity(2, 5, 1, 0.1, 1.5),
    lambda: B.caro_improvement(5, 1, -0.1, 0.5),
    lambda: B.state_advantage(np.ones((2, 2)), np.ones((3, 2))),
    lambda: B.mismatch_coefficient([1.0], [0.5, 0.5]),
])
def test_bad_inputs_raise(call):
    with pytest.raises(ValueError):
        call()
