"""Rollout builders with a scripted fake policy (exact control of every sample) and, where available, the
real micro policy (masks, gradients, rank-independent sampling)."""
from __future__ import annotations

import math

import pytest
import torch

from llm.config import RolloutConfig
from llm.localize import localization_prompt
from llm.rollouts import build_rollouts, grpo, localization_kwargs, oracle, prefix_ids_for_reset, rrpo, srpo
from llm.tasks import Problem, Task
from llm.thoughts import TINY_FORMAT, ThoughtFormat

FMT = ThoughtFormat(delimiter=";", answer_open="[", answer_close="]")


class FakeSample:
    def __init__(self, prompt_ids, response_ids, prefix_len, fmt):
        self.prompt_ids, self.response_ids, self.prefix_len = prompt_ids, response_ids, prefix_len
        self.text = "".join(map(chr, response_ids))
        self.thoughts = fmt.split(self.text)
        ends, pos = [], 0
        for part in self.text.split(fmt.delimiter)[:-1]:
            pos += len(part) + len(fmt.delimiter)
            ends.append(pos)
        if fmt.extract_answer(self.text.split(fmt.delimiter)[-1]) is not None:
            ends.append(len(self.text))
        self.thought_ends = ends
        self.answer = fmt.extract_answer(self.text)
        self.finish = "answer"


class FakePolicy:
    """Character tokens; fresh responses, continuations and localization answers come from scripts."""

    def __init__(self, fresh: dict[str, list[str]], cont: dict[str, list[str]] | None = None,
                 loc: list[str] | None = None):
        self.fmt, self.device = FMT, "cpu"
        self.fresh = {k: list(v) for k, v in fresh.items()}
        self.cont = {k: list(v) for k, v in (cont or {}).items()}
        self.loc = list(loc or [])
        self.calls: list[tuple] = []

    def encode(self, text):
        return [ord(c) for c in text]

    def decode(self, ids):
        return "".join(map(chr, ids))

    def _mk(self, prompt, text, prefix_ids=()):
        return FakeSample(self.encode(prompt), list(prefix_ids) + self.encode(text), len(prefix_ids), self.fmt)

    def generate(self, prompts, *, n=1, generator=None, **kw):
        self.calls.append(("generate", tuple(prompts), n))
        return [[self._mk(p, self.fresh[p].pop(0)) for _ in range(n)] for p in prompts]

    def continue_from(self, prompt, prefix_ids, k, *, generator=None, **kw):
        self.calls.append(("continue_from", prompt, tuple(prefix_ids), k))
        # continuations come from the cont script; a prompt without one (no parent) gets fresh chains
        script = self.cont if self.cont.get(prompt) else self.fresh
        return [self._mk(prompt, script[prompt].pop(0), prefix_ids) for _ in range(k)]

    def complete(self, prompts, *, temperature=0.3, max_new_tokens=64, generator=None, greedy=False, **kw):
        self.calls.append(("complete", tuple(prompts), temperature))
        self.loc_kw = dict(max_new_tokens=max_new_tokens, **kw)
        return [self.loc.pop(0) for _ in prompts]


class FakeTask(Task):
    name, has_step_checker = "fake", True

    def __init__(self, errors=None):
        super().__init__(FMT)
        self.errors = errors or {}

    def prompt(self, problem):
        return f"Q{problem.id}:"

    def first_error(self, problem, thoughts):
        return self.errors.get(problem.id)


def probs(*ids):
    return [Problem(id=str(i), question=str(i), answer="7", meta={}) for i in ids]


OK = "a;b;[7]"        # correct: 3 thoughts
BAD = "x;y;z;[5]"     # wrong: 4 thoughts
CFG = dict(rollouts_per_prompt=8, n_fresh=4, n_resets=1, max_tries=12)


def test_grpo_one_group_per_prompt():
    pol = FakePolicy({"Q0:": [OK, BAD, OK, OK, BAD, BAD, OK, BAD], "Q1:": [OK] * 8})
    b = grpo(pol, FakeTask(), probs(0, 1), RolloutConfig(method="grpo"), seed=0, prompt_ids=[10, 11])
    assert len(b) == 16 and pol.calls == [("generate", ("Q0:", "Q1:"), 8)]
    assert b.rewards.tolist() == [1, 0, 1, 1, 0, 0, 1, 0] + [1] * 8
    assert len(set(b.group_ids[:8].tolist())) == 1 and b.group_ids[0] != b.group_ids[8]
    torch.testing.assert_close(b.advantages[:8], torch.tensor([1., -1, 1, 1, -1, -1, 1, -1]), atol=1e-5, rtol=0)
    assert torch.all(b.advantages[8:] == 0)  # zero-variance group
    assert all(m["kind"] == "fresh" and m["reset_step"] is None for m in b.meta)


