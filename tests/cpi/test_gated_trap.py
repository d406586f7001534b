"""The gated trap (p is the only thing that moves) and Bernoulli leaves, against dense references."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import cpi
from cpi.resets import improvable_states, reach_probability

from .strategies import dense_reference


def _random_policy(mdp, seed, good_max=0.95):
    """A random policy that is not yet greedy at the gate (so the gate stays improvable)."""
    rng = np.random.default_rng(seed)
    pi = rng.dirichlet(np.ones(mdp.A), size=mdp.S)
    g, a = mdp.info["gate"], mdp.info["good_action"]
    if pi[g, a] > good_max:
        pi[g] = np.full(mdp.A, 1.0 / mdp.A)
    return pi


trap_args = st.tuples(st.floats(0.001, 1.0), st.integers(2, 4), st.integers(2, 5), st.data())


@settings(max_examples=40)
@given(trap_args, st.integers(0, 2**31 - 1))
def test_p_is_the_reach_probability_and_one_state_is_improvable(args, seed):
    p, A, depth, data = args
    g = data.draw(st.integers(1, depth - 1))
    mdp = cpi.gated_trap(p, n_actions=A, depth=depth, gate_depth=g, seed=seed % 7)
    pi = _random_policy(mdp, seed)
    imp = improvable_states(mdp, pi, 0.0)
    assert np.flatnonzero(imp).tolist() == [mdp.info["gate"]]  # tau = 0: only the gate, up to round-off
    assert reach_probability(mdp, pi, imp) == pytest.approx(p, abs=1e-12)
    # every episode lasts depth + 1 steps, whatever p and pi: the occupancy of the gate is p / L
    ev = cpi.evaluate(mdp, pi)
    assert ev.horizon == pytest.approx(depth + 1, abs=1e-12) and mdp.max_length == depth + 1
    assert ev.d[mdp.info["gate"]] == pytest.approx(p / (depth + 1), abs=1e-12)


@settings(max_examples=30)
@given(trap_args, st.integers(0, 2**31 - 1))
def test_values_match_the_dense_reference_and_the_closed_forms(args, seed):
    p, A, depth, data = args
    g = data.draw(st.integers(1, depth - 1))
    r_good = data.draw(st.floats(0.55, 1.0))
    r_bad = data.draw(st.floats(0.0, 0.45))
    mdp = cpi.gated_trap(p, n_actions=A, depth=depth, gate_depth=g, r_good=r_good, r_bad=r_bad,
                         seed=seed % 5)
    pi = _random_policy(mdp, seed)
    P = mdp.P_dense()
    V, Q, d, H = dense_reference(P, mdp.R, 1.0, pi, mdp.initial, mdp.terminal)
    np.testing.assert_allclose(cpi.value(mdp, pi), V, atol=1e-12)
    np.testing.assert_allclose(cpi.q_values(mdp, pi), Q, atol=1e-12)
    np.testing.assert_allclose(cpi.occupancy(mdp, pi), d, atol=1e-12)
    gate, good = mdp.info["gate"], mdp.info["good_action"]
    A_gate = (1 - pi[gate, good]) * (r_good - r_bad)  # A(gate, good), closed form
    assert Q[gate, good] - V[gate] == pytest.approx(A_gate, abs=1e-12)
    assert cpi.optimal(mdp)[0][0] == pytest.approx(r_good, abs=1e-12)
    assert r_good - V[0] == pytest.approx(p * A_gate, abs=1e-12)  # suboptimality = p * A(gate, good)


def test_returns_are_bernoulli_and_noise_does_not_depend_on_p():
    for p in (0.05, 0.5):
        mdp = cpi.gated_trap(p)
        pi = mdp.uniform_policy()
        starts = np.zeros(20000, np.int64)
        ro = cpi.rollout_returns(mdp, pi, starts, seed=1)
        assert set(np.unique(ro.returns)) <= {0.0, 1.0}
        assert np.all(ro.lengths == 4)  # depth 3 + the payout step
        assert abs(ro.returns.mean() - cpi.value(mdp, pi)[0]) < 4 * ro.returns.std() / np.sqrt(2e4)
    # r_bad = 1 - r_good: every track's payout has variance r(1 - r) = 0.16
    assert cpi.return_variance(cpi.gated_trap(0.3), cpi.gated_trap(0.3).uniform_policy())[
        cpi.gated_trap(0.3).info["mirror"]] == pytest.approx(np.full(3, 0.16))


def test_only_p_changes_between_instances():
    a, b = cpi.gated_trap(0.1), cpi.gated_trap(0.7)
    assert a.S == b.S and a.A == b.A and a.info["gate"] == b.info["gate"]
    diff = (a.P != b.P).tocoo()
    assert set(diff.row.tolist()) <= set(range(a.A))  # only the root's rows differ
    assert np.array_equal(a.R, b.R)


def test_bernoulli_leaves_is_an_affine_map_of_values():
    tree = cpi.thought_tree(3, 3, 0.3, p_success=0.9, p_recover=0.1, seed=2)
    noisy = cpi.bernoulli_leaves(tree, lo=0.2, hi=0.8)
    pi = np.random.default_rng(0).dirichlet(np.ones(3), size=tree.S)
    pi_n = np.vstack([pi, np.full((3, 3), 1 / 3)])
    V, Vn = cpi.value(tree, pi), cpi.value(noisy, pi_n)
    live = ~tree.terminal
    np.testing.assert_allclose(Vn[:tree.S][live], 0.2 + 0.6 * V[live], atol=1e-12)
    assert noisy.max_length == tree.max_length + 1
    win, lose, end = noisy.info["payout_states"]
    assert noisy.terminal[end] and not noisy.terminal[win] and noisy.R[win, 0] == 1.0
    lock = cpi.bernoulli_leaves(cpi.combination_lock(4, 3, seed=0), lo=0.2, hi=0.8)
    assert cpi.value(lock, lock.uniform_policy())[0] == pytest.approx(0.2 + 0.6 * 3.0 ** -4)


@pytest.mark.parametrize("make,match", [
    (lambda: cpi.gated_trap(1.5), "p must lie"),
    (lambda: cpi.gated_trap(0.5, n_actions=1), "n_actions"),
    (lambda: cpi.gated_trap(0.5, depth=3, gate_depth=3), "gate_depth"),
    (lambda: cpi.gated_trap(0.5, r_good=0.2, r_bad=0.8), "r_good must exceed"),
    (lambda: cpi.bernoulli_leaves(cpi.garnet(5, 2, 2, gamma=0.9)), "episodic"),
    (lambda: cpi.bernoulli_leaves(cpi.combination_lock(3, 2), lo=0.9, hi=0.1), "lo must be <= hi"),
])
def test_bad_inputs_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bernoulli_leaves_needs_rewards_on_the_final_transition_only():
    P = np.zeros((3, 1, 3))
    P[0, 0, 1] = P[1, 0, 2] = P[2, 0, 2] = 1.0
    early = cpi.TabularMDP(P, np.array([[0.5], [0.0], [0.0]]), 1.0, initial=[1, 0, 0], terminal=[2])
    with pytest.raises(ValueError, match="only on the final transition"):
        cpi.bernoulli_leaves(early)
    P2 = np.zeros((3, 1, 3))
    P2[0, 0, [1, 2]] = 0.5
    P2[1, 0, 2] = P2[2, 0, 2] = 1.0
    partial = cpi.TabularMDP(P2, np.zeros((3, 1)), 1.0, initial=[1, 0, 0], terminal=[2])
    with pytest.raises(ValueError, match="surely or not at all"):
        cpi.bernoulli_leaves(partial)
