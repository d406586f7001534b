"""One optimisation step of the trainer as functions: micro-batching, the loss over passes, clipping,
AdamW, and the learning-rate schedule.

The loss of a step is ``sum_passes numerator / D`` with ``D`` the *global* denominator of the
aggregation (``llm.losses.aggregate_parts``) summed over micro-batches and ranks, so any number of
passes or ranks computes the same gradient (``docs/llm.md``, "The trainer's step"). A NaN/inf loss
or gradient on any rank skips the optimizer step; the schedule then does not advance either (it
counts applied updates, so a skipped step neither shifts the schedule nor triggers PyTorch's
"lr_scheduler.step() before optimizer.step()" warning).
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field

import torch

from . import distributed as D
from .losses import policy_loss, token_logprobs


def make_scheduler(opt: torch.optim.Optimizer, *, schedule: str, warmup_steps: int, total_steps: int):
    """``transformers.get_scheduler``: linear warm-up from 0 over ``warmup_steps`` (none when 0), then
    constant / linear decay to 0 / cosine decay to 0 at ``total_steps``. One ``step()`` per applied
    optimizer update."""
    from transformers import get_scheduler

    name = "constant_with_warmup" if schedule == "constant" and warmup_steps else schedule
    return get_scheduler(name, opt, num_warmup_steps=warmup_steps, num_training_steps=total_steps)


def micro_batches(lengths: list[int], max_seqs: int, max_tokens: int = 0) -> list[list[int]]:
    """Sample indices of each forward/backward pass: the samples sorted by length (longest first, ties
    by index), cut so that a pass holds at most ``max_seqs`` sequences and, if ``max_tokens > 0``, at
    most ``max_tokens`` padded tokens (sequences x the longest); a longer sequence gets a pass alone.
    Every index appears exactly once. Gradient accumulation over passes is exact, so this only changes
    how much compute goes to padding (and float summation order)."""
    if max_seqs < 1 or max_tokens < 0:
        raise ValueError(f"micro_batches: need max_seqs >= 1 and max_tokens >= 0, got {max_seqs}, {max_tokens}")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    out: list[list[int]] = []
    for i in order:
        cur = out[-1] if out else None
        if cur is None or len(cur) >= max_seqs or (max_tokens and (len(cur) + 1) * lengths[cur[0]] > max_tokens):
            out.append([i])
        else:
            cur.append(i)
    return out


def split_to(chunks: list[list[int]], lengths: list[int], k: int) -> list[list[int]]:
    """``chunks`` with the one of most padded tokens halved until there are ``k`` (ranks must run the
    same number of passes under FSDP, where every forward is a collective); once every chunk is a
    single sequence, empty chunks (a zero-weight pass) make up the rest."""
    out = [list(c) for c in chunks]
    if not out:
        return [[] for _ in range(k)]
    while len(out) < k:
        j = max(range(len(out)), key=lambda q: (len(out[q]) * max((lengths[i] for i in out[q]), default=0), -q))
        if len(out[j]) < 2:
            out += [[] for _ in range(k - len(out))]
            break
        h = len(out[j]) // 2
        out[j:j + 1] = [out[j][:h], out[j][h:]]
    return out


@contextlib.contextmanager
def no_sync(model, active: bool):
    """Skip the gradient all-reduce on all but the last micro-batch (DDP ``no_sync`` / FSDP2 flag)."""
    if not active:
        yield
    elif hasattr(model, "no_sync"):
        with model.no_sync():
            yield
    elif hasattr(model, "set_requires_gradient_sync"):
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)
    else:
        yield


def forward_logp(model, batch: dict, with_entropy: bool):
    """``llm.losses.token_logprobs`` of ``model`` on a collated batch: logp (B, T-1) and entropy or None."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
    return token_logprobs(logits, batch["input_ids"], with_entropy=with_entropy)


@dataclass
class UpdateStats:
    """Local (this rank's) sums of one update, reduced over ranks by name in ``llm.metrics``."""
    tokens: float
    """trainable tokens (the denominator of the token means)"""
    loss: float = 0.0
    """sum of the pass losses of the first inner epoch"""
    kl: float = 0.0
    """token-weighted k3 KL summed over every inner epoch that ran"""
    clip: float = 0.0
    """token-weighted clipped fraction summed over every inner epoch that ran"""
    entropy: float = 0.0
    """summed entropy of the sampling policy (first inner epoch) over trainable tokens"""
    epochs: int = 0
    """inner epochs whose passes ran (the kl / clip sums cover this many epochs)"""
    grad_norm: float = float("nan")
    """global gradient norm before clipping, first inner epoch"""
    skipped: bool = False
    skip_reason: str | None = None
    extra: dict = field(default_factory=dict)


