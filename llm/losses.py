"""Policy-gradient losses for thought-level RL on language models (GRPO, RRPO, SRPO, oracle reset).

Shape letters used throughout ``llm/``:
    B  sequences in a (micro-)batch        T  token positions (``input_ids[:, 1:]`` alignment, i.e. T = L - 1)
    V  vocabulary size                     G  groups

Everything here is a pure function of tensors. The trainer decides which tokens are trainable
(``mask``: 1.0 on sampled response tokens, 0.0 on the prompt, on a reset continuation's given
prefix and on padding) and passes the group advantages, one per sequence.

Objectives (per token ``t`` of sequence ``i``; ``A_i`` the sequence's advantage):

* ``reinforce`` (paper default, "Credit Assignment with Resets in LM Reasoning", Sec. 5):
  ``l_it = -A_i * log pi(y_it)``; aggregated with ``seq-mean-token-mean`` this is
  ``-mean_i A_i * mean_{t in suffix_i} log pi(y_it)``.
* ``ppo`` (clipped ratio, Schulman et al. 2017; asymmetric ``eps_high`` as in DAPO, Yu et al. 2025):
  ``rho = exp(log pi - log pi_old)``, ``l_it = -min(rho A_i, clip(rho, 1 - eps, 1 + eps_high) A_i)``;
  with a dual clip ``c > 1`` (Ye et al. 2020, "Mastering Complex Control in MOBA Games with Deep RL",
  Dual-Clip PPO; verl's ``clip_ratio_c``, default 3) the loss of a token with ``A_i < 0`` is also bounded
  by ``c |A_i|``: ``l_it = min(l_it, -c A_i)``, so a ratio far above 1 cannot make it arbitrarily large.
* optional KL to a frozen reference with the k3 estimator (Schulman 2020, "Approximating KL divergence"):
  ``k3 = exp(log pi_ref - log pi) - (log pi_ref - log pi) - 1 >= 0``, added as ``+ beta * k3``.

Aggregations (how per-token losses become one number; cf. Dr. GRPO, Liu et al. 2025):

* ``token-mean``:  ``sum_it m_it l_it / sum_it m_it``
* ``seq-mean-token-mean``:  ``mean_{i: |m_i|>0} (sum_t m_it l_it / sum_t m_it)``
* ``seq-mean-token-sum-norm``:  ``sum_it m_it l_it / (B * L_norm)`` with a constant ``L_norm``
  (default: the padded length T).

For data-parallel or micro-batched training the numerator and the denominator are returned
apart (``aggregate_parts``) so that the trainer can divide a local numerator by the *global*
denominator and reproduce a single-process step exactly.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

LossKind = Literal["reinforce", "ppo"]
Aggregation = Literal["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"]
LOSS_KINDS: tuple[str, ...] = ("reinforce", "ppo")
STD_KINDS: tuple[str, ...] = ("population", "unbiased")
AGGREGATIONS: tuple[str, ...] = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm")


def group_advantages(rewards: torch.Tensor, group_ids: torch.Tensor, *, eps: float = 1e-6,
                     std_floor: float = 1e-8, std: str = "population") -> torch.Tensor:
    """Group-normalised advantages ``A_i = (r_i - mean_g) / (std_g + eps)``, 0 where ``std_g < std_floor``.

    ``std_g`` is the standard deviation of the rewards in sample ``i``'s group ``g``: ``"population"``
    (divide by the group size; SRPO's official runs) or ``"unbiased"`` (divide by size - 1, as
    ``torch.std``; verl's GRPO advantage, the paper's GRPO baseline with ``eps = 1e-6``; a group of one
    then has no spread and gets 0). A group whose rewards are all equal carries no learning signal and
    gets advantage exactly 0 (paper: "zero if the group's std < 1e-8").

    Implements: GRPO (Shao et al. 2024, eq. 3); per-group normalisation of the fresh and reset
    groups separately as in RRPO/SRPO.

    Args:
        rewards: (N,) float rewards.
        group_ids: (N,) integer group labels (any values; samples with the same label form a group).
        std: "population" or "unbiased".
    Returns:
        (N,) float advantages, same dtype as ``rewards`` (float32 if it was an integer tensor).
    """
    if std not in STD_KINDS:
        raise ValueError(f"group_advantages: std must be one of {STD_KINDS}, got {std!r}")
    rewards = torch.as_tensor(rewards)
    group_ids = torch.as_tensor(group_ids)
    if rewards.ndim != 1 or group_ids.shape != rewards.shape:
        raise ValueError(f"group_advantages: rewards and group_ids must both be 1-D of the same length; "
                         f"got rewards {tuple(rewards.shape)}, group_ids {tuple(group_ids.shape)}")
    r = rewards.to(torch.float64)
    _, inv = torch.unique(group_ids, return_inverse=True)  # (N,) dense group index
    G = int(inv.max().item()) + 1 if inv.numel() else 0
    count = torch.zeros(G, dtype=torch.float64).index_add_(0, inv, torch.ones_like(r))   # (G,)
    mean = torch.zeros(G, dtype=torch.float64).index_add_(0, inv, r) / count             # (G,)
    dev = r - mean[inv]                                                                   # (N,)
    dof = count if std == "population" else (count - 1).clamp_min(1.0)                  # (G,)
    var = torch.zeros(G, dtype=torch.float64).index_add_(0, inv, dev * dev) / dof        # (G,)
    sd = var.sqrt()[inv]                                                                  # (N,)
    adv = torch.where(sd < std_floor, torch.zeros_like(dev), dev / (sd + eps))
    out_dtype = rewards.dtype if rewards.is_floating_point() else torch.float32
    return adv.to(out_dtype)


def token_logprobs(logits: torch.Tensor, input_ids: torch.Tensor, *, with_entropy: bool = False
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probability of each next token and (optionally) the policy entropy at each position.

    ``logp[b, t] = log softmax(logits[b, t])[input_ids[b, t + 1]]`` and
    ``H[b, t] = -sum_v p_v log p_v`` of the same distribution (computed without gradient).

    Args:
        logits: (B, L, V) model outputs for ``input_ids``.
        input_ids: (B, L).
    Returns:
        logp (B, L-1) with gradient; entropy (B, L-1) detached, or None.
    """
    logits = logits[:, :-1].float()                         # (B, T, V)
    targets = input_ids[:, 1:].unsqueeze(-1)                 # (B, T, 1)
    logz = torch.logsumexp(logits, dim=-1)                   # (B, T)
    logp = logits.gather(-1, targets).squeeze(-1) - logz     # (B, T)
    ent = None
    if with_entropy:
        with torch.no_grad():
            lp = logits - logz.unsqueeze(-1)                  # (B, T, V)
            ent = -(lp.exp() * lp).sum(-1)                    # (B, T)
    return logp, ent


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimator of KL(pi || pi_ref): ``exp(d) - d - 1`` with ``d = log pi_ref - log pi``.

    Unbiased for KL(pi || pi_ref) when tokens are sampled from pi, and always >= 0.
    Implements: J. Schulman, "Approximating KL divergence" (2020), estimator k3.
    """
    d = ref_logp - logp
    return torch.exp(d) - d - 1.0


def per_token_loss(logp: torch.Tensor, adv: torch.Tensor, *, kind: LossKind = "reinforce",
                   old_logp: torch.Tensor | None = None, eps: float = 0.2, eps_high: float | None = None,
                   ref_logp: torch.Tensor | None = None, beta: float = 0.0, dual_clip: float | None = None
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-token policy-gradient loss ``l_it`` (see the module docstring for the formulas).

    Args:
        logp: (B, T) log pi(y_t) under the current policy, with gradient.
        adv: (B,) one advantage per sequence.
        kind: "reinforce" (``-A log pi``) or "ppo" (clipped ratio against ``old_logp``).
        old_logp: (B, T) log-probs of the sampling policy (no grad); required for "ppo"; defaults to
            ``logp.detach()`` (ratio 1: the first inner epoch of an on-policy update).
        eps, eps_high: clip range ``[1 - eps, 1 + eps_high]``; ``eps_high`` defaults to ``eps``.
        ref_logp: (B, T) log-probs of a frozen reference; used when ``beta > 0``.
        beta: weight of the k3 KL penalty.
        dual_clip: "ppo" only: ``c > 1`` bounds the loss of negative-advantage tokens by ``c |A|``
            (Dual-Clip PPO); None: no bound.
    Returns:
        loss (B, T) and a dict of (B, T) diagnostics: "ratio", "clipped" (0/1: the clipped surrogate or
        the dual bound is active), "kl".
    """
    if kind not in LOSS_KINDS:
        raise ValueError(f"per_token_loss: kind must be one of {LOSS_KINDS}, got {kind!r}")
    if dual_clip is not None and not dual_clip > 1.0:
        raise ValueError(f"per_token_loss: dual_clip must be > 1 (or None), got {dual_clip!r}")
    if adv.ndim != 1 or adv.shape[0] != logp.shape[0]:
        raise ValueError(f"per_token_loss: adv must be (B,) = ({logp.shape[0]},), got {tuple(adv.shape)}")
    A = adv.to(logp.dtype).unsqueeze(1)                        # (B, 1)
    if old_logp is None:
        old_logp = logp.detach()
    ratio = torch.exp(logp - old_logp)                          # (B, T)
    if kind == "reinforce":
        loss = -A * logp                                        # (B, T)
        clipped = torch.zeros_like(logp)
    else:
        hi = eps if eps_high is None else eps_high
        surr1 = ratio * A
        surr2 = torch.clamp(ratio, 1.0 - eps, 1.0 + hi) * A
        loss = -torch.minimum(surr1, surr2)                     # (B, T)
        clipped = surr2 < surr1
        if dual_clip is not None:
            bound = -dual_clip * A                              # (B, 1): c |A| where A < 0
            dual = (A < 0) & (loss > bound)
            loss = torch.where(dual, bound.expand_as(loss), loss)
            clipped = clipped | dual
        clipped = clipped.to(logp.dtype).detach()
    kl = torch.zeros_like(logp)
    if beta > 0.0:
        if ref_logp is None:
            raise ValueError("per_token_loss: beta > 0 needs ref_logp (log-probs of the frozen reference)")
        kl = k3_kl(logp, ref_logp)
        loss = loss + beta * kl
    return loss, {"ratio": ratio.detach(), "clipped": clipped, "kl": kl.detach()}


