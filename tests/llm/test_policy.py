"""Policy: batched thought sampling, prefix-shared continuations, log-probs and collation on a micro model."""
import pytest
import torch

from llm.policy import FINISH, Policy
from llm.tiny import micro_policy

KW = dict(max_thoughts=4, max_thought_tokens=10)


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _bias(pol, chars, amount):
    """Make the micro model favour some characters, so chains have thoughts and answers."""
    ids = [pol.tokenizer.convert_tokens_to_ids(c) for c in chars]
    with torch.no_grad():
        b = torch.zeros(pol.model.config.vocab_size)
        b[ids] = amount
        pol.model.lm_head.register_forward_hook(lambda m, i, o: o + b)
    return pol


@pytest.mark.parametrize("cap", ["keep", "end"])
def test_sample_structure_and_invariants(micro, cap):
    _bias(micro, list("0123456789+-=;[]"), 4.0)
    out = micro.generate(["Q:1+2\n", "Q:3+4-5+6\n"], n=5, temperature=1.0, generator=_gen(0), thought_cap=cap, **KW)
    assert [len(g) for g in out] == [5, 5]
    finishes, n_caps = set(), 0
    for g, p in zip(out, ["Q:1+2\n", "Q:3+4-5+6\n"]):
        for s in g:
            finishes.add(s.finish)
            n_caps += len(s.cap_ends)
            assert s.finish in FINISH and s.prefix_len == 0
            assert s.prompt_ids == micro.encode_prompt(p)
            assert s.text == micro.decode(s.response_ids)
            assert len(s.thought_ends) == len(s.thoughts) <= KW["max_thoughts"]
            assert set(s.cap_ends) <= set(s.thought_ends)
            if not s.cap_ends:
                assert s.thoughts == micro.fmt.split(s.text)
            assert s.answer == micro.fmt.extract_answer(s.text)
            starts = [0] + s.thought_ends[:-1]
            for t, a, e in zip(s.thoughts, starts, s.thought_ends):  # each thought lies between two ends
                assert t in micro.decode(s.response_ids[a:e])
                if e in s.cap_ends:  # a kept over-long thought: exactly the cap, no delimiter
                    assert e - a == KW["max_thought_tokens"] and ";" not in micro.decode(s.response_ids[a:e])
            if s.finish == "budget":  # cut back to complete thoughts
                assert s.response_ids == [] or s.thought_ends[-1] == len(s.response_ids)
                if cap == "end":
                    assert micro.fmt.truncate_to_complete(s.text) == s.text
            if s.finish == "answer":
                assert s.answer is not None
    assert len(finishes) >= 2
    assert (n_caps > 0) == (cap == "keep")


def test_left_padding_greedy_matches_single_prompt(micro):
    _bias(micro, list("0123456789+-=;[]"), 2.5)
    prompts = ["Q:1\n", "Q:1+2+3+4+5\n", "Q:12-3\n"]
    batched = micro.complete(prompts, greedy=True, max_new_tokens=12)  # same decode loop, no truncation
    for p, g in zip(prompts, batched):
        assert g == micro.complete([p], greedy=True, max_new_tokens=12)[0]
    assert sum(len(g) for g in batched) > 5


def test_seeded_reproducible(micro):
    a = micro.generate(["Q:1+2\n"], n=4, generator=_gen(3), **KW)[0]
    b = micro.generate(["Q:1+2\n"], n=4, generator=_gen(3), **KW)[0]
    c = micro.generate(["Q:1+2\n"], n=4, generator=_gen(4), **KW)[0]
    assert [s.response_ids for s in a] == [s.response_ids for s in b]
    assert [s.response_ids for s in a] != [s.response_ids for s in c]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_continue_from_shared_equals_reencoded(micro, seed):
    _bias(micro, list("0123456789+-=;[]"), 3.0)
    prompt = "Q:3+4-5+6\n"
    prefix = micro.encode("3+4=7;7-5=2;")
    kw = dict(temperature=1.0, top_p=0.9, **KW)
    shared = micro.continue_from(prompt, prefix, 6, generator=_gen(seed), **kw)
    reenc = micro.continue_from(prompt, prefix, 6, share_prefix=False, generator=_gen(seed), **kw)
    assert [s.response_ids for s in shared] == [s.response_ids for s in reenc]
    assert len({tuple(s.response_ids) for s in shared}) > 1  # really sampled
    for s in shared:
        assert s.prefix_len == len(prefix) and s.response_ids[:len(prefix)] == prefix
        assert s.thoughts[:2] == ["3+4=7", "7-5=2"] and s.thought_ends[:2] == [6, 12]
        assert len(s.thoughts) <= KW["max_thoughts"]


