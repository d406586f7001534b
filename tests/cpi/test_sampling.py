"""Monte-Carlo primitives: unbiased against the exact quantities, steps counted, seeded."""
import numpy as np
import pytest

import cpi


def _z(mean_est, sd, n):
    return abs(mean_est) / (sd / np.sqrt(n) + 1e-15)


def test_rollout_returns_unbiased_for_q_discounted():
    mdp = cpi.garnet(8, 2, 3, 0.8, seed=4)
    pi = mdp.uniform_policy()
    Q = cpi.q_values(mdp, pi)
    n = 20000
    starts = np.full(n, 3)
    acts = np.full(n, 1)
    ro = cpi.rollout_returns(mdp, pi, starts, acts, seed=1)
    assert _z(ro.returns.mean() - Q[3, 1], ro.returns.std(), n) < 4.5
    assert ro.steps == ro.lengths.sum() and ro.steps > n
    again = cpi.rollout_returns(mdp, pi, starts, acts, seed=1)
    np.testing.assert_array_equal(ro.returns, again.returns)


def test_rollout_returns_episodic_tree():
    t = cpi.thought_tree(4, 3, 0.3, p_recover=0.2, seed=0)
    pi = t.uniform_policy()
    V = cpi.value(t, pi)
    n = 20000
    ro = cpi.rollout_returns(t, pi, np.zeros(n, np.int64), seed=2)
    assert np.all(ro.lengths == 4) and ro.steps == 4 * n
    assert _z(ro.returns.mean() - V[0], ro.returns.std(), n) < 4.5


@pytest.mark.parametrize("make", [
    lambda: cpi.garnet(6, 2, 3, 0.7, seed=1),
    lambda: cpi.thought_tree(3, 2, 0.3, seed=1),
    lambda: cpi.combination_lock(4, 2),
])
def test_sample_states_follow_the_occupancy(make):
    mdp = make()
    pi = cpi.lock_policy(mdp, 0.6) if "correct" in mdp.info else mdp.uniform_policy()
    d = cpi.occupancy(mdp, pi)
    n = 40000
    states, steps = cpi.sample_states(mdp, pi, n, seed=3)
    freq = np.bincount(states, minlength=mdp.S) / n
    # chi-square-style check per state: |freq - d| within 5 standard errors
    se = np.sqrt(d * (1 - d) / n) + 1e-12
    assert np.all(np.abs(freq - d) <= 5 * se + 1e-9)
    assert steps > 0


def test_sampling_bad_inputs():
    mdp = cpi.garnet(5, 2, 2, 0.9)
    with pytest.raises(ValueError, match="starts"):
        cpi.rollout_returns(mdp, mdp.uniform_policy(), [7])
    with pytest.raises(ValueError, match="first_actions"):
        cpi.rollout_returns(mdp, mdp.uniform_policy(), [0], [2])
    with pytest.raises(ValueError, match="dist"):
        cpi.sample_from([-1.0, 2.0], 3)
