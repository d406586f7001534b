"""Rollout builders: fresh chains (GRPO) and reset rollouts (RRPO, SRPO, oracle, noisy, random)
(``docs/llm.md``, "Rollouts per method").

Every builder returns a ``RolloutBatch``: the trained samples of a step with rewards, group ids,
group-normalised advantages and per-sample metadata. The budget (trained samples per prompt) is
``cfg.rollouts_per_prompt`` for every method. Where a reset group restarts is a *reset distribution*
(``llm.resets``), passed in (default: the one ``cfg.method`` names, ``llm.resets.reset_for``):

* ``start`` (``grpo``): ``n = rollouts_per_prompt`` fresh chains, one group.
* every other reset ("Credit Assignment with Resets in LM Reasoning"): sample fresh chains (first
  ``n_fresh + n_resets`` together, then the rest of ``max_tries`` if needed) until there are ``n_resets``
  *parents*: the first tries with at least one thought that the reset accepts (failed tries; any try for
  ``random``). The fresh group is the first ``n_fresh`` other tries, in order. The reset picks a reset step
  ``k`` in each parent (1-based thought index; ``llm.resets``: uniform, the model's own localization at
  temperature ``loc_temperature`` with the prompt in the chat template when the tokenizer has one, the
  task's first wrong thought, or a mix of the last two). Keep thoughts ``1..k-1`` as a prefix (token ids,
  cut at ``Sample.thought_ends[k-2]``) and sample ``continuations_per_reset`` continuations from it with
  ``Policy.continue_many``. The fresh group and each reset group are normalised separately; continuations
  train on their suffix only (the policy's ``collate`` masks the given prefix). Parents and localization
  calls are never trained on.
  Fallbacks: fewer parents than ``n_resets`` in ``max_tries`` (none: "no failure") -> the fresh group is the
  first ``n_fresh`` tries plus newly sampled chains up to the budget (the paper: first 4 + 4 new; the
  surplus tries, all successes, are not used, so the group is not all-correct by construction); the new
  chains are sampled in the continuations' decode loop, as continuations of an empty prefix (the same
  i.i.d. draws, one decode loop fewer);
  localization: last box in ``[0, n]`` (0 -> 1), else last in-range "Step N", else 1
  (``parse_localization``, each kind counted); the checker finding no wrong thought in a failed parent ->
  k = n (the last thought, the one holding the wrong or missing answer).

Randomness: ``sampling_rng="batched"`` uses one generator for the whole call (prompts decoded together);
``"per_prompt"`` seeds a generator per prompt from ``(seed, prompt_ids[i])`` and decodes each prompt on
its own, so a prompt's samples do not depend on which other prompts share the call (or the rank).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from .config_sections import METHODS, RolloutConfig
from .losses import group_advantages
from .resets import Parent, ResetContext, ResetDistribution, reset_for
from .sampler import StepSampler, localization_kwargs, render_prompt  # noqa: F401 (localization_kwargs re-exported)

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
    localization answers), fresh_tries, parents, no_failure_prompts, loc_calls, loc_fallbacks (replies not
    read from an in-range box) and by kind loc_zero (box 0 -> step 1), loc_step ("Step N"), loc_default
    (step 1), loc_box_out_of_range (the last box held an integer outside [0, n]), capped_thoughts (trained
    thoughts ended by the per-thought cap, in sampled tokens), reset_steps, reset_rel (k / parent thoughts),
    first_round_rewards (rewards of the first n_fresh + n_resets tries of every prompt, or all GRPO samples:
    an unbiased sample of the current policy's accuracy)"""

    def __len__(self) -> int:
        return len(self.samples)

    def prompt_groups(self) -> list[list[int]]:
        """Sample indices of each prompt, in prompt order (a mini-batch holds whole prompts)."""
        out: dict[int, list[int]] = {}
        for j, p in enumerate(self.prompt_index):
            out.setdefault(p, []).append(j)
        return [out[p] for p in sorted(out)]

    def collate(self, policy, index: list[int] | None = None) -> dict[str, torch.Tensor]:
        """``policy.collate`` of the chosen samples plus ``advantages`` (B,)."""
        idx = list(range(len(self))) if index is None else list(index)
        batch = policy.collate([self.samples[i] for i in idx])
        batch["advantages"] = self.advantages[idx].clone()
        return batch


