"""Reset distributions (llm.resets): exact laws, the noisy(q) end points, seeding, the parents each reset
accepts, one training step with every reset, and the held-out set shared by seeds."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import stats

from llm import resets as R
from llm.config import METHODS, RolloutConfig, parse_args
from llm.rollouts import build_rollouts

from ._trainkit import micro_cfg, save_micro
from .test_rollouts import BAD, CFG, OK, FakePolicy, FakeTask, probs


class _Chain:
    def __init__(self, n):
        self.thoughts = [f"t{i}" for i in range(n)]


class _Checker:
    """first_error -> a fixed e (None: no wrong thought found)."""
    has_step_checker = True

    def __init__(self, e):
        self.e = e

    def first_error(self, problem, thoughts):
        return self.e


def ctx(e, seed=0, pids=(7,)):
    return R.ResetContext(task=_Checker(e), problems=[None] * len(pids), seed=seed, prompt_ids=list(pids))


def draws(reset, n, e, seeds):
    par = R.Parent(prompt=0, slot=0, sample=_Chain(n))
    return np.array([reset.choose([par], ctx(e, seed=s))[0]["k"] for s in seeds])


@pytest.mark.parametrize("n,e", [(1, 1), (4, 2), (6, None), (5, 9), (3, 0)])
def test_exact_laws_and_noisy_end_points(n, e):
    uni = R.make_reset("rrpo").law(n, e)
    assert np.allclose(uni, 1.0 / n) and np.allclose(R.make_reset("random").law(n, e), uni)
    orc = R.make_reset("oracle").law(n, e)
    k = n if e is None else min(max(e, 1), n)  # no error found: the last thought; out of range: clipped
    assert orc.sum() == 1.0 and orc[k - 1] == 1.0
    np.testing.assert_array_equal(R.Noisy(q=0.0).law(n, e), uni)
    np.testing.assert_array_equal(R.Noisy(q=1.0).law(n, e), orc)
    for q in (0.25, 0.7):
        np.testing.assert_allclose(R.Noisy(q=q).law(n, e), q * orc + (1 - q) * uni, rtol=0, atol=1e-15)
    with pytest.raises(NotImplementedError):
        R.make_reset("srpo").law(n, e)


def test_noisy_end_points_draw_for_draw():
    """Common random numbers: noisy(0) picks random_failed's thought and noisy(1) the checker's, seed by seed."""
    seeds = range(300)
    np.testing.assert_array_equal(draws(R.Noisy(q=0.0), 6, 3, seeds), draws(R.RandomFailed(), 6, 3, seeds))
    assert set(draws(R.Noisy(q=1.0), 6, 3, seeds)) == {3}
    assert set(draws(R.Noisy(q=1.0), 6, None, seeds)) == {6}


def test_noisy_samples_follow_its_law():
    """Chi-square goodness of fit of 4,000 seeded draws to the exact law (fixed seeds; the test fails at
    p < 1e-3, which a correct sampler does with probability 1e-3 for a random seed set, never for this one)."""
    for q in (0.0, 0.3, 1.0):
        k = draws(R.Noisy(q=q), 5, 2, range(4000))
        law = R.Noisy(q=q).law(5, 2)
        counts = np.bincount(k, minlength=6)[1:]
        support = law > 0
        assert counts[~support].sum() == 0
        if support.sum() > 1:
            assert stats.chisquare(counts[support], 4000 * law[support]).pvalue > 1e-3, (q, counts)
    # and the coin's rate: the checker's step is chosen in q of the draws (binomial 99.9% band)
    par = R.Parent(prompt=0, slot=0, sample=_Chain(5))
    picks = [R.Noisy(q=0.3).choose([par], ctx(2, seed=s))[0]["oracle_pick"] for s in range(4000)]
    lo, hi = stats.binom.ppf([0.0005, 0.9995], 4000, 0.3)
    assert lo <= sum(picks) <= hi


def test_resets_are_seeded_reproducible_and_per_prompt():
    for name in ("random", "rrpo", "noisy"):
        r = R.make_reset(name, q=0.5)
        a, b = draws(r, 8, 4, range(50)), draws(r, 8, 4, range(50))
        np.testing.assert_array_equal(a, b)
        assert len(set(a)) > 3
    # a prompt's draw depends on its own id and slot, not on the other parents of the step
    pars = [R.Parent(prompt=i, slot=0, sample=_Chain(8)) for i in range(3)]
    c = R.ResetContext(task=_Checker(2), problems=[None] * 3, seed=5, prompt_ids=[10, 11, 12])
    whole = [d["k"] for d in R.make_reset("rrpo").choose(pars, c)]
    alone = R.make_reset("rrpo").choose([pars[2]], c)[0]["k"]
    assert whole[2] == alone


def test_make_reset_names_and_errors():
    assert [str(R.make_reset(m)) for m in METHODS] == ["start", "random_failed", "self", "oracle",
                                                       "noisy(q=0.5)", "random"]
    assert R.make_reset("random_failed").name == "random_failed" and not R.make_reset("grpo").resets
    with pytest.raises(ValueError, match="q must be"):
        R.Noisy(q=1.5)
    with pytest.raises(ValueError, match="expected one of"):
        R.make_reset("uniform")
    with pytest.raises(ValueError, match="rollout.q must be in"):
        RolloutConfig(method="noisy", q=-0.1)
    cfg = parse_args(["--method", "noisy", "--rollout.q", "0.25"])
    assert R.reset_for(cfg.rollout) == R.Noisy(q=0.25)


def test_random_accepts_a_successful_parent_and_the_failed_resets_do_not():
    # tries: OK, BAD, OK, OK, OK -> random: parent = try 0 (right); rrpo: parent = try 1 (wrong)
    fresh = [OK, BAD, OK, OK, OK]
    pol = FakePolicy({"Q0:": list(fresh)}, cont={"Q0:": [OK] * 4})
    b = build_rollouts(pol, FakeTask(), probs(0), RolloutConfig(method="random", **CFG), seed=0)
    assert [s.text for s in b.samples[:4]] == [BAD, OK, OK, OK] and b.stats["parents"] == 1
    assert b.meta[-1]["reset"] == "random" and 1 <= b.meta[-1]["reset_step"] <= 3  # OK has 3 thoughts
    pol = FakePolicy({"Q0:": list(fresh)}, cont={"Q0:": [OK] * 4})
    b = build_rollouts(pol, FakeTask(), probs(0), RolloutConfig(method="rrpo", **CFG), seed=0)
    assert [s.text for s in b.samples[:4]] == [OK, OK, OK, OK] and b.meta[-1]["parent_thoughts"] == 4
    # a passed-in reset wins over the method's default; the informative-group counters are kept
    pol = FakePolicy({"Q0:": list(fresh)}, cont={"Q0:": [OK, BAD, OK, OK]})
    b = build_rollouts(pol, FakeTask(errors={"0": 2}), probs(0), RolloutConfig(method="rrpo", **CFG), seed=0,
                       reset=R.Noisy(q=1.0))
    assert b.meta[-1]["reset_step"] == 2 and b.stats["reset_groups"] == 1 and b.stats["reset_informative"] == 1
    assert b.stats["loc_checked"] == 1 and b.stats["loc_hits"] == 1


def test_checker_resets_need_a_step_checker():
    task = FakeTask()
    task.has_step_checker = False
    with pytest.raises(ValueError, match="needs a task with a step checker"):
        build_rollouts(FakePolicy({}), task, probs(0), RolloutConfig(method="noisy", **CFG), seed=0)


# ------------------------------------------------------------------ one training step with every reset

@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    pytest.importorskip("llm.tiny")
    return save_micro(tmp_path_factory.mktemp("micro"))


@pytest.mark.parametrize("method", METHODS)
def test_every_reset_runs_one_training_step(model_dir, tmp_path, method):
    from llm import train as T
    torch.set_num_threads(1)
    out = tmp_path / method
    cfg = micro_cfg(model_dir, str(out), method, "--steps", "1", "--eval_every", "1", "--eval_size", "4",
                    "--eval_sampled", "2", "--task", "arith:terms=3", "--prompts_per_step", "2")
    recs = T.train(cfg)
    train = [r for r in recs if r["kind"] == "train"]
    ev = [r for r in recs if r["kind"] == "eval"]
    assert len(train) == 1 and train[0]["samples"] == 2 * 8 and train[0]["method"] == method
    assert [r["step"] for r in ev] == [0, 1] and ev[-1]["eval_sampled_n"] == 4 * 2
    if method != "grpo":
        assert train[0]["resets"] + round(train[0]["no_failure_rate"] * 2) >= 1
    saved = (out / "config.yaml").read_text()
    assert "arith:terms=3" in saved and f"method: {method}" in saved


def test_the_held_out_set_is_shared_by_seeds_and_methods(model_dir, tmp_path):
    from llm import train as T
    sets = []
    for seed, method in ((0, "grpo"), (1, "grpo"), (2, "oracle")):
        cfg = micro_cfg(model_dir, str(tmp_path / f"s{seed}"), method, "--seed", str(seed), "--eval_size", "50",
                        "--task", "arith:terms=3")
        tr = T.Trainer(cfg)
        sets.append([p.question for p in tr.eval_set])
        tr.close()
    assert sets[0] == sets[1] == sets[2] and len(set(sets[0])) == 50
    assert json.dumps(sets[0]) != json.dumps(sorted(sets[0]))  # a seeded shuffle, not an ordering artefact
