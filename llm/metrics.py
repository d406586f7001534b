"""What the trainer logs: one record per step (reduced over ranks by name) and the held-out evaluation.

Counters are summed over ranks as a named dict (:func:`reduce_sums`), per-sample lists are gathered
(``llm.distributed.gather_lists``); the record's fields are listed in ``docs/llm.md`` ("Metrics").
"""
from __future__ import annotations

import math
import time
from collections import Counter

import numpy as np
import torch

from . import distributed as D
from .decode import sampling_kwargs
from .seeds import mix_seed

TIME_KEYS = ("step_time_s", "gen_time_s", "update_time_s", "elapsed_s", "eval_time_s")
"""metrics that measure wall time (excluded when comparing runs)"""

ROLLOUT_COUNTERS = ("tokens_generated", "parents", "loc_calls", "loc_fallbacks", "no_failure_prompts",
                    "fresh_tries", "loc_checked", "loc_hits", "loc_hits1", "loc_chance_sum",
                    "loc_zero", "loc_step", "loc_default", "loc_box_out_of_range", "capped_thoughts",
                    "reset_groups", "reset_informative", "loc_overflow")
"""``RolloutBatch.stats`` entries summed over ranks (0 when a method does not produce them)."""


def reduce_sums(sums: dict[str, float], info: D.DistInfo) -> dict[str, float]:
    """Element-wise sum over ranks of a dict of numbers, by name (keys sorted, so every rank sends the
    same order)."""
    keys = sorted(sums)
    return dict(zip(keys, D.all_sum([sums[k] for k in keys], info)))


def _mean(x: np.ndarray) -> float:
    return float(x.mean()) if len(x) else float("nan")


def _ratio(num: float, den: float) -> float:
    return num / den if den else float("nan")


def train_record(rb, upd, *, step: int, method: str, prompts_per_step: int, lr: float, times: dict,
                 info: D.DistInfo) -> dict:
    """The ``kind="train"`` record of one step from the rollout batch ``rb`` and the update's sums ``upd``
    (``llm.update.UpdateStats``); non-finite floats become None (JSON null)."""
    g = D.gather_lists(dict(
        rewards=rb.rewards.tolist(), adv=rb.advantages.tolist(), kinds=[m["kind"] for m in rb.meta],
        first=rb.stats.get("first_round_rewards", rb.rewards.tolist()),
        reset_steps=list(rb.stats.get("reset_steps", [])), reset_rel=list(rb.stats.get("reset_rel", []))), info)
    c = reduce_sums({**{k: rb.stats.get(k, 0) for k in ROLLOUT_COUNTERS}, "samples": len(rb),
                     "tokens_trained": upd.tokens, "token_epochs": upd.tokens * max(upd.epochs, 1),
                     "loss": upd.loss, "kl": upd.kl, "clip": upd.clip, "entropy": upd.entropy}, info)
    r, a = np.asarray(g["rewards"], dtype=float), np.asarray(g["adv"], dtype=float)
    fresh = np.asarray([x for x, k in zip(g["rewards"], g["kinds"]) if k == "fresh"], dtype=float)
    reset = np.asarray([x for x, k in zip(g["rewards"], g["kinds"]) if k == "reset"], dtype=float)
    tok, tok_ep, loc_n, loc_calls = c["tokens_trained"], c["token_epochs"], c["loc_checked"], c["loc_calls"]
    rec = dict(kind="train", step=step, method=method,
               reward_mean=_mean(r), accuracy=_mean(np.asarray(g["first"], dtype=float)),
               reward_fresh=_mean(fresh), reward_reset=_mean(reset),
               adv_mean=_mean(a), adv_std=float(a.std()) if len(a) else float("nan"),
               adv_abs_mean=_mean(np.abs(a)), adv_zero_frac=_mean((a == 0).astype(float)),
               loss=c["loss"], kl=c["kl"] / max(tok_ep, 1.0), entropy=c["entropy"] / max(tok, 1.0),
               clip_frac=c["clip"] / max(tok_ep, 1.0), grad_norm=upd.grad_norm, lr=float(lr),
               tokens_generated=int(c["tokens_generated"]), tokens_trained=int(tok), samples=int(c["samples"]),
               fresh_tries=int(c["fresh_tries"]), resets=int(c["parents"]),
               reset_step_hist={str(k): v for k, v in sorted(Counter(g["reset_steps"]).items())},
               reset_step_mean=_mean(np.asarray(g["reset_steps"], dtype=float)),
               reset_rel_mean=_mean(np.asarray(g["reset_rel"], dtype=float)),
               loc_calls=int(loc_calls), loc_fallback_rate=_ratio(c["loc_fallbacks"], loc_calls),
               no_failure_rate=c["no_failure_prompts"] / prompts_per_step, skipped=bool(upd.skipped),
               loc_checked=int(loc_n), loc_exact=_ratio(c["loc_hits"], loc_n),
               loc_within1=_ratio(c["loc_hits1"], loc_n), loc_chance=_ratio(c["loc_chance_sum"], loc_n),
               # localization fallbacks by kind, kept over-long thoughts, optimizer steps of the batch
               loc_fallback_zero=int(c["loc_zero"]), loc_fallback_step=int(c["loc_step"]),
               loc_fallback_default=int(c["loc_default"]), loc_box_out_of_range=int(c["loc_box_out_of_range"]),
               loc_overflow=int(c["loc_overflow"]),
               capped_thoughts=int(c["capped_thoughts"]), opt_steps=int(getattr(upd, "opt_steps", 1)),
               # reset groups with reward variance (an informative reset: the group has a learning signal)
               reset_informative_rate=_ratio(c["reset_informative"], c["reset_groups"]), **times)
    if upd.skip_reason:
        rec["skip_reason"] = upd.skip_reason
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in rec.items()}


