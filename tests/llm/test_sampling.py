"""The decode loop's sampler (``llm.sampling``) and KV cache (``llm.kv_cache``).

* The nucleus: ``in_nucleus`` keeps exactly the tokens the sorted rule keeps (stable sort, cumulative sums),
  for every token of flat and peaked rows, with ties, and at a 32k vocabulary around the boundary.
* The draws: frequencies over 40,000 rows match ``p`` restricted to the nucleus and renormalised (and
  ``p`` itself at top_p 1), through the rejection path and through the sorted fallback; nothing outside the
  nucleus is ever drawn; the same generator seed gives the same tokens; greedy is the argmax.
* The cache: ``BufferLayer`` holds what ``DynamicLayer`` holds through appends, growth, fan-out and row
  dropping; ``Policy.generate`` gives the same tokens with it as with a ``DynamicCache`` (greedy and
  sampled, padded prompts, rows leaving the batch).
"""
from __future__ import annotations

import pytest
import torch

from llm import kv_cache, sampling


def make_probs(kind: str, B: int, V: int, seed: int, ties: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, V, generator=g) * (1.0 if kind == "flat" else 4.0)
    if kind == "peaked":
        x = x + 3.0 * torch.log(torch.rand(B, V, generator=g))   # a long tail
    if ties:
        x = (x * 4).round() / 4                                  # many equal logits
    return torch.softmax(x / 0.7, dim=-1)


