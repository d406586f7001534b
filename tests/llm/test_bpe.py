"""The engine on a byte-level BPE tokenizer with a chat template and a multi-token delimiter (the
``</thought>`` of real models): generation, thought segmentation, localization parsing, the SRPO rollout
and its suffix mask work as with the character tokenizer (fixture: ``bpe_kit``)."""
from __future__ import annotations

import pytest
import torch

from llm.config import RolloutConfig
from llm.localize import localization_prompt, parse_localization
from llm.rollouts import build_rollouts, prefix_ids_for_reset
from llm.thoughts import DEFAULT_FORMAT

from .bpe_kit import CHAIN, LOC_REPLY, bpe_policy, task_and_problem

DELIM = DEFAULT_FORMAT.delimiter


@pytest.fixture(scope="module")
def bpe():
    torch.set_num_threads(1)
    pol = bpe_policy()
    task, prob = task_and_problem()
    got = pol.generate([pol.chat_prompt(task.prompt(prob))], greedy=True, max_thoughts=6, max_thought_tokens=20)
    assert got[0][0].text == CHAIN, "the fixture model did not learn its chain"
    return pol


def test_fixture_tokenizer_is_real_bpe_with_chat_template(bpe):
    assert len(bpe.encode(DELIM)) >= 3  # "</", "thought", ">"
    assert len(bpe.encode(CHAIN)) < len(CHAIN)  # merges: not one token per character
    ids = bpe.chat_prompt("hello")
    text = bpe.tokenizer.decode(ids)
    assert text.startswith("<|im_start|>user\nhello<|im_end|>") and text.endswith("<|im_start|>assistant\n")
    assert bpe.uses_chat("auto") and bpe.uses_chat("on") and not bpe.uses_chat("off")
    assert bpe.prompt_input("hello", "auto") == ids and bpe.prompt_input("hello", "off") == "hello"


def test_generation_and_thought_segmentation(bpe):
    task, prob = task_and_problem()
    p = bpe.chat_prompt(task.prompt(prob))
    s = bpe.generate([p], greedy=True, max_thoughts=6, max_thought_tokens=20)[0][0]
    assert s.prompt_ids == p and s.finish == "answer" and s.answer == "7"
    assert s.thoughts == ["3+5=8", "8-2=7", "\\boxed{7}"] and not s.cap_ends
    # the second delimiter ends inside the token ">\\" that also starts the answer thought
    assert bpe.tokenizer.convert_ids_to_tokens(s.response_ids[s.thought_ends[1] - 1]) == ">\\"
    assert s.thought_ends == bpe.thought_ends(s.response_ids, exact=True)
    for j, e in enumerate(s.thought_ends[:2], 1):
        assert bpe.decode(s.response_ids[:e]).count(DELIM) == j
        assert bpe.decode(s.response_ids[:e - 1]).count(DELIM) == j - 1
    g = torch.Generator().manual_seed(0)
    for s in bpe.generate([p], n=6, temperature=1.0, generator=g, max_thoughts=6, max_thought_tokens=20)[0]:
        assert len(s.thoughts) == len(s.thought_ends)
        if not s.cap_ends:
            assert s.thoughts == DEFAULT_FORMAT.split(s.text)


def test_over_long_thoughts_on_bpe(bpe):
    """A 3-token cap: every thought of the memorised chain is longer, so each is cut and kept."""
    task, prob = task_and_problem()
    s = bpe.generate([bpe.chat_prompt(task.prompt(prob))], greedy=True, max_thoughts=4, max_thought_tokens=3)[0][0]
    assert s.finish == "max_thoughts" and s.cap_ends == s.thought_ends == [3, 6, 9, 12]
    assert s.thoughts == [bpe.decode(s.response_ids[a:a + 3]).strip() for a in (0, 3, 6, 9)]
    assert s.text == CHAIN[:len(s.text)]  # nothing inserted: the text is what was sampled
    # with room for more thoughts: the 6th capped thought opens the answer (">\\", "boxed", "{") and the
    # chain stops there, as the paper's generator stops at a thought holding "\\boxed{"
    s = bpe.generate([bpe.chat_prompt(task.prompt(prob))], greedy=True, max_thoughts=10, max_thought_tokens=3)[0][0]
    assert s.cap_ends == s.thought_ends == [3, 6, 9, 12, 15, 18] and s.finish == "budget" and s.answer is None
    assert s.text.endswith("\\boxed{") and s.thoughts[-1].endswith("boxed{")
    ended = bpe.generate([bpe.chat_prompt(task.prompt(prob))], greedy=True, max_thoughts=4, max_thought_tokens=3,
                         thought_cap="end")[0][0]
    assert ended.finish == "budget" and ended.response_ids == [] and ended.thoughts == []


def test_localization_reply_and_parse(bpe):
    task, prob = task_and_problem()
    lp = bpe.chat_prompt(localization_prompt(task, prob, DEFAULT_FORMAT.split(CHAIN)))
    reply = bpe.complete([lp], greedy=True, max_new_tokens=200, stop_at_answer=False)[0]
    assert reply == LOC_REPLY  # ran to EOS (<|im_end|>), not cut at a box
    loc = parse_localization(reply, 3, DEFAULT_FORMAT)
    assert (loc.index, loc.source) == (2, "boxed")


def test_srpo_rollout_chat_prompts_prefix_and_suffix_mask(bpe):
    task, prob = task_and_problem()
    cfg = RolloutConfig(method="srpo", rollouts_per_prompt=8, n_fresh=4, max_tries=12, chat_template="on",
                        max_thoughts=6, max_thought_tokens=20, loc_max_new_tokens=200)
    b = build_rollouts(bpe, task, [prob, prob], cfg, seed=0, prompt_ids=[0, 1])
    chat = bpe.chat_prompt(task.prompt(prob))
    assert all(s.prompt_ids == chat for s in b.samples)
    assert b.stats["parents"] == 2 and b.stats["loc_calls"] == 2 and b.stats["loc_fallbacks"] == 0
    resets = [j for j, m in enumerate(b.meta) if m["kind"] == "reset"]
    assert len(resets) == 8
    prefix = bpe.encode("3+5=8" + DELIM)  # thought 1 of the parent, as token ids
    batch = b.collate(bpe)
    for j in resets:
        s, m = b.samples[j], b.meta[j]
        assert m["reset_step"] == 2 and m["loc_source"] == "boxed" and m["loc_text"] == LOC_REPLY
        assert s.prefix_len == len(prefix) and s.response_ids[:len(prefix)] == prefix
        assert s.thought_ends[0] == len(prefix) and s.thoughts[0] == "3+5=8"
        P, R = len(s.prompt_ids), len(s.response_ids)
        rm = batch["response_mask"][j]
        assert torch.all(rm[:P + s.prefix_len] == 0) and torch.all(rm[P + s.prefix_len:P + R] == 1)
        assert torch.all(rm[P + R:] == 0)
    fresh = [j for j, m in enumerate(b.meta) if m["kind"] == "fresh"]
    for j in fresh:
        P, R = len(b.samples[j].prompt_ids), len(b.samples[j].response_ids)
        assert torch.all(batch["response_mask"][j, P:P + R] == 1)
    assert prefix_ids_for_reset(b.samples[fresh[0]], 2) == prefix or b.samples[fresh[0]].text != CHAIN
