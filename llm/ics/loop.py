"""The Thought-ICS loop, batched across problems (algorithm: ``llm.ics``; ``docs/llm.md``, "Thought-ICS").

Each round: verify the active chains (the task's reward at L1/L2, the model's own boxed YES/NO
verdicts at L3), ask the method's localizer (``llm.ics.localizers``) where the failed chains go wrong,
and resample them (continuations of the kept prefix, or whole new chains). Calls to the policy are
batched ``cfg.batch_size`` prompts at a time; every call draws from the one ``generator``.
"""
from __future__ import annotations

import sys
from typing import Sequence

from ..decode import sampling_kwargs
from . import prompts as B
from .config import ICSConfig
from .localizers import localizer_for
from .records import ProblemResult, Round, State


def _chunks(xs: list, k: int):
    for i in range(0, len(xs), k):
        yield xs[i:i + k]


def _fits(policy, prompt) -> bool:
    """Whether a judge prompt leaves room for a reply in the model's context (no limit known: yes)."""
    max_len = getattr(policy, "max_len", None)
    return max_len is None or not hasattr(policy, "encode_prompt") or len(policy.encode_prompt(prompt)) < max_len


def _complete(policy, prompts: list[str], cfg: ICSConfig, gen) -> tuple[list[str], list[bool]]:
    """The judge's replies, and which prompts overflowed the context: those (a long chain quoted in full)
    are not sent and get an empty reply, which reads as an unparseable verdict (counted as "needs
    correction") or the localizer's fallback, as SRPO's localization call does."""
    fits = [_fits(policy, p) for p in prompts]
    sent = [p for p, ok in zip(prompts, fits) if ok]
    got: list[str] = []
    for chunk in _chunks(sent, cfg.batch_size):
        got += policy.complete(chunk, temperature=cfg.temperature_judge,
                               max_new_tokens=cfg.judge_max_new_tokens, generator=gen)
    replies = iter(got)
    return [next(replies) if ok else "" for ok in fits], [not ok for ok in fits]


def _generate(policy, prompts: list[str], cfg: ICSConfig, gen, temperature) -> list:
    out = []
    for chunk in _chunks(prompts, cfg.batch_size):
        out += [g[0] for g in policy.generate(chunk, n=1, **sampling_kwargs(cfg, temperature=temperature,
                                                                             generator=gen))]
    return out


def _true_first_error(task, problem, thoughts) -> int | None:
    if not getattr(task, "has_step_checker", False):
        return None
    return task.first_error(problem, list(thoughts))


def verify(policy, task, states: list[State], cfg: ICSConfig, gen, it: int) -> list[Round]:
    """One Round per state: verified by the reward (L1/L2) or by a majority of the model's verdicts (L3)."""
    if cfg.level != "L3":
        return [Round(iteration=it, verified=s.res.attempts[-1].correct) for s in states]
    k = cfg.verify_votes
    prompts = [B.verification_prompt(task, s.problem, s.sample.thoughts, s.sample.answer)
               for s in states for _ in range(k)]
    texts, over = _complete(policy, prompts, cfg, gen)
    rounds = []
    for i, s in enumerate(states):
        t = texts[i * k:(i + 1) * k]
        votes = [B.parse_verdict(x, task.fmt) for x in t]
        rounds.append(Round(iteration=it, verified=B.majority_verified(votes), verdicts=t,
                            votes_yes=sum(v is True for v in votes),
                            votes_unparseable=sum(v is None for v in votes),
                            judge_overflow=sum(over[i * k:(i + 1) * k])))
    return rounds


def localize(policy, task, states: list[State], rounds: list[Round], cfg: ICSConfig, gen) -> list[int | None]:
    """Fill each round's localization fields (one batched judge call); return the token cut of each
    reset (None: the localizer says nothing is wrong)."""
    loc = localizer_for(cfg)
    calls: list[tuple[int, str]] = []  # (state index, prompt)
    for i, (s, r) in enumerate(zip(states, rounds)):
        r.true_first_error = _true_first_error(task, s.problem, s.sample.thoughts)
        p = loc.request(task, s)
        if p is not None:
            calls.append((i, p))
    replies, over = _complete(policy, [p for _, p in calls], cfg, gen)
    texts = dict(zip([i for i, _ in calls], replies))
    for (i, _), o in zip(calls, over):
        rounds[i].judge_overflow += int(o)
    cuts = []
    for i, (s, r) in enumerate(zip(states, rounds)):
        r.loc_text = texts.get(i)
        cuts.append(loc.locate(policy, task, s, r))
    return cuts