def aggregate_parts(loss_tok: torch.Tensor, mask: torch.Tensor, mode: Aggregation = "seq-mean-token-mean",
                    *, norm_len: int | None = None) -> tuple[torch.Tensor, float]:
    """Numerator and denominator of an aggregation, so that ``loss = numerator / denominator``.

    * token-mean: ``num = sum_it m l``, ``den = sum_it m``
    * seq-mean-token-mean: ``num = sum_i (sum_t m l / sum_t m)`` over sequences with a trainable
      token, ``den`` = the number of such sequences
    * seq-mean-token-sum-norm: ``num = sum_it m l / L_norm``, ``den = B``

    Summing numerators and denominators over micro-batches or ranks and dividing once gives the
    aggregation of the whole batch. Masked tokens contribute nothing, not even to the gradient.

    Args:
        loss_tok: (B, T) per-token losses.  mask: (B, T) 0/1 floats.
        norm_len: L_norm for "seq-mean-token-sum-norm" (default T).
    """
    if mode not in AGGREGATIONS:
        raise ValueError(f"aggregate: mode must be one of {AGGREGATIONS}, got {mode!r}")
    if loss_tok.shape != mask.shape:
        raise ValueError(f"aggregate: loss {tuple(loss_tok.shape)} and mask {tuple(mask.shape)} differ in shape")
    m = mask.to(loss_tok.dtype)
    # where() rather than multiply: a NaN/inf on a masked token must not leak into the sum or the gradient
    masked = torch.where(m > 0, loss_tok, torch.zeros_like(loss_tok)) * m          # (B, T)
    if mode == "token-mean":
        return masked.sum(), float(m.sum().item())
    if mode == "seq-mean-token-mean":
        n_tok = m.sum(1)                                                            # (B,)
        has = n_tok > 0
        per_seq = masked.sum(1) / n_tok.clamp_min(1.0)                              # (B,)
        return per_seq[has].sum(), float(has.sum().item())
    L = loss_tok.shape[1] if norm_len is None else int(norm_len)
    return masked.sum() / L, float(loss_tok.shape[0])