def test_srpo_first_failed_parent_prefix_and_groups():
    # tries: OK, BAD (parent), OK, BAD, OK -> kept fresh = tries 0, 2, 3, 4 -> rewards 1, 1, 0, 1
    pol = FakePolicy({"Q0:": [OK, BAD, OK, BAD, OK]},
                     cont={"Q0:": ["q;[7]", "r;[5]", "s;[7]", "t;[7]"]},
                     loc=["Step 1 is fine but [2]"])
    task = FakeTask()
    b = srpo(pol, task, probs(0), RolloutConfig(method="srpo", **CFG), seed=0)
    # one batched fresh round of n_fresh + n_resets, no second round (a failure was found)
    assert pol.calls[0] == ("generate", ("Q0:",), 5)
    # localization: the model's own prompt, at temperature 0.3, on the parent's thoughts
    kind, texts, temp = pol.calls[1]
    assert kind == "complete" and temp == 0.3
    assert texts == (localization_prompt(task, probs(0)[0], ["x", "y", "z", "[5]"]),)
    # reset at k = 2: prefix = thought 1 = "x;" as token ids
    assert pol.calls[2] == ("continue_from", "Q0:", tuple(map(ord, "x;")), 4)
    assert b.rewards.tolist() == [1, 1, 0, 1, 1, 0, 1, 1]
    assert [m["kind"] for m in b.meta] == ["fresh"] * 4 + ["reset"] * 4
    g = b.group_ids.tolist()
    assert len(set(g[:4])) == 1 and len(set(g[4:])) == 1 and g[0] != g[4]
    # separate normalisation: each group 3 ones 1 zero -> mean .75, std sqrt(3)/4
    s = math.sqrt(3) / 4
    exp = torch.tensor([.25 / s, .25 / s, -.75 / s, .25 / s, .25 / s, -.75 / s, .25 / s, .25 / s])
    torch.testing.assert_close(b.advantages, exp, atol=1e-5, rtol=1e-5)
    m = b.meta[4]
    assert m["reset_step"] == 2 and m["loc_index"] == 2 and m["loc_source"] == "boxed" and m["fallback"] is None
    assert m["loc_text"].endswith("[2]") and m["parent_thoughts"] == 4
    assert b.samples[4].prefix_len == 2 and b.samples[4].text == "x;q;[7]"
    assert b.stats["reset_steps"] == [2] and b.stats["loc_fallbacks"] == 0 and b.stats["parents"] == 1
    assert b.stats["fresh_tries"] == 5


def test_no_failure_in_max_tries_group_is_first_fresh_plus_new_chains():
    """Row 5 of issue 16 (the paper): no failure in 12 tries -> the group is the first 4 tries plus 4 newly
    sampled chains (which can fail), not the first 8 successes (whose advantages would all be 0)."""
    new = [BAD, OK, OK, BAD]
    pol = FakePolicy({"Q0:": [OK] * 12 + new, "Q1:": [BAD] + [OK] * 11}, cont={"Q1:": [OK] * 4}, loc=["[1]"])
    b = srpo(pol, FakeTask(), probs(0, 1), RolloutConfig(method="srpo", **CFG), seed=0)
    # second round only for the prompt without a failure (the rest of the 12 tries); the 4 new chains come
    # from the continuation loop, as continuations of an empty prefix, after the other prompt's resets
    assert pol.calls[1] == ("generate", ("Q0:",), 7)
    assert pol.calls[2][0] == "complete"
    assert pol.calls[3:] == [("continue_from", "Q1:", (), 4), ("continue_from", "Q0:", (), 4)]
    first = [i for i, p in enumerate(b.prompt_index) if p == 0]
    assert len(first) == 8 and len({b.group_ids[i].item() for i in first}) == 1
    assert [b.samples[i].text for i in first] == [OK] * 4 + new
    assert b.rewards[first].tolist() == [1, 1, 1, 1, 0, 1, 1, 0]
    assert torch.all(b.advantages[first] != 0)
    assert all(b.meta[i]["fallback"] == "no_failure" and b.meta[i]["kind"] == "fresh" for i in first)
    assert b.stats["no_failure_prompts"] == 1 and b.stats["parents"] == 1 and b.stats["fresh_tries"] == 5 + 7 + 4 + 5
    assert b.stats["first_round_rewards"] == [1.0] * 5 + [0.0] + [1.0] * 4  # first n_fresh + n_resets tries
    second = [i for i, p in enumerate(b.prompt_index) if p == 1]
    assert [b.meta[i]["kind"] for i in second] == ["fresh"] * 4 + ["reset"] * 4