def test_logprobs_equal_manual_forward(micro):
    out = micro.generate(["Q:1+2\n", "Q:3+4-5+6\n"], n=2, generator=_gen(1), **KW)
    samples = [s for g in out for s in g]
    batch = micro.collate(samples)
    lp = micro.logprobs(batch["input_ids"], batch["attention_mask"])
    B, T = batch["input_ids"].shape
    assert lp.shape == (B, T - 1) and lp.requires_grad
    with torch.no_grad():
        for i, s in enumerate(samples):
            seq = torch.tensor([s.prompt_ids + s.response_ids])
            ref = torch.log_softmax(micro.model(input_ids=seq).logits[0, :-1].double(), -1)
            ref = ref[torch.arange(seq.shape[1] - 1), seq[0, 1:]]
            torch.testing.assert_close(lp[i, :seq.shape[1] - 1].double(), ref, atol=1e-4, rtol=1e-4)
    # gradient flows to the parameters
    (lp * batch["attention_mask"][:, 1:]).sum().backward()
    assert micro.model.model.embed_tokens.weight.grad.abs().sum() > 0


def test_greedy_tokens_are_argmax_of_logprobs(micro):
    _bias(micro, list("0123456789+-=;[]"), 2.5)
    text = micro.complete(["Q:7-2\n"], greedy=True, max_new_tokens=12)[0]
    prompt_ids, response_ids = micro.encode_prompt("Q:7-2\n"), micro.encode(text)
    assert len(response_ids) >= 2
    seq = torch.tensor([prompt_ids + response_ids])
    with torch.no_grad():
        logits = micro.model(input_ids=seq).logits[0]  # (T, V), includes the bias hook
    P = len(prompt_ids)
    assert logits[P - 1:P - 1 + len(response_ids)].argmax(-1).tolist() == response_ids


def test_collate_masks(micro):
    pre = micro.encode("1+2=3;")
    fresh = micro.generate(["Q:1+2+3\n"], n=1, generator=_gen(0), **KW)[0][0]
    cont = micro.continue_from("Q:1+2+3\n", pre, 2, generator=_gen(0), **KW)
    samples = [fresh] + cont
    b = micro.collate(samples)
    T = max(len(s.prompt_ids) + len(s.response_ids) for s in samples)
    assert b["input_ids"].shape == b["attention_mask"].shape == b["response_mask"].shape == (3, T)
    for i, s in enumerate(samples):
        P, R = len(s.prompt_ids), len(s.response_ids)
        expected = [0.0] * (P + s.prefix_len) + [1.0] * (R - s.prefix_len) + [0.0] * (T - P - R)
        assert b["response_mask"][i].tolist() == expected
        assert b["attention_mask"][i].tolist() == [1] * (P + R) + [0] * (T - P - R)
        assert b["input_ids"][i, :P + R].tolist() == s.prompt_ids + s.response_ids
        assert (b["input_ids"][i, P + R:] == micro.pad_id).all()


def test_complete_and_bad_input(micro, tmp_path):
    outs = micro.complete(["L:1+2\nStep 1: 1+2=3\nWrong. First wrong step?\n"] * 2, max_new_tokens=5,
                          generator=_gen(0))
    assert len(outs) == 2 and all(len(micro.encode(o)) <= 5 for o in outs)
    with pytest.raises(ValueError, match="context"):
        micro.generate(["x" * 300])
    with pytest.raises(ValueError, match="context"):
        micro.continue_from("Q:1\n", [5] * 400, 2)
    with pytest.raises(TypeError, match="list"):
        micro.generate("Q:1\n")
    with pytest.raises(ValueError, match="temperature"):
        micro.generate(["Q:1\n"], temperature=0.0)
    with pytest.raises(ValueError, match="k"):
        micro.continue_from("Q:1\n", [], 0)
    with pytest.raises(ValueError, match="does not exist"):
        Policy.from_pretrained(str(tmp_path / "no_such_model"))
    with pytest.raises(ValueError, match="load_policy"):
        Policy.from_pretrained("tiny")
    with pytest.raises(ValueError, match="samples"):
        micro.collate([])


def test_context_end_stops_generation():
    pol = micro_policy(seed=1)
    prompt = "Q:" + "1" * 240 + "\n"
    s = pol.generate([prompt], max_thoughts=50, max_thought_tokens=200, generator=_gen(0))[0][0]
    assert len(s.prompt_ids) + len(s.response_ids) <= pol.max_len


