"""The alternative shared-prefix forward measured against ``llm.shared_prefix`` (approach (b)): one packed
row per group, ``[shared | suffix_1 | ... | suffix_K]``, a 4-D additive attention mask (each suffix sees
the shared part and itself, causally), positions restarting after the shared part for every suffix.
One forward per pass, no cache (so Hugging Face gradient checkpointing applies as is), but attention
over the whole packed row: ``(S + sum_k R_k)^2`` scores instead of ``sum_k R_k (S + R_k)``.

Llama-style models only (calls ``model.model`` and ``model.lm_head``); a benchmark contender, not a
library path. Same outputs as :func:`llm.shared_prefix.shared_prefix_logprobs` (tested).
"""
from __future__ import annotations

import torch

from llm.shared_prefix import SharedPrefixBatch, _suffix_logprobs


def _layout(batch: SharedPrefixBatch):
    """Packed ids/positions/segment ids (G, T) and, per row, the packed index predicting each suffix token."""
    G = batch.shared_ids.shape[0]
    N, R = batch.suffix_ids.shape
    S_len, R_len = batch.shared_len.tolist(), batch.suffix_len.tolist()
    groups = batch.group_of.tolist()
    width = [S_len[g] for g in range(G)]
    for i, g in enumerate(groups):
        width[g] += R_len[i]
    T = max(width)
    ids = torch.zeros((G, T), dtype=torch.long)
    pos = torch.zeros((G, T), dtype=torch.long)
    seg = torch.full((G, T), -1, dtype=torch.long)                  # -1 padding, 0 shared, k + 1 suffix k
    pred = torch.zeros((N, R), dtype=torch.long)                    # packed index whose logits predict token j
    fill = list(S_len)
    for g in range(G):
        ids[g, :S_len[g]] = batch.shared_ids[g, :S_len[g]]
        pos[g, :S_len[g]] = torch.arange(S_len[g])
        seg[g, :S_len[g]] = 0
    for i, g in enumerate(groups):
        a, n = fill[g], R_len[i]
        ids[g, a:a + n] = batch.suffix_ids[i, :n]
        pos[g, a:a + n] = S_len[g] + torch.arange(n)
        seg[g, a:a + n] = i + 1
        if n:
            pred[i, 0] = S_len[g] - 1
            pred[i, 1:n] = torch.arange(a, a + n - 1)
        fill[g] += n
    return ids, pos, seg, pred


def packed_logprobs(model, batch: SharedPrefixBatch, *, with_entropy: bool = False):
    """logp (N, R) (and entropy) of every suffix token, one packed row per group (module docstring)."""
    dev = batch.suffix_ids.device
    ids, pos, seg, pred = (x.to(dev) for x in _layout(batch))
    T = ids.shape[1]
    q = torch.arange(T, device=dev)
    causal = q.unsqueeze(1) >= q.unsqueeze(0)                                              # (T, T)
    same = (seg.unsqueeze(2) == seg.unsqueeze(1)) | (seg.unsqueeze(1) == 0)                # (G, T, T)
    allow = causal & same & (seg.unsqueeze(1) >= 0)
    allow |= torch.eye(T, dtype=torch.bool, device=dev)          # padding rows attend to themselves (no NaN)
    dtype = next(model.parameters()).dtype
    mask = torch.zeros(allow.shape, dtype=dtype, device=dev).masked_fill(~allow, torch.finfo(dtype).min)
    h = model.model(input_ids=ids, attention_mask=mask.unsqueeze(1), position_ids=pos).last_hidden_state  # (G, T, H)
    rows = batch.group_of                                                                   # (N,)
    h_pred = h[rows.unsqueeze(1), pred]                                                     # (N, R, H)
    logp, ent = _suffix_logprobs(model.lm_head(h_pred), batch.suffix_ids, with_entropy)
    m = batch.suffix_mask > 0
    logp = torch.where(m, logp, torch.zeros_like(logp))
    if ent is not None:
        ent = torch.where(m, ent, torch.zeros_like(ent))
    return logp, ent
