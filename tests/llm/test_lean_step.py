"""``llm.lean_step``: the lean decode step gives the model-level call's logits bit for bit (padding mask
or none, grouped-query attention, both cache kinds, a LoRA adapter, biases, bfloat16), through the plain
models' functional step where it applies and through the modules elsewhere, and is used only where it
applies."""
from __future__ import annotations

import pytest
import torch

from llm.decode import cache_keyword, prefill
from llm.kv_cache import reserve
from llm.lean_step import _module_step, functional_step, lean_step
from llm.policy import Policy
from llm.thoughts import TINY_FORMAT
from llm.tiny import build_llama, char_tokenizer


def _policy(**arch) -> Policy:
    tok = char_tokenizer()
    arch = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 4, "max_position_embeddings": 256, **arch}
    return Policy(build_llama(tok, 0, **arch), tok, TINY_FORMAT)


def _both(pol, seqs, steps=4, lean=None):
    """Logits of ``steps`` decode steps through ``model(...)`` and through the lean step (``lean``, default
    :func:`lean_step`), each on its own cache."""
    lean = lean or lean_step(pol.model)
    assert lean is not None
    out = []
    with torch.inference_mode():
        for use_lean in (False, True):
            logits, cache, mask, pos = prefill(pol, seqs)
            reserve(cache, 16)
            no_pad = bool(mask.all())
            rows = []
            for t in range(steps):
                ids = logits.argmax(-1, keepdim=True)                       # (B, 1)
                if not no_pad:
                    mask = torch.cat([mask, mask.new_ones((len(seqs), 1))], dim=1)
                if use_lean:
                    logits = lean(ids, pos.unsqueeze(1), None if no_pad else mask, cache)
                else:
                    logits = pol.model(input_ids=ids, attention_mask=None if no_pad else mask,
                                       position_ids=pos.unsqueeze(1), use_cache=True,
                                       **{cache_keyword(pol.model): cache}).logits[:, -1, :]
                pos = pos + 1
                rows.append(logits)
            out.append(torch.stack(rows))
    return out


@pytest.mark.parametrize("arch", [{}, {"num_key_value_heads": 2}, {"hidden_size": 128, "num_attention_heads": 2,
                                                                     "num_key_value_heads": 2}])
@pytest.mark.parametrize("padded", [True, False])
def test_lean_step_is_the_model_call_bit_for_bit(arch, padded):
    """Default heads, grouped-query attention, and heads of 64 (``llm.kv_cache.BufferLayer``); the functional
    step where it applies (not grouped-query attention) and the module step always."""
    pol = _policy(**arch)
    seqs = [[5, 6, 7, 8, 9], [10, 11, 12] if padded else [10, 11, 12, 13, 14], [7] * (2 if padded else 5)]
    ref, got = _both(pol, seqs)
    assert torch.equal(ref, got)
    assert (functional_step(pol.model) is None) == (arch.get("num_key_value_heads", 4) != arch.get(
        "num_attention_heads", 4))
    ref, got = _both(pol, seqs, lean=_module_step(pol.model))
    assert torch.equal(ref, got)


@pytest.mark.parametrize("arch", [{"attention_bias": True, "mlp_bias": True}, {"dtype": torch.bfloat16}],
                         ids=["bias", "bf16"])
def test_functional_step_with_biases_and_bfloat16(arch):
    """Biased projections and a bfloat16 model (the norms' float32 round trip) give the model call's bits."""
    dtype = arch.pop("dtype", None)
    pol = _policy(**arch)
    if dtype is not None:
        pol.model.to(dtype)
    assert functional_step(pol.model) is not None
    ref, got = _both(pol, [[5, 6, 7, 8], [9, 10]])
    assert torch.equal(ref, got)


def test_functional_step_only_for_plain_models():
    """A hook on any module it would skip, a LoRA adapter or a global hook: the module step (which runs the
    hooks / adapters) instead; the functional step reads the modules when asked, so a hook added later
    is seen by the next call."""
    from peft import LoraConfig, get_peft_model

    pol = _policy()
    assert functional_step(pol.model) is not None
    calls = []
    h = pol.model.model.layers[1].mlp.register_forward_hook(lambda m, a, out: calls.append(1))
    assert functional_step(pol.model) is None and lean_step(pol.model) is _module_step(pol.model)
    _both(pol, [[5, 6, 7]], steps=2)
    assert calls  # the module step ran the hook
    h.remove()
    assert functional_step(pol.model) is not None
    g = torch.nn.modules.module.register_module_forward_pre_hook(lambda m, a: None)
    try:
        assert functional_step(pol.model) is None
    finally:
        g.remove()
    lora = get_peft_model(_policy().model, LoraConfig(r=4, target_modules=["q_proj"]))
    assert functional_step(lora) is None and lean_step(lora) is not None


def test_lean_step_under_a_lora_adapter():
    from peft import LoraConfig, get_peft_model

    pol = _policy()
    pol.model = get_peft_model(pol.model, LoraConfig(r=4, target_modules=["q_proj", "v_proj", "down_proj"],
                                                     init_lora_weights=False))
    ref, got = _both(pol, [[5, 6, 7], [8, 9]])
    assert torch.equal(ref, got)


def test_lean_step_only_where_it_applies():
    from transformers import GPT2Config, GPT2LMHeadModel

    assert lean_step(GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=50))) is None
    eager = _policy().model
    eager.config._attn_implementation = "eager"
    assert lean_step(eager) is None
    pol = _policy()
    assert _module_step(pol.model) is _module_step(pol.model)  # remembered per model


def test_decode_uses_it_and_samples_as_before(monkeypatch):
    """Greedy chains are the same with the lean step switched off (the model-level call)."""
    import llm.decode as dec

    pol = _policy()
    prompts = ["Q:1+2-3\n", "Q:4+5\n"]
    kw = dict(greedy=True, max_thoughts=4, max_thought_tokens=8, max_new_tokens=24)
    calls = []
    real = dec.lean_step
    monkeypatch.setattr(dec, "lean_step", lambda model: calls.append(1) or real(model))
    a = pol.generate(prompts, n=2, **kw)
    assert calls and real(pol.model) is not None
    monkeypatch.setattr(dec, "lean_step", lambda model: None)
    b = pol.generate(prompts, n=2, **kw)
    assert [[s.response_ids for s in r] for r in a] == [[s.response_ids for s in r] for r in b]
