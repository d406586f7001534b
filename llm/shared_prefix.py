"""Shared-prefix training forward: each group's shared tokens run ONCE, with gradient, for all its samples.

A step's samples come in groups that begin with the same tokens: the ``n`` fresh chains of a prompt
share the prompt, the ``k`` continuations of a reset share prompt + given prefix. The naive update
(``Policy.collate`` + one padded forward) runs those shared tokens once per sample. Here a group's
shared part, all but its last token, is prefilled once (``model(..., use_cache=True)`` under grad);
its keys/values are fanned out to the group's rows (``index_select``: the backward sums the rows'
gradients into the shared part); each row then runs the last shared token and its suffix against
them, with explicit positions and a padding mask over shared + suffix (the last shared token, one per
row, keeps every prefill row non-empty and its logits predict the first suffix token). Logits are
computed only where a trainable token is predicted. Measurements: ``docs/benchmarks.md``. The batch
layout and the pass planner live in :mod:`llm.shared_prefix_batch` (re-exported here).

For row ``i`` of group ``g = group_of[i]`` with shared tokens ``x_g`` (length ``S_g``) and suffix
``y_i`` (length ``R_i``)::

    logp[i, j] = log pi(y_i[j] | x_g, y_i[:j])      j < R_i     (0 and masked for j >= R_i)

so ``logp[i, 0]`` comes from the logits at the last shared position. This equals the naive forward
on ``x_g + y_i`` at the suffix positions (tests: log-probs and parameter gradients, float64, with and
without padding, LoRA, gradient checkpointing). ``suffix_mask`` marks exactly the tokens
``Policy.collate`` marks in ``response_mask[:, 1:]`` (:func:`to_collate_layout` maps one layout to the
other). The loss functions of ``llm.losses`` take these ``(N, R)`` tensors as they are: every
aggregation only sums masked tokens per row (pass ``norm_len`` explicitly for
``seq-mean-token-sum-norm``; the trainer does).

Gradient checkpointing: Hugging Face drops the cache of a checkpointed decoder layer (a replay would
write it twice). When the model has it enabled, :func:`shared_prefix_logprobs` checkpoints the decoder
layers itself (``torch.utils.checkpoint``, non-reentrant) and uses caches whose ``update`` is pure:
the prefix pass records the layer's keys/values (a replay records the same ones again), the suffix
pass reads the recorded ones and stores nothing. Requires a model whose attention layers read a
standard ``DynamicCache`` (Llama, Qwen2, Mistral, ... in transformers >= 4.56).

Distributed: works under DDP (tested in one gloo process, with and without checkpointing: two forwards
before one backward are fine for DDP's reducer). Not under FSDP2: a layer receives gradient through
the keys/values it recorded, not through its output, which FSDP2's backward hooks do not see (raises
``ValueError``); :mod:`llm.shared_prefix_packed` is the one-forward alternative that FSDP2 accepts.

Shape letters: G groups, N rows (samples), S shared length (right padded), R suffix length (right
padded), V vocabulary.
"""
from __future__ import annotations

import contextlib
import functools
import inspect

import torch

from .shared_prefix_batch import (SharedPrefixBatch, build_batch, group_samples, pass_cost, plan_passes,
                                  to_collate_layout)

__all__ = ["SharedPrefixBatch", "group_samples", "build_batch", "shared_prefix_logprobs", "to_collate_layout",
           "plan_passes", "pass_cost", "enable_gradient_checkpointing"]