def test_a_chain_without_thoughts_is_never_a_parent():
    """Row 6 of issue 16: a failed chain with 0 thoughts is not reset; it stays in the fresh group
    (reward 0), and the first failed chain WITH a thought is the parent."""
    pol = FakePolicy({"Q0:": ["", BAD, OK, OK, OK]}, cont={"Q0:": [OK] * 4}, loc=["[2]"])
    b = srpo(pol, FakeTask(), probs(0), RolloutConfig(method="srpo", **CFG), seed=0)
    assert [s.text for s in b.samples[:4]] == ["", OK, OK, OK] and b.rewards[:4].tolist() == [0, 1, 1, 1]
    assert b.meta[-1]["parent_thoughts"] == 4 and b.meta[-1]["reset_step"] == 2  # the parent is BAD
    assert pol.calls[-1] == ("continue_from", "Q0:", tuple(map(ord, "x;")), 4)
    # only chains without thoughts fail: no parent at all -> the no-failure group
    pol = FakePolicy({"Q0:": [""] * 12 + [OK] * 4})
    b = srpo(pol, FakeTask(), probs(0), RolloutConfig(method="srpo", **CFG), seed=0)
    assert b.stats["parents"] == 0 and b.stats["no_failure_prompts"] == 1
    assert [s.text for s in b.samples] == [""] * 4 + [OK] * 4 and not any(c[0] == "complete" for c in pol.calls)


@pytest.mark.parametrize("text, k, source", [
    ("no idea", 1, "fallback"),
    ("the error is in Step 3 I think", 3, "step"),
    ("[0]", 1, "zero"),
    ("[99]", 1, "fallback"),           # out of range: never clipped to the last step
    ("Step 2 went wrong, so [99]", 2, "step"),
    ("Step 2 ... [3]", 3, "boxed"),
])
def test_srpo_localization_fallbacks(text, k, source):
    pol = FakePolicy({"Q0:": [BAD, OK, OK, OK, OK]}, cont={"Q0:": [OK] * 4}, loc=[text])
    b = srpo(pol, FakeTask(), probs(0), RolloutConfig(method="srpo", **CFG), seed=0)
    m = b.meta[-1]
    assert m["reset_step"] == k and m["loc_source"] == source
    assert (m["fallback"] is None) == (source == "boxed")
    st = b.stats
    assert st["loc_calls"] == 1 and st["loc_fallbacks"] == int(source != "boxed")
    assert (st["loc_zero"], st["loc_step"], st["loc_default"]) == (
        int(source == "zero"), int(source == "step"), int(source == "fallback"))
    assert st["loc_box_out_of_range"] == int("[99]" in text)
    assert pol.calls[-1][2] == tuple(map(ord, "x;y;z;"[:2 * (k - 1)]))


def test_srpo_localization_call_settings():
    """The localization call: verbose prompt -> 4096 tokens, top_p of the rollouts, runs to EOS (the
    paper); each setting can be given."""
    pol = FakePolicy({"Q0:": [BAD, OK, OK, OK, OK]}, cont={"Q0:": [OK] * 4}, loc=["[1]"])
    srpo(pol, FakeTask(), probs(0), RolloutConfig(method="srpo", **CFG), seed=0)
    assert pol.loc_kw == dict(max_new_tokens=4096, top_p=0.95, stop_at_answer=False)
    pol = FakePolicy({"Q0:": [BAD, OK, OK, OK, OK]}, cont={"Q0:": [OK] * 4}, loc=["[1]"])
    srpo(pol, FakeTask(), probs(0), RolloutConfig(method="srpo", loc_max_new_tokens=50, loc_top_p=0.5,
                                                  loc_stop_at_answer=True, top_p=0.9, **CFG), seed=0)
    assert pol.loc_kw == dict(max_new_tokens=50, top_p=0.5, stop_at_answer=True)
    compact = localization_kwargs(RolloutConfig(method="srpo"), TINY_FORMAT)
    assert compact == dict(temperature=0.3, max_new_tokens=96, top_p=0.95, stop_at_answer=True)


