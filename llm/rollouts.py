"""Rollout builders for GRPO, RRPO, SRPO and oracle-reset training (``docs/llm.md``, "Rollouts per method").

All four return a ``RolloutBatch``: the trained samples of a step with rewards, group ids,
group-normalised advantages and per-sample metadata. The budget (trained samples per prompt) is
``cfg.rollouts_per_prompt`` for every method.

* ``grpo``: ``n = rollouts_per_prompt`` fresh chains, one group.
* ``rrpo`` / ``srpo`` / ``oracle`` ("Credit Assignment with Resets in LM Reasoning"):
  sample fresh chains (first ``n_fresh + n_resets`` together, then the rest of ``max_tries`` if needed)
  until there are ``n_fresh`` kept chains and ``n_resets`` *failed parents* (the first failed tries).
  Pick a reset step ``k`` in each parent (1-based thought index):
  uniform over its thoughts (rrpo), the model's own localization of the first unjustified step at
  temperature ``loc_temperature`` (srpo, ``llm.localize``), or the task's first wrong thought (oracle).
  Keep thoughts ``1..k-1`` as a prefix (token ids, cut at ``Sample.thought_ends[k-2]``) and sample
  ``continuations_per_reset`` continuations from it with ``Policy.continue_from``. The fresh group and
  each reset group are normalised separately; continuations train on their suffix only (the policy's
  ``collate`` masks the given prefix). Parents and localization calls are never trained on.
  Fallbacks: no failed parent in ``max_tries`` -> the whole budget is fresh chains, one group;
  unparseable localization -> last "Step N" -> 1, and 0 -> 1 (``parse_localization``); a parent with
  no complete thought -> k = 1; oracle finding no wrong thought in a failed parent -> k = n (the last
  thought, the one holding the wrong or missing answer).

Randomness: ``sampling_rng="batched"`` uses one generator for the whole call (prompts decoded together);
``"per_prompt"`` seeds a generator per prompt from ``(seed, prompt_ids[i])`` and decodes each prompt on
its own, so a prompt's samples do not depend on which other prompts share the call (or the rank).
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from .config import RESET_METHODS, RolloutConfig
from .decode import sampling_kwargs
from .losses import group_advantages
from .seeds import mix_seed

FRESH, RESET = "fresh", "reset"
_GROUP_STRIDE = 64  # group id = global prompt id * stride + local group index


@dataclass
class RolloutBatch:
    """Trained samples of one step (N of them) with everything the loss and the logs need."""
    samples: list
    """(N,) ``llm.policy.Sample`` objects, fresh chains and reset continuations"""
    rewards: torch.Tensor
    """(N,) float rewards"""
    advantages: torch.Tensor
    """(N,) group-normalised advantages (0 in a group without reward variance)"""
    group_ids: torch.Tensor
    """(N,) long group labels, unique across prompts (and ranks, via the global prompt id)"""
    prompt_index: list[int]
    """(N,) index of each sample's prompt in the ``problems`` list given to the builder"""
    meta: list[dict]
    """(N,) per-sample metadata: method, kind (fresh/reset), group, reset_step, loc_text, loc_index,
    loc_source, fallback (None or a reason string), parent_thoughts"""
    stats: dict[str, Any] = field(default_factory=dict)
    """per-call counters: tokens_generated (all sampled tokens incl. parents and extra tries and
    localization answers), fresh_tries, parents, no_failure_prompts, loc_calls, loc_fallbacks, reset_steps,
    reset_rel (k / parent thoughts), first_round_rewards (rewards of the first n_fresh + n_resets tries of every
    prompt, or all GRPO samples: an unbiased sample of the current policy's accuracy)"""

    def __len__(self) -> int:
        return len(self.samples)

    def collate(self, policy, index: list[int] | None = None) -> dict[str, torch.Tensor]:
        """``policy.collate`` of the chosen samples plus ``advantages`` (B,)."""
        idx = list(range(len(self))) if index is None else list(index)
        batch = policy.collate([self.samples[i] for i in idx])
        batch["advantages"] = self.advantages[idx].clone()
        return batch


def _n_generated(s) -> int:
    return len(s.response_ids) - s.prefix_len