def held_out_set(task, n: int, seed: int) -> list:
    """The held-out problems of a run: ``n`` problems of the test split seeded by ``seed`` (the config's
    ``eval_seed``, not the run's seed, so every run is scored on the same set), without repeats where the
    task can say (``task.distinct``: arith; at small difficulties the whole split when it holds fewer)."""
    if hasattr(task, "distinct"):
        return task.distinct(n, seed, split="test")
    return task.sample(n, seed=seed, split="test")


@torch.no_grad()
def evaluate(policy, model, task, eval_set: list, rollout_cfg, info: D.DistInfo, fsdp: bool,
             chunk: int = 64, *, sampled: int = 0, sample_seed: int = 0) -> dict:
    """Greedy pass@1 on the held-out problems (no resets at test time), sharded and reduced over ranks:
    ``eval_pass@1``, ``eval_n``, ``eval_time_s``. With ``sampled = m > 0`` also a sampled probe: ``m``
    chains per problem at the rollouts' temperature and top-p, from a generator seeded by ``sample_seed``
    (and the rank): ``eval_sampled_acc`` (mean reward) over ``eval_sampled_n`` chains. Under FSDP the
    shards are gathered once around it."""
    t = time.perf_counter()
    mine, _ = D.shard(eval_set[: len(eval_set) // info.world_size * info.world_size], info)
    r = rollout_cfg
    rewards, srew = [], []
    gen = torch.Generator(device=getattr(policy, "device", "cpu")).manual_seed(mix_seed(sample_seed, 17, info.rank))
    with D.full_params(model, info, fsdp):
        for i in range(0, len(mine), chunk):
            part = mine[i:i + chunk]
            prompts = [policy.prompt_input(task.prompt(p), r.chat_template) for p in part]
            out = policy.generate(prompts, n=1, **sampling_kwargs(r, greedy=True))
            rewards += [float(task.reward(p, row[0].text)) for p, row in zip(part, out)]
            if sampled:
                out = policy.generate(prompts, n=sampled, generator=gen, **sampling_kwargs(r))
                srew += [float(task.reward(p, s.text)) for p, row in zip(part, out) for s in row]
    s = D.all_sum([sum(rewards), len(rewards), sum(srew), len(srew)], info)
    rec = {"eval_pass@1": s[0] / max(s[1], 1.0), "eval_n": int(s[1])}
    if sampled:
        rec.update(eval_sampled_acc=s[2] / max(s[3], 1.0), eval_sampled_n=int(s[3]))
    rec["eval_time_s"] = time.perf_counter() - t
    return rec
