"""Shared-prefix training forward: each group's shared tokens run ONCE, with gradient, for all its samples.

A step's samples come in groups that begin with the same tokens: the ``n`` fresh chains of a prompt
share the prompt, the ``k`` continuations of a reset share prompt + given prefix. The naive update
(``Policy.collate`` + one padded forward) runs those shared tokens once per sample. Here a group's
shared part, all but its last token, is prefilled once (``model(..., use_cache=True)`` under grad);
its keys/values are fanned out to the group's rows (``index_select``: the backward sums the rows'
gradients into the shared part); each row then runs the last shared token and its suffix against
them, with explicit positions and a padding mask over shared + suffix (the last shared token, one per
row, keeps every prefill row non-empty and its logits predict the first suffix token). Logits are
computed only where a trainable token is predicted. Measurements: ``docs/benchmarks.md``.

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
from dataclasses import dataclass

import torch

__all__ = ["SharedPrefixBatch", "group_samples", "build_batch", "shared_prefix_logprobs", "to_collate_layout",
           "plan_passes", "pass_cost", "enable_gradient_checkpointing"]


# ----------------------------------------------------------------------------- batch layout
@dataclass
class SharedPrefixBatch:
    """Groups of rows that share their first tokens, padded for one shared-prefix forward."""

    shared_ids: torch.Tensor
    """(G, S) long, right padded: the shared tokens of each group"""
    shared_mask: torch.Tensor
    """(G, S) long, 1 on real shared tokens"""
    suffix_ids: torch.Tensor
    """(N, R) long, right padded: each row's own tokens"""
    suffix_mask: torch.Tensor
    """(N, R) float, 1.0 on real suffix tokens (the trainable ones)"""
    group_of: torch.Tensor
    """(N,) long, group of each row; rows of a group are contiguous"""
    order: list[int]
    """(N,) position of each row in the caller's sample list (rows are sorted by group)"""

    def __len__(self) -> int:
        return int(self.suffix_ids.shape[0])

    @property
    def shared_len(self) -> torch.Tensor:
        """(G,) true length of each group's shared part."""
        return self.shared_mask.sum(1)

    @property
    def suffix_len(self) -> torch.Tensor:
        """(N,) true length of each row's suffix."""
        return self.suffix_mask.sum(1).long()

    def to(self, device) -> "SharedPrefixBatch":
        return SharedPrefixBatch(self.shared_ids.to(device), self.shared_mask.to(device), self.suffix_ids.to(device),
                                 self.suffix_mask.to(device), self.group_of.to(device), list(self.order))


def build_batch(shared: list[list[int]], suffixes: list[list[list[int]]], pad_id: int,
                order: list[int] | None = None) -> SharedPrefixBatch:
    """Pad ``shared[g]`` and ``suffixes[g][k]`` (both on the right) into a :class:`SharedPrefixBatch`.

    Args:
        shared: (G,) token lists, each non-empty (its last position predicts the first suffix token).
        suffixes: (G,) lists of K_g >= 1 token lists (may be empty: nothing to train on).
        pad_id: token id used for padding (never attended to).
        order: (N,) caller positions of the rows in group order; default ``0..N-1``.
    """
    if len(shared) != len(suffixes):
        raise ValueError(f"shared/suffixes: expected one suffix list per group, got {len(shared)} groups and "
                         f"{len(suffixes)} suffix lists")
    if not shared:
        raise ValueError("shared: expected at least one group, got []")
    for g, (s, rows) in enumerate(zip(shared, suffixes)):
        if len(s) == 0:
            raise ValueError(f"shared[{g}]: empty; every group needs a shared token to predict its first suffix token")
        if len(rows) == 0:
            raise ValueError(f"suffixes[{g}]: expected at least one row in group {g}, got none")
    G, N = len(shared), sum(len(r) for r in suffixes)
    S = max(len(s) for s in shared)
    R = max(len(y) for rows in suffixes for y in rows)
    shared_ids = torch.full((G, S), pad_id, dtype=torch.long)
    shared_mask = torch.zeros((G, S), dtype=torch.long)
    suffix_ids = torch.full((N, R), pad_id, dtype=torch.long)
    suffix_mask = torch.zeros((N, R), dtype=torch.float32)
    group_of = torch.empty(N, dtype=torch.long)
    i = 0
    for g, (s, rows) in enumerate(zip(shared, suffixes)):
        shared_ids[g, :len(s)] = torch.tensor(s, dtype=torch.long)
        shared_mask[g, :len(s)] = 1
        for y in rows:
            suffix_ids[i, :len(y)] = torch.tensor(y, dtype=torch.long)
            suffix_mask[i, :len(y)] = 1.0
            group_of[i] = g
            i += 1
    order = list(range(N)) if order is None else [int(o) for o in order]
    if sorted(order) != list(range(N)):
        raise ValueError(f"order: expected a permutation of 0..{N - 1}, got {order[:8]}...")
    return SharedPrefixBatch(shared_ids, shared_mask, suffix_ids, suffix_mask, group_of, order)


