"""Evaluation of the tiny default (private helpers of :func:`llm.tiny.evaluate_tiny`).

Everything is measured on the model's OWN chains, sampled as RL samples them (``temperature`` /
``top_p`` of :class:`llm.config.RolloutConfig`, 0.7 / 0.95), and judged by the task's exact step
checker (``ArithTask.first_error``):

* :func:`own_localization`: ask the model for the first wrong thought of each failed chain (the
  SRPO localization call, at the training-time ``loc_temperature``): exact hits against chance
  ``E[1/n]`` (a uniform guess over the chain's ``n`` thoughts), and a reset at or before the first
  error (``k <= e``: the kept prefix holds no error) against a uniform guess's ``E[e/n]``;
* :func:`own_verification`: ask the Thought-ICS L3 question (``verification_prompt``) about each
  chain's answer: the share of parseable boxed YES/NO verdicts and their accuracy (an unparseable
  verdict counts as NO, as in ``llm.ics``) against always answering the majority class;
* :func:`length_table`: per fixed chain length, greedy accuracy, sampled success, the share of
  prompts whose ``k`` samples all fail / are mixed / all succeed (GRPO groups with and without
  reward variance) and own-failure localization.

Proportions come with Wilson 95% intervals (:func:`llm.stats.wilson_interval`).
"""
from __future__ import annotations

import torch

from .localize import (
    localization_prompt,
    parse_localization,
    parse_verdict,
    verification_prompt,
)
from .stats import wilson_interval

SAMPLING = {"temperature": 0.7, "top_p": 0.95, "max_thoughts": 20, "max_thought_tokens": 16}
"""How the own chains are sampled: RolloutConfig's temperature and top_p (a tiny-model thought is at
most 8 characters, so 16 tokens never cut one)."""


def wilson(k: int, n: int) -> list[float]:
    """Wilson score 95% interval ``[lo, hi]`` of a proportion ``k / n`` (``[nan, nan]`` when n = 0)."""
    return list(wilson_interval(k, n))


def _rate(k: int, n: int) -> dict:
    return {"rate": k / n if n else float("nan"), "k": int(k), "n": int(n), "wilson95": wilson(k, n)}


def sample_chains(pol, task, probs, k: int, seed: int) -> list[list]:
    """``k`` chains per problem, sampled with :data:`SAMPLING` from a seeded generator."""
    gen = torch.Generator().manual_seed(seed)
    return pol.generate([task.prompt(p) for p in probs], n=k, generator=gen, **SAMPLING)


def failures(task, probs, outs) -> list[tuple]:
    """``(problem, sample, e)`` for every failed chain with thoughts whose first wrong thought ``e`` the
    step checker finds (failed chains without one are rare: a missing answer after correct steps)."""
    out = []
    for p, row in zip(probs, outs):
        for s in row:
            if s.thoughts and task.reward(p, s.text) == 0:
                e = task.first_error(p, s.thoughts)
                if e is not None:
                    out.append((p, s, e))
    return out


def own_localization(pol, task, fails: list[tuple], *, temperature: float = 0.3, max_new_tokens: int = 96,
                     seed: int = 0) -> dict:
    """Localization of the model's own failed chains ``fails`` (from :func:`failures`), sampled at
    ``temperature`` (the SRPO call). Returns exact hits vs chance, ``k <= e`` vs uniform, fallbacks and
    reply lengths."""
    gen = torch.Generator().manual_seed(seed)
    replies = pol.complete([localization_prompt(task, p, s.thoughts) for p, s, _ in fails],
                           temperature=temperature, max_new_tokens=max_new_tokens, generator=gen) if fails else []
    hit = before = fallback = 0
    chance = uniform_before = 0.0
    lengths = []
    for r, (p, s, e) in zip(replies, fails):
        n = len(s.thoughts)
        loc = parse_localization(r, n, pol.fmt)
        hit += loc.index == e
        before += loc.index <= e
        fallback += loc.source != "boxed"
        chance += 1 / n
        uniform_before += e / n
        lengths.append(len(pol.encode(r)))
    m = len(fails)
    return {"exact": _rate(hit, m), "chance": chance / m if m else float("nan"),
            "at_or_before": _rate(before, m), "uniform_at_or_before": uniform_before / m if m else float("nan"),
            "fallbacks": fallback, "reply_tokens_mean": sum(lengths) / m if m else float("nan"),
            "reply_tokens_max": max(lengths, default=0)}


def own_verification(pol, task, probs, outs, *, temperature: float = 0.3, max_new_tokens: int = 96,
                     seed: int = 0) -> dict:
    """The L3 question about every sampled chain of ``outs``: parseable share, accuracy of the verdict
    (unparseable = NO) against the truth ``task.reward``, and the majority-class baseline."""
    items = [(p, s) for p, row in zip(probs, outs) for s in row]
    gen = torch.Generator().manual_seed(seed)
    replies = pol.complete([verification_prompt(task, p, s.thoughts, s.answer) for p, s in items],
                           temperature=temperature, max_new_tokens=max_new_tokens, generator=gen)
    verdicts = [parse_verdict(r, pol.fmt) for r in replies]
    truth = [task.reward(p, s.text) == 1.0 for p, s in items]
    n = len(items)
    right = sum((v is True) == t for v, t in zip(verdicts, truth))
    n_true = sum(truth)
    yes_right = sum(v is True and t for v, t in zip(verdicts, truth))
    no_right = sum(v is not True and not t for v, t in zip(verdicts, truth))
    return {"parseable": _rate(sum(v is not None for v in verdicts), n), "accuracy": _rate(right, n),
            "majority_baseline": max(n_true, n - n_true) / n if n else float("nan"),
            "answers_correct": n_true, "answers": n,
            "recall_correct": _rate(yes_right, n_true), "recall_wrong": _rate(no_right, n - n_true)}


def length_table(pol, task_cls, base_kw: dict, lengths, *, n: int = 200, k: int = 8, seed: int = 4321,
                 loc_temperature: float = 0.3) -> list[dict]:
    """One row per fixed chain length ``L`` (``min_terms = max_terms = L``): greedy accuracy on ``n``
    test problems; ``k`` samples each (:data:`SAMPLING`): sampled success and the share of prompts
    all-fail / mixed / all-success; localization of the failed samples vs chance."""
    rows = []
    for L in lengths:
        task = task_cls(pol.fmt, **{**base_kw, "min_terms": L, "max_terms": L})
        probs = task.sample(n, seed=seed, split="test")
        greedy = pol.generate([task.prompt(p) for p in probs], greedy=True, max_thoughts=20, max_thought_tokens=16)
        acc = sum(task.reward(p, o[0].text) for p, o in zip(probs, greedy))
        outs = sample_chains(pol, task, probs, k, seed + L)
        wins = [sum(task.reward(p, s.text) for s in row) for p, row in zip(probs, outs)]
        loc = own_localization(pol, task, failures(task, probs, outs), temperature=loc_temperature, seed=seed + L)
        rows.append({"terms": L, "greedy_accuracy": _rate(int(acc), n),
                     "sampled_success": _rate(int(sum(wins)), n * k),
                     "all_fail": sum(w == 0 for w in wins) / n, "mixed": sum(0 < w < k for w in wins) / n,
                     "all_success": sum(w == k for w in wins) / n,
                     "loc_exact": loc["exact"], "loc_chance": loc["chance"], "loc_at_or_before": loc["at_or_before"],
                     "loc_uniform_at_or_before": loc["uniform_at_or_before"]})
    return rows
