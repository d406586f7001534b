"""Generators: reproducible, valid, and the structure each promises."""
import numpy as np
import pytest

import cpi


def test_garnet_is_seeded_and_has_branching_distinct_successors():
    a = cpi.garnet(200, 4, 7, 0.95, seed=5)
    b = cpi.garnet(200, 4, 7, 0.95, seed=5)
    c = cpi.garnet(200, 4, 7, 0.95, seed=6)
    assert (a.P != b.P).nnz == 0 and np.array_equal(a.R, b.R)
    assert (a.P != c.P).nnz > 0
    assert np.all(np.diff(a.P.indptr) == 7)
    assert a.P.indices.dtype == np.int32
    with pytest.raises(ValueError, match="branching"):
        cpi.garnet(3, 2, 5)


def test_thought_tree_structure():
    t = cpi.thought_tree(3, 3, 0.4, p_success=0.9, p_recover=0.1, seed=1)
    info = t.info
    assert t.S == 1 + 3 + 9 + 27 and t.A == 3 and t.gamma == 1.0
    after, first = info["after_error"], info["first_error"]
    parent = (np.arange(1, t.S) - 1) // 3
    # errors propagate down the tree; first errors are exactly the transitions clean -> error
    assert np.all(after[1:] >= after[parent])
    np.testing.assert_array_equal(first[1:], after[1:] & ~after[parent])
    # every clean internal node keeps at least one clean child
    internal = np.arange(t.S - 27)
    kids = 3 * internal[:, None] + 1 + np.arange(3)
    assert np.all(~(~after[internal] & after[kids].all(1)))
    # leaf outcome: 0.9 on clean chains, 0.1 after an error
    Vs, _ = cpi.optimal(t)
    assert Vs[0] == pytest.approx(0.9)
    for s in np.flatnonzero(after & (info["depth_of"] < 3)):
        assert cpi.value(t, t.uniform_policy())[s] == pytest.approx(0.1)
    np.testing.assert_array_equal(info["error_action"][internal], first[kids])


def test_thought_tree_error_free_and_all_error_limits():
    t0 = cpi.thought_tree(3, 2, 0.0)
    assert not t0.info["after_error"].any()
    assert cpi.value(t0, t0.uniform_policy())[0] == pytest.approx(1.0)
    t1 = cpi.thought_tree(3, 2, 1.0, seed=3)
    # p_error = 1: exactly one clean child per clean node, so the uniform policy succeeds w.p. 2^-3
    assert cpi.value(t1, t1.uniform_policy())[0] == pytest.approx(0.125)


def test_combination_lock_reach_probability():
    lock = cpi.combination_lock(6, 4, seed=2)
    for q in (0.3, 0.7, 1.0):
        pi = cpi.lock_policy(lock, q)
        d_visits = cpi.evaluate(lock, pi)
        assert cpi.value(lock, pi)[0] == pytest.approx(q ** 6)
        # expected visits to state h = q^h; occupancy = visits / expected length
        visits = q ** np.arange(6)
        np.testing.assert_allclose(d_visits.d[:6], visits / visits.sum(), atol=1e-12)
    restart = cpi.combination_lock(4, 3, gamma=0.9, wrong="restart")
    assert restart.order is None
    with pytest.raises(ValueError, match="gamma == 1"):
        cpi.combination_lock(4, 3, gamma=1.0, wrong="restart")


def test_garnet_row_pointers_do_not_wrap_past_int32():
    from cpi.generators import _regular_indptr
    ptr = _regular_indptr(3, 2**30)  # 3 * 2^30 > 2^31 - 1 non-zeros
    assert ptr.dtype == np.int64
    assert ptr.tolist() == [0, 2**30, 2**31, 3 * 2**30]