def test_save_and_load_round_trip(micro, tmp_path):
    d = micro.save_pretrained(tmp_path / "m", task={"name": "arith", "max_terms": 5})
    pol = Policy.from_pretrained(str(d))
    assert pol.fmt == micro.fmt and pol.meta["task"] == {"name": "arith", "max_terms": 5}
    t = pol.get_task()
    assert t.name == "arith" and t.fmt == micro.fmt and t.max_terms == 5 and pol.get_task("arith", digits=2).digits == 2
    a = micro.generate(["Q:1+2\n"], greedy=True, **KW)[0][0].response_ids
    b = pol.generate(["Q:1+2\n"], greedy=True, **KW)[0][0].response_ids
    assert a == b


def test_tiny_top_p_is_greedy_and_max_thoughts_counts_prefix(micro):
    _bias(micro, list("0123456789+-=;[]"), 3.0)
    g = micro.complete(["Q:1+2\n", "Q:9-3\n"], greedy=True, max_new_tokens=12)
    # top_p -> 0 keeps only the most likely token: identical to greedy decoding
    p = micro.complete(["Q:1+2\n", "Q:9-3\n"], temperature=1.0, top_p=1e-6, max_new_tokens=12, generator=_gen(0))
    assert p == g
    prefix = micro.encode("3+4=7;7-5=2;")
    for s in micro.continue_from("Q:3+4-5+6\n", prefix, 4, max_thoughts=3, max_thought_tokens=10, generator=_gen(0)):
        assert len(s.thoughts) <= 3 and s.thoughts[:2] == ["3+4=7", "7-5=2"]


def test_fast_thought_ends_match_exact_search(micro):
    _bias(micro, list("0123456789+-=;[]"), 4.0)
    for g in micro.generate(["Q:1+2\n", "Q:3+4-5+6\n"], n=6, generator=_gen(5), max_thoughts=6, max_thought_tokens=12,
                            thought_cap="end"):
        for s in g:
            assert s.thought_ends == micro.thought_ends(s.response_ids, exact=True) == micro.thought_ends(s.response_ids)


def test_continue_many_batches_pairs_like_continue_from(micro):
    """Greedy continuations of several (prompt, prefix) pairs in one loop equal one continue_from each
    (greedy: no random stream to share), with prefix_len and prompt ids per pair."""
    pairs = [("Q:1+2+3\n", list(map(ord, "1+2=3;"))), ("Q:9-3\n", []), ("Q:4+4-1\n", list(map(ord, "4+4=8;")))]
    got = micro.continue_many([p for p, _ in pairs], [q for _, q in pairs], 2, greedy=True, max_thoughts=3,
                              max_thought_tokens=10)
    assert len(got) == 3 and all(len(row) == 2 for row in got)
    for (p, q), row in zip(pairs, got):
        ref = micro.continue_from(p, q, 1, greedy=True, max_thoughts=3, max_thought_tokens=10)[0]
        for s in row:
            assert s.prefix_len == len(q) and s.response_ids[:len(q)] == q
            assert s.prompt_ids == micro.encode_prompt(p)
            assert s.response_ids == ref.response_ids
    with pytest.raises(ValueError, match="equal lengths"):
        micro.continue_many(["Q:1\n"], [], 1)
    assert micro.continue_many([], [], 3) == []


def test_cache_keyword_reads_the_base_model_and_follows_model_swaps(micro):
    """The cache argument is read from the base model's forward (peft's wrapper has no ``cache``
    parameter) and re-read when the model object changes, so LoRA decoding passes the keyword the
    installed transformers wants and raises no deprecation warning."""
    import inspect
    import warnings

    from peft import LoraConfig, get_peft_model

    from llm.decode import base_model, cache_keyword

    want = "cache" if "cache" in inspect.signature(micro.model.forward).parameters else "past_key_values"
    assert cache_keyword(micro.model) == want
    micro.model = get_peft_model(micro.model, LoraConfig(r=2, target_modules="all-linear", task_type="CAUSAL_LM"))
    assert base_model(micro.model) is micro.model.get_base_model() and cache_keyword(micro.model) == want
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        micro.generate(["Q:1+2\n"], n=2, generator=_gen(0), **KW)
    assert not [w for w in caught if "past_key_values" in str(w.message)]

    class OldStyle(torch.nn.Module):  # a model whose forward only knows past_key_values
        def forward(self, input_ids=None, past_key_values=None, **kw):
            return None

    assert cache_keyword(OldStyle()) == "past_key_values"
