"""Shared-prefix forward against the naive padded forward (``Policy.collate`` -> ``model(...).logits`` ->
``losses.token_logprobs``): log-probs, entropies and parameter gradients equal in float64, masks identical.

Cases: several groups with different shared lengths (left padding) and suffix lengths (right padding),
fresh groups (shared = prompt) and reset groups (shared = prompt + given prefix), an empty suffix, an
unpadded batch; with and without LoRA, with and without gradient checkpointing; the micro Llama with
the character vocabulary and a small random Llama with a 32k vocabulary.
"""
import random

import pytest
import torch

from llm import shared_prefix as sp
from llm.losses import policy_loss, token_logprobs
from llm.shared_prefix_packed import packed_logprobs
from llm.policy import Sample

TOL = dict(rtol=1e-12, atol=1e-13)  # float64 throughout
GRAD_REL = 1e-12  # max |g_shared - g_naive| / max |g_naive| per parameter


@pytest.fixture(autouse=True)
def float64_rmsnorm(monkeypatch):
    """Hugging Face's LlamaRMSNorm computes in float32 whatever the model's dtype, which limits a float64
    comparison to ~1e-7 (measured 5e-8); this keeps it in the input's dtype (the same formula)."""
    from transformers.models.llama import modeling_llama as ml

    def forward(self, h):
        return self.weight * (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.variance_epsilon))

    monkeypatch.setattr(ml.LlamaRMSNorm, "forward", forward)


def _sample(prompt, response, prefix_len):
    return Sample(list(prompt), list(response), prefix_len, "", [], [], None, "answer")


def make_samples(V, seed=0, padded=True):
    """Three prompts: a fresh group of 3, a reset group of 2 continuations (prefix of 5 tokens), and a
    fresh group of 2 with an empty response. Unpadded: every shared part and suffix has the same length."""
    rng = random.Random(seed)

    def ids(n):
        return [rng.randrange(3, V) for _ in range(n)]

    if not padded:
        p1, p2 = ids(6), ids(6)
        pre = ids(0)
        return ([_sample(p1, ids(4), 0) for _ in range(3)]
                + [_sample(p2, pre + ids(4), 0) for _ in range(2)])
    p1, p2, p3 = ids(7), ids(4), ids(10)
    pre = ids(5)
    out = [_sample(p1, ids(n), 0) for n in (6, 3, 8)]
    out += [_sample(p2, pre + ids(n), len(pre)) for n in (4, 1)]
    out += [_sample(p3, ids(5), 0), _sample(p3, [], 0)]
    # interleave so that rows are reordered by grouping
    return [out[i] for i in (0, 3, 5, 1, 4, 2, 6)]


def token_logprobs64(logits, input_ids):
    """``losses.token_logprobs`` without its cast to float32 (same formula), so float64 stays float64."""
    logits = logits[:, :-1]
    logz = torch.logsumexp(logits, dim=-1)
    lp = logits - logz.unsqueeze(-1)
    return lp.gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1), -(lp.exp() * lp).sum(-1).detach()


def naive(pol, samples, adv):
    b = pol.collate(samples)
    logits = pol.model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], use_cache=False).logits
    lp32, _ = token_logprobs(logits, b["input_ids"])  # the trainer's function (float32)
    logp, ent = token_logprobs64(logits, b["input_ids"])
    torch.testing.assert_close(lp32, logp.float())
    mask = b["response_mask"][:, 1:]
    return logp, ent, mask, policy_loss(logp, adv, mask, agg="seq-mean-token-mean").loss


FORWARDS = {"cache": sp.shared_prefix_logprobs, "packed": packed_logprobs}


def shared(pol, samples, adv, forward="cache"):
    sb = sp.group_samples(samples, pol.pad_id)
    logp, ent = FORWARDS[forward](pol.model, sb, with_entropy=True)
    loss = policy_loss(logp, adv[sb.order], sb.suffix_mask, agg="seq-mean-token-mean").loss
    return sb, logp, ent, loss


def grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def prepare(pol, lora: bool, ckpt: bool, dtype=torch.float64):
    pol.model.to(dtype)
    if lora:
        from peft import LoraConfig, get_peft_model
        cfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, init_lora_weights=False,
                         target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
        pol.model = get_peft_model(pol.model, cfg)
    if ckpt:
        sp.enable_gradient_checkpointing(pol.model)
    pol.model.train()
    return pol


