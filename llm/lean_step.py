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

Plain models (every projection a ``torch.nn.Linear``, ``LlamaRMSNorm`` norms, default rotary embedding,
as many key/value heads as query heads, no hooks anywhere: the tiny default, a full fine-tune) go one
step further (:func:`functional_step`): the same aten operations in the same order on the same tensors
(``F.linear`` with each module's weight, the norm's float32 arithmetic, the rotary ``cos`` / ``sin``, the
cache update, ``F.scaled_dot_product_attention``), with none of the modules' ``__call__`` / keyword
plumbing. Same bits again (tests), ~0.3 ms less per step on a CPU (0.86 -> 0.54 ms for one row of the
tiny default). It reads the modules when :func:`lean_step` is called, so ``llm.decode`` asks once per
decode loop (a LoRA adapter or a hook added later is seen by the next loop).
"""
from __future__ import annotations

import inspect
import weakref
from typing import Callable

import torch
import torch.nn.functional as F

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
    supported model (module docstring), else None: :func:`functional_step` for a plain model (checked at
    every call: ask once per decode loop), else the module step, remembered per model object."""
    fn = functional_step(model)
    return fn if fn is not None else _module_step(model)


def _hooked(m: torch.nn.Module) -> bool:
    return bool(m._forward_hooks or m._forward_pre_hooks or getattr(m, "_forward_hooks_with_kwargs", None))


def functional_step(model: torch.nn.Module) -> Callable | None:
    """The decode step of a plain Llama model as aten calls on its current parameters (module docstring),
    or None when the model is not plain: a projection that is not exactly ``torch.nn.Linear`` (LoRA, a
    quantized layer), another norm or MLP class, a non-default rotary embedding, grouped-query attention,
    a forward hook on any module it would skip, or a global module hook."""
    from torch.nn.modules import module as _mod
    from transformers.models.llama.modeling_llama import rotate_half  # the helper the attention module uses

    found = _supported(model)
    if found is None or _mod._global_forward_hooks or _mod._global_forward_pre_hooks:
        return None
    base = found[0]
    inner = base.model
    rot = inner.rotary_emb
    mods = [base, inner, inner.embed_tokens, rot, inner.norm, base.lm_head]
    if type(base.lm_head) is not torch.nn.Linear or getattr(rot, "rope_type", None) != "default" \
            or type(inner.norm).__name__ != "LlamaRMSNorm":
        return None
    layers = []
    for layer in inner.layers:
        at, mlp = layer.self_attn, layer.mlp
        projs = (at.q_proj, at.k_proj, at.v_proj, at.o_proj, mlp.gate_proj, mlp.up_proj, mlp.down_proj)
        norms = (layer.input_layernorm, layer.post_attention_layernorm)
        if any(type(p) is not torch.nn.Linear for p in projs) or type(mlp).__name__ != "LlamaMLP" \
                or any(type(n).__name__ != "LlamaRMSNorm" for n in norms) \
                or getattr(at, "num_key_value_groups", 1) != 1 or (at.training and at.attention_dropout):
            return None
        mods += [layer, at, mlp, *projs, *norms, mlp.act_fn]
        layers.append((norms[0].weight, norms[0].variance_epsilon, at.q_proj, at.k_proj, at.v_proj, at.o_proj,
                       at.scaling, at.head_dim, at.layer_idx, norms[1].weight, norms[1].variance_epsilon,
                       mlp.gate_proj, mlp.up_proj, mlp.down_proj, mlp.act_fn))
    if any(_hooked(m) for m in mods):
        return None
    embed, head, inv_freq, scaling = inner.embed_tokens, base.lm_head, rot.inv_freq, rot.attention_scaling
    norm_w, norm_eps = inner.norm.weight, inner.norm.variance_epsilon

    def rms(h, w, eps):  # LlamaRMSNorm.forward
        dtype = h.dtype
        x = h.to(torch.float32)
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
        return w * x.to(dtype)

    def fn(ids: torch.Tensor, pos: torch.Tensor, mask: torch.Tensor | None, cache) -> torch.Tensor:
        h = embed(ids)                                                      # (B, 1, H)
        B = h.shape[0]
        freqs = pos[..., None].float() * inv_freq.to(device=h.device, dtype=torch.float)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos = (emb.cos() * scaling).to(dtype=h.dtype).unsqueeze(1)          # (B, 1, 1, D)
        sin = (emb.sin() * scaling).to(dtype=h.dtype).unsqueeze(1)
        att = None if mask is None else mask[:, None, None, :].bool()       # (B, 1, 1, T)
        for (w1, eps1, q_proj, k_proj, v_proj, o_proj, scale, hd, li, w2, eps2, gate, up, down, act) in layers:
            x = rms(h, w1, eps1)
            q = F.linear(x, q_proj.weight, q_proj.bias).view(B, 1, -1, hd).transpose(1, 2)   # (B, Hq, 1, D)
            k = F.linear(x, k_proj.weight, k_proj.bias).view(B, 1, -1, hd).transpose(1, 2)
            v = F.linear(x, v_proj.weight, v_proj.bias).view(B, 1, -1, hd).transpose(1, 2)
            q = (q * cos) + (rotate_half(q) * sin)
            k = (k * cos) + (rotate_half(k) * sin)
            k, v = cache.update(k, v, li)
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=att, dropout_p=0.0, scale=scale, is_causal=False)
            o = o.reshape(o.shape[0], -1, 1, v.shape[-1]).transpose(1, 2).contiguous()
            h = h + F.linear(o.reshape(B, 1, -1).contiguous(), o_proj.weight, o_proj.bias)
            x = rms(h, w2, eps2)
            h = h + F.linear(act(F.linear(x, gate.weight, gate.bias)) * F.linear(x, up.weight, up.bias),
                             down.weight, down.bias)
        return F.linear(rms(h, norm_w, norm_eps), head.weight, head.bias)[:, -1, :]

    return fn


def _module_step(model: torch.nn.Module) -> Callable | None:
    """The step through the layers' own modules (module docstring), or None; remembered per model."""
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
