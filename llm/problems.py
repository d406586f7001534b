"""The problems of a training run: the training and held-out sets, checked against the model's context
(:func:`run_problems`), and each step's draw from the training set (:func:`step_problems`: a fresh seeded
permutation every epoch, so a resumed run draws the same problems)."""
from __future__ import annotations

import warnings

import numpy as np

from .metrics import held_out_set
from .seeds import mix_seed
from .tasks import describe, long_prompts


def step_problems(train: list, step: int, n: int, seed: int) -> tuple[list, list[int]]:
    """The ``n`` problems of (1-based) ``step`` and their global data positions: a fresh seeded permutation of
    the training set every epoch; position ``p`` = ``(step - 1) * n + j``."""
    out, pos = [], []
    N = len(train)
    perms: dict[int, np.ndarray] = {}
    for j in range(n):
        p = (step - 1) * n + j
        ep = p // N
        if ep not in perms:
            perms[ep] = np.random.default_rng(mix_seed(seed, 7, ep)).permutation(N)
        out.append(train[int(perms[ep][p % N])])
        pos.append(p)
    return out, pos


def run_problems(task, policy, cfg, world_size: int = 1, is_main: bool = True) -> tuple[list, list, list[str]]:
    """Training and evaluation problems of the run ``cfg`` (an ``llm.config.TrainConfig``), every prompt
    checked against ``policy``'s context: a prompt that leaves no room for a response fails the start
    (``long_prompts: fail``, naming the rows) or is dropped (``skip``; rank 0 warns); returns the sets and
    the descriptions of the dropped problems."""
    train = task.sample(cfg.train_size, seed=cfg.seed, split="train")
    test = held_out_set(task, cfg.eval_size, cfg.eval_seed)  # shared by all seeds and methods
    limit = policy.max_len
    bad = long_prompts(task, train + test, policy.tokenizer, limit) if limit else []
    if not bad:
        return train, test, []
    names = [f"{describe(p)}: {n} tokens" for p, n in bad]
    shown = "; ".join(names[:10]) + (f"; ... ({len(names)} in all)" if len(names) > 10 else "")
    if cfg.long_prompts == "fail":
        raise ValueError(f"{len(names)} problem(s) have a prompt that leaves no room for a response in the "
                         f"model's context of {limit} tokens: {shown}. Shorten or remove them, or pass "
                         f"--long_prompts skip to drop them (counted in the log)")
    ids = {p.id for p, _ in bad}
    train, test = [p for p in train if p.id not in ids], [p for p in test if p.id not in ids]
    if not train or len(test) < world_size:
        raise ValueError(f"every training or evaluation problem was dropped as too long ({shown})")
    if is_main:
        warnings.warn(f"long_prompts=skip: dropped {len(names)} problem(s) whose prompt does not fit the "
                      f"model's context of {limit} tokens: {shown}")
    return train, test, names