def _with_caps(kw: dict, caps) -> dict:
    """``kw`` plus ``prefix_cap_ends`` when a prefix holds a thought ended by the cap (test doubles without
    that keyword keep working otherwise)."""
    return {**kw, "prefix_cap_ends": caps} if any(caps) else kw


def resample(policy, task, items: list[tuple[State, Round, int]], cfg: ICSConfig, gen) -> None:
    """The next chain of every (state, round, cut): a continuation of the kept ``cut`` tokens, or a whole
    new chain (scratch / refine); recorded as the state's new attempt."""
    loc = localizer_for(cfg)
    t = cfg.temperature_resample
    prompts = [loc.resample_prompt(task, s, r) for s, r, _ in items]
    if not loc.continues:
        new = _generate(policy, prompts, cfg, gen, t)
        for (s, r, _), x in zip(items, new):
            s.add(task, x)
            r.resample_correct = s.res.attempts[-1].correct
        return
    prefixes = [list(s.sample.response_ids[:cut]) for s, _, cut in items]
    kw = sampling_kwargs(cfg, temperature=t, generator=gen)
    # kept over-long thoughts inside a prefix (thought_cap="keep") must still count as thoughts
    caps = [[c for c in getattr(s.sample, "cap_ends", ()) if c <= cut] for s, _, cut in items]
    if hasattr(policy, "continue_many"):  # one decode loop per batch_size resets
        new = [g[0] for c in _chunks(list(range(len(items))), cfg.batch_size)
               for g in policy.continue_many([prompts[i] for i in c], [prefixes[i] for i in c], 1,
                                             **_with_caps(kw, [caps[i] for i in c]))]
    else:
        new = [policy.continue_from(p, q, 1, **_with_caps(kw, cp))[0] for p, q, cp in zip(prompts, prefixes, caps)]
    for (s, r, _), x in zip(items, new):
        s.add(task, x, reset_at=r.loc_index)
        r.resample_correct = s.res.attempts[-1].correct


def run_ics(policy, task, problems: Sequence, cfg: ICSConfig | None = None, *,
            progress: bool = False, generator=None) -> list[ProblemResult]:
    """Run the configured correction loop on every problem; batched across problems.

    ``policy`` needs ``generate``, ``continue_many`` (else ``continue_from`` per reset), ``complete``
    and ``decode`` (llm.policy.Policy or a test double); ``task`` needs ``prompt``, ``reward``, ``fmt``
    and, for the oracle localizer and the localization metrics, ``first_error``. ``progress`` shows a
    tqdm bar on stderr that advances as problems finish.
    """
    cfg = cfg or ICSConfig()
    if cfg.localizer == "oracle" and not getattr(task, "has_step_checker", False):
        raise ValueError(f"ICSConfig.localizer='oracle' needs a task with a step checker; task "
                         f"{getattr(task, 'name', task)!r} has none")
    if generator is None:
        import torch
        generator = torch.Generator().manual_seed(cfg.seed)
    states = [State(task, p) for p in problems]
    for s in states:
        s.res.method, s.res.level = cfg.method, cfg.level
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(states), desc=f"ics {cfg.method} {cfg.level}", file=sys.stderr)

    def finish(s, code):
        s.res.exit = code
        if bar is not None:
            bar.update(1)

    for s, x in zip(states, _generate(policy, [s.prompt for s in states], cfg, generator, cfg.temperature_first)):
        s.add(task, x)
    for it in range(1, cfg.max_iters + 1):
        active = [s for s in states if s.res.exit == 0]
        if not active:
            break
        rounds = verify(policy, task, active, cfg, generator, it)
        for s, r in zip(active, rounds):
            s.res.rounds.append(r)
            if r.verified:
                finish(s, 1)
        pending = [(s, r) for s, r in zip(active, rounds) if not r.verified]
        if not pending:
            continue
        cuts = localize(policy, task, [s for s, _ in pending], [r for _, r in pending], cfg, generator)
        todo = []
        for (s, r), cut in zip(pending, cuts):
            if cut is None:
                finish(s, 2)
            else:
                todo.append((s, r, cut))
        resample(policy, task, todo, cfg, generator)
    for s in states:
        if s.res.exit == 0:
            finish(s, 3)
    if bar is not None:
        bar.close()
    return [s.res for s in states]