def _capped(s) -> int:
    """Thoughts of ``s`` ended by the per-thought cap in its sampled part."""
    return sum(1 for c in getattr(s, "cap_ends", ()) if c > s.prefix_len)


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
                   prompt_ids: list[int] | None = None, adv_eps: float = 1e-6,
                   adv_std: str = "population", reset: ResetDistribution | None = None) -> RolloutBatch:
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
        adv_std: its standard deviation, "population" or "unbiased" (``llm.losses.group_advantages``).
        reset: the reset distribution (``llm.resets``); default ``reset_for(cfg)``, the one ``cfg.method``
            names.
    """
    if cfg.method not in METHODS:
        raise ValueError(f"build_rollouts: unknown method {cfg.method!r}; expected one of {METHODS}")
    reset = reset_for(cfg) if reset is None else reset
    if not isinstance(reset, ResetDistribution):
        raise TypeError(f"build_rollouts: reset must be an llm.resets.ResetDistribution, got {type(reset).__name__}")
    if reset.needs_checker and not getattr(task, "has_step_checker", False):
        raise ValueError(f"build_rollouts: reset {reset} needs a task with a step checker; {task.name!r} has none")
    if not reset.resets:
        return _build_grpo(policy, task, problems, cfg, seed, prompt_ids, adv_eps, adv_std)
    return _build_reset(policy, task, problems, cfg, seed, prompt_ids, adv_eps, adv_std, reset)


def _finish(samples, rewards, groups, pidx, meta, cfg: RolloutConfig, stats: dict, adv_eps: float,
            adv_std: str = "population") -> RolloutBatch:
    r = torch.tensor(rewards, dtype=torch.float32)            # (N,)
    g = torch.tensor(groups, dtype=torch.long)                 # (N,)
    adv = group_advantages(r, g, eps=adv_eps, std=adv_std) if len(r) else r
    return RolloutBatch(samples=samples, rewards=r, advantages=adv, group_ids=g, prompt_index=pidx, meta=meta,
                        stats=stats)


def _base_meta(method: str, kind: str, group: int) -> dict:
    return dict(method=method, kind=kind, group=group, reset_step=None, loc_text=None, loc_index=None,
                loc_source=None, fallback=None, parent_thoughts=None)


def _build_grpo(policy, task, problems, cfg, seed, prompt_ids, adv_eps: float = 1e-6, adv_std="population"
                ) -> RolloutBatch:
    pids = list(range(len(problems))) if prompt_ids is None else list(prompt_ids)
    prompts = [render_prompt(policy, task.prompt(p), cfg.chat_template) for p in problems]
    S = StepSampler(policy, cfg, seed, pids)
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
                 loc_calls=0, loc_fallbacks=0, reset_steps=[], reset_rel=[], first_round_rewards=list(rewards),
                 capped_thoughts=sum(_capped(s) for s in samples))
    return _finish(samples, rewards, groups, pidx, meta, cfg, stats, adv_eps, adv_std)


def choose_reset_steps(reset: ResetDistribution, task, problems, parents: list[tuple[int, Any]], seed: int,
                       pids: list[int], *, localize: Callable[[list[str], list[int]], list[str]] | None = None,
                       fmt=None) -> list[dict]:
    """For each (prompt index, parent sample) the reset's choice (``ResetDistribution.choose``: dict with
    ``k``, localization fields, ``fallback``) plus ``true_first_error`` where the task has a checker
    (diagnostics only: it never picks ``k`` unless the reset reads the checker). ``localize(texts, prompt
    indices) -> replies`` renders and samples the localization call and ``fmt`` parses it (``self`` only)."""
    slot: dict[int, int] = {}
    pars = []
    for i, par in parents:
        pars.append(Parent(prompt=i, slot=slot.get(i, 0), sample=par))
        slot[i] = slot.get(i, 0) + 1
    ctx = ResetContext(task=task, problems=problems, seed=seed, prompt_ids=pids, localize=localize, fmt=fmt)
    out = reset.choose(pars, ctx)
    if getattr(task, "has_step_checker", False):
        for d, p in zip(out, pars):
            e = task.first_error(problems[p.prompt], list(p.sample.thoughts))
            d["true_first_error"] = None if e is None else int(e)
    return out


def localizer(policy, cfg: RolloutConfig, complete: Callable[[list, list[int]], list[str]]):
    """The ``localize`` callable of :func:`choose_reset_steps`: renders each localization prompt
    (``cfg.loc_chat_template``) and hands the batch to ``complete(prompts, prompt indices)``. A prompt
    that does not fit the model's context (a long parent chain quoted in full) is not sent: its reply
    is empty, so the parse falls back (``llm.localize.parse_localization``), and ``localize.overflow``
    counts it (``loc_overflow`` in the step's stats) instead of the run stopping on the error."""
    max_len = getattr(policy, "max_len", None)

    def localize(texts: list[str], which: list[int]) -> list[str]:
        prompts = [render_prompt(policy, t, cfg.loc_chat_template) for t in texts]
        fits = [max_len is None or len(policy.encode_prompt(p)) < max_len for p in prompts]
        keep = [j for j, ok in enumerate(fits) if ok]
        localize.overflow += len(prompts) - len(keep)
        replies = [""] * len(prompts)
        if keep:
            for j, r in zip(keep, complete([prompts[j] for j in keep], [which[j] for j in keep])):
                replies[j] = r
        return replies
    localize.overflow = 0
    return localize


def localization_stats(steps: list[dict], parents: list[tuple[int, Any]]) -> dict:
    """How the reset steps were found and how well they hit the task's first wrong thought.

    ``loc_calls`` localization replies; ``loc_fallbacks`` of them not read from an in-range box, by kind
    ``loc_zero`` / ``loc_step`` / ``loc_default`` (``llm.localize.SOURCES``), and ``loc_box_out_of_range``
    (the last box held an integer outside ``[0, n]``). Where a first error exists: ``loc_checked`` parents,
    ``loc_hits`` with ``k == e``, ``loc_hits1`` with ``|k - e| <= 1``, ``loc_chance_sum`` the sum of ``1/n``
    (what a uniform guess hits on average).
    """
    loc = [d for d in steps if d["loc_text"] is not None]
    known = [(d["k"], d["true_first_error"], len(par.thoughts)) for d, (_, par) in zip(steps, parents)
             if d.get("true_first_error") is not None]
    return dict(loc_calls=len(loc), loc_fallbacks=sum(d["loc_source"] != "boxed" for d in loc),
                loc_zero=sum(d["loc_source"] == "zero" for d in loc),
                loc_step=sum(d["loc_source"] == "step" for d in loc),
                loc_default=sum(d["loc_source"] == "fallback" for d in loc),
                loc_box_out_of_range=sum(d["loc_boxed"] is not None and d["loc_source"] in ("step", "fallback")
                                         for d in loc),
                loc_checked=len(known), loc_hits=sum(k == e for k, e, _ in known),
                loc_hits1=sum(abs(k - e) <= 1 for k, e, _ in known),
                loc_chance_sum=float(sum(1.0 / n for _, _, n in known)))


def split_tries(tries: list, n_par: int, n_fresh: int, reset: ResetDistribution) -> tuple[list, list]:
    """(parents, kept fresh) of one prompt's scored tries ``[(sample, reward), ...]``: the first ``n_par``
    tries the reset accepts as parents (``ResetDistribution.accepts``: at least one thought, failed unless
    the reset is ``random``), and the first ``n_fresh`` of the others, in order."""
    par = [t for t, (s, r) in enumerate(tries) if reset.accepts(r, len(s.thoughts))][:n_par]
    kept = [tries[t] for t in range(len(tries)) if t not in par][:n_fresh]
    return [tries[t][0] for t in par], kept


def _build_reset(policy, task, problems, cfg: RolloutConfig, seed, prompt_ids, adv_eps: float,
                 adv_std: str, reset: ResetDistribution) -> RolloutBatch:
    P = len(problems)
    pids = list(range(P)) if prompt_ids is None else list(prompt_ids)
    prompts = [render_prompt(policy, task.prompt(p), cfg.chat_template) for p in problems]
    S = StepSampler(policy, cfg, seed, pids)
    budget, n_fresh, n_par, n_cont = cfg.rollouts_per_prompt, cfg.n_fresh, cfg.n_resets, cfg.continuations_per_reset

    def score(i, row):
        return [(s, float(task.reward(problems[i], s.text))) for s in row]

    # 1) fresh tries: n_fresh + n_resets for every prompt at once, the rest of max_tries where parents lack
    first = n_fresh + n_par
    tries = [score(i, row) for i, row in enumerate(S.generate(prompts, list(range(P)), first, keep_kv=True))]
    short = [i for i in range(P) if len(split_tries(tries[i], n_par, n_fresh, reset)[0]) < n_par]
    if short and cfg.max_tries > first:
        for i, row in zip(short, S.generate(prompts, short, cfg.max_tries - first, keep_kv=True)):
            tries[i] += score(i, row)
    # 2) parents and the kept fresh chains
    parents_of, kept_of = zip(*(split_tries(tries[i], n_par, n_fresh, reset) for i in range(P))) if P else ((), ())
    parents_of, kept_of = list(parents_of), [list(k) for k in kept_of]
    # 3) reset steps
    flat_parents = [(i, par) for i in range(P) for par in parents_of[i]]
    loc = localizer(policy, cfg, S.complete)
    steps = choose_reset_steps(reset, task, problems, flat_parents, seed, pids, localize=loc,
                               fmt=getattr(policy, "fmt", None))
    pre = [prefix_ids_for_reset(par, d["k"]) for (_, par), d in zip(flat_parents, steps)]
    caps = [[c for c in getattr(par, "cap_ends", ()) if c <= len(q)] for (_, par), q in zip(flat_parents, pre)]
    # 4) continuations, and in the same decode loop the fresh chains that replace missing parents (too few
    # failures in max_tries): each missing parent's budget, n_cont chains, as n_cont "continuations" of an
    # empty prefix. They are i.i.d. draws of the same policy wherever they are sampled, so this saves a
    # decode loop without changing what is sampled.
    need = [budget - len(parents_of[i]) * n_cont - len(kept_of[i]) for i in range(P)]
    fill = [i for i in range(P) for _ in range(need[i] // n_cont)]
    for r in sorted({n % n_cont for n in need} - {0}):  # never with the config's checks; kept for safety
        which = [i for i in range(P) if need[i] % n_cont == r]
        for i, row in zip(which, S.generate(prompts, which, r)):
            kept_of[i] += score(i, row)
    rows = S.continue_many(prompts, [i for i, _ in flat_parents] + fill, pre + [[] for _ in fill],
                           caps + [[] for _ in fill], n_cont)
    S.fresh += len(fill) * n_cont
    conts = [score(i, row) for (i, _), row in zip(flat_parents, rows)]
    for i, row in zip(fill, rows[len(flat_parents):]):
        kept_of[i] += score(i, row)
    # 5) assemble groups: fresh group 0, reset groups 1..n_par
    samples, rewards, groups, pidx, meta = [], [], [], [], []
    by_prompt: dict[int, list] = {i: [] for i in range(P)}
    for (i, par), d, row in zip(flat_parents, steps, conts):
        by_prompt[i].append((par, d, row))
    for i in range(P):
        for s, r in kept_of[i]:
            samples.append(s); rewards.append(r); groups.append(pids[i] * _GROUP_STRIDE); pidx.append(i)
            m = _base_meta(cfg.method, FRESH, 0)
            if not parents_of[i]:
                m["fallback"] = "no_failure" if reset.parent == "failed" else "no_parent"
            meta.append(m)
        for gi, (par, d, row) in enumerate(by_prompt[i], start=1):
            for s, r in row:
                samples.append(s); rewards.append(r); groups.append(pids[i] * _GROUP_STRIDE + gi); pidx.append(i)
                m = _base_meta(cfg.method, RESET, gi)
                m.update(reset_step=d["k"], loc_text=d["loc_text"], loc_index=d["loc_index"],
                         loc_source=d["loc_source"], fallback=d["fallback"], parent_thoughts=len(par.thoughts),
                         reset=str(reset))
                meta.append(m)
    stats = dict(tokens_generated=S.tokens, fresh_tries=S.fresh, parents=len(flat_parents), reset_groups=len(conts),
                 reset_informative=sum(len({r for _, r in row}) > 1 for row in conts),
                 no_failure_prompts=sum(not p for p in parents_of), reset_steps=[d["k"] for d in steps],
                 reset_rel=[d["k"] / len(par.thoughts) for (_, par), d in zip(flat_parents, steps)],
                 first_round_rewards=[r for i in range(P) for _, r in tries[i][:first]],
                 capped_thoughts=sum(_capped(s) for s in samples), loc_overflow=loc.overflow,
                 **localization_stats(steps, flat_parents))
    return _finish(samples, rewards, groups, pidx, meta, cfg, stats, adv_eps, adv_std)


def _named(method: str) -> Callable[..., RolloutBatch]:
    def builder(policy, task, problems, cfg: RolloutConfig, *, seed: int, prompt_ids=None, adv_eps: float = 1e-6,
                adv_std: str = "population"):
        if cfg.method != method:
            cfg = RolloutConfig(**{**cfg.__dict__, "method": method})
        return build_rollouts(policy, task, problems, cfg, seed=seed, prompt_ids=prompt_ids, adv_eps=adv_eps,
                              adv_std=adv_std)
    builder.__name__ = builder.__qualname__ = method
    builder.__doc__ = f"``build_rollouts`` with method {method!r}."
    return builder


grpo, rrpo, srpo, oracle, noisy, random_reset = (_named(m) for m in METHODS)
BUILDERS: dict[str, Callable[..., RolloutBatch]] = {"grpo": grpo, "rrpo": rrpo, "srpo": srpo, "oracle": oracle,
                                                   "noisy": noisy, "random": random_reset}
"""``build_rollouts`` with each method's default reset (``llm.resets.METHOD_RESET``)."""
