"""Row 4 of issue 16 on the micro policy: a thought reaching ``max_thought_tokens`` is kept and generation
goes on (the paper), or ends the chain (``thought_cap="end"``); the budget counts the kept prefix of a
continuation (``budget_scope="response"``) or the sampled tokens only."""
from __future__ import annotations

import pytest
import torch

from llm.decode import segment_thoughts


def _digits_only(pol):
    """Bias the micro model towards digits: no delimiter, no answer marker, so every thought runs long."""
    ids = [pol.tokenizer.convert_tokens_to_ids(c) for c in "0123456789"]
    b = torch.zeros(pol.model.config.vocab_size)
    b[ids] = 12.0
    pol.model.lm_head.register_forward_hook(lambda m, i, o: o + b)
    return pol


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def test_over_long_thought_is_kept_and_generation_goes_on(micro):
    pol = _digits_only(micro)
    kw = dict(max_thoughts=3, max_thought_tokens=5, temperature=1.0, generator=_gen(0))
    for s in pol.generate(["Q:1+2\n"], n=4, **kw)[0]:
        assert s.finish == "max_thoughts" and len(s.response_ids) == 15
        assert s.cap_ends == s.thought_ends == [5, 10, 15]
        assert s.thoughts == [s.text[0:5], s.text[5:10], s.text[10:15]] and ";" not in s.text
    for s in pol.generate(["Q:1+2\n"], n=4, thought_cap="end", **kw)[0]:  # the earlier rule: the chain ends
        assert s.finish == "budget" and s.response_ids == [] and s.thoughts == [] and s.cap_ends == []
    with pytest.raises(ValueError, match="thought_cap"):
        pol.generate(["Q:1\n"], thought_cap="cut")


def test_continuation_counts_kept_thoughts_of_its_prefix(micro):
    pol = _digits_only(micro)
    parent = pol.generate(["Q:1+2\n"], max_thoughts=3, max_thought_tokens=5, greedy=True)[0][0]
    prefix, caps = parent.response_ids[:10], [5, 10]
    kw = dict(max_thoughts=3, max_thought_tokens=5, temperature=1.0, generator=_gen(1))
    for s in pol.continue_from("Q:1+2\n", prefix, 3, prefix_cap_ends=caps, **kw):
        assert s.response_ids[:10] == prefix and len(s.response_ids) == 15  # one more thought: 3 in all
        assert s.cap_ends == s.thought_ends == [5, 10, 15] and s.thoughts[:2] == parent.thoughts[:2]
    many = pol.continue_many(["Q:1+2\n"], [prefix], 2, prefix_cap_ends=[caps], **kw)[0]
    assert all(s.cap_ends == [5, 10, 15] for s in many)
    # without the cap ends the prefix reads as one unfinished thought: three more thoughts are sampled
    s = pol.continue_from("Q:1+2\n", prefix, 1, max_new_tokens=100, **kw)[0]
    assert len(s.response_ids) == 25 and s.cap_ends == [15, 20, 25]
    with pytest.raises(ValueError, match="prefix_cap_ends"):
        pol.continue_from("Q:1+2\n", prefix, 1, prefix_cap_ends=[11], **kw)


@pytest.mark.parametrize("scope, length", [("response", 10), ("sampled", 20)])
def test_budget_counts_the_prefix_of_a_continuation(micro, scope, length):
    """Prefix of 10 tokens (2 kept thoughts), budget 12: counting the prefix leaves room for 2 sampled
    tokens, no complete thought, so the response is cut back to the prefix; counting sampled tokens only,
    12 more tokens give 2 complete thoughts (22 cut back to 20)."""
    pol = _digits_only(micro)
    prefix = pol.generate(["Q:7\n"], max_thoughts=2, max_thought_tokens=5, greedy=True)[0][0].response_ids
    assert len(prefix) == 10
    s = pol.continue_from("Q:7\n", prefix, 1, prefix_cap_ends=[5, 10], max_thoughts=10, max_thought_tokens=5,
                          max_new_tokens=12, budget_scope=scope, generator=_gen(2), temperature=1.0)[0]
    assert s.finish == "budget" and len(s.response_ids) == length and s.thought_ends[-1] == length
    assert s.sampled_tokens == (2 if scope == "response" else 12)


def test_segment_thoughts_splits_at_cap_ends_and_delimiters(micro):
    ids = micro.encode("ab;cdefg;hi[3]")
    th, ends = segment_thoughts(micro, ids, [5])          # "ab;cd" capped after 5 tokens
    assert th == ["ab", "cd", "efg", "hi[3]"] and ends == [3, 5, 9, 14]
    assert segment_thoughts(micro, ids, []) == (micro.fmt.split("ab;cdefg;hi[3]"), [3, 9, 14])