def check_equal(pol, samples, tol=TOL, grad_rel=GRAD_REL, forward="cache"):
    adv = torch.randn(len(samples), dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    pol.model.zero_grad(set_to_none=True)
    lp_n, ent_n, mask_n, loss_n = naive(pol, samples, adv)
    loss_n.backward()
    g_n = grads(pol.model)
    pol.model.zero_grad(set_to_none=True)
    sb, lp_s, ent_s, loss_s = shared(pol, samples, adv, forward)
    loss_s.backward()
    g_s = grads(pol.model)
    # masks: exactly today's trainable tokens, in the collate layout of the grouped row order
    coll = pol.collate([samples[o] for o in sb.order])["response_mask"][:, 1:]
    assert torch.equal(sp.to_collate_layout(sb.suffix_mask, sb), coll)
    m = coll > 0
    o = torch.tensor(sb.order)
    torch.testing.assert_close(sp.to_collate_layout(lp_s.double(), sb)[m], lp_n[o].double()[m], **tol)
    torch.testing.assert_close(sp.to_collate_layout(ent_s.double(), sb)[m], ent_n[o].double()[m], **tol)
    torch.testing.assert_close(loss_s.double(), loss_n.double(), **tol)
    assert not bool((lp_s[~(sb.suffix_mask > 0)] != 0).any())
    assert g_s.keys() == g_n.keys() and g_n
    for name in g_n:
        err = float((g_s[name] - g_n[name]).abs().max() / g_n[name].abs().max().clamp_min(1e-30))
        assert err <= grad_rel, f"{name}: relative gradient error {err:.2e} > {grad_rel:.0e}"
    return sb


@pytest.mark.parametrize("forward", ["cache", "packed"])
@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
@pytest.mark.parametrize("ckpt", [False, True], ids=["plain", "grad_ckpt"])
def test_equals_naive_forward_micro(micro, lora, ckpt, forward):
    pol = prepare(micro, lora, ckpt)
    sb = check_equal(pol, make_samples(len(pol.tokenizer)), forward=forward)
    assert len(sb.shared_ids) == 3 and len(sb) == 7
    assert sb.shared_len.tolist() == [7, 9, 10]  # fresh: prompt of 7; reset: 4 + 5 prefix tokens; fresh: 10


@pytest.mark.parametrize("forward", ["cache", "packed"])
def test_equals_naive_forward_unpadded(micro, forward):
    pol = prepare(micro, lora=False, ckpt=False)
    sb = check_equal(pol, make_samples(len(pol.tokenizer), padded=False), forward=forward)
    assert bool(sb.shared_mask.all()) and bool((sb.suffix_mask > 0).all())


def test_equals_naive_forward_32k_vocab():
    from transformers import LlamaConfig, LlamaForCausalLM

    from llm.policy import Policy
    from llm.thoughts import DEFAULT_FORMAT
    from llm.tiny import char_tokenizer

    V = 32_000
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=True, pad_token_id=0)
    pol = Policy(LlamaForCausalLM(cfg), char_tokenizer(), DEFAULT_FORMAT)  # tokenizer unused: ids are given
    pol.pad_id = 0
    for ckpt in (False, True):
        prepare(pol, lora=False, ckpt=ckpt)
        check_equal(pol, make_samples(V, seed=3))
    check_equal(pol, make_samples(V, seed=3), forward="packed")


@pytest.mark.parametrize("ckpt", [False, True], ids=["plain", "grad_ckpt"])
def test_float32_and_eager_attention(micro, ckpt, monkeypatch):
    """As trained (float32, HF's own RMSNorm) and with eager attention (float32 softmax): agreement at
    float32 level, and no NaN from padded rows in either attention implementation."""
    monkeypatch.undo()
    pol = prepare(micro, lora=False, ckpt=ckpt, dtype=torch.float32)
    samples = make_samples(len(pol.tokenizer), seed=5)
    for attn in ("sdpa", "eager"):
        pol.model.config._attn_implementation = attn
        for forward in ("cache", "packed"):
            check_equal(pol, samples, tol=dict(rtol=1e-5, atol=1e-5), grad_rel=1e-5, forward=forward)


@pytest.mark.parametrize("forward", ["cache", "packed"])
def test_only_empty_suffixes(micro, forward):
    """Nothing to train on: shapes (N, 0), a zero loss that still back-propagates."""
    pol = prepare(micro, lora=False, ckpt=False)
    sb = sp.group_samples([_sample([3, 4, 5], [], 0), _sample([6], [], 0)], pol.pad_id)
    lp, ent = FORWARDS[forward](pol.model, sb, with_entropy=True)
    assert lp.shape == (2, 0) and ent.shape == (2, 0)
    loss = policy_loss(lp, torch.ones(2, dtype=lp.dtype), sb.suffix_mask.to(lp.dtype)).loss
    loss.backward()
    assert float(loss.detach()) == 0.0


def test_checkpointing_recomputes_layers(micro, monkeypatch):
    """With gradient checkpointing on, every decoder layer runs again in the backward (own checkpoint)."""
    pol = prepare(micro, lora=False, ckpt=True)
    calls = []
    orig = sp._plain_forward
    monkeypatch.setattr(sp, "_plain_forward", lambda layer, *a, **k: calls.append(1) or orig(layer, *a, **k))
    samples = make_samples(len(pol.tokenizer))
    sb, lp, _, loss = shared(pol, samples, torch.ones(len(samples), dtype=torch.float64))
    n_fwd = len(calls)
    loss.backward()
    n_layers = pol.model.config.num_hidden_layers
    assert n_fwd == 2 * n_layers and len(calls) == 4 * n_layers  # prefix + suffix pass, then both replayed
    assert not any("forward" in m.__dict__ for m in pol.model.modules())  # wrappers removed


