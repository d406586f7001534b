"""Exact quantities against an independent dense-numpy reference, and their theorems."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import cpi
from cpi import exact

from .strategies import dense_mdps, dense_reference, policies

TOL = 1e-10


def _tol(V):
    return TOL * max(1.0, np.abs(V).max())


@given(st.data())
def test_value_q_occupancy_match_dense_reference(data):
    mdp, P = data.draw(dense_mdps())
    pi = data.draw(policies(mdp.S, mdp.A))
    V, Q, d, H = dense_reference(P, mdp.R, mdp.gamma, pi, mdp.initial, mdp.terminal)
    ev = cpi.evaluate(mdp, pi)
    np.testing.assert_allclose(ev.V, V, atol=_tol(V), rtol=0)
    np.testing.assert_allclose(cpi.q_values(mdp, pi), Q, atol=_tol(V), rtol=0)
    np.testing.assert_allclose(cpi.advantages(mdp, pi), Q - V[:, None], atol=2 * _tol(V), rtol=0)
    np.testing.assert_allclose(ev.d, d, atol=1e-10, rtol=0)
    assert ev.horizon == pytest.approx(H, rel=1e-10)


@given(st.data())
def test_bellman_consistency_and_occupancy_is_a_distribution(data):
    mdp, P = data.draw(dense_mdps())
    pi = data.draw(policies(mdp.S, mdp.A))
    V = cpi.value(mdp, pi)
    Q = cpi.q_from_v(mdp, V)
    # V = sum_a pi Q on live states, 0 on terminals
    expect = np.where(mdp.terminal, 0.0, (pi * Q).sum(1))
    np.testing.assert_allclose(V, expect, atol=_tol(V), rtol=0)
    d = cpi.occupancy(mdp, pi)
    assert d.min() >= 0 and d.sum() == pytest.approx(1.0, abs=1e-12)
    # occupancy fixed point: d = (1-g) mu + g P_pi^T d (discounted); episodic: visits
    if mdp.gamma < 1:
        Ppi = np.einsum("sa,sat->st", pi, P)
        np.testing.assert_allclose(d, (1 - mdp.gamma) * mdp.initial + mdp.gamma * Ppi.T @ d, atol=1e-10)


@given(st.data())
def test_performance_difference_lemma_is_an_equality(data):
    """Kakade & Langford 2002, Lemma 6.1: V^{pi2}(mu) - V^{pi}(mu) = H * E_{d_pi2} E_pi2 [A_pi]."""
    mdp, _ = data.draw(dense_mdps())
    pi = data.draw(policies(mdp.S, mdp.A))
    pi2 = data.draw(policies(mdp.S, mdp.A))
    ev1 = cpi.evaluate(mdp, pi)
    ev2 = cpi.evaluate(mdp, pi2)
    adv = cpi.advantages(mdp, pi)
    lhs = mdp.initial @ ev2.V - mdp.initial @ ev1.V
    rhs = ev2.horizon * ev2.d @ (pi2 * adv).sum(1)
    assert lhs == pytest.approx(rhs, abs=_tol(np.abs(ev1.V) + np.abs(ev2.V)) * 10)


@given(st.data())
def test_policy_advantage_matches_definition(data):
    mdp, P = data.draw(dense_mdps())
    pi = data.draw(policies(mdp.S, mdp.A))
    pi2 = data.draw(policies(mdp.S, mdp.A))
    V, Q, d, _ = dense_reference(P, mdp.R, mdp.gamma, pi, mdp.initial, mdp.terminal)
    ref = d @ (pi2 * (Q - V[:, None])).sum(1)
    assert cpi.policy_advantage(mdp, pi, pi2) == pytest.approx(ref, abs=_tol(V) * 10)
    assert cpi.policy_advantage(mdp, pi, pi) == pytest.approx(0.0, abs=_tol(V) * 10)


@given(st.data())
def test_optimal_is_no_worse_than_any_policy_and_is_a_fixed_point(data):
    mdp, _ = data.draw(dense_mdps())
    Vs, pis = cpi.optimal(mdp)
    np.testing.assert_allclose(cpi.value(mdp, pis), Vs, atol=_tol(Vs))
    Vn, _ = cpi.bellman_sweep(mdp, Vs)
    np.testing.assert_allclose(np.where(mdp.terminal, 0, Vn), Vs, atol=10 * _tol(Vs))
    for _ in range(5):
        pi = data.draw(policies(mdp.S, mdp.A))
        assert np.all(cpi.value(mdp, pi) <= Vs + 10 * _tol(Vs))


def test_greedy_picks_first_argmax_and_respects_tol():
    Q = np.array([[1.0, 3.0, 3.0], [2.0, 1.0, 2.0 - 1e-9]])
    np.testing.assert_array_equal(cpi.greedy(Q), [[0, 1, 0], [1, 0, 0]])
    Q2 = np.array([[1.0, 1.0 + 1e-12]])
    np.testing.assert_array_equal(cpi.greedy(Q2, tol=1e-9), [[1, 0]])


def test_bellman_sweep_matches_dense():
    mdp = cpi.garnet(40, 3, 4, 0.9, seed=3)
    V = np.random.default_rng(0).random(40)
    Vn, act = cpi.bellman_sweep(mdp, V)
    Q = mdp.R + 0.9 * mdp.P_dense() @ V
    np.testing.assert_allclose(Vn, Q.max(1), atol=1e-13)
    np.testing.assert_array_equal(act, Q.argmax(1))


@pytest.mark.parametrize("make", [lambda: cpi.thought_tree(4, 3, 0.3, seed=1),
                                  lambda: cpi.combination_lock(6, 3, seed=2),
                                  lambda: cpi.garnet(30, 4, 1, 0.9, seed=5)])
def test_one_nonzero_per_row_path_equals_the_general_kernels(make):
    """Deterministic-transition MDPs take the indptr-free path: same bits as the general CSR
    kernels and the dense reference."""
    from cpi import _kernels as K
    mdp = make()
    assert mdp.one_per_row
    V = np.random.default_rng(0).random(mdp.S)
    P = mdp.P
    v_gen, a_gen = np.empty(mdp.S), np.empty(mdp.S, np.int64)
    K.bellman_sweep_serial(P.indptr, P.indices, P.data, mdp.R, mdp.gamma, V, v_gen, a_gen, False)
    Vn, act = cpi.bellman_sweep(mdp, V)
    np.testing.assert_array_equal(Vn, v_gen)
    np.testing.assert_array_equal(act, a_gen)
    q_gen = np.empty((mdp.S, mdp.A))
    K.q_from_v_serial(P.indptr, P.indices, P.data, mdp.R, mdp.gamma, V, q_gen, False)
    np.testing.assert_array_equal(cpi.q_from_v(mdp, V), q_gen)
    np.testing.assert_allclose(cpi.q_from_v(mdp, V), mdp.R + mdp.gamma * (mdp.P_dense() @ V), atol=1e-13)
    assert not cpi.garnet(30, 4, 2, 0.9, seed=5).one_per_row


def test_hand_computed_two_state_chain():
    # s0 -a0-> s1 (r=1), s1 self-loop r=0.5; gamma 0.5: V(s1) = 0.5/(1-0.5) = 1, V(s0) = 1 + 0.5*1
    P = np.zeros((2, 1, 2))
    P[0, 0, 1] = 1.0
    P[1, 0, 1] = 1.0
    mdp = cpi.TabularMDP(P, [[1.0], [0.5]], 0.5, initial=[1.0, 0.0])
    np.testing.assert_allclose(cpi.value(mdp, [[1.0], [1.0]]), [1.5, 1.0])
    # d = (1-g) * [1, g + g^2 + ...] = [0.5, 0.5]
    np.testing.assert_allclose(cpi.occupancy(mdp, [[1.0], [1.0]]), [0.5, 0.5])


@pytest.mark.parametrize("S", [1600, 3000])
def test_krylov_path_matches_dense_path(S, monkeypatch):
    """Large MDPs go through BiCGSTAB; compare with the dense solve on the same MDP."""
    mdp = cpi.garnet(S, 3, 5, 0.99, seed=S)
    pi = np.random.default_rng(1).dirichlet(np.ones(3), size=S)
    assert mdp.order is None and S > exact.DENSE_MAX_S
    ev = cpi.evaluate(mdp, pi)
    monkeypatch.setattr(exact, "DENSE_MAX_S", 10**6)
    ref = cpi.evaluate(mdp, pi)
    np.testing.assert_allclose(ev.V, ref.V, atol=1e-10 * np.abs(ref.V).max())
    np.testing.assert_allclose(ev.d, ref.d, atol=1e-12)


def test_dag_passes_match_linear_solve_on_trees(monkeypatch):
    tree = cpi.thought_tree(4, 3, 0.3, p_recover=0.1, seed=2)
    pi = np.random.default_rng(0).dirichlet(np.ones(3), size=tree.S)
    V, Q, d, H = dense_reference(tree.P_dense(), tree.R, 1.0, pi, tree.initial, tree.terminal)
    ev = cpi.evaluate(tree, pi)
    assert tree.order is not None
    np.testing.assert_allclose(ev.V, V, atol=1e-12)
    np.testing.assert_allclose(ev.d, d, atol=1e-12)
    assert ev.horizon == pytest.approx(4.0)  # every chain has exactly depth steps
    Vs, pis = cpi.optimal(tree)
    assert Vs[0] == pytest.approx(1.0)  # a clean path always exists


def test_time_augment_gives_h_step_values():
    mdp = cpi.garnet(6, 2, 3, 0.9, seed=0)
    pi = mdp.uniform_policy()
    H = 4
    aug = cpi.time_augment(mdp, H)
    pia = np.full((aug.S, aug.A), 0.5)
    Va = cpi.value(aug, pia)
    Ppi = np.einsum("sa,sat->st", pi, mdp.P_dense())
    Rpi = (pi * mdp.R).sum(1)
    V = np.zeros(6)
    for _ in range(H):
        V = Rpi + 0.9 * Ppi @ V
    np.testing.assert_allclose(Va[:6], V, atol=1e-12)
    assert aug.order is not None and aug.horizon == H
