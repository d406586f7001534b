"""Per-iteration sample size and exact first-iteration gain: the reset theorem's quantities."""
import numpy as np
import pytest

import cpi
from cpi import run_cpi
from cpi.complexity import (one_step_trials, predicted_samples, reference_step, return_variance,
                            samples_per_iteration)
from cpi.resets import Noisy, Oracle, RandomReset, Start
from cpi.slopes import loglog_slope

PS = 0.05 * 2 ** (np.arange(9) / 2)  # 0.05 .. 0.8


@pytest.mark.parametrize("step", ["kakade_langford", "spi"])
def test_exact_first_iteration_gain_slopes_are_2_and_1(step):
    """Per-iteration improvement: ~p^2 with the random reset, ~p with the oracle (gated trap)."""
    gains = {name: [reference_step(cpi.gated_trap(p), r, step=step).gain for p in PS]
             for name, r in (("random", RandomReset()), ("oracle", Oracle(0.1)))}
    assert loglog_slope(PS, gains["random"]) == pytest.approx(2.0, abs=0.05)
    assert loglog_slope(PS, gains["oracle"]) == pytest.approx(1.0, abs=0.05)
    # the start reset never restarts at the improvable state: no gain at all
    assert reference_step(cpi.gated_trap(0.3), Start(), step=step).gain == pytest.approx(0, abs=1e-15)


@pytest.mark.parametrize("reset", ["random", "oracle", "noisy"])
def test_reference_step_is_one_iteration_of_exact_cpi(reset):
    mdp = cpi.thought_tree(3, 3, 0.3, p_success=0.9, p_recover=0.1, seed=4)
    ref = reference_step(mdp, cpi.make_reset(reset, tau=0.05, q=0.3))
    res = run_cpi(mdp, reset=reset, tau=0.05, q=0.3, step="kakade_langford", estimator="exact",
                  max_iter=1, epsilon=1e-12)
    h = res.history[0]
    assert ref.gain == pytest.approx(h.realised, abs=1e-14)
    assert ref.alpha == pytest.approx(h.alpha, abs=1e-15) and ref.adv == pytest.approx(h.adv_hat)


def test_return_variance_matches_bernoulli_and_monte_carlo():
    mdp = cpi.gated_trap(0.3)
    pi = np.random.default_rng(1).dirichlet(np.ones(3), size=mdp.S)
    Q = cpi.q_values(mdp, pi)
    np.testing.assert_allclose(return_variance(mdp, pi), Q * (1 - Q), atol=1e-12)  # 0/1 returns
    g = cpi.garnet(6, 2, 3, gamma=0.7, seed=2)  # geometric stopping, rewards in [0, 1]
    pig = g.uniform_policy()
    starts, acts = np.repeat(np.arange(6), 2 * 40000), np.tile(np.repeat([0, 1], 40000), 6)
    ro = cpi.rollout_returns(g, pig, starts, acts, seed=3)
    emp = ro.returns.reshape(6, 2, 40000).var(axis=2)
    np.testing.assert_allclose(return_variance(g, pig), emp, rtol=0.05)


def test_n_search_is_seeded_and_reproducible():
    mdp, r = cpi.gated_trap(0.4), RandomReset()
    a = samples_per_iteration(mdp, r, trials=30, seed=11)
    b = samples_per_iteration(mdp, r, trials=30, seed=11)
    c = samples_per_iteration(mdp, r, trials=30, seed=12)
    assert a.n == b.n and np.array_equal(a.success, b.success) and np.array_equal(a.ns, b.ns)
    assert not np.array_equal(a.success, c.success)
    t1 = one_step_trials(mdp, Oracle(0.1), [2, 5], 20, seed=3)
    t2 = one_step_trials(mdp, Oracle(0.1), [2, 5], 20, seed=3)
    assert np.array_equal(t1.gain, t2.gain) and np.array_equal(t1.adv_hat, t2.adv_hat)


def test_the_prediction_gives_the_success_level():
    """At the predicted n the sampled K&L step gains half the exact one with probability ~0.9."""
    mdp, r = cpi.gated_trap(0.2), RandomReset()
    n = int(round(predicted_samples(mdp, r)))
    ref = reference_step(mdp, r)
    tr = one_step_trials(mdp, r, [n], 600, seed=5)
    rate = np.mean(tr.gain[:, 0] >= 0.5 * ref.gain)
    assert abs(rate - 0.9) < 0.05  # binomial sd 0.012: 4 sd
    assert tr.rollouts_per_state == 3 and tr.reset_steps_per_state == pytest.approx(1.5, rel=0.02)


def test_one_trial_is_a_cpi_step():
    """The sampled step's gain is alpha * p * A(gate, pi2): linear in alpha, no other state matters."""
    mdp = cpi.gated_trap(0.3)
    tr = one_step_trials(mdp, Noisy(0.5, 0.1), [8, 40], 50, seed=2)
    A_good = 0.4  # (1 - 1/3) (0.8 - 0.2)
    assert np.all(tr.gain <= tr.alpha * 0.3 * A_good + 1e-12)
    assert np.all(tr.gain >= -tr.alpha * 0.3 * 0.2 - 1e-12)  # a bad pick loses at most 0.2 per unit
    assert np.all((tr.alpha > 0) == (tr.adv_hat > 0))


def test_per_iteration_samples_scale_like_the_theorem_on_a_small_design():
    ps = [0.1, 0.2, 0.4, 0.8]
    rr = [predicted_samples(cpi.gated_trap(p), RandomReset()) for p in ps]
    ca = [predicted_samples(cpi.gated_trap(p), Oracle(0.1)) for p in ps]
    assert -2.0 <= loglog_slope(ps, rr) <= -1.7  # -2 as p -> 0, the 1/nu term bends it at large p
    assert loglog_slope(ps, ca) == pytest.approx(0.0, abs=1e-12)


def test_bad_inputs_raise():
    mdp = cpi.gated_trap(0.3)
    with pytest.raises(ValueError, match="gains"):
        samples_per_iteration(mdp, Start())
    with pytest.raises(ValueError, match="step must be"):
        reference_step(mdp, RandomReset(), step="fixed")
    with pytest.raises(ValueError, match="increasing"):
        one_step_trials(mdp, RandomReset(), [5, 3], 2)
    with pytest.raises(ValueError, match="trials"):
        one_step_trials(mdp, RandomReset(), [5], 0)
    with pytest.raises(ValueError, match="level"):
        samples_per_iteration(mdp, RandomReset(), level=1.0)
