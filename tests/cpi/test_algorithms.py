"""CPI: monotone exact improvement with K&L's step, iteration bound, MC unbiasedness, errors."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import cpi
from cpi import bounds as B
from cpi.algorithms import CPIConfig, mc_advantage, run_cpi
from cpi.resets import RandomReset, Oracle

from .strategies import dense_mdps, dense_reference, policies


@settings(max_examples=15)
@given(st.data(), st.sampled_from([0.0, 0.3, 0.6]), st.sampled_from([0.15, 0.3]))
def test_exact_cpi_kl_step_is_monotone_and_stops_within_the_bound(data, gamma, eps):
    mdp0, P = data.draw(dense_mdps(max_S=4, episodic=False))
    mdp = cpi.TabularMDP(P, mdp0.R, gamma, initial=mdp0.initial)
    rmax = max(mdp.R.max(), 1e-9)
    bound = B.kl_iteration_bound(eps, gamma, rmax)
    res = run_cpi(mdp, reset="random", step="kakade_langford", epsilon=eps, max_iter=bound + 1)
    assert res.stop == "converged"
    assert len(res.history) <= bound
    t = res.table()
    tol = 1e-9 * max(1.0, np.abs(cpi.optimal(mdp)[0]).max())
    assert np.all(t["realised"] >= -tol)  # monotone
    assert np.all(t["realised"] >= t["predicted"] - tol)  # K&L Thm 4.1 along the run
    moved = t["alpha"] > 0
    gain = (1 - gamma) * t["adv"][moved] ** 2 / (8 * rmax)  # K&L Cor 4.2 (exact Adv: nu = d)
    assert np.all(t["realised"][moved] >= gain - tol)
    # values recorded are the dense reference's
    V0, *_ = dense_reference(P, mdp.R, gamma, mdp.uniform_policy(), mdp.initial)
    assert t["value"][0] == pytest.approx(mdp.initial @ V0, abs=1e-10)
    # stopped: the exact policy advantage is below 2 eps / 3 (exact estimator, nu = d)
    assert t["adv_hat"][-1] < 2 * eps / 3


@pytest.mark.parametrize("step", ["kakade_langford", "spi"])
def test_exact_cpi_on_a_thought_tree_bound_holds_and_improves(step):
    mdp = cpi.thought_tree(4, 3, 0.3, p_success=0.9, p_recover=0.1, seed=2)
    res = run_cpi(mdp, reset="random", step=step, epsilon=1e-4, max_iter=300)
    t = res.table()
    assert np.all(t["realised"] >= t["predicted"] - 1e-12)  # finite-horizon form along the run
    assert np.all(np.diff(t["value"]) >= -1e-12)
    if step == "spi":  # K&L's finite-horizon step is ~Adv/(2 H(H-1)): too slow to finish here
        assert res.stop == "converged" and res.suboptimality < 0.05


def test_spi_and_fixed_steps_reach_the_optimum():
    mdp = cpi.garnet(20, 3, 3, gamma=0.9, seed=4)
    vstar = mdp.initial @ cpi.optimal(mdp)[0]
    for kw in ({"step": "spi"}, {"step": "fixed", "alpha": 1.0}):
        res = run_cpi(mdp, epsilon=1e-8, max_iter=2000, **kw)
        assert res.value == pytest.approx(vstar, abs=1e-6), kw


def test_oracle_cpi_stops_when_nothing_is_improvable():
    mdp = cpi.combination_lock(5, 2, seed=1)
    res = run_cpi(mdp, reset="oracle", tau=0.0, step="fixed", alpha=1.0, epsilon=1e-9)
    assert res.stop == "no_improvable_state"
    assert res.suboptimality == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("reset", [RandomReset(), Oracle(0.01)])
def test_mc_advantage_is_unbiased(reset):
    mdp = cpi.thought_tree(3, 3, 0.3, p_success=0.8, p_recover=0.3, seed=1)
    rng = np.random.default_rng(0)
    pi = rng.dirichlet(np.ones(3), size=mdp.S)
    pi2 = rng.dirichlet(np.ones(3), size=mdp.S)
    nu = reset.distribution(mdp, pi)
    adv = cpi.advantages(mdp, pi)
    exact = nu @ (pi2 * adv).sum(1)
    states, _ = reset.sample(mdp, pi, 20000, seed=3)
    mean, se, per, steps = mc_advantage(mdp, pi, pi2, states, n_rollouts=1, seed=4)
    assert abs(mean - exact) < 4 * se  # 4 standard errors: fails ~1e-4 of the time if unbiased
    assert steps > 0 and per.shape == (20000,)


def test_mc_q_is_unbiased_on_discounted_garnet():
    mdp = cpi.garnet(6, 2, 2, gamma=0.8, seed=0)
    pi = mdp.uniform_policy()
    Q = cpi.q_values(mdp, pi)
    states = np.repeat(np.arange(6), 3000)
    from cpi.algorithms import mc_q_estimates
    Qh, steps = mc_q_estimates(mdp, pi, states, 1, seed=1)
    for s in range(6):
        block = Qh[states == s]
        se = block.std(0, ddof=1) / np.sqrt(block.shape[0])
        assert np.all(np.abs(block.mean(0) - Q[s]) < 4.5 * se)
    # geometric stopping: the mean rollout length is 1/(1-gamma) = 5
    assert steps / (states.size * 2) == pytest.approx(5.0, rel=0.05)


@pytest.mark.parametrize("reset", ["random", "oracle", "noisy", "start"])
def test_monte_carlo_cpi_counts_samples_and_improves(reset):
    mdp = cpi.thought_tree(3, 3, 0.3, seed=0)
    res = run_cpi(mdp, reset=reset, estimator="monte_carlo", step="spi", tau=0.01, q=0.5,
                  n_states=100, epsilon=1e-3, max_iter=60, seed=1)
    t = res.table()
    assert np.all(t["rollout_steps"] > 0)
    assert np.all(np.diff(t["samples"]) > 0)
    assert res.samples == t["samples"][-1]
    assert np.all(t["realised"] >= t["predicted"] - 1e-12)  # the bound holds for any pi2
    assert (reset == "start") == np.all(t["reset_steps"] == 0)
    if reset != "start":  # start only improves the root
        assert res.suboptimality < t["suboptimality"][0] / 2


@pytest.mark.parametrize("kw,match", [
    ({"step": "fixed"}, "needs alpha"),
    ({"step": "fixed", "alpha": 0.0}, r"alpha must lie in \(0, 1\]"),
    ({"step": "fixed", "alpha": 1.5}, r"alpha must lie in \(0, 1\]"),
    ({"alpha": 0.5}, "only used by step='fixed'"),
    ({"reset": "uniform"}, "reset must be one of"),
    ({"step": "newton"}, "step must be one of"),
    ({"estimator": "td"}, "estimator must be one of"),
    ({"reset": "oracle", "tau": -0.1}, "tau"),
    ({"reset": "noisy", "q": 1.2}, "q"),
    ({"n_states": 0}, "n_states"),
    ({"epsilon": 0.0}, "epsilon"),
])
def test_bad_config_raises(kw, match):
    with pytest.raises(ValueError, match=match):
        CPIConfig(**kw)


def test_episodic_without_length_bound_raises():
    P = np.zeros((3, 1, 3))
    P[0, 0, [0, 2]] = 0.5
    P[1, 0, 2] = 1.0
    P[2, 0, 2] = 1.0
    mdp = cpi.TabularMDP(P, np.array([[1.0], [0.0], [0.0]]), 1.0, initial=[1.0, 0, 0],
                         terminal=[2])
    with pytest.raises(ValueError, match="bound on episode length"):
        run_cpi(mdp)


def test_target_is_reached_up_to_roundoff():
    """Exact SPI with the oracle halves the gated trap's suboptimality in one step (alpha = 1/2);
    in float64 the result is 0.5000000000000104 x sub0, which must count as reaching 0.5 x sub0."""
    mdp = cpi.gated_trap(0.2)
    sub0 = float(mdp.initial @ (cpi.optimal(mdp)[0] - cpi.value(mdp, mdp.uniform_policy())))
    res = run_cpi(mdp, reset="oracle", tau=0.1, step="spi", estimator="exact", epsilon=1e-12,
                  target_suboptimality=0.5 * sub0, max_iter=5)
    assert res.history[0].alpha == pytest.approx(0.5)
    assert res.suboptimality > 0.5 * sub0  # round-off above the target ...
    assert res.stop == "target" and len(res.history) == 1  # ... and still reached


def test_monte_carlo_cpi_counts_rollout_trajectories_and_labels_why_it_stopped():
    mdp = cpi.gated_trap(0.3)
    sub0 = float(mdp.initial @ (cpi.optimal(mdp)[0] - cpi.value(mdp, mdp.uniform_policy())))
    kw = dict(estimator="monte_carlo", step="kakade_langford", tau=0.1, n_states=7, n_rollouts=2,
              epsilon=1e-12, on_small_adv="continue", max_iter=10 ** 5, seed=3)
    res = run_cpi(mdp, reset="oracle", target_suboptimality=0.5 * sub0, **kw)
    assert res.stop == "target"
    assert res.rollouts == len(res.history) * 2 * 7 * 3 * 2  # two batches x n x |A| x n_rollouts
    assert np.all(res.table()["rollouts"] == 2 * 7 * 3 * 2)
    budget = run_cpi(mdp, reset="random", target_suboptimality=0.5 * sub0, max_samples=2000, **kw)
    assert budget.stop == "max_samples" and budget.suboptimality > 0.5 * sub0
    # past ~0.83 at the gate nothing is improvable with tau = 0.1: the oracle stops by itself
    stuck = run_cpi(mdp, reset="oracle", target_suboptimality=1e-6, **kw)
    assert stuck.stop == "no_improvable_state"
    pi = stuck.pi[mdp.info["gate"], mdp.info["good_action"]]
    assert (1 - pi) * 0.6 <= 0.1 + 1e-9
