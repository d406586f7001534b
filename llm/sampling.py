"""Next-token sampling of the decode loop: greedy, temperature, nucleus (top-p), exact and cheap at any
vocabulary size.

Nucleus sampling (Holtzman et al., "The Curious Case of Neural Text Degeneration", ICLR 2020): keep the
smallest set of most probable tokens whose mass reaches ``top_p``, renormalise, sample. The set is the one
the sorted implementation keeps (:func:`nucleus_sorted`): probabilities sorted in descending order (a
stable sort: equal probabilities in token-id order), cumulative sums ``c_i`` in that order, the token at
rank ``i`` kept iff ``c_i - p_i <= top_p`` (the mass ranked above it has not yet reached ``top_p``).

How, without sorting the vocabulary every step (a sort of 8 rows x 32k tokens takes ~25 ms on one CPU
thread, most of a small model's decode step): draw a token from the full distribution by inverse CDF (one
float64 cumulative sum, one ``searchsorted``), and accept it iff it is in the nucleus (:func:`in_nucleus`:
the mass ranked above it, one masked sum over the vocabulary); rejected rows draw again. This is rejection
sampling with proposal ``p`` and target ``p`` restricted to the nucleus and renormalised (their ratio is
constant on the nucleus), so accepted draws follow the target exactly. A round rejects with probability
``1 - mass(nucleus) <= 1 - top_p``; rows still rejected after :data:`ROUNDS` rounds take the sorted nucleus.
Cost per step: a few passes over ``(B, V)`` instead of a sort (``docs/benchmarks.md``, "Decode loop").

Exactness: :func:`in_nucleus` decides as the sorted rule does, bit for bit on CPU: there the float32
cumulative sum accumulates in float64 and rounds each partial sum to float32; :func:`in_nucleus` sums the
mass ranked above the token in float64 (another order: a difference of ~1e-16 relative, invisible after
rounding to float32 unless the sum lies that close to a float32 rounding boundary), rounds to float32 and
makes the same float32 comparison (``tests/llm/test_sampling.py``: every token of flat and peaked rows,
ties included). On a GPU the sorted rule's own float32 cumulative sum is rounded differently, and the token
at the boundary (probability ~``1/V`` for a flat row) can fall on either side.

Reproducible given a ``torch.Generator``: every draw comes from it, in row order (a float64 uniform per
pending row and round). Sampled tokens differ from the earlier ``torch.multinomial`` implementation for the
same seed (another use of the random stream); the distribution is the same.
"""
from __future__ import annotations

import torch

ROUNDS = 16
"""rejection rounds before the remaining rows take the sorted nucleus (probability <= (1 - top_p)^16)"""


def nucleus_sorted(probs: torch.Tensor, top_p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference rule: ``probs  # (B, V)`` sorted in descending order (stable), zeroed past the smallest
    head whose mass reaches ``top_p``; returns (kept probabilities (B, V) in sorted order, their token ids)."""
    sp, si = torch.sort(probs, dim=-1, descending=True, stable=True)
    return sp.masked_fill(sp.cumsum(-1) - sp > top_p, 0.0), si


def in_nucleus(probs: torch.Tensor, tok: torch.Tensor, top_p: float) -> torch.Tensor:
    """Whether token ``tok[b]`` is in row ``b``'s nucleus (the set :func:`nucleus_sorted` keeps), without a
    sort: ``c = mass ranked above tok + p_tok`` (float64 sum, rounded to the probabilities' dtype as the
    sorted cumulative sum is), kept iff ``c - p_tok <= top_p``. probs (B, V), tok (B,) -> (B,) bool."""
    pt = probs.gather(1, tok.unsqueeze(1))                                               # (B, 1)
    ids = torch.arange(probs.shape[1], device=probs.device)
    # ranked before tok: a larger probability, or an equal one with a smaller id (n_tie of them, each = pt)
    greater = (probs * (probs > pt)).sum(-1, keepdim=True, dtype=torch.float64)         # (B, 1)
    n_tie = ((probs == pt) & (ids < tok.unsqueeze(1))).sum(-1, keepdim=True)             # (B, 1)
    c = (greater + n_tie * pt.double() + pt.double()).to(probs.dtype)
    return ((c - pt) <= top_p).squeeze(1)


def _uniform(n: int, generator, device) -> torch.Tensor:
    """(n,) float64 uniforms in (0, 1], drawn on the generator's device."""
    g_dev = generator.device if generator is not None else device
    return (1.0 - torch.rand(n, dtype=torch.float64, generator=generator, device=g_dev)).to(device)


def inverse_cdf(cdf: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Index of the first entry with ``cdf >= u * cdf[:, -1]`` in each row: a draw from the (unnormalised)
    distribution whose cumulative sums are ``cdf  # (B, K)``, given ``u  # (B,)`` in (0, 1]. The target is
    > 0 and <= the total, so the index is a token of positive probability."""
    return torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(1)).squeeze(1)


def sample_next(logits: torch.Tensor, temperature: float, top_p: float, greedy: bool, generator) -> torch.Tensor:
    """Next token per row from ``logits  # (B, V)``: argmax when ``greedy`` (or temperature 0), else a draw
    from ``softmax(logits / temperature)`` restricted to its nucleus when ``top_p < 1`` (module docstring)."""
    if greedy or temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)                         # (B, V)
    B, dev = probs.shape[0], probs.device
    cdf = probs.cumsum(-1, dtype=torch.float64)                                           # (B, V)
    tok = inverse_cdf(cdf, _uniform(B, generator, dev))                                   # (B,)
    if top_p >= 1.0:
        return tok
    out = tok.clone()
    pending = torch.arange(B, device=dev)
    for _ in range(ROUNDS):
        ok = in_nucleus(probs.index_select(0, pending), tok, top_p)
        out[pending[ok]] = tok[ok]
        pending = pending[~ok]
        if pending.numel() == 0:
            return out
        tok = inverse_cdf(cdf.index_select(0, pending), _uniform(pending.numel(), generator, dev))
    sp, si = nucleus_sorted(probs.index_select(0, pending), top_p)                      # still rejected
    j = inverse_cdf(sp.cumsum(-1, dtype=torch.float64), _uniform(pending.numel(), generator, dev))
    out[pending] = si.gather(1, j.unsqueeze(1)).squeeze(1)
    return out
