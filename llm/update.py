"""One optimisation step of the trainer as functions: mini-batches, micro-batching, the loss over passes,
clipping, AdamW, and the learning-rate schedule.

A rollout batch is cut into ``mini_batches`` mini-batches of whole prompts (:func:`mini_batch_indices`),
and each gets one AdamW step: the paper's "32 prompts, ``ppo_mini_batch_size`` 8, one epoch" is 4
optimizer steps per batch. Only the first mini-batch is exactly on-policy: the REINFORCE loss has no
importance ratio, so the later mini-batches follow the gradient of samples drawn by the policy before
the earlier steps (as in the paper's runs); the PPO loss measures its ratio against the log-probs taken
before the first step. With ``loss.inner_epochs > 1`` the mini-batch pass is repeated (epochs outer).

Within a mini-batch the loss is ``sum_passes numerator / D`` with ``D`` the *global* denominator of the
aggregation (``llm.losses.aggregate_parts``) over that mini-batch's micro-batches and all ranks, so any
number of passes or ranks computes the same gradient (``docs/llm.md``, "The trainer's step"). A NaN/inf
loss or gradient on any rank skips that optimizer step (the other mini-batches still step); the schedule
advances once per *applied* optimizer step (so a skipped step neither shifts the schedule nor triggers
PyTorch's "lr_scheduler.step() before optimizer.step()" warning), and its length is
``steps x mini_batches x inner_epochs`` optimizer steps.

The pieces are separate so that the forward can change without touching the loop: :func:`mini_batch_indices`
(the split), :func:`prepare` (collated passes and the global denominator of one mini-batch),
:func:`accumulate` (forward + backward of every pass of one mini-batch), :func:`optimizer_step` (clip,
AdamW, schedule) and :func:`update` (the loop).
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
    """loss of the first inner epoch (mean over mini-batches of the sum of their pass losses)"""
    kl: float = 0.0
    """token-weighted k3 KL summed over every inner epoch that ran"""
    clip: float = 0.0
    """token-weighted clipped fraction summed over every inner epoch that ran"""
    entropy: float = 0.0
    """summed entropy over trainable tokens, first inner epoch (of the sampling policy when mini_batches = 1;
    later mini-batches see the policy after the earlier steps)"""
    epochs: int = 0
    """inner epochs whose passes ran (the kl / clip sums cover this many epochs)"""
    grad_norm: float = float("nan")
    """global gradient norm before clipping: mean over the applied mini-batch steps of the first inner epoch"""
    skipped: bool = False
    """an optimizer step of this batch was skipped (non-finite loss or gradient)"""
    skip_reason: str | None = None
    opt_steps: int = 0
    """optimizer steps applied (mini_batches x inner_epochs when none was skipped)"""
    skipped_steps: int = 0
    """optimizer steps skipped"""
    extra: dict = field(default_factory=dict)


def mini_batch_indices(rb, n: int) -> list[list[int]]:
    """Sample indices of each of the ``n`` mini-batches of a rollout batch: mini-batch ``j`` holds the
    prompts at positions ``j, j + n, j + 2n, ...`` (all samples of a prompt together: a group's advantages
    are centred within it). The step's prompts are a random draw, so this is a random split; it is strided
    rather than contiguous so that it does not depend on how the prompts are sharded over ranks (blocks of
    a multiple of ``n`` prompts): 2 processes reproduce one."""
    if n < 1:
        raise ValueError(f"mini_batch_indices: n must be >= 1, got {n}")
    groups = rb.prompt_groups() if hasattr(rb, "prompt_groups") else [list(range(len(rb)))]
    return [[j for g in groups[m::n] for j in g] for m in range(n)]


@dataclass
class MiniBatch:
    """Collated passes of one mini-batch on this rank and the global denominator of its loss."""
    batches: list[dict]
    """collated micro-batches (``RolloutBatch.collate``), equal in number on every rank"""
    masks: list[torch.Tensor]
    """(b, T-1) trainable-token masks, aligned with ``token_logprobs``"""
    n_tok: list[int]
    """trainable tokens per pass"""
    den: float
    """denominator of the aggregation over the mini-batch and all ranks"""
    old: list[torch.Tensor] | None = None
    """(b, T-1) log-probs before the first optimizer step of the batch (PPO ratios)"""
    ref: list[torch.Tensor] | None = None
    """(b, T-1) log-probs of the frozen reference (KL)"""


def prepare(policy, rb, index: list[int], cfg, info: D.DistInfo) -> MiniBatch:
    """Micro-batches of the samples ``index`` (length-sorted, capped by ``micro_batch_size`` /
    ``micro_batch_tokens``; equal pass counts on every rank, an empty pass has a zero mask) and the global
    denominator of the loss aggregation ``cfg.loss.agg`` over them."""
    lengths = [len(rb.samples[j].prompt_ids) + len(rb.samples[j].response_ids) for j in index]
    chunks = micro_batches(lengths, cfg.micro_batch_size, cfg.micro_batch_tokens)
    if info.enabled:  # equal pass counts on every rank (FSDP: each forward is a collective)
        chunks = split_to(chunks, lengths, int(D.all_max(len(chunks), info)))
    batches = [rb.collate(policy, [index[c] for c in chunk] if chunk else [index[0] if index else 0])
               for chunk in chunks]
    for c, b in zip(chunks, batches):
        if not c:  # zero-weight pass: runs the collectives, adds nothing
            b["response_mask"].zero_()
    masks = [b["response_mask"][:, 1:] for b in batches]   # (b, T-1) each
    n_tok = [int(m.sum().item()) for m in masks]
    n_seq_tok = sum(int((m.sum(1) > 0).sum().item()) for m in masks)
    g_tok, g_seq_tok, g_seq = D.all_sum([sum(n_tok), n_seq_tok, len(index)], info)
    den = {"token-mean": g_tok, "seq-mean-token-mean": g_seq_tok, "seq-mean-token-sum-norm": g_seq}[cfg.loss.agg]
    return MiniBatch(batches, masks, n_tok, float(den))


@dataclass
class PassSums:
    """This rank's sums over the passes of one mini-batch."""
    loss: float = 0.0
    bad: float = 0.0
    """1.0 when a pass loss was NaN/inf"""
    kl: float = 0.0
    clip: float = 0.0
    entropy: float = 0.0


