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

The forward (``update_forward``, :func:`resolve_forward`): ``shared`` runs each group's shared tokens
(the prompt of fresh chains, prompt + reset prefix of continuations) once per pass and fans their
keys/values out to the group's suffixes (``llm.shared_prefix``); ``packed`` does the same in one
forward per pass with one packed row per group (``llm.shared_prefix_packed``; the FSDP2 path, where
gradient cannot enter a layer through recorded keys/values); ``naive`` runs every sample whole
(``Policy.collate``). All three compute the loss on the same suffix tokens with the same global
denominators, so the gradient is the same up to float summation order (``tests/llm/test_update_forward.py``);
the old (PPO) and reference (KL) log-probs come from the same forward under ``no_grad``.

The pieces are separate so that the forward can change without touching the loop: :func:`mini_batch_indices`
(the split), :func:`prepare` (the passes and the global denominator of one mini-batch),
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
from .shared_prefix import SharedPrefixBatch, group_samples, plan_passes, shared_prefix_logprobs
from .shared_prefix_packed import packed_logprobs

FORWARDS = ("auto", "shared", "packed", "naive")
"""Values of ``TrainConfig.update_forward``."""


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


def resolve_forward(kind: str, sharded: bool) -> str:
    """The update's forward for ``update_forward = kind``: ``auto`` is ``packed`` under FSDP2 (``sharded``)
    and ``shared`` otherwise (one process, DDP); ``shared`` under FSDP2 is refused (FSDP2's backward hooks
    do not see gradient that enters a layer through its recorded keys/values)."""
    if kind not in FORWARDS:
        raise ValueError(f"update_forward: expected one of {FORWARDS}, got {kind!r}")
    if kind == "auto":
        return "packed" if sharded else "shared"
    if kind == "shared" and sharded:
        raise ValueError("update_forward=shared cannot run under FSDP2 (gradient enters the shared part through "
                         "recorded keys/values, which FSDP2 does not see); use auto or packed")
    return kind


@dataclass
class Pass:
    """One forward/backward pass: its inputs and per-row tensors, rows in the forward's order."""
    inputs: dict | SharedPrefixBatch
    """a collated batch (``RolloutBatch.collate``; naive) or grouped rows (``group_samples``; shared, packed)"""
    adv: torch.Tensor
    """(b,) advantages"""
    mask: torch.Tensor
    """(b, T) trainable tokens aligned with :func:`pass_logp`'s log-probs (all 0 in a zero-weight pass)"""
    n_tok: int = 0
    """trainable tokens (``mask.sum()``)"""


def make_pass(policy, rb, idx: list[int], forward: str, zero: bool = False) -> Pass:
    """The pass over samples ``idx`` of ``rb`` for ``forward`` ("naive", "shared" or "packed"); ``zero``: a
    zero-weight pass (runs the forward and the collectives, adds nothing)."""
    if forward == "naive":
        b = rb.collate(policy, idx)
        mask = b["response_mask"][:, 1:]                                        # (b, T-1)
        p = Pass(b, b["advantages"], mask)
    else:
        sb = group_samples([rb.samples[j] for j in idx], policy.pad_id).to(policy.device)
        p = Pass(sb, rb.advantages[idx][sb.order], sb.suffix_mask.clone())    # (b, R)
    if zero:
        p.mask.zero_()
    p.n_tok = int(p.mask.sum().item())
    return p


def pass_logp(model, p: Pass, forward: str, with_entropy: bool):
    """Log-probs (b, T) of the pass's rows (and detached entropy or None), aligned with ``p.mask``."""
    if forward == "naive":
        return forward_logp(model, p.inputs, with_entropy)
    fn = shared_prefix_logprobs if forward == "shared" else packed_logprobs
    return fn(model, p.inputs, with_entropy=with_entropy)