def aggregate(loss_tok: torch.Tensor, mask: torch.Tensor, mode: Aggregation = "seq-mean-token-mean",
              *, norm_len: int | None = None) -> torch.Tensor:
    """Aggregate per-token losses ``(B, T)`` under ``mask`` into a scalar (formulas: ``aggregate_parts``).

    An empty mask gives 0 (with a zero gradient), never NaN.
    """
    num, den = aggregate_parts(loss_tok, mask, mode, norm_len=norm_len)
    return num / max(den, 1.0)


@dataclass
class LossOutput:
    """Result of ``policy_loss``: the scalar to back-propagate and detached diagnostics."""
    loss: torch.Tensor
    """scalar loss (numerator / denominator, see ``aggregate_parts``)"""
    stats: dict[str, float]
    """token means over trainable tokens: "kl", "clip_frac", "ratio" (float values)"""


def policy_loss(logp: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor, *, kind: LossKind = "reinforce",
                agg: Aggregation = "seq-mean-token-mean", old_logp: torch.Tensor | None = None, eps: float = 0.2,
                eps_high: float | None = None, ref_logp: torch.Tensor | None = None, beta: float = 0.0,
                norm_len: int | None = None, denominator: float | None = None,
                dual_clip: float | None = None) -> LossOutput:
    """Full loss: ``per_token_loss`` then aggregation.

    ``denominator`` overrides the local one (the trainer passes the global count over ranks and
    micro-batches, see ``aggregate_parts``). Shapes: logp, mask, old_logp, ref_logp (B, T); adv (B,).
    """
    loss_tok, diag = per_token_loss(logp, adv, kind=kind, old_logp=old_logp, eps=eps, eps_high=eps_high,
                                    ref_logp=ref_logp, beta=beta, dual_clip=dual_clip)
    num, den = aggregate_parts(loss_tok, mask, agg, norm_len=norm_len)
    den = den if denominator is None else denominator
    loss = num / max(den, 1.0)
    with torch.no_grad():
        m = mask.to(logp.dtype)
        n = m.sum().clamp_min(1.0)
        stats = {k: float((torch.where(m > 0, diag[v], torch.zeros_like(m)) * m).sum() / n)
                 for k, v in (("kl", "kl"), ("clip_frac", "clipped"), ("ratio", "ratio"))}
    return LossOutput(loss=loss, stats=stats)