# ----------------------------------------------------------------------------- caches
def _cache_kwarg(model) -> str:
    """Name of the forward's cache argument on the unwrapped base model: ``cache`` (transformers >=
    5.2x) or ``past_key_values`` (peft and DDP wrappers pass keywords through)."""
    base = model
    for _ in range(4):
        if hasattr(base, "module") and isinstance(base.module, torch.nn.Module):      # DDP
            base = base.module
        elif hasattr(base, "get_base_model"):                                         # peft
            base = base.get_base_model()
        else:
            break
    params = inspect.signature(base.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _layer_classes():
    from transformers.cache_utils import DynamicLayer

    class RecordLayer(DynamicLayer):
        """Prefix pass: keeps this layer's keys/values (an assignment, so a checkpoint replay is harmless)."""

        def update(self, key_states, value_states, *args, **kwargs):
            self.keys, self.values = key_states, value_states
            self.device, self.is_initialized = key_states.device, True
            return key_states, value_states

    class ExtendLayer(DynamicLayer):
        """Suffix pass: the fanned-out shared keys/values + the new ones; stores nothing."""

        def __init__(self, keys, values):
            super().__init__()
            self.keys, self.values = keys, values
            self.device, self.is_initialized = keys.device, True

        def update(self, key_states, value_states, *args, **kwargs):
            return torch.cat([self.keys, key_states], dim=-2), torch.cat([self.values, value_states], dim=-2)

    return RecordLayer, ExtendLayer


def _record_cache():
    from transformers import DynamicCache

    RecordLayer, _ = _layer_classes()
    cache = DynamicCache()
    cache.layers = []
    cache.layer_class_to_replicate = RecordLayer
    return cache


def _extend_cache(recorded, rows: torch.Tensor):
    """Cache whose layer ``l`` reads ``recorded``'s keys/values of layer ``l`` at group ``rows``  # (N,)."""
    from transformers import DynamicCache

    _, ExtendLayer = _layer_classes()
    cache = DynamicCache()
    cache.layers = [ExtendLayer(lay.keys.index_select(0, rows), lay.values.index_select(0, rows))
                    for lay in recorded.layers]
    return cache


# ----------------------------------------------------------------------------- checkpointing
def _plain_forward(layer, *args, **kwargs):
    """The layer's forward with Hugging Face's own checkpointing switched off (it would drop the cache)."""
    flag = layer.gradient_checkpointing
    layer.gradient_checkpointing = False
    try:
        return type(layer).forward(layer, *args, **kwargs)
    finally:
        layer.gradient_checkpointing = flag


def _checkpointed_forward(layer, *args, **kwargs):
    if not (layer.training and torch.is_grad_enabled()):
        return _plain_forward(layer, *args, **kwargs)
    from torch.utils.checkpoint import checkpoint

    return checkpoint(_plain_forward, layer, *args, use_reentrant=False, **kwargs)


def enable_gradient_checkpointing(model) -> None:
    """Turn on Hugging Face gradient (activation) checkpointing of every decoder layer, non-reentrant
    (``activation_checkpointing_enable`` in transformers >= 5.2x, ``gradient_checkpointing_enable``
    before). :func:`shared_prefix_logprobs` then checkpoints the same layers itself."""
    kw = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kw)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kw)


@contextlib.contextmanager
def _own_checkpointing(model):
    """While active, decoder layers with Hugging Face gradient checkpointing enabled are checkpointed
    by :func:`_checkpointed_forward` instead, which keeps the (pure) caches. Always non-reentrant (a
    reentrant checkpoint would cut the gradient through the recorded keys/values); the model's own
    checkpoint options (offloading, reentrancy) are not used. Yields whether any layer was wrapped."""
    try:
        from transformers.modeling_layers import GradientCheckpointingLayer
    except ImportError:  # transformers without it: checkpointing is the model's own business
        yield False
        return
    layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer) and m.gradient_checkpointing]
    # the model-level flag makes the decoder turn ``use_cache`` off under checkpointing: off while we run
    outer = [m for m in model.modules() if not isinstance(m, GradientCheckpointingLayer)
             and getattr(m, "gradient_checkpointing", False) is True] if layers else []
    for m in layers:
        m.forward = functools.partial(_checkpointed_forward, m)
    for m in outer:
        m.gradient_checkpointing = False
    try:
        yield bool(layers)
    finally:
        for m in layers:
            m.__dict__.pop("forward", None)
        for m in outer:
            m.gradient_checkpointing = True


def _reject_fsdp(model) -> None:
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:
        return
    if torch.is_grad_enabled() and any(isinstance(m, FSDPModule) for m in model.modules()):
        raise ValueError("model: FSDP2-sharded; the cache path sends gradient into layers through their recorded "
                         "keys/values, which FSDP2 does not support. Use llm.shared_prefix_packed.packed_logprobs")


