"""Finite horizons as layered MDPs (``cpi.time_augment``), checked against a published
backward induction and a NumPy one."""
import time

import numpy as np
import pytest

import cpi


def inventory():
    """Puterman 2005, sections 3.2 and 4.6.1, "single-product stochastic inventory control",
    as in QuantEcon's ``TestFiniteHorizon`` (quantecon/markov/tests/test_ddp.py). State = stock
    0..3, action = units ordered; infeasible orders (stock + order > 3) get reward -100 and
    action 0's transitions, so they are never chosen."""
    s_idx = [0, 0, 0, 0, 1, 1, 1, 2, 2, 3]
    a_idx = [0, 1, 2, 3, 0, 1, 2, 0, 1, 0]
    R_sa = [0., -1., -2., -5., 5., 0., -3., 6., -1., 5.]
    Q_sa = [[1., 0., 0., 0.], [.75, .25, 0., 0.], [.25, .5, .25, 0.], [0., .25, .5, .25],
            [.75, .25, 0., 0.], [.25, .5, .25, 0.], [0., .25, .5, .25], [.25, .5, .25, 0.],
            [0., .25, .5, .25], [0., .25, .5, .25]]
    P = np.zeros((4, 4, 4))
    R = np.full((4, 4), -100.0)
    for s, a, r, q in zip(s_idx, a_idx, R_sa, Q_sa):
        P[s, a], R[s, a] = q, r
    for s in range(4):
        for a in range(4 - s, 4):
            P[s, a] = P[s, 0]
    return P, R


def test_inventory_example_matches_the_published_backward_induction():
    P, R = inventory()
    with pytest.raises(ValueError, match="cpi.time_augment"):
        cpi.TabularMDP(P, R, 1.0)  # cyclic and undiscounted: not an MDP of its own
    aug = cpi.time_augment((P, R), 3)  # raw (P, R): gamma defaults to 1
    assert aug.gamma == 1.0 and aug.horizon == 3 and aug.order is not None
    V, pi = cpi.optimal(aug)
    vs_expected = [[67 / 16, 129 / 16, 194 / 16, 227 / 16], [2, 25 / 4, 10, 21 / 2], [0, 5, 6, 5]]
    sigmas_expected = [[3, 0, 0, 0], [2, 0, 0, 0], [0, 0, 0, 0]]
    for h in range(3):
        np.testing.assert_allclose(V[4 * h:4 * (h + 1)], vs_expected[h], atol=1e-14)
        np.testing.assert_array_equal(pi[4 * h:4 * (h + 1)].argmax(1), sigmas_expected[h])
    assert V[-1] == 0.0  # the closing terminal state


@pytest.mark.parametrize("gamma", [0.0, 0.5, 0.95])
def test_discounted_layers_match_numpy_backward_induction(gamma):
    P, R = inventory()
    H = 4
    aug = cpi.time_augment((P, R), H, gamma=gamma)
    V, _ = cpi.optimal(aug)
    v = np.zeros(4)
    for h in range(H - 1, -1, -1):
        v = (R + gamma * P @ v).max(1)
        np.testing.assert_allclose(V[4 * h:4 * (h + 1)], v, atol=1e-12)
    base = cpi.TabularMDP(P, R, 0.9)
    assert cpi.time_augment(base, H).gamma == 0.9  # a TabularMDP keeps its gamma ...
    assert cpi.time_augment(base, H, gamma).gamma == gamma  # ... unless one is given


def test_raw_pair_takes_initial_and_terminal_and_checks_them():
    P, R = inventory()
    init = np.array([0.0, 0.0, 1.0, 0.0])
    aug = cpi.time_augment((P, R), 2, initial=init)
    np.testing.assert_array_equal(aug.initial[:4], init)
    with pytest.raises(ValueError, match="initial sums to 2"):
        cpi.time_augment((P, R), 2, initial=[1.0, 1.0, 0.0, 0.0])
    with pytest.raises(TypeError, match="raw \\(P, R\\) only"):
        cpi.time_augment(cpi.TabularMDP(P, R, 0.9), 2, initial=init)
    with pytest.raises(TypeError, match="TabularMDP or a pair"):
        cpi.time_augment(P, 2)
    with pytest.raises(ValueError, match="H must be a positive integer"):
        cpi.time_augment((P, R), 2.5)


def test_huge_horizon_is_refused_before_allocating():
    P, R = inventory()
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=r"H = 1000000000000 would build an MDP with "
                                         r"4,000,000,000,001 states.*GB"):
        cpi.time_augment((P, R), 10**12)
    assert time.perf_counter() - t0 < 1.0