class _Sampler:
    """Dispatches generate / continue_from / complete calls with the right generator(s)."""

    def __init__(self, policy, cfg: RolloutConfig, seed: int, prompt_ids: list[int]):
        self.policy, self.cfg, self.kw = policy, cfg, sampling_kwargs(cfg)
        dev = getattr(policy, "device", "cpu")
        if cfg.sampling_rng == "batched":
            self.shared = torch.Generator(device=dev).manual_seed(mix_seed(seed, 1))
            self.per = None
        else:
            self.shared = None
            self.per = [torch.Generator(device=dev).manual_seed(mix_seed(seed, 2, p)) for p in prompt_ids]
        self.tokens = 0  # all sampled tokens (fresh tries, parents, continuations, localization answers)
        self.fresh = 0   # fresh chains sampled

    def gen(self, i: int) -> torch.Generator:
        return self.shared if self.per is None else self.per[i]

    def generate(self, prompts: list[str], which: list[int], n: int) -> list[list]:
        """n fresh samples for each prompt ``which[j]`` (index into the step's prompts)."""
        if not which or n <= 0:
            return [[] for _ in which]
        if self.per is None:
            out = self.policy.generate([prompts[i] for i in which], n=n, generator=self.shared, **self.kw)
        else:
            out = [self.policy.generate([prompts[i]], n=n, generator=self.per[i], **self.kw)[0] for i in which]
        self.tokens += sum(_n_generated(s) for row in out for s in row)
        self.fresh += sum(len(row) for row in out)
        return out

    def continue_from(self, prompt: str, i: int, prefix_ids: list[int], k: int) -> list:
        out = self.policy.continue_from(prompt, prefix_ids, k, generator=self.gen(i), **self.kw)
        self.tokens += sum(_n_generated(s) for s in out)
        return out

    def continue_many(self, prompts: list[str], which: list[int], prefixes: list[list[int]], k: int) -> list[list]:
        """``k`` continuations for each (prompt ``which[j]``, prefix ``prefixes[j]``). In batched mode all
        resets share one decode loop (``Policy.continue_many``: each prompt + prefix is prefilled once and
        fanned out to k rows); otherwise one ``continue_from`` call per reset."""
        if not which:
            return []
        if self.per is None and hasattr(self.policy, "continue_many"):
            out = self.policy.continue_many([prompts[i] for i in which], prefixes, k, generator=self.shared,
                                            **self.kw)
            self.tokens += sum(_n_generated(s) for row in out for s in row)
            return out
        return [self.continue_from(prompts[i], i, q, k) for i, q in zip(which, prefixes)]

    def complete(self, texts: list[str], which: list[int]) -> list[str]:
        c = self.cfg
        if self.per is None:
            out = self.policy.complete(texts, temperature=c.loc_temperature, max_new_tokens=c.loc_max_new_tokens,
                                       generator=self.shared)
        else:
            out = [self.policy.complete([t], temperature=c.loc_temperature, max_new_tokens=c.loc_max_new_tokens,
                                        generator=self.per[i])[0] for t, i in zip(texts, which)]
        self.tokens += sum(len(self.policy.encode(t)) for t in out)
        return out


def prefix_ids_for_reset(parent, k: int) -> list[int]:
    """Token ids of thoughts ``1..k-1`` of ``parent`` (empty for k = 1): ``response_ids[:thought_ends[k-2]]``."""
    if k < 1:
        raise ValueError(f"prefix_ids_for_reset: k must be >= 1, got {k}")
    if k == 1:
        return []
    if k - 1 > len(parent.thought_ends):
        raise ValueError(f"prefix_ids_for_reset: k={k} but the parent has only {len(parent.thought_ends)} thoughts")
    return list(parent.response_ids[:parent.thought_ends[k - 2]])


def build_rollouts(policy, task, problems: list, cfg: RolloutConfig, *, seed: int,
                   prompt_ids: list[int] | None = None, adv_eps: float = 1e-6) -> RolloutBatch:
    """Sample, score and group the rollouts of one step for ``problems`` (see the module docstring).

    Args:
        policy: an ``llm.policy.Policy`` (generate / continue_from / complete / encode).
        task: an ``llm.tasks.Task`` (prompt / reward / first_error).
        problems: the step's problems on this rank.
        cfg: rollout settings (method, budget, sampling).
        seed: step seed (the trainer mixes run seed and step).
        prompt_ids: a global id per problem (data position), used for group ids and per-prompt seeding;
            default ``0..len(problems)-1``.
        adv_eps: ``eps`` of the advantage normalisation.
    """
    if cfg.method == "grpo":
        return _build_grpo(policy, task, problems, cfg, seed, prompt_ids, adv_eps)
    if cfg.method in RESET_METHODS:
        return _build_reset(policy, task, problems, cfg, seed, prompt_ids, adv_eps)
    raise ValueError(f"build_rollouts: unknown method {cfg.method!r}; expected grpo or one of {RESET_METHODS}")


def _finish(samples, rewards, groups, pidx, meta, cfg: RolloutConfig, stats: dict, adv_eps: float) -> RolloutBatch:
    r = torch.tensor(rewards, dtype=torch.float32)            # (N,)
    g = torch.tensor(groups, dtype=torch.long)                 # (N,)
    adv = group_advantages(r, g, eps=adv_eps) if len(r) else r
    return RolloutBatch(samples=samples, rewards=r, advantages=adv, group_ids=g, prompt_index=pidx, meta=meta,
                        stats=stats)