# ----------------------------------------------------------------------------- the forward
def _suffix_logprobs(logits: torch.Tensor, targets: torch.Tensor, with_entropy: bool):
    """``log softmax(logits)[targets]`` in float32 (float64 logits stay float64) and (optionally, detached)
    the entropy. logits (N, R, V), targets (N, R) -> (N, R), (N, R) | None."""
    logits = logits if logits.dtype == torch.float64 else logits.float()
    logz = torch.logsumexp(logits, dim=-1)                                  # (N, R)
    logp = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - logz      # (N, R)
    ent = None
    if with_entropy:
        with torch.no_grad():
            lp = logits - logz.unsqueeze(-1)
            ent = -(lp.exp() * lp).sum(-1)
    return logp, ent


def shared_prefix_logprobs(model, batch: SharedPrefixBatch, *, with_entropy: bool = False
                           ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probability of every suffix token, each group's shared part run once (module docstring).

    Two forwards: the shared parts without their last token (right padded, so no query row is
    empty; keys/values recorded), then for every row its group's last shared token followed by its
    suffix, attending to the recorded keys/values at its group (``index_select``: backward sums the
    rows into the group). The last shared token's logits predict the first suffix token.

    Args:
        model: a Hugging Face causal LM (peft- or DDP-wrapped allowed) on ``batch``'s device.
        batch: from :func:`group_samples` or :func:`build_batch`.
        with_entropy: also return the policy entropy at each suffix position (no gradient).
    Returns:
        logp (N, R) float32 (float64 for a float64 model) with gradient, 0 where ``batch.suffix_mask``
        is 0; entropy (N, R) or None.
    """
    if not isinstance(batch, SharedPrefixBatch):
        raise TypeError(f"batch: expected a SharedPrefixBatch, got {type(batch).__name__}")
    _reject_fsdp(model)
    kw = _cache_kwarg(model)
    N, R = batch.suffix_ids.shape
    rows = batch.group_of                                                           # (N,)
    last_at = (batch.shared_len - 1).unsqueeze(1)                                   # (G, 1)
    last = batch.shared_ids.gather(1, last_at)                                      # (G, 1)
    rec_ids = batch.shared_ids[:, :-1]                                              # (G, S-1)
    rec_mask = batch.shared_mask.scatter(1, last_at, 0)[:, :-1]                     # (G, S-1)
    ids = torch.cat([last.index_select(0, rows), batch.suffix_ids], dim=1)          # (N, 1+R)
    att = torch.cat([rec_mask.index_select(0, rows), torch.ones_like(last).index_select(0, rows),
                     batch.suffix_mask.to(rec_mask.dtype)], dim=1)                  # (N, S-1+1+R)
    pos = last_at.index_select(0, rows) + torch.arange(R + 1, device=rows.device)  # (N, 1+R)
    keep = torch.arange(R, device=rows.device)          # positions 0..R-1 predict suffix tokens 0..R-1
    with _own_checkpointing(model):
        cache = {}
        if rec_ids.shape[1] > 0:
            # a group whose shared part is one token records nothing; attending to all (masked later)
            # keeps its query rows non-empty, so no NaN in any attention implementation
            pf_mask = torch.where((rec_mask.sum(1) == 0).unsqueeze(1), torch.ones_like(rec_mask), rec_mask)
            recorded = _record_cache()
            pf_pos = torch.arange(rec_ids.shape[1], device=rows.device).expand_as(rec_ids)
            model(input_ids=rec_ids, attention_mask=pf_mask, position_ids=pf_pos, use_cache=True, logits_to_keep=1,
                  **{kw: recorded})
            cache = {kw: _extend_cache(recorded, rows)}
        out = model(input_ids=ids, attention_mask=att, position_ids=pos, use_cache=bool(cache), logits_to_keep=keep,
                    **cache)
        logp, ent = _suffix_logprobs(out.logits, batch.suffix_ids, with_entropy)   # (N, R)
    m = batch.suffix_mask > 0
    logp = torch.where(m, logp, torch.zeros_like(logp))
    if ent is not None:
        ent = torch.where(m, ent, torch.zeros_like(ent))
    return logp, ent
