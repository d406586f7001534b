"""The layout of a shared-prefix update: samples grouped by their shared tokens and padded
(:class:`SharedPrefixBatch`, :func:`group_samples`, :func:`build_batch`), the map back to
``Policy.collate``'s layout (:func:`to_collate_layout`), and the planner that cuts a step's samples into
passes under a padded-token budget (:func:`plan_passes`, :func:`pass_cost`). The forward that consumes
a batch is :func:`llm.shared_prefix.shared_prefix_logprobs` (its module docstring has the math).

Shape letters: G groups, N rows (samples), S shared length (right padded), R suffix length (right
padded).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["SharedPrefixBatch", "build_batch", "group_samples", "pass_cost", "plan_passes", "to_collate_layout"]


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


def plan_passes(samples: list, max_tokens: int, *, max_waste: float = 0.25, max_seqs: int = 0) -> list[list[int]]:
    """Sample indices of each forward/backward pass of a shared-prefix update, at most ``max_tokens``
    padded tokens per pass (:func:`pass_cost`) and, if ``max_seqs > 0``, at most ``max_seqs`` rows.
    Groups (same key as :func:`group_samples`) are taken longest suffix first (then longest shared
    part) and packed greedily; a group joins the current pass only if the pass stays within both caps
    and padding grows the cost by at most ``max_waste`` over running the two apart (a reset group's
    short continuations are not padded to a fresh group's long chains). A group over a cap on its own
    is cut into chunks of rows (longest suffix first), each chunk a pass that runs the shared part
    again; a single row over the budget gets a pass alone. Every index appears exactly once."""
    if max_tokens < 1:
        raise ValueError(f"max_tokens: expected >= 1, got {max_tokens}")
    if max_waste < 0:
        raise ValueError(f"max_waste: expected >= 0, got {max_waste}")
    if max_seqs < 0:
        raise ValueError(f"max_seqs: expected >= 0 (0: no cap), got {max_seqs}")
    cap = max_seqs or len(samples) or 1
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
            if (merged <= max_tokens and len(cur) + len(rows) <= cap
                    and merged <= (1 + max_waste) * (pass_cost(cur_S, [R[j] for j in cur]) + alone)):
                cur, cur_S = cur + rows, cur_S + [S[key]]
                continue
            passes.append(cur)
        cur, cur_S = [], []
        if alone <= max_tokens and len(rows) <= cap:
            cur, cur_S = rows, [S[key]]
            continue
        chunk: list[int] = []
        for j in rows:  # the group alone is over a cap: chunks of its rows
            if chunk and (len(chunk) >= cap or pass_cost([S[key]], [R[i] for i in chunk + [j]]) > max_tokens):
                passes.append(chunk)
                chunk = []
            chunk.append(j)
        passes.append(chunk)
    if cur:
        passes.append(cur)
    return passes


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
