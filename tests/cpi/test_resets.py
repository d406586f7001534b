"""Reset distributions: supports, interpolation, sampling laws, errors."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import cpi
from cpi.resets import (NoImprovableState, Noisy, Oracle, RandomReset, Start, improvable_states,
                        make_reset, reach_probability)

from .strategies import dense_mdps, dense_reference, policies


@given(st.data(), st.sampled_from([0.0, 1e-3, 0.05, 0.3]))
def test_oracle_puts_zero_mass_on_non_improvable_states(data, tau):
    mdp, P = data.draw(dense_mdps(episodic=False))
    pi = data.draw(policies(mdp.S, mdp.A))
    V, Q, d, _ = dense_reference(P, mdp.R, mdp.gamma, pi, mdp.initial)
    imp = (Q - V[:, None]).max(1) > tau  # independent reference
    scale = 1e-9 * max(1, np.abs(V).max())
    borderline = np.abs((Q - V[:, None]).max(1) - tau) < scale
    if borderline.any():  # ties with tau at round-off: membership is not well defined
        return
    o = Oracle(tau)
    if not (imp & (d > 0)).any():
        with pytest.raises(NoImprovableState):
            o.distribution(mdp, pi)
        np.testing.assert_allclose(Oracle(tau, on_empty="random").distribution(mdp, pi), d,
                                   atol=1e-10)
        return
    nu = o.distribution(mdp, pi)
    assert np.all(nu[~imp] == 0.0)
    np.testing.assert_allclose(nu, np.where(imp, d, 0) / d[imp].sum(), atol=1e-10)


@settings(max_examples=30)
@given(st.data(), st.floats(0, 1))
def test_noisy_interpolates_random_and_oracle(data, q):
    mdp, P = data.draw(dense_mdps(episodic=False))
    pi = data.draw(policies(mdp.S, mdp.A))
    tau = 0.0
    d = RandomReset().distribution(mdp, pi)
    orc = Oracle(tau, on_empty="random").distribution(mdp, pi)
    np.testing.assert_allclose(Noisy(q, tau).distribution(mdp, pi), q * orc + (1 - q) * d, atol=1e-12)
    np.testing.assert_allclose(Noisy(0.0, tau).distribution(mdp, pi), d, atol=1e-12)
    np.testing.assert_allclose(Noisy(1.0, tau).distribution(mdp, pi), orc, atol=1e-12)


def _tv(states, nu):
    emp = np.bincount(states, minlength=nu.size) / states.size
    return 0.5 * np.abs(emp - nu).sum()


@pytest.mark.parametrize("reset", [Start(), RandomReset(), Oracle(0.01), Noisy(0.5, 0.01),
                                   Noisy(0.0, 0.01), Noisy(1.0, 0.01)])
def test_samples_follow_the_distribution(reset):
    mdp = cpi.thought_tree(3, 2, 0.3, p_success=0.9, seed=3)
    pi = np.random.default_rng(0).dirichlet(np.ones(2), size=mdp.S)
    nu = reset.distribution(mdp, pi)
    states, steps = reset.sample(mdp, pi, 20000, seed=1)
    # TV of an empirical law with n = 20000 over <= 15 atoms is ~ sqrt(15/n)/2 ~ 0.014
    assert _tv(states, nu) < 0.03
    if isinstance(reset, Oracle):
        assert np.all(nu[states] > 0)
    assert (steps == 0) == isinstance(reset, Start)


def test_oracle_on_tree_targets_clean_states_with_an_error_option():
    mdp = cpi.thought_tree(4, 3, 0.2, seed=5)  # p_success=1, p_recover=0
    pi = mdp.uniform_policy()
    adv = cpi.advantages(mdp, pi)
    nu = Oracle(0.0).distribution(mdp, pi, adv)
    after = mdp.info["after_error"]
    assert nu[after].sum() == 0.0  # after an error nothing can be recovered: A = 0
    assert nu.sum() == pytest.approx(1.0)


def test_reach_probability_on_a_lock():
    mdp = cpi.combination_lock(6, 3, seed=0)
    q = 0.7
    pi = cpi.lock_policy(mdp, q)
    for h in range(6):
        mask = np.zeros(mdp.S, bool)
        mask[h] = True
        assert reach_probability(mdp, pi, mask) == pytest.approx(q ** h, rel=1e-12)
    assert reach_probability(mdp, pi, np.zeros(mdp.S, bool)) == 0.0


def test_oracle_without_support_raises_and_falls_back():
    mdp = cpi.garnet(8, 3, 2, gamma=0.9, seed=0)
    _, pis = cpi.optimal(mdp)
    assert not improvable_states(mdp, pis, 1e-9).any()
    with pytest.raises(NoImprovableState, match="no support"):
        Oracle(1e-9).sample(mdp, pis, 5)
    s, _ = Oracle(1e-9, on_empty="random").sample(mdp, pis, 5)
    assert s.shape == (5,)
    nu = Noisy(0.7, 1e-9).distribution(mdp, pis)  # noisy falls back to random
    np.testing.assert_allclose(nu, cpi.occupancy(mdp, pis), atol=1e-12)


@pytest.mark.parametrize("make,match", [
    (lambda: Oracle(-0.1), "tau"),
    (lambda: Oracle(float("nan")), "tau"),
    (lambda: Oracle(0.1, on_empty="ignore"), "on_empty"),
    (lambda: Noisy(1.5, 0.0), "q"),
    (lambda: Noisy(-0.01, 0.0), "q"),
    (lambda: Noisy(0.5, -1.0), "tau"),
    (lambda: make_reset("uniform"), "unknown reset"),
    (lambda: RandomReset().sample(cpi.garnet(4, 2, 2), np.full((4, 2), 0.5), -1), "n must"),
])
def test_bad_inputs_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_round_off_advantages_are_not_improvable():
    """At the gated trap's root every action is the same; A = Q - V is ~1e-16 there, not > 0."""
    mdp = cpi.gated_trap(0.1)
    pi = mdp.uniform_policy()
    adv = cpi.advantages(mdp, pi)
    assert adv[0].max() > 0  # round-off ...
    assert np.flatnonzero(improvable_states(mdp, pi, 0.0)).tolist() == [mdp.info["gate"]]  # ... ignored
    nu = Oracle(0.0).distribution(mdp, pi)
    assert nu[mdp.info["gate"]] == 1.0