def plan(rb, index: list[int], cfg, forward: str) -> list[list[int]]:
    """Positions in ``index`` of each pass: length-sorted micro-batches (naive) or :func:`plan_passes`
    (shared, packed: whole groups where they fit), under ``micro_batch_size`` sequences and
    ``micro_batch_tokens`` padded tokens (0: no token cap)."""
    samples = [rb.samples[j] for j in index]
    if forward == "naive":
        lengths = [len(s.prompt_ids) + len(s.response_ids) for s in samples]
        return micro_batches(lengths, cfg.micro_batch_size, cfg.micro_batch_tokens)
    if not samples:
        return []
    cap = cfg.micro_batch_tokens or sum(len(s.prompt_ids) + len(s.response_ids) + 1 for s in samples)
    return plan_passes(samples, cap, max_seqs=cfg.micro_batch_size)


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
    """The passes of one mini-batch on this rank and the global denominator of its loss."""
    passes: list[Pass]
    """equal in number on every rank"""
    den: float
    """denominator of the aggregation over the mini-batch and all ranks"""
    forward: str = "naive"
    """"naive" | "shared" | "packed" (:func:`resolve_forward`)"""
    old: list[torch.Tensor] | None = None
    """(b, T) log-probs before the first optimizer step of the batch (PPO ratios), one per pass"""
    ref: list[torch.Tensor] | None = None
    """(b, T) log-probs of the frozen reference (KL), one per pass"""

    @property
    def n_tok(self) -> list[int]:
        """trainable tokens per pass"""
        return [p.n_tok for p in self.passes]


def prepare(policy, rb, index: list[int], cfg, info: D.DistInfo, forward: str = "naive") -> MiniBatch:
    """The passes of the samples ``index`` (:func:`plan`; equal pass counts on every rank, an empty pass has
    a zero mask) and the global denominator of the loss aggregation ``cfg.loss.agg`` over them."""
    chunks = plan(rb, index, cfg, forward)
    if info.enabled:  # equal pass counts on every rank (FSDP: each forward is a collective)
        lengths = [len(rb.samples[j].prompt_ids) + len(rb.samples[j].response_ids) for j in index]
        chunks = split_to(chunks, lengths, int(D.all_max(len(chunks), info)))
    passes = [make_pass(policy, rb, [index[c] for c in chunk] if chunk else [index[0] if index else 0], forward,
                        zero=not chunk) for chunk in chunks]
    n_tok = sum(p.n_tok for p in passes)
    n_seq_tok = sum(int((p.mask.sum(1) > 0).sum().item()) for p in passes)
    g_tok, g_seq_tok, g_seq = D.all_sum([n_tok, n_seq_tok, len(index)], info)
    den = {"token-mean": g_tok, "seq-mean-token-mean": g_seq_tok, "seq-mean-token-sum-norm": g_seq}[cfg.loss.agg]
    return MiniBatch(passes, float(den), forward)


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
    for j, p in enumerate(mb.passes):
        with no_sync(model, info.enabled and j < len(mb.passes) - 1):
            logp, ent = pass_logp(model, p, mb.forward, with_entropy=with_entropy)
            res = policy_loss(logp, p.adv.to(logp.device), p.mask, kind=L.kind, agg=L.agg,
                              old_logp=None if mb.old is None else mb.old[j], eps=L.eps, eps_high=L.eps_high,
                              ref_logp=None if mb.ref is None else mb.ref[j], beta=L.beta, norm_len=norm_len,
                              denominator=mb.den, dual_clip=L.dual_clip)
            (res.loss * W).backward()  # DDP averages over ranks; * W makes it the global sum / den
        v = float(res.loss.detach())
        n_tok = p.n_tok
        out.bad = max(out.bad, 0.0 if math.isfinite(v) else 1.0)
        out.loss += v if math.isfinite(v) else 0.0
        out.kl += res.stats["kl"] * n_tok
        out.clip += res.stats["clip_frac"] * n_tok
        if with_entropy:
            out.entropy += float((ent * p.mask).sum())
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
    forward = resolve_forward(cfg.update_forward, bool(cfg.fsdp and info.enabled))
    minis = [prepare(policy, rb, idx, cfg, info, forward) for idx in mini_batch_indices(rb, cfg.mini_batches)]
    policy.model.train()
    with torch.no_grad():
        for mb in minis:
            if L.kind == "ppo" and (L.inner_epochs > 1 or len(minis) > 1):
                mb.old = [pass_logp(policy.model, p, forward, False)[0] for p in mb.passes]
            if ref_model is not None:
                mb.ref = [pass_logp(ref_model, p, forward, False)[0] for p in mb.passes]
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
