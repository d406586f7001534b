"""Shared-prefix training forward in ONE model call per pass: one packed row per group,
``[shared | suffix_1 | ... | suffix_K]``, with a 4-D attention mask (every suffix attends to the shared
part and causally to itself, never to the other suffixes) and positions that restart after the shared
part for every suffix. Same result as :func:`llm.shared_prefix.shared_prefix_logprobs` (tests:
log-probs and gradients against the naive forward, float64).

Why a second path: the cache path runs each decoder layer twice per pass (shared part, then suffixes)
and sends gradient into a layer through the keys/values it recorded, not through its output. DDP and
Hugging Face / our gradient checkpointing handle that; FSDP2 does not (its backward hooks sit on a
layer's outputs: the parameters are still sharded, or already freed, when that gradient arrives). The
packed row is an ordinary single forward, so FSDP2 and Hugging Face gradient checkpointing apply as
they are. Its cost: attention scores over the whole packed row, ``(S + sum_k R_k)^2`` per group instead
of ``sum_k R_k (S + R_k)``, and a ``(G, 1, T, T)`` mask; fine for short suffixes, not for K x thousands
of tokens (measured in ``docs/benchmarks.md``).

Logits are computed only at the packed positions that predict a suffix token (``logits_to_keep``: the
union over rows). Shape letters as in :mod:`llm.shared_prefix`; T packed row length.
"""
from __future__ import annotations

import torch

from .shared_prefix import SharedPrefixBatch, _suffix_logprobs

__all__ = ["packed_layout", "packed_logprobs"]


def packed_layout(batch: SharedPrefixBatch):
    """``ids, pos, seg  # (G, T)`` of the packed rows (``seg``: -1 padding, 0 shared, ``i + 1`` the suffix
    of row ``i``) and ``pred  # (N, R)``: the packed index whose logits predict suffix token ``j`` of row
    ``i`` (``S_g - 1`` for ``j = 0``; 0 on padding)."""
    G = batch.shared_ids.shape[0]
    N, R = batch.suffix_ids.shape
    S_len, R_len, groups = batch.shared_len.tolist(), batch.suffix_len.tolist(), batch.group_of.tolist()
    width = list(S_len)
    for i, g in enumerate(groups):
        width[g] += R_len[i]
    T = max(width)
    ids = torch.zeros((G, T), dtype=torch.long)
    pos = torch.zeros((G, T), dtype=torch.long)
    seg = torch.full((G, T), -1, dtype=torch.long)
    pred = torch.zeros((N, R), dtype=torch.long)
    shared_ids, suffix_ids = batch.shared_ids.cpu(), batch.suffix_ids.cpu()
    fill = list(S_len)
    for g in range(G):
        ids[g, :S_len[g]] = shared_ids[g, :S_len[g]]
        pos[g, :S_len[g]] = torch.arange(S_len[g])
        seg[g, :S_len[g]] = 0
    for i, g in enumerate(groups):
        a, n = fill[g], R_len[i]
        ids[g, a:a + n] = suffix_ids[i, :n]
        pos[g, a:a + n] = S_len[g] + torch.arange(n)
        seg[g, a:a + n] = i + 1
        if n:
            pred[i, 0] = S_len[g] - 1
            pred[i, 1:n] = torch.arange(a, a + n - 1)
        fill[g] += n
    return ids, pos, seg, pred


def packed_mask(seg: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Additive attention mask ``(G, 1, T, T)``: 0 where query ``q`` may attend to key ``k`` (``k <= q``,
    ``k`` not padding, ``k`` shared or in ``q``'s own suffix), the dtype's minimum elsewhere; padding
    queries attend to themselves (no empty row, so no NaN in any attention implementation)."""
    T = seg.shape[1]
    q = torch.arange(T, device=seg.device)
    causal = q.unsqueeze(1) >= q.unsqueeze(0)                                         # (T, T)
    same = (seg.unsqueeze(2) == seg.unsqueeze(1)) | (seg.unsqueeze(1) == 0)           # (G, T, T)
    allow = causal & same & (seg.unsqueeze(1) >= 0)
    allow = allow | torch.eye(T, dtype=torch.bool, device=seg.device)
    mask = torch.zeros(allow.shape, dtype=dtype, device=seg.device).masked_fill(~allow, torch.finfo(dtype).min)
    return mask.unsqueeze(1)


def packed_logprobs(model, batch: SharedPrefixBatch, *, with_entropy: bool = False
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probability (and, detached, entropy) of every suffix token, ``(N, R)``, 0 where
    ``batch.suffix_mask`` is 0; one forward of ``model`` (any wrapper: FSDP2, DDP, peft) per call."""
    if not isinstance(batch, SharedPrefixBatch):
        raise TypeError(f"batch: expected a SharedPrefixBatch, got {type(batch).__name__}")
    dev = batch.suffix_ids.device
    ids, pos, seg, pred = (x.to(dev) for x in packed_layout(batch))
    dtype = next(p for p in model.parameters() if p.is_floating_point()).dtype
    valid = batch.suffix_mask > 0
    keep = torch.unique(pred[valid]) if bool(valid.any()) else torch.zeros(1, dtype=torch.long, device=dev)
    out = model(input_ids=ids, attention_mask=packed_mask(seg, dtype), position_ids=pos, use_cache=False,
                logits_to_keep=keep)
    col = torch.searchsorted(keep, pred).clamp(max=len(keep) - 1)                     # (N, R)
    logits = out.logits[batch.group_of.unsqueeze(1), col]                              # (N, R, V)
    logp, ent = _suffix_logprobs(logits, batch.suffix_ids, with_entropy)
    logp = torch.where(valid, logp, torch.zeros_like(logp))
    if ent is not None:
        ent = torch.where(valid, ent, torch.zeros_like(ent))
    return logp, ent