def test_rrpo_uniform_reset_step_is_seeded_and_covers_all_thoughts():
    seen = []
    for seed in range(60):
        pol = FakePolicy({"Q0:": [BAD, OK, OK, OK, OK]}, cont={"Q0:": [OK] * 4})
        b = rrpo(pol, FakeTask(), probs(0), RolloutConfig(method="rrpo", **CFG), seed=seed)
        assert not any(c[0] == "complete" for c in pol.calls)  # no localization call
        seen.append(b.meta[-1]["reset_step"])
        pol2 = FakePolicy({"Q0:": [BAD, OK, OK, OK, OK]}, cont={"Q0:": [OK] * 4})
        assert rrpo(pol2, FakeTask(), probs(0), RolloutConfig(method="rrpo", **CFG), seed=seed
                    ).meta[-1]["reset_step"] == seen[-1]
    assert set(seen) == {1, 2, 3, 4}


def test_oracle_uses_first_error_and_falls_back_to_last_thought():
    pol = FakePolicy({"Q0:": [BAD, OK, OK, OK, OK], "Q1:": [BAD, OK, OK, OK, OK]},
                     cont={"Q0:": [OK] * 4, "Q1:": [OK] * 4})
    b = oracle(pol, FakeTask(errors={"0": 3}), probs(0, 1), RolloutConfig(method="oracle", **CFG), seed=0)
    r0 = [m for m, p in zip(b.meta, b.prompt_index) if p == 0 and m["kind"] == "reset"]
    r1 = [m for m, p in zip(b.meta, b.prompt_index) if p == 1 and m["kind"] == "reset"]
    assert r0[0]["reset_step"] == 3 and r0[0]["fallback"] is None
    assert r1[0]["reset_step"] == 4 and r1[0]["fallback"] == "oracle_no_error_found"


def test_two_resets_of_two_and_budget_top_up():
    cfg = RolloutConfig(method="rrpo", rollouts_per_prompt=6, n_fresh=2, n_resets=2, max_tries=4)
    # tries: BAD, OK, BAD, OK -> parents tries 0 and 2, kept OK, OK
    pol = FakePolicy({"Q0:": [BAD, OK, BAD, OK]}, cont={"Q0:": [OK, BAD, BAD, OK]})
    b = rrpo(pol, FakeTask(), probs(0), cfg, seed=1)
    assert [m["group"] for m in b.meta] == [0, 0, 1, 1, 2, 2] and len(b) == 6
    assert len(set(b.group_ids.tolist())) == 3
    # no failure in max_tries 4: the first n_fresh = 2 tries + 4 new chains
    pol = FakePolicy({"Q0:": [OK] * 4 + [BAD, OK, OK, OK]})
    b = rrpo(pol, FakeTask(), probs(0), cfg, seed=1)
    assert len(b) == 6 and all(m["fallback"] == "no_failure" for m in b.meta)
    assert [s.text for s in b.samples] == [OK, OK, BAD, OK, OK, OK]
    assert pol.calls[-2:] == [("continue_from", "Q0:", (), 2)] * 2  # two missing parents' worth, in the cont loop
    # one parent of the two: n_fresh kept + one reset group's worth of new fresh chains
    pol = FakePolicy({"Q0:": [BAD, OK, OK, OK] + [OK, BAD]}, cont={"Q0:": [OK, BAD]})
    b = rrpo(pol, FakeTask(), probs(0), cfg, seed=1)
    assert [m["kind"] for m in b.meta] == ["fresh"] * 4 + ["reset"] * 2
    assert [s.text for s in b.samples[:4]] == [OK, OK, OK, BAD] and b.stats["parents"] == 1


def test_prefix_ids_for_reset():
    s = FakeSample([1], list(map(ord, "ab;cd;[7]")), 0, FMT)
    assert prefix_ids_for_reset(s, 1) == []
    assert prefix_ids_for_reset(s, 2) == list(map(ord, "ab;"))
    assert prefix_ids_for_reset(s, 3) == list(map(ord, "ab;cd;"))
    with pytest.raises(ValueError, match="k must be >= 1"):
        prefix_ids_for_reset(s, 0)
    with pytest.raises(ValueError, match="only 3 thoughts"):
        prefix_ids_for_reset(s, 5)


def test_unknown_method():
    cfg = RolloutConfig(method="grpo")
    object.__setattr__(cfg, "method", "ppo")
    with pytest.raises(ValueError, match="unknown method"):
        build_rollouts(FakePolicy({}), FakeTask(), probs(0), cfg, seed=0)


# ------------------------------------------------------------------ real micro policy (when available)

def _micro():
    tiny = pytest.importorskip("llm.tiny")
    pytest.importorskip("llm.policy")
    return tiny.micro_policy(0)


MICRO_CFG = dict(max_thoughts=3, max_thought_tokens=6, max_new_tokens=18, temperature=1.0, top_p=1.0)


