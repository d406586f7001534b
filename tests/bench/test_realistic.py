"""The realistic-shape benchmark (``experiments/bench/realistic.py``): its ``--quick`` mode runs end to end,
the scripted workload has the structure it claims, and the update variants compute the same loss."""
import json
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[2] / "experiments" / "bench"
sys.path.insert(0, str(BENCH))
import _realistic_measure as M  # noqa: E402
import _realistic_setup as W  # noqa: E402
import realistic  # noqa: E402



@pytest.fixture(scope="module")
def quick_workload(tmp_path_factory):
    return W.make_workload("quick", seed=0)


def test_quick_mode_runs(tmp_path):
    out = tmp_path / "r.json"
    res = realistic.main(["--quick", "--threads", "1", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["summary"] == pytest.approx(res["summary"])
    s = res["summary"]
    for k in ("grpo_generation_s", "srpo_localization_s", "srpo_continuations_s", "grpo_update_shared_s",
              "grpo_update_naive+ckpt_s", "srpo_reset_update_packed_s", "generate_dynamic_s",
              "fresh_update_speedup", "reset_update_speedup", "sampler_over_generate"):
        assert s[k] > 0, k
    # the update variants train on exactly the same tokens
    r = res["rounds"][-1]
    trained = {u["trained_tokens"] for u in r["grpo"]["update"].values()}
    assert trained == {res["rounds"][-1]["grpo"]["trained_tokens"]}
    size = W.SIZES["quick"]
    # forced structure: SRPO localized the last thought of every parent (no fallback)
    assert r["srpo"]["reset_steps"] == [size.thoughts] * size.prompts
    assert set(res["verdicts"]) == set(realistic.TARGETS)
    assert res["verdicts"]["ours_grpo_over_trl"]["met"] is None  # TRL skipped in --quick
    assert "decode loop" in realistic.table(res)


def test_script_forces_the_chain_structure(quick_workload):
    pol, task, size = quick_workload
    probs = task.sample(2, seed=3)
    prompts = [task.prompt(p) for p in probs]
    assert all(len(pol.encode_prompt(p)) == size.prompt_tokens for p in prompts)
    kw = dict(temperature=0.7, top_p=0.95, max_thoughts=size.thoughts + 1, max_thought_tokens=2 * size.thought_tokens)
    rows = pol.generate(prompts, n=3, generator=torch.Generator().manual_seed(0), **kw)
    for row in rows:
        for s in row:
            assert s.finish == "answer" and s.answer is not None and s.answer.isdigit()
            assert len(s.thoughts) == size.thoughts
            assert s.thought_ends == [(j + 1) * size.thought_tokens for j in range(size.thoughts)]
    # a continuation from k - 1 thoughts follows the same slots and re-writes thoughts k..n
    par = rows[0][0]
    conts = pol.continue_from(prompts[0], par.response_ids[:par.thought_ends[0]], 2, **kw)
    for c in conts:
        assert c.finish == "answer" and len(c.thoughts) == size.thoughts and c.prefix_len == size.thought_tokens
    # localization mode: a fixed reply naming the last thought
    from llm.localize import localization_prompt, parse_localization
    reply = pol.complete([localization_prompt(task, probs[0], par.thoughts)], max_new_tokens=64)[0]
    loc = parse_localization(reply, size.thoughts, pol.fmt)
    assert (loc.index, loc.source) == (size.thoughts, "boxed")
    # no bias in a training forward (gradients on)
    ids = torch.tensor([pol.encode_prompt(prompts[0])])
    with torch.no_grad():
        biased = pol.model(input_ids=ids).logits
    plain = pol.model(input_ids=ids).logits.detach()
    assert torch.equal(biased[0, :-1], plain[0, :-1])  # prompt positions are never biased
    assert not torch.equal(biased[0, -1], plain[0, -1])  # the first response slot is


def test_naive_passes_rule():
    from llm.policy import Sample

    mk = lambda n: Sample([1] * 4, [2] * n, 0, "", [], [], None, "answer")  # noqa: E731
    samples = [mk(n) for n in (4, 12, 8, 12, 2)]          # lengths 8, 16, 12, 16, 6
    assert M.naive_passes(samples, 32) == [[1, 3], [2, 0], [4]]
    assert M.naive_passes(samples, 10) == [[1], [3], [2], [0], [4]]


def test_update_modes_agree_on_the_loss(quick_workload):
    """The three forwards give the same loss for the same samples (lr 0: the weights do not move)."""
    pol, task, size = quick_workload
    from llm.rollouts import build_rollouts
    rb = build_rollouts(pol, task, task.sample(1, seed=5), realistic.rollout_cfg("srpo", size, None), seed=1)
    opt = torch.optim.SGD(pol.model.parameters(), lr=0.0)
    adv = torch.linspace(-1, 1, len(rb))
    losses = {m: M.update(pol, opt, rb.samples, adv, mode=m, max_tokens=64)["loss"] for m in ("naive", "shared",
                                                                                                "packed")}
    assert losses["shared"] == pytest.approx(losses["naive"], rel=1e-5)
    assert losses["packed"] == pytest.approx(losses["naive"], rel=1e-5)