def _base_meta(method: str, kind: str, group: int) -> dict:
    return dict(method=method, kind=kind, group=group, reset_step=None, loc_text=None, loc_index=None,
                loc_source=None, fallback=None, parent_thoughts=None)


def _build_grpo(policy, task, problems, cfg, seed, prompt_ids, adv_eps: float = 1e-6) -> RolloutBatch:
    pids = list(range(len(problems))) if prompt_ids is None else list(prompt_ids)
    prompts = [task.prompt(p) for p in problems]
    S = _Sampler(policy, cfg, seed, pids)
    out = S.generate(prompts, list(range(len(problems))), cfg.rollouts_per_prompt)
    samples, rewards, groups, pidx, meta = [], [], [], [], []
    for i, row in enumerate(out):
        for s in row:
            samples.append(s)
            rewards.append(float(task.reward(problems[i], s.text)))
            groups.append(pids[i] * _GROUP_STRIDE)
            pidx.append(i)
            meta.append(_base_meta("grpo", FRESH, 0))
    stats = dict(tokens_generated=S.tokens, fresh_tries=S.fresh, parents=0, no_failure_prompts=0,
                 loc_calls=0, loc_fallbacks=0, reset_steps=[], reset_rel=[], first_round_rewards=list(rewards))
    return _finish(samples, rewards, groups, pidx, meta, cfg, stats, adv_eps)


def _choose_reset_steps(method: str, policy, task, problems, prompts, parents: list[tuple[int, Any]],
                        S: _Sampler, seed: int, pids: list[int]) -> list[dict]:
    """For each (prompt index, parent sample) return dict(k, loc_text, loc_index, loc_source, fallback)."""
    out: list[dict] = []
    if method == "srpo":
        from .localize import localization_prompt, parse_localization
        todo = [(j, i, par) for j, (i, par) in enumerate(parents) if len(par.thoughts) > 0]
        texts = S.complete([localization_prompt(task, problems[i], list(par.thoughts)) for _, i, par in todo],
                           [i for _, i, _ in todo]) if todo else []
        locs = {j: (t, parse_localization(t, len(par.thoughts), policy.fmt)) for (j, _, par), t in zip(todo, texts)}
    for j, (i, par) in enumerate(parents):
        n = len(par.thoughts)
        d = dict(k=1, loc_text=None, loc_index=None, loc_source=None, fallback=None)
        if n == 0:
            d["fallback"] = "empty_parent"
        elif method == "rrpo":
            d["k"] = random.Random(mix_seed(seed, 3, pids[i], j)).randint(1, n)
        elif method == "srpo":
            text, loc = locs[j]
            d.update(k=int(loc.index), loc_text=text, loc_index=int(loc.index), loc_source=loc.source)
            if loc.source != "boxed":
                d["fallback"] = f"localization_{loc.source}"
        else:  # oracle
            e = task.first_error(problems[i], list(par.thoughts))
            d["true_first_error"] = e
            if e is None:
                d.update(k=n, fallback="oracle_no_error_found")
            else:
                d["k"] = min(max(int(e), 1), n)
        if n and getattr(task, "has_step_checker", False):  # diagnostics only: never used to pick k
            e = d.get("true_first_error", "unset")
            if e == "unset":
                e = task.first_error(problems[i], list(par.thoughts))
            d["true_first_error"] = None if e is None else int(e)
        out.append(d)
    return out


def localization_stats(steps: list[dict], parents: list[tuple[int, Any]]) -> dict:
    """How well the reset step hits the task's first wrong thought (parents where one exists).

    ``loc_checked`` parents with a known first error, ``loc_hits`` with ``k == e``, ``loc_hits1`` with
    ``|k - e| <= 1``, ``loc_chance_sum`` the sum of ``1/n`` (what a uniform guess hits on average).
    """
    known = [(d["k"], d["true_first_error"], len(par.thoughts)) for d, (_, par) in zip(steps, parents)
             if d.get("true_first_error") is not None]
    return dict(loc_checked=len(known), loc_hits=sum(k == e for k, e, _ in known),
                loc_hits1=sum(abs(k - e) <= 1 for k, e, _ in known),
                loc_chance_sum=float(sum(1.0 / n for _, _, n in known)))