def group_samples(samples: list, pad_id: int) -> SharedPrefixBatch:
    """Group ``llm.policy.Sample`` objects by their shared tokens ``prompt_ids + response_ids[:prefix_len]``
    (fresh chains of a prompt share the prompt; continuations of a reset share prompt + prefix); each
    row's suffix is ``response_ids[prefix_len:]``, exactly the tokens ``Policy.collate`` marks as
    trainable. Groups keep the order of their first sample; ``order`` maps rows back to ``samples``."""
    if not samples:
        raise ValueError("samples: expected at least one Sample, got []")
    groups: dict[tuple, list[int]] = {}
    for j, s in enumerate(samples):
        key = tuple(s.prompt_ids) + tuple(s.response_ids[:s.prefix_len])
        groups.setdefault(key, []).append(j)
    shared = [list(k) for k in groups]
    suffixes = [[list(samples[j].response_ids[samples[j].prefix_len:]) for j in js] for js in groups.values()]
    order = [j for js in groups.values() for j in js]
    return build_batch(shared, suffixes, pad_id, order)


def pass_cost(shared_lens: list[int], suffix_lens: list[int]) -> int:
    """Padded tokens of one :func:`shared_prefix_logprobs` call on rows whose groups have shared lengths
    ``shared_lens`` (one per group) and whose suffixes have lengths ``suffix_lens`` (one per row):
    ``G * (S_max - 1)`` in the shared pass plus ``N * (R_max + 1)`` in the suffix pass."""
    if not shared_lens:
        return 0
    return len(shared_lens) * (max(shared_lens) - 1) + len(suffix_lens) * (max(suffix_lens, default=0) + 1)


def plan_passes(samples: list, max_tokens: int, *, max_waste: float = 0.25) -> list[list[int]]:
    """Sample indices of each forward/backward pass of a shared-prefix update, at most ``max_tokens``
    padded tokens per pass (:func:`pass_cost`). Groups (same key as :func:`group_samples`) are taken
    longest suffix first (then longest shared part) and packed greedily; a group joins the current pass
    only if the pass stays within budget and padding grows the cost by at most ``max_waste`` over
    running the two apart (a reset group's short continuations are not padded to a fresh group's long
    chains). A group over the budget on its own is cut into chunks of rows (longest suffix first),
    each chunk a pass that runs the shared part again; a single row over the budget gets a pass alone.
    Every index appears exactly once."""
    if max_tokens < 1:
        raise ValueError(f"max_tokens: expected >= 1, got {max_tokens}")
    if max_waste < 0:
        raise ValueError(f"max_waste: expected >= 0, got {max_waste}")
    groups: dict[tuple, list[int]] = {}
    for j, s in enumerate(samples):
        groups.setdefault(tuple(s.prompt_ids) + tuple(s.response_ids[:s.prefix_len]), []).append(j)
    S = {k: len(k) for k in groups}
    R = [len(s.response_ids) - s.prefix_len for s in samples]
    passes: list[list[int]] = []
    cur_S: list[int] = []
    cur: list[int] = []
    for key in sorted(groups, key=lambda k: (-max(R[j] for j in groups[k]), -S[k])):
        rows = sorted(groups[key], key=lambda j: (-R[j], j))
        alone = pass_cost([S[key]], [R[j] for j in rows])
        if cur:
            merged = pass_cost(cur_S + [S[key]], [R[j] for j in cur + rows])
            if merged <= max_tokens and merged <= (1 + max_waste) * (pass_cost(cur_S, [R[j] for j in cur]) + alone):
                cur, cur_S = cur + rows, cur_S + [S[key]]
                continue
            passes.append(cur)
        cur, cur_S = [], []
        if alone <= max_tokens:
            cur, cur_S = rows, [S[key]]
            continue
        chunk: list[int] = []
        for j in rows:  # the group alone is over budget: chunks of its rows
            if chunk and pass_cost([S[key]], [R[i] for i in chunk + [j]]) > max_tokens:
                passes.append(chunk)
                chunk = []
            chunk.append(j)
        passes.append(chunk)
    if cur:
        passes.append(cur)
    return passes


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


def to_collate_layout(x: torch.Tensor, batch: SharedPrefixBatch) -> torch.Tensor:
    """Scatter per-row suffix values ``x  # (N, R)`` into the ``(N, T-1)`` layout of ``Policy.collate``'s
    ``input_ids[:, 1:]`` for the same samples in row order (``[samples[o] for o in batch.order]``), with
    ``T = max_i (S_g(i) + R_i)``; 0 elsewhere. Differentiable in ``x``. ``to_collate_layout(suffix_mask)``
    equals ``collate(...)["response_mask"][:, 1:]``."""
    N, R = batch.suffix_ids.shape
    if tuple(x.shape) != (N, R):
        raise ValueError(f"x: expected shape {(N, R)} (rows, suffix length), got {tuple(x.shape)}")
    start = batch.shared_len.index_select(0, batch.group_of) - 1                     # (N,)
    T1 = int((start + 1 + batch.suffix_len).max())  - 1 if N else 0
    cols = start.unsqueeze(1) + torch.arange(R, device=x.device)                     # (N, R)
    valid = batch.suffix_mask > 0
    cols = torch.where(valid, cols, torch.full_like(cols, T1))                       # padding -> spare column
    out = x.new_zeros((N, T1 + 1)).scatter(1, cols, torch.where(valid, x, torch.zeros_like(x)))
    return out[:, :T1]
