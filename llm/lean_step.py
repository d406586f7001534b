"""A lean one-token decode step for Llama models: the model's own modules, without the model-level call.

A decode step of ``LlamaForCausalLM`` through its ``forward`` spends a fixed ~0.5 ms on a CPU in what
surrounds the layers (keyword plumbing and output capture decorators, the 4-D mask builder, the
gradient-checkpointing wrapper of every layer, output dataclasses), whatever the batch: on the tiny
default that is a third of a 32-row step, and the reset methods run several short decode loops per step
(fresh tries, the localization reply, the continuations), so they pay it more often than GRPO.
:func:`lean_step` calls the same modules in the same order as ``LlamaModel.forward`` does for one new
token per row (embedding, rotary embedding, then per layer: input norm, the attention module with the
cache, residual, post-attention norm, MLP, residual; final norm, LM head), with the padding mask as a
4-D boolean mask, which is what the SDPA attention receives from the model-level call. The logits are
bit-identical to ``model(...)``'s (``tests/llm/test_lean_step.py``); LoRA adapters (peft) live inside
those modules and apply as usual.

Used by ``llm.decode`` whenever :func:`lean_step` returns a function: a plain ``LlamaForCausalLM``
(under DDP / a LoRA peft wrapper) with SDPA attention; anything else (other architectures, other
attention implementations, prompt-learning adapters) takes the model's own ``forward``. The classes are
matched by exact name, so subclasses take ``forward`` too, among them FSDP2's (``fully_shard`` makes
``FSDPLlamaDecoderLayer``, whose parameters are gathered by hooks on the layer's own ``forward``).
"""
from __future__ import annotations

import inspect
import weakref
from typing import Callable

import torch

_LEAN: "weakref.WeakKeyDictionary[torch.nn.Module, Callable | None]" = weakref.WeakKeyDictionary()


def base_model(model: torch.nn.Module) -> torch.nn.Module:
    """The model under DDP (``.module``) and peft (``get_base_model()``) wrappers."""
    while True:
        if hasattr(model, "get_base_model"):
            model = model.get_base_model()
        elif isinstance(getattr(model, "module", None), torch.nn.Module):
            model = model.module
        else:
            return model


def _supported(model: torch.nn.Module):
    """The base ``LlamaForCausalLM`` and the attention's cache keyword, or None."""
    peft_cfg = getattr(model, "peft_config", None)
    if peft_cfg and any(str(getattr(c, "peft_type", "")).split(".")[-1] != "LORA" for c in peft_cfg.values()):
        return None
    base = base_model(model)
    if type(base).__name__ != "LlamaForCausalLM" or getattr(base.config, "_attn_implementation", None) != "sdpa":
        return None
    inner = getattr(base, "model", None)
    if inner is None or not all(hasattr(inner, a) for a in ("embed_tokens", "rotary_emb", "layers", "norm")):
        return None
    if any(type(layer).__name__ != "LlamaDecoderLayer" for layer in inner.layers):
        return None
    params = inspect.signature(inner.layers[0].self_attn.forward).parameters
    kw = next((k for k in ("cache", "past_key_values", "past_key_value") if k in params), None)
    return None if kw is None else (base, kw)


def lean_step(model: torch.nn.Module) -> Callable | None:
    """``step(input_ids (B, 1), position_ids (B, 1), mask (B, T) or None, cache) -> logits (B, V)`` for a
    supported model (module docstring), else None. Remembered per model object."""
    if model in _LEAN:
        return _LEAN[model]
    found = _supported(model)
    fn = None
    if found is not None:
        base, kw = found
        inner = base.model

        def fn(ids: torch.Tensor, pos: torch.Tensor, mask: torch.Tensor | None, cache) -> torch.Tensor:
            h = inner.embed_tokens(ids)                                    # (B, 1, H)
            rope = inner.rotary_emb(h, pos)
            att = None if mask is None else mask[:, None, None, :].bool()  # (B, 1, 1, T): keys each row sees
            for layer in inner.layers:
                a, _ = layer.self_attn(hidden_states=layer.input_layernorm(h), position_embeddings=rope,
                                       attention_mask=att, **{kw: cache})
                h = h + a
                h = h + layer.mlp(layer.post_attention_layernorm(h))
            return base.lm_head(inner.norm(h))[:, -1, :]
    _LEAN[model] = fn
    return fn