def _build_reset(policy, task, problems, cfg: RolloutConfig, seed, prompt_ids, adv_eps: float = 1e-6
                 ) -> RolloutBatch:
    P = len(problems)
    pids = list(range(P)) if prompt_ids is None else list(prompt_ids)
    prompts = [task.prompt(p) for p in problems]
    S = _Sampler(policy, cfg, seed, pids)
    budget, n_fresh, n_par, n_cont = cfg.rollouts_per_prompt, cfg.n_fresh, cfg.n_resets, cfg.continuations_per_reset

    def score(i, row):
        return [(s, float(task.reward(problems[i], s.text))) for s in row]

    # 1) fresh tries: n_fresh + n_resets for every prompt at once, the rest of max_tries where no failure yet
    first = n_fresh + n_par
    tries = [score(i, row) for i, row in enumerate(S.generate(prompts, list(range(P)), first))]
    short = [i for i in range(P) if sum(r < 1.0 for _, r in tries[i]) < n_par]
    if short and cfg.max_tries > first:
        for i, row in zip(short, S.generate(prompts, short, cfg.max_tries - first)):
            tries[i] += score(i, row)
    # 2) parents = first failed tries; kept fresh = the other tries in order (top up if too few)
    parents_of, kept_of = [], []
    for i in range(P):
        failed = [t for t, (_, r) in enumerate(tries[i]) if r < 1.0][:n_par]
        parents_of.append([tries[i][t][0] for t in failed])
        kept_of.append([tries[i][t] for t in range(len(tries[i])) if t not in failed])
    need = [budget - len(parents_of[i]) * n_cont for i in range(P)]
    lacking = [i for i in range(P) if len(kept_of[i]) < need[i]]
    for i in lacking:  # only when max_tries < budget: sample the missing fresh chains
        kept_of[i] += score(i, S.generate(prompts, [i], need[i] - len(kept_of[i]))[0])
    # 3) reset steps, 4) continuations
    flat_parents = [(i, par) for i in range(P) for par in parents_of[i]]
    steps = _choose_reset_steps(cfg.method, policy, task, problems, prompts, flat_parents, S, seed, pids)
    conts = S.continue_many(prompts, [i for i, _ in flat_parents],
                            [prefix_ids_for_reset(par, d["k"]) for (_, par), d in zip(flat_parents, steps)], n_cont)
    # 5) assemble groups: fresh group 0, reset groups 1..n_par
    samples, rewards, groups, pidx, meta = [], [], [], [], []
    no_failure = 0
    by_prompt: dict[int, list] = {i: [] for i in range(P)}
    for (i, par), d, row in zip(flat_parents, steps, conts):
        by_prompt[i].append((par, d, row))
    for i in range(P):
        if not parents_of[i]:
            no_failure += 1
        for s, r in kept_of[i][:need[i]]:
            samples.append(s); rewards.append(r); groups.append(pids[i] * _GROUP_STRIDE); pidx.append(i)
            m = _base_meta(cfg.method, FRESH, 0)
            if not parents_of[i]:
                m["fallback"] = "no_failure"
            meta.append(m)
        for gi, (par, d, row) in enumerate(by_prompt[i], start=1):
            for s, r in score(i, row):
                samples.append(s); rewards.append(r); groups.append(pids[i] * _GROUP_STRIDE + gi); pidx.append(i)
                m = _base_meta(cfg.method, RESET, gi)
                m.update(reset_step=d["k"], loc_text=d["loc_text"], loc_index=d["loc_index"],
                         loc_source=d["loc_source"], fallback=d["fallback"], parent_thoughts=len(par.thoughts))
                meta.append(m)
    stats = dict(tokens_generated=S.tokens, fresh_tries=S.fresh, parents=len(flat_parents), no_failure_prompts=no_failure,
        loc_calls=sum(1 for d in steps if d["loc_text"] is not None),
        loc_fallbacks=sum(1 for d in steps if d["loc_text"] is not None and d["loc_source"] != "boxed"),
        reset_steps=[d["k"] for d in steps],
        reset_rel=[d["k"] / max(1, len(par.thoughts)) for (_, par), d in zip(flat_parents, steps)],
        first_round_rewards=[r for i in range(P) for _, r in tries[i][:first]],
        **localization_stats(steps, flat_parents))
    return _finish(samples, rewards, groups, pidx, meta, cfg, stats, adv_eps)


def _named(method: str) -> Callable[..., RolloutBatch]:
    def builder(policy, task, problems, cfg: RolloutConfig, *, seed: int, prompt_ids=None, adv_eps: float = 1e-6):
        if cfg.method != method:
            cfg = RolloutConfig(**{**cfg.__dict__, "method": method})
        return build_rollouts(policy, task, problems, cfg, seed=seed, prompt_ids=prompt_ids, adv_eps=adv_eps)
    builder.__name__ = builder.__qualname__ = method
    builder.__doc__ = f"``build_rollouts`` with method {method!r}."
    return builder


grpo, rrpo, srpo, oracle = (_named(m) for m in ("grpo", "rrpo", "srpo", "oracle"))
BUILDERS: dict[str, Callable[..., RolloutBatch]] = {"grpo": grpo, "rrpo": rrpo, "srpo": srpo, "oracle": oracle}