@pytest.mark.parametrize("method", ["grpo", "rrpo", "srpo", "oracle"])
def test_micro_policy_rollouts_masks_and_prefix_gradient(method):
    from llm.tasks import get_task
    torch.manual_seed(0)
    pol = _micro()
    task = get_task("arith", fmt=pol.fmt)
    cfg = RolloutConfig(method=method, rollouts_per_prompt=4, n_fresh=2, max_tries=4, loc_max_new_tokens=8,
                        **MICRO_CFG)
    b = build_rollouts(pol, task, task.sample(2, seed=0), cfg, seed=3)
    assert len(b) == 8 and b.rewards.shape == b.advantages.shape == (8,)
    batch = b.collate(pol)
    rm = batch["response_mask"]
    for j, s in enumerate(b.samples):
        start = len(s.prompt_ids) + s.prefix_len
        assert torch.all(rm[j, :start] == 0) and torch.all(rm[j, start:len(s.prompt_ids) + len(s.response_ids)] == 1)
        if b.meta[j]["kind"] == "reset":
            assert s.prefix_len == len(prefix_ids_for_reset(s, b.meta[j]["reset_step"]))
    # gradient flows only through trainable tokens: d loss / d logits is zero at prefix/prompt positions
    from llm.losses import policy_loss, token_logprobs
    emb = pol.model.get_input_embeddings()
    logits = pol.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logits.retain_grad()
    logp, _ = token_logprobs(logits, batch["input_ids"])
    adv = torch.ones(len(b))  # non-zero everywhere so every trainable token gets gradient
    policy_loss(logp, adv, rm[:, 1:]).loss.backward()
    g = logits.grad[:, :-1].abs().sum(-1)     # (B, T-1): position t predicts token t+1
    assert torch.all(g[rm[:, 1:] == 0] == 0) and torch.all(g[rm[:, 1:] == 1] > 0)
    assert emb.weight.grad is not None


def test_micro_policy_per_prompt_sampling_is_split_independent():
    from llm.tasks import get_task
    pol = _micro()
    task = get_task("arith", fmt=pol.fmt)
    probs_ = task.sample(4, seed=1)
    cfg = RolloutConfig(method="srpo", rollouts_per_prompt=4, n_fresh=2, max_tries=4, sampling_rng="per_prompt",
                        loc_max_new_tokens=8, **MICRO_CFG)
    whole = build_rollouts(pol, task, probs_, cfg, seed=5, prompt_ids=[0, 1, 2, 3])
    a = build_rollouts(pol, task, probs_[0::2], cfg, seed=5, prompt_ids=[0, 2])
    c = build_rollouts(pol, task, probs_[1::2], cfg, seed=5, prompt_ids=[1, 3])
    for part, ids in ((a, [0, 2]), (c, [1, 3])):
        for j, s in enumerate(part.samples):
            src = [k for k, p in enumerate(whole.prompt_index) if p == ids[part.prompt_index[j]]]
            assert s.response_ids in [whole.samples[k].response_ids for k in src]
        assert sorted(part.group_ids.tolist()) == sorted(
            g for g, p in zip(whole.group_ids.tolist(), whole.prompt_index) if p in ids)


def test_a_localization_prompt_longer_than_the_context_falls_back_and_is_counted():
    """A parent chain so long that its localization prompt does not fit the model's context is not
    sent to the model (that would stop the run with the context-length error): the reply is empty,
    the parse falls back, and the step counts it as ``loc_overflow``."""

    class ShortContext(FakePolicy):
        max_len = 20  # the localization prompt quoting BAD is longer

        def encode_prompt(self, p):
            return self.encode(p) if isinstance(p, str) else list(p)

    pol = ShortContext({"Q0:": [BAD, OK, OK, OK, OK]}, cont={"Q0:": [OK] * 4}, loc=["[3]"])
    b = srpo(pol, FakeTask(), probs(0), RolloutConfig(method="srpo", **CFG), seed=0)
    assert not any(c[0] == "complete" for c in pol.calls) and pol.loc == ["[3]"]  # never asked
    m = b.meta[-1]
    assert m["reset_step"] == 1 and m["loc_source"] == "fallback" and m["loc_text"] == ""
    assert b.stats["loc_overflow"] == 1 and b.stats["loc_fallbacks"] == 1 and len(b) == 8
    pol = FakePolicy({"Q0:": [BAD, OK, OK, OK, OK]}, cont={"Q0:": [OK] * 4}, loc=["[3]"])  # no max_len
    assert srpo(pol, FakeTask(), probs(0), RolloutConfig(method="srpo", **CFG), seed=0).stats["loc_overflow"] == 0