def sorted_membership(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    sp, si = sampling.nucleus_sorted(probs, top_p)
    return torch.zeros_like(probs, dtype=torch.bool).scatter(1, si, sp > 0)


@pytest.mark.parametrize("kind", ["flat", "peaked"])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("top_p", [0.3, 0.9, 0.95])
def test_in_nucleus_is_the_sorted_nucleus_for_every_token(kind, ties, top_p):
    V = 1500
    probs = make_probs(kind, 4, V, seed=1, ties=ties)
    want = sorted_membership(probs, top_p)
    for b in range(probs.shape[0]):
        got = sampling.in_nucleus(probs[b].expand(V, V), torch.arange(V), top_p)
        assert torch.equal(got, want[b]), (b, int((got != want[b]).sum()))
    assert bool(want.any(1).all()) and not bool(want.all())


@pytest.mark.parametrize("kind", ["flat", "peaked"])
def test_in_nucleus_at_32k_around_the_boundary(kind):
    probs = make_probs(kind, 16, 32_000, seed=2)
    for top_p in (0.5, 0.95, 0.99):
        sp, si = sampling.nucleus_sorted(probs, top_p)
        n = (sp > 0).sum(1)                                          # (B,) nucleus sizes
        for off in range(-3, 3):                                     # ranks around the boundary
            r = (n + off).clamp(0, probs.shape[1] - 1)
            tok = si.gather(1, r.unsqueeze(1)).squeeze(1)
            assert torch.equal(sampling.in_nucleus(probs, tok, top_p), r < n), (top_p, off)


def frequencies(probs_row: torch.Tensor, top_p: float, n: int = 40_000, seed: int = 0) -> torch.Tensor:
    logits = probs_row.log().expand(n, -1).contiguous()
    tok = sampling.sample_next(logits, 1.0, top_p, False, torch.Generator().manual_seed(seed))
    return torch.bincount(tok, minlength=probs_row.numel()).double() / n


@pytest.mark.parametrize("top_p", [1.0, 0.8, 0.35])
@pytest.mark.parametrize("rounds", [sampling.ROUNDS, 0], ids=["rejection", "sorted"])
def test_draws_follow_the_renormalised_nucleus(top_p, rounds, monkeypatch):
    monkeypatch.setattr(sampling, "ROUNDS", rounds)
    p = torch.tensor([0.30, 0.02, 0.20, 0.15, 0.10, 0.08, 0.06, 0.05, 0.03, 0.01])
    keep = sorted_membership(p.unsqueeze(0), top_p)[0]
    target = torch.where(keep, p, torch.zeros_like(p)).double()
    target /= target.sum()
    f = frequencies(p, top_p)
    assert float(f[~keep].sum()) == 0.0                              # never outside the nucleus
    sd = (target * (1 - target) / 40_000).sqrt()
    assert bool(((f - target).abs() <= 5 * sd + 1e-12).all()), (f, target)


def test_reproducible_and_greedy():
    logits = torch.randn(6, 500, generator=torch.Generator().manual_seed(3)) * 2
    a = sampling.sample_next(logits, 0.7, 0.9, False, torch.Generator().manual_seed(5))
    b = sampling.sample_next(logits, 0.7, 0.9, False, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    assert torch.equal(sampling.sample_next(logits, 0.7, 0.9, True, None), logits.argmax(-1))
    assert torch.equal(sampling.sample_next(logits, 0.0, 0.9, False, None), logits.argmax(-1))
    one_hot = torch.full((3, 50), -30.0)
    one_hot[0, 7], one_hot[1, 42], one_hot[2, 0] = 0.0, 0.0, 0.0
    assert sampling.sample_next(one_hot, 0.7, 0.95, False, torch.Generator().manual_seed(0)).tolist() == [7, 42, 0]


# ----------------------------------------------------------------------------- the cache
def test_buffer_layer_holds_what_a_dynamic_layer_holds():
    from transformers.cache_utils import DynamicLayer

    g = torch.Generator().manual_seed(0)
    kv = lambda B, L: (torch.randn(B, 2, L, 4, generator=g), torch.randn(B, 2, L, 4, generator=g))  # noqa: E731
    ref, buf = DynamicLayer(), kv_cache.BufferLayer()

    def both(fn):
        fn(ref)
        fn(buf)
        assert buf.get_seq_length() == ref.get_seq_length()
        assert torch.equal(buf.keys, ref.keys) and torch.equal(buf.values, ref.values)

    k, v = kv(2, 5)
    both(lambda lay: lay.update(k, v))                      # prefill: exact size
    buf.reserve(3)
    assert buf.capacity == 8
    both(lambda lay: lay.batch_repeat_interleave(3))        # 6 rows
    for _ in range(5):                                      # 3 steps within the room, then growth (doubling)
        k, v = kv(6, 1)
        out = buf.update(k, v)
        ref.update(k, v)
        assert torch.equal(out[0], ref.keys)
    assert buf.capacity == 16 and buf.get_seq_length() == 10
    idx = torch.tensor([0, 2, 5])
    both(lambda lay: lay.batch_select_indices(idx))
    k, v = kv(3, 1)
    both(lambda lay: lay.update(k, v))
    assert buf.keys.data_ptr() == buf._k.data_ptr()         # a view of the buffer, not a copy


@pytest.fixture(scope="module")
def tiny():
    from llm.models import load_policy

    return load_policy("tiny")


@pytest.mark.parametrize("greedy", [True, False], ids=["greedy", "sampled"])
def test_generate_same_tokens_as_dynamic_cache(tiny, monkeypatch, greedy):
    """Greedy tokens are those of the earlier decode loop (a ``DynamicCache``, argmax); sampled tokens with the
    same generator too (the cache changes no logit)."""
    from transformers import DynamicCache

    import llm.decode as dec

    monkeypatch.setattr(kv_cache, "MIN_HEAD_DIM", 0)  # the tiny default's heads (24) would keep DynamicCache
    assert all(isinstance(x, kv_cache.BufferLayer) for x in dec.decode_cache(tiny.model.config).layers)
    task = tiny.get_task()
    prompts = [task.prompt(p) for p in task.sample(4, seed=7, split="test")]
    kw = dict(n=3, greedy=greedy, temperature=1.0, top_p=0.9, max_thoughts=8, max_thought_tokens=16)
    a = tiny.generate(prompts, generator=torch.Generator().manual_seed(1), **kw)
    with monkeypatch.context() as m:
        m.setattr(dec, "decode_cache", lambda config: DynamicCache(config=config))
        b = tiny.generate(prompts, generator=torch.Generator().manual_seed(1), **kw)
    ids = lambda out: [s.response_ids for row in out for s in row]  # noqa: E731
    assert ids(a) == ids(b)
    assert len({len(x) for x in ids(a)}) > 1                 # rows finished at different steps (compaction ran)
    assert len({len(tiny.encode_prompt(p)) for p in prompts}) > 1   # left padding


def test_decode_cache_choice():
    """Buffers for full-attention layers with heads of at least MIN_HEAD_DIM; DynamicCache otherwise."""
    from transformers import LlamaConfig, MistralConfig
    from transformers.cache_utils import DynamicLayer

    def kinds(cfg):
        return {type(x) for x in kv_cache.decode_cache(cfg).layers}

    big = LlamaConfig(hidden_size=256, num_attention_heads=4, num_hidden_layers=2, intermediate_size=64)
    small = LlamaConfig(hidden_size=96, num_attention_heads=4, num_hidden_layers=2, intermediate_size=64)
    window = MistralConfig(hidden_size=256, num_attention_heads=4, num_hidden_layers=2, intermediate_size=64,
                           sliding_window=16)
    assert kv_cache.head_dim(big) == 64 and kinds(big) == {kv_cache.BufferLayer}
    assert kinds(small) == {DynamicLayer}
    assert kv_cache.BufferLayer not in kinds(window)