def accumulate(policy, model, mb: MiniBatch, cfg, info: D.DistInfo, *, with_entropy: bool) -> PassSums:
    """Forward and backward of every pass of one mini-batch (gradients accumulate in ``.grad``; DDP syncs
    on the last pass only). Returns the pass sums (token-weighted kl / clip fraction, entropy)."""
    L = cfg.loss
    norm_len = L.norm_len or cfg.rollout.response_budget
    W = info.world_size
    out = PassSums()
    for j, b in enumerate(mb.batches):
        with no_sync(model, info.enabled and j < len(mb.batches) - 1):
            logp, ent = forward_logp(model, b, with_entropy=with_entropy)
            res = policy_loss(logp, b["advantages"].to(logp.device), mb.masks[j], kind=L.kind, agg=L.agg,
                              old_logp=None if mb.old is None else mb.old[j], eps=L.eps, eps_high=L.eps_high,
                              ref_logp=None if mb.ref is None else mb.ref[j], beta=L.beta, norm_len=norm_len,
                              denominator=mb.den, dual_clip=L.dual_clip)
            (res.loss * W).backward()  # DDP averages over ranks; * W makes it the global sum / den
        v = float(res.loss.detach())
        out.bad = max(out.bad, 0.0 if math.isfinite(v) else 1.0)
        out.loss += v if math.isfinite(v) else 0.0
        out.kl += res.stats["kl"] * mb.n_tok[j]
        out.clip += res.stats["clip_frac"] * mb.n_tok[j]
        if with_entropy:
            out.entropy += float((ent * mb.masks[j]).sum())
    return out


def optimizer_step(opt, sched, params, grad_clip: float, bad: float, info: D.DistInfo
                   ) -> tuple[bool, float, str | None]:
    """Clip the gradient norm, then AdamW and the schedule step unless the loss or the gradient is
    non-finite on any rank (then the gradient is dropped). Returns (applied, norm before clipping, reason
    of a skip or None)."""
    gn = float(torch.nn.utils.clip_grad_norm_(params, grad_clip if grad_clip > 0 else float("inf")))
    applied = D.all_max(max(bad, 0.0 if math.isfinite(gn) else 1.0), info) == 0
    reason = None
    if applied:
        opt.step()
        sched.step()  # the schedule counts applied optimizer steps (see the module docstring)
    else:
        reason = "non-finite loss" if D.all_max(bad, info) > 0 else "non-finite gradient"
    opt.zero_grad(set_to_none=True)
    return applied, gn, reason


def update(policy, model, opt, sched, params, rb, cfg, info: D.DistInfo, ref_model=None) -> UpdateStats:
    """``cfg.loss.inner_epochs`` passes over the rollout batch, each one AdamW step per mini-batch
    (``cfg.mini_batches``; PPO ratios against the log-probs before the first step). Returns this rank's
    sums: loss = mean over the first epoch's mini-batches of their losses; grad_norm = mean over its
    applied steps."""
    L = cfg.loss
    minis = [prepare(policy, rb, idx, cfg, info) for idx in mini_batch_indices(rb, cfg.mini_batches)]
    policy.model.train()
    with torch.no_grad():
        for mb in minis:
            if L.kind == "ppo" and (L.inner_epochs > 1 or len(minis) > 1):
                mb.old = [forward_logp(policy.model, b, False)[0] for b in mb.batches]
            if ref_model is not None:
                mb.ref = [forward_logp(ref_model, b, False)[0] for b in mb.batches]
    st = UpdateStats(tokens=float(sum(sum(mb.n_tok) for mb in minis)))
    norms: list[float] = []
    opt.zero_grad(set_to_none=True)
    for epoch in range(L.inner_epochs):
        for mb in minis:
            sums = accumulate(policy, model, mb, cfg, info, with_entropy=epoch == 0)
            st.kl += sums.kl
            st.clip += sums.clip
            if epoch == 0:
                st.loss += sums.loss / len(minis)
                st.entropy += sums.entropy
            applied, gn, reason = optimizer_step(opt, sched, params, cfg.optim.grad_clip, sums.bad, info)
            if applied:
                st.opt_steps += 1
                if epoch == 0:
                    norms.append(gn)
            else:
                st.skipped_steps += 1
                st.skipped = True
                st.skip_reason = st.skip_reason or reason
        st.epochs += 1
    if norms:
        st.grad_norm = sum(norms) / len(norms)
    if st.opt_steps == 0:  # no update applied: the step has no loss (logged as null, counted by the trainer)
        st.loss = float("nan")
    return st