def test_grad_flows_into_shared_part(micro):
    """The first suffix token's log-prob depends on the shared tokens' embeddings (backward through the
    shared part): the gradient of the embedding rows of shared-only tokens is non-zero."""
    pol = prepare(micro, lora=False, ckpt=False)
    s = [_sample([5, 6, 7], [8, 9], 0), _sample([5, 6, 7], [10], 0)]
    sb = sp.group_samples(s, pol.pad_id)
    lp, _ = sp.shared_prefix_logprobs(pol.model, sb)
    lp.sum().backward()
    emb = pol.model.get_input_embeddings().weight.grad
    assert emb[5].abs().sum() > 0 and emb[6].abs().sum() > 0


def test_no_grad_and_eval_paths(micro):
    pol = prepare(micro, lora=False, ckpt=True)
    samples = make_samples(len(pol.tokenizer))
    sb = sp.group_samples(samples, pol.pad_id)
    pol.model.train()
    lp_train, _ = sp.shared_prefix_logprobs(pol.model, sb)
    with torch.no_grad():
        lp_ng, ent = sp.shared_prefix_logprobs(pol.model, sb)
    assert ent is None and not lp_ng.requires_grad
    torch.testing.assert_close(lp_ng, lp_train.detach(), **TOL)


def test_grouping_and_order():
    s = [_sample([1, 2], [3, 4, 5], 1), _sample([1], [2, 9], 0), _sample([1, 2], [3, 7], 1), _sample([1], [], 0)]
    sb = sp.group_samples(s, pad_id=0)
    # [1, 2] + [3] shared by rows 0 and 2; [1] shared by rows 1 and 3 ([1, 2] + [] would be a third group)
    assert sb.order == [0, 2, 1, 3]
    assert sb.shared_ids.tolist() == [[1, 2, 3], [1, 0, 0]]
    assert sb.suffix_ids.tolist() == [[4, 5], [7, 0], [2, 9], [0, 0]]
    assert sb.suffix_mask.tolist() == [[1, 1], [1, 0], [1, 1], [0, 0]]
    assert sb.group_of.tolist() == [0, 0, 1, 1]


def test_build_batch_rejects_bad_input():
    with pytest.raises(ValueError, match="shared\\[0\\]: empty"):
        sp.build_batch([[]], [[[1]]], 0)
    with pytest.raises(ValueError, match="suffixes\\[1\\]"):
        sp.build_batch([[1], [2]], [[[1]], []], 0)
    with pytest.raises(ValueError, match="one suffix list per group"):
        sp.build_batch([[1]], [], 0)
    with pytest.raises(ValueError, match="permutation"):
        sp.build_batch([[1]], [[[2], [3]]], 0, order=[0, 0])
    with pytest.raises(TypeError, match="SharedPrefixBatch"):
        sp.shared_prefix_logprobs(None, {"input_ids": None})


def test_plan_passes():
    # group A: shared 10, rows of 5, 5; B: shared 50 (prompt 40 + prefix 10), rows 30, 2; C: shared 20, rows 8 x 3
    A = [_sample(list(range(10)), [1] * 5, 0) for _ in range(2)]
    B = [_sample(list(range(40)), [2] * 10 + [3] * n, 10) for n in (30, 2)]
    C = [_sample(list(range(100, 120)), [4] * 8, 0) for _ in range(3)]
    samples = A + B + C                                  # indices: A 0-1, B 2-3, C 4-6
    assert sp.pass_cost([50], [30, 2]) == 49 + 2 * 31
    # no waste limit: one pass, longest suffix first
    assert sp.plan_passes(samples, 10 ** 6, max_waste=10.0) == [[2, 3, 4, 5, 6, 0, 1]]
    # default: B (suffix 30) alone costs 111; with C it would cost 2 * 49 + 5 * 31 = 253 > 1.25 * (111 + 65)
    assert sp.plan_passes(samples, 10 ** 6) == [[2, 3], [4, 5, 6, 0, 1]]   # C + A: 2 * 19 + 5 * 9 = 83
    for budget in (1, 60, 120, 200):
        for waste in (0.0, 0.25, 10.0):
            passes = sp.plan_passes(samples, budget, max_waste=waste)
            assert sorted(j for p in passes for j in p) == list(range(7))
            for p in passes:
                sb = sp.group_samples([samples[j] for j in p], 0)
                cost = sp.pass_cost(sb.shared_len.tolist(), sb.suffix_len.tolist())
                assert cost <= budget or len(p) == 1, (budget, p, cost)
    assert sp.plan_passes(samples, 100) == [[2], [3], [4, 5, 6, 0, 1]]  # B over budget: cut into rows
    with pytest.raises(ValueError):
        sp.plan_passes(samples, 0)
    with pytest.raises(ValueError):
        sp.plan_passes(samples, 10, max_waste=-1)
