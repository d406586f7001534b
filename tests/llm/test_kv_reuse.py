"""KV reuse (``llm.decode``: ``keep_kv`` / ``kv_from``): the saved keys/values are the ones a fresh
prefill of the same tokens computes, a prefill that reuses them gives the same next-token logits, and
decoding from them gives the same tokens as recomputing (greedy; sampled rollouts with the same seed)."""
from __future__ import annotations

import pytest
import torch

from llm.config_sections import RolloutConfig
from llm.decode import KVRows, common_prefix, prefill
from llm.rollouts import build_rollouts
from llm.tasks import get_task
from llm.thoughts import TINY_FORMAT


@pytest.mark.parametrize("a,b,n", [([], [], 0), ([1, 2, 3], [1, 2, 3], 3), ([1, 2, 3], [1, 2], 2),
                                   ([1, 2, 3], [1, 5, 3], 1), ([4], [1], 0), (list(range(50)), list(range(37)) + [0], 37)])
def test_common_prefix(a, b, n):
    assert common_prefix(a, b) == n == common_prefix(b, a)


def _chains(micro, n=3, seed=0):
    task = get_task("arith", fmt=TINY_FORMAT)
    probs = task.sample(4, seed=seed, split="train")
    prompts = [task.prompt(p) for p in probs]
    out = micro.generate(prompts, n=n, temperature=1.0, max_thoughts=6, max_thought_tokens=12, max_new_tokens=60,
                         generator=torch.Generator().manual_seed(seed), keep_kv=True)
    return task, probs, prompts, out


def _quoting(pol, prompt: str, parent) -> str:
    """A localization-style prompt that starts with the parent's own text (as the compact one does)."""
    return prompt + pol.decode(parent.response_ids) + "\nWrong. First wrong step?\n"


def test_kept_keys_values_are_a_fresh_prefill_of_their_tokens(micro):
    _, _, _, out = _chains(micro)
    assert all(s.kv is None for s in micro.generate(["Q:1+2\n"], n=2, max_new_tokens=8)[0])  # off by default
    for row in out:
        for s in row:
            kv = s.kv
            assert isinstance(kv, KVRows)
            full = s.prompt_ids + s.response_ids
            # all fed tokens: the response up to its last sampled token (whose keys were never computed)
            assert kv.ids == full[:len(kv.ids)] and len(kv.ids) >= len(full) - 1
            ref = micro.model(input_ids=torch.tensor([kv.ids]), use_cache=True).past_key_values
            for layer, (k, v) in enumerate(kv.layers):
                assert k.shape[1] == len(kv.ids)
                torch.testing.assert_close(k, ref.layers[layer].keys[0], atol=1e-5, rtol=1e-4)
                torch.testing.assert_close(v, ref.layers[layer].values[0], atol=1e-5, rtol=1e-4)


def test_prefill_reusing_gives_the_logits_of_a_full_prefill(micro):
    task, probs, prompts, out = _chains(micro)
    parents = [row[0] for row in out]
    # continuations (prompt + part of the parent), a localization prompt (the parent + a question), a row
    # that shares only its prompt (another try), and a row without saved keys/values, in one call
    seqs = [micro.encode_prompt(prompts[0]) + parents[0].response_ids[:3],
            micro.encode_prompt(_quoting(micro, prompts[1], parents[1])),
            micro.encode_prompt(prompts[2]) + [5, 6, 7],
            micro.encode_prompt(prompts[3])]
    kv_from = [parents[0].kv, parents[1].kv, out[2][1].kv, None]
    with torch.inference_mode():
        ref, _, _, pos_ref = prefill(micro, seqs)
        got, cache, mask, pos = prefill(micro, seqs, kv_from)
        got2, _, mask2, _ = prefill(micro, seqs[:3], kv_from[:3])
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(got2, ref[:3], atol=1e-5, rtol=1e-4)
    assert pos.tolist() == pos_ref.tolist() == [len(q) for q in seqs]
    assert mask.sum(1).tolist() == [len(q) for q in seqs]
    assert mask2.shape[1] < max(len(q) for q in seqs[:3]) + 8  # only the new tokens were fed


def test_greedy_decoding_from_reused_keys_values_is_unchanged(micro):
    task, probs, prompts, out = _chains(micro, seed=1)
    parents = [row[1] for row in out]
    prefixes = [s.response_ids[:s.thought_ends[0]] if len(s.thought_ends) > 1 else [] for s in parents]
    kw = dict(greedy=True, max_thoughts=6, max_thought_tokens=12, max_new_tokens=60)
    a = micro.continue_many(prompts, prefixes, 2, **kw)
    b = micro.continue_many(prompts, prefixes, 2, kv_from=[s.kv for s in parents[:3]] + [None], **kw)
    assert [[s.response_ids for s in r] for r in a] == [[s.response_ids for s in r] for r in b]
    loc = [_quoting(micro, q, s) for q, s in zip(prompts, parents)]
    assert micro.complete(loc, greedy=True, max_new_tokens=10) == micro.complete(
        loc, greedy=True, max_new_tokens=10, kv_from=[s.kv for s in parents])
    with pytest.raises(ValueError, match="kv_from: expected one entry per prompt"):
        micro.complete(loc, greedy=True, max_new_tokens=4, kv_from=[parents[0].kv])


@pytest.mark.parametrize("rng", ["batched", "per_prompt"])
def test_srpo_rollouts_with_and_without_reuse(micro, rng, monkeypatch):
    """Same seed, same samples (the reused keys/values differ from recomputed ones by float rounding
    only, far below what moves an inverse-CDF draw here); no keys/values are left on the samples."""
    import llm.decode as dec
    calls = []
    real = dec.prefill_reusing
    monkeypatch.setattr(dec, "prefill_reusing", lambda *a: calls.append(len(a[1])) or real(*a))
    task = get_task("arith", fmt=TINY_FORMAT)
    probs = task.sample(3, seed=2, split="train")
    base = dict(method="srpo", rollouts_per_prompt=4, n_fresh=2, n_resets=1,
                max_tries=4, max_thoughts=6, max_thought_tokens=12, max_new_tokens=60, temperature=1.0,
                loc_max_new_tokens=8, sampling_rng=rng)
    runs = [build_rollouts(micro, task, probs, RolloutConfig(**base, kv_reuse=r), seed=3) for r in (True, False)]
    assert [s.response_ids for s in runs[0].samples] == [s.response_ids for s in runs[1].samples]
    assert [m["loc_text"] for m in runs[0].meta] == [m["loc_text"] for m in runs[1].meta]
    assert runs[0].stats["loc_calls"] > 0
    assert len(calls) >= 2  # the localization call and the continuations reused the tries' keys/values
    assert all(s.kv is None for r in runs for s in r.samples)