def _batches(policy, rb, cfg, info):
    """Collated micro-batches of the rollout batch (equal pass counts on every rank) and their masks."""
    lengths = [len(s.prompt_ids) + len(s.response_ids) for s in rb.samples]
    chunks = micro_batches(lengths, cfg.micro_batch_size, cfg.micro_batch_tokens)
    if info.enabled:  # equal pass counts on every rank (FSDP: each forward is a collective)
        chunks = split_to(chunks, lengths, int(D.all_max(len(chunks), info)))
    batches = [rb.collate(policy, c or [0]) for c in chunks]
    for c, b in zip(chunks, batches):
        if not c:  # zero-weight pass: runs the collectives, adds nothing
            b["response_mask"].zero_()
    return batches, [b["response_mask"][:, 1:] for b in batches]   # masks: (b, T-1) each


def update(policy, model, opt, sched, params, rb, cfg, info: D.DistInfo, ref_model=None) -> UpdateStats:
    """Loss over micro-batches, backward, clip, AdamW step, schedule step; ``inner_epochs`` passes over
    the batch (PPO: ratios against the log-probs before the first pass). Returns this rank's sums."""
    L = cfg.loss
    batches, masks = _batches(policy, rb, cfg, info)
    n_tok = [int(m.sum().item()) for m in masks]
    n_seq_tok = sum(int((m.sum(1) > 0).sum().item()) for m in masks)
    g_tok, g_seq_tok, g_seq = D.all_sum([sum(n_tok), n_seq_tok, len(rb)], info)
    den = {"token-mean": g_tok, "seq-mean-token-mean": g_seq_tok, "seq-mean-token-sum-norm": g_seq}[L.agg]
    norm_len = L.norm_len or cfg.rollout.response_budget
    policy.model.train()
    old = ref = None
    with torch.no_grad():
        if L.kind == "ppo" and L.inner_epochs > 1:
            old = [forward_logp(policy.model, b, False)[0] for b in batches]
        if ref_model is not None:
            ref = [forward_logp(ref_model, b, False)[0] for b in batches]
    W = info.world_size
    st = UpdateStats(tokens=float(sum(n_tok)))
    applied = False
    for epoch in range(L.inner_epochs):
        opt.zero_grad(set_to_none=True)
        bad, ep_loss = 0.0, 0.0
        for j, b in enumerate(batches):
            with no_sync(model, info.enabled and j < len(batches) - 1):
                logp, ent = forward_logp(model, b, with_entropy=epoch == 0)
                out = policy_loss(logp, b["advantages"].to(logp.device), masks[j], kind=L.kind, agg=L.agg,
                                  old_logp=None if old is None else old[j], eps=L.eps, eps_high=L.eps_high,
                                  ref_logp=None if ref is None else ref[j], beta=L.beta, norm_len=norm_len,
                                  denominator=den)
                (out.loss * W).backward()  # DDP averages over ranks; * W makes it the global sum / den
            v = float(out.loss.detach())
            bad = max(bad, 0.0 if math.isfinite(v) else 1.0)
            ep_loss += v if math.isfinite(v) else 0.0
            st.kl += out.stats["kl"] * n_tok[j]          # every epoch: after the first the ratio moves
            st.clip += out.stats["clip_frac"] * n_tok[j]
            if epoch == 0:
                st.entropy += float((ent * masks[j]).sum())
        st.epochs += 1
        if epoch == 0:
            st.loss = ep_loss
        gn = float(torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip if cfg.optim.grad_clip > 0
                                                          else float("inf")))
        if D.all_max(max(bad, 0.0 if math.isfinite(gn) else 1.0), info) > 0:
            opt.zero_grad(set_to_none=True)
            st.skipped = True
            st.skip_reason = "non-finite loss" if D.all_max(bad, info) > 0 else "non-finite gradient"
            if epoch == 0:  # no update applied: the step has no loss (logged as null, counted by the trainer)
                st.loss = float("nan")
            break
        if epoch == 0:
            st.grad_norm = gn
        opt.step()
        applied = True
    if applied:  # the schedule counts applied updates (see the module docstring)
        sched.step()
    opt.zero_grad(set_to_none=True)
    return st
