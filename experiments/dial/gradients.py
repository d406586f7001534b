"""Gradient signal of rollouts without training: a reference direction and per-sequence projections on it.

* :func:`reference_gradient` - ``g = grad J`` with ``J`` the success rate of chains sampled at temperature
  ``T``, from a large batch of fresh chains: the unbiased leave-one-out REINFORCE estimator
  ``g = 1/(R m) sum_{prompts} sum_i (r_i - mean_{j != i} r_j) grad sum_t log pi_T(y_it)``
  with ``log pi_T = log softmax(logits / T)`` (Williams 1992; the leave-one-out baseline keeps it unbiased,
  Kool et al. 2019). Top-p truncation is ignored (the score of the untruncated tempered policy). The batch
  is split into folds by prompt: each fold's estimate is unbiased and their noises are independent, so
  ``<g_k, g_l>`` (k != l) estimates ``|grad J|^2`` without bias and the folds' spread measures how well
  the projections on ``g`` are known.
* :func:`directional_derivatives` - ``s_ik = <grad l_i, v_k>`` for many sequences and a few tangents, with
  ``l_i = mean_{t in suffix_i} log pi(y_it)`` the per-sequence term of the training loss (REINFORCE,
  ``seq-mean-token-mean``): one forward-mode pass (``torch.func.jvp``) per batch of sequences. Eager
  attention is used inside (the CPU SDPA kernels have no forward-mode derivative).
* :func:`prompt_projection` - a prompt's contribution to the ascent direction of the training loss,
  projected on a direction: ``-<grad loss_p, v> = (1/N_p) sum_i A_i s_i`` over its ``N_p`` trained samples.

Checked against backward passes in ``tests/test_llm_resets.py``.
"""
from __future__ import annotations

import contextlib
import math

import numpy as np
import torch
from torch.func import functional_call, jvp

from llm.losses import token_logprobs


@contextlib.contextmanager
def eager_attention(model):
    """Temporarily switch a Hugging Face model to eager attention (forward-mode AD needs it on CPU)."""
    old = getattr(model.config, "_attn_implementation", None)
    if old is None or old == "eager" or not hasattr(model, "set_attn_implementation"):
        yield model
        return
    model.set_attn_implementation("eager")
    try:
        yield model
    finally:
        model.set_attn_implementation(old)


def _by_length(samples: list, batch: int) -> list[list[int]]:
    order = sorted(range(len(samples)), key=lambda i: len(samples[i].prompt_ids) + len(samples[i].response_ids))
    return [order[j:j + batch] for j in range(0, len(order), batch)]


def reference_gradient(policy, groups: list[list], rewards: list[list[float]], temperature: float,
                       folds: int = 2, batch: int = 64) -> dict:
    """Leave-one-out REINFORCE estimate of ``grad J`` (module docstring) from ``groups[p]`` (the fresh
    chains of prompt ``p``, at least two each) and their ``rewards[p]``, in ``folds`` independent folds
    (prompt ``p`` in fold ``p mod folds``; each fold's estimate ``g_k`` is unbiased). Returns the folds
    ``g_folds`` (dicts of parameter tensors), ``sq_norm`` = the mean of ``<g_k, g_l>`` over pairs ``k != l``
    (an unbiased estimate of ``|grad J|^2``: the folds' noises are independent), the mean pairwise cosine
    of the folds, and the sample counts."""
    if folds < 2:
        raise ValueError(f"reference_gradient: folds must be >= 2 (the norm is estimated across folds), got {folds}")
    model = policy.model
    params = {k: p for k, p in model.named_parameters() if p.requires_grad}
    g_folds = [{k: torch.zeros_like(p) for k, p in params.items()} for _ in range(folds)]
    n_fold = [0] * folds
    items = []  # (sample, weight, fold)
    for p, (grp, rew) in enumerate(zip(groups, rewards)):
        m = len(grp)
        if m < 2:
            raise ValueError(f"reference_gradient: prompt {p} has {m} chain(s); the leave-one-out baseline needs 2")
        tot = sum(rew)
        for s, r in zip(grp, rew):
            items.append((s, r - (tot - r) / (m - 1), p % folds))
        n_fold[p % folds] += m
    samples = [s for s, _, _ in items]
    for idx in _by_length(samples, batch):
        for h in range(folds):
            sel = [i for i in idx if items[i][2] == h and items[i][1] != 0.0]
            if not sel:
                continue
            b = policy.collate([samples[i] for i in sel])
            w = torch.tensor([items[i][1] for i in sel], dtype=torch.float32, device=b["input_ids"].device)
            logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits / temperature
            logp, _ = token_logprobs(logits, b["input_ids"])                    # (B, T)
            score = (logp * b["response_mask"][:, 1:]).sum(1)                   # (B,) log pi_T(y)
            grads = torch.autograd.grad((w * score).sum() / n_fold[h], list(params.values()))
            for k, g in zip(params, grads):
                g_folds[h][k] += g
    dots = [[sum(float((a[k] * b[k]).sum()) for k in params) for b in g_folds] for a in g_folds]
    pairs = [(i, j) for i in range(folds) for j in range(folds) if i < j]
    cos = [dots[i][j] / math.sqrt(dots[i][i] * dots[j][j]) for i, j in pairs if dots[i][i] * dots[j][j] > 0]
    return dict(g_folds=g_folds, sq_norm=float(np.mean([dots[i][j] for i, j in pairs])),
                fold_cosine=float(np.mean(cos)) if cos else float("nan"), chains=len(items), prompts=len(groups),
                folds=folds)


@torch.no_grad()
def directional_derivatives(policy, samples: list, tangents: list[dict], batch: int = 64) -> torch.Tensor:
    """``s_ik = <grad l_i, v_k>`` (module docstring) for every sample ``i`` and tangent ``v_k`` (a dict of
    parameter name -> tensor), as an (N, K) float64 tensor; one forward-mode pass per batch and tangent.
    Sequences without a trainable token get 0."""
    model = policy.model
    names = list(tangents[0])
    params = {k: p.detach() for k, p in model.named_parameters() if k in tangents[0]}
    out = torch.zeros(len(samples), len(tangents), dtype=torch.float64)
    with eager_attention(model):
        for idx in _by_length(samples, batch):
            b = policy.collate([samples[i] for i in idx])
            mask = b["response_mask"][:, 1:]                                    # (B, T)
            den = mask.sum(1).clamp_min(1.0)                                    # (B,)

            def seq_mean_logp(p, b=b, mask=mask, den=den):
                logits = functional_call(model, p, (b["input_ids"],), {"attention_mask": b["attention_mask"]}).logits
                logp, _ = token_logprobs(logits, b["input_ids"])                # (B, T)
                return (logp * mask).sum(1) / den                               # (B,)

            for j, v in enumerate(tangents):
                _, d = jvp(seq_mean_logp, (params,), ({k: v[k].to(params[k].dtype) for k in names},))
                out[idx, j] = d.to(torch.float64).cpu()
    return out


def prompt_projection(advantages, s, n_trained: int | None = None) -> float:
    """``(1/N_p) sum_i A_i s_i``: a prompt's share of the training loss's ascent direction projected on
    a direction (REINFORCE, ``seq-mean-token-mean``; ``N_p`` = its trained samples, default ``len(s)``)."""
    a = torch.as_tensor(advantages, dtype=torch.float64)
    s = torch.as_tensor(s, dtype=torch.float64)
    n = len(s) if n_trained is None else n_trained
    return float((a * s).sum() / n) if n else 0.0
