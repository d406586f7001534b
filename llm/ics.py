"""Thought-ICS: iterative correction sampling of thoughts at inference time.

Algorithm (DESIGN.md section 4; "Structure Enables Effective Self-Localization of Errors in
LLMs", 2026)::

    tau = generate(x)                                   # temperature 1.0
    repeat up to L times (default 10):
        if verify(tau):  exit (1) "verified"
        e = localize(tau)                               # 1-based first wrong thought, judge temp 0.3
        if e == 0:       exit (2) "disagreement"        # localizer says nothing is wrong
        tau = generate(x, prefix = thoughts 1..e-1 of tau)   # temperature 0.7
    exit (3) "max iterations"

Verifier levels: L1 and L2 use the task's reward (L1 also shows the ground truth to the
localizer, L2 only says the answer is wrong); L3 asks the model itself for a boxed YES/NO
verdict (majority over ``verify_votes`` samples; an unparseable verdict counts as NO and is
counted). **Thought-ICS-A** keeps the first answer on exits (2) and (3); both readings come
out of one run (``final_correct`` and ``final_correct_a``).

Methods sharing the loop and the budget (at most ``1 + L`` chains and ``L`` localization /
feedback calls, plus the verifier calls at L3):

* ``thought``: Thought-ICS (reset to the clean prefix of thoughts 1..e-1);
* ``token``: Token-ICS, the unstructured baseline: the localizer sees the chain as one block of
  text (delimiters removed), quotes the first wrong span, and the chain is resampled from the
  last whole token before the quote;
* ``scratch``: iterative resampling from scratch (no localization);
* ``refine``: Self-Refine style: the model writes feedback on the whole answer, then a new chain
  conditioned on the failed chain and the feedback.

``localizer="oracle"`` replaces the model's localization by the task's step checker
(``task.first_error``): the upper bound of Thought-ICS.

Shape letters: none; everything here is per problem, token ids are Python lists.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence, get_args

from llm import _ics_baselines as B
from llm.localize import localization_prompt, parse_localization

Method = Literal["thought", "token", "scratch", "refine"]
Level = Literal["L1", "L2", "L3"]
LocalizerKind = Literal["model", "oracle"]
EXITS = {1: "verified", 2: "disagreement", 3: "max_iters"}


@dataclass
class ICSConfig:
    """Configuration of one Thought-ICS (or baseline) run; saved beside every result."""

    method: Method = "thought"
    """"thought" (Thought-ICS), "token" (Token-ICS), "scratch" (resample from scratch), "refine"."""
    level: Level = "L2"
    """Verifier oracle level: "L1" ground truth shown to the localizer, "L2" told only "wrong",
    "L3" the model verifies itself."""
    localizer: LocalizerKind = "model"
    """"model": the policy localizes its own error; "oracle": the task's first_error (upper bound;
    needs a task with a step checker; only for "thought" / "token")."""
    max_iters: int = 10
    """L: at most this many verify/localize/resample rounds (so at most 1 + L chains)."""
    temperature_first: float = 1.0
    """Temperature of the first chain."""
    temperature_resample: float = 0.7
    """Temperature of every later chain (resample / scratch / refine)."""
    temperature_judge: float = 0.3
    """Temperature of the verifier (L3), localizer and Self-Refine feedback calls."""
    top_p: float = 1.0
    """Nucleus sampling for the chains."""
    verify_votes: int = 1
    """L3 only: k verdict samples, verified iff #YES > k/2 (paper: 1, 5 or 9)."""
    context: bool = False
    """Resample conditioned on the failed chain (shown before the task prompt); thought/token only."""
    max_thoughts: int = 20
    """Per chain, passed to Policy.generate / continue_from."""
    max_thought_tokens: int = 256
    """Per-thought token cap, passed to the policy."""
    max_new_tokens: int | None = None
    """Total token budget per chain (None: the policy's default)."""
    judge_max_new_tokens: int = 96
    """Token budget of a verdict / localization / feedback completion (the tiny default's localization
    replies run up to 88 tokens)."""
    batch_size: int = 16
    """Prompts per batched generate / complete call."""
    seed: int = 0
    """Seed of the torch.Generator handed to the policy."""

    def __post_init__(self) -> None:
        for name, lit in (("method", Method), ("level", Level), ("localizer", LocalizerKind)):
            val = getattr(self, name)
            if val not in get_args(lit):
                raise ValueError(f"ICSConfig.{name}: expected one of {get_args(lit)}, got {val!r}")
        for name in ("max_iters", "verify_votes", "max_thoughts", "max_thought_tokens",
                     "judge_max_new_tokens", "batch_size"):
            val = getattr(self, name)
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                raise ValueError(f"ICSConfig.{name}: expected an int >= 1, got {val!r}")
        if self.max_new_tokens is not None and (not isinstance(self.max_new_tokens, int)
                                                or self.max_new_tokens < 1):
            raise ValueError(f"ICSConfig.max_new_tokens: expected None or an int >= 1, "
                             f"got {self.max_new_tokens!r}")
        for name in ("temperature_first", "temperature_resample", "temperature_judge"):
            val = getattr(self, name)
            if not isinstance(val, (int, float)) or not math.isfinite(val) or val < 0:
                raise ValueError(f"ICSConfig.{name}: expected a finite float >= 0, got {val!r}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"ICSConfig.top_p: expected 0 < top_p <= 1, got {self.top_p!r}")
        if self.localizer == "oracle" and self.method not in ("thought", "token"):
            raise ValueError(f"ICSConfig.localizer='oracle' needs method 'thought' or 'token' "
                             f"(got method={self.method!r}): the other methods do not localize")
        if self.context and self.method not in ("thought", "token"):
            raise ValueError(f"ICSConfig.context=True needs method 'thought' or 'token' (got "
                             f"method={self.method!r}); 'refine' always conditions on the failed chain")
        if self.verify_votes > 1 and self.level != "L3":
            raise ValueError(f"ICSConfig.verify_votes={self.verify_votes} only applies to level "
                             f"'L3' (got level={self.level!r}); set verify_votes=1")


# ----------------------------------------------------------------------------- records
@dataclass
class Attempt:
    """One chain of the loop (the first one or a resample)."""

    text: str
    n_thoughts: int
    answer: str | None
    correct: bool
    finish: str
    reset_at: int | None = None
    """Thought index e this chain was resampled from (prefix = thoughts 1..e-1); None: fresh."""
    prefix_tokens: int = 0


@dataclass
class Round:
    """One verify (+ localize + resample) round on the current chain."""

    iteration: int
    verified: bool
    verdicts: list[str] = field(default_factory=list)
    """L3: the raw verdict completions; empty at L1/L2 (the reward is the verifier)."""
    votes_yes: int = 0
    votes_unparseable: int = 0
    loc_text: str | None = None
    """Raw localizer (or Self-Refine feedback) completion; None when no call was made."""
    loc_index: int | None = None
    """Reset thought e (0 = "no error"); for Token-ICS the thought the reset point falls in."""
    loc_source: str | None = None
    """boxed / step / fallback (parse_localization), quote / quote_fuzzy / none (Token-ICS),
    oracle / oracle_none, empty (no complete thought: reset to the start without a call)."""
    true_first_error: int | None = None
    """task.first_error of the chain, when the task has a step checker and finds one."""
    resample_correct: bool | None = None
    """Whether the chain resampled in this round is correct (None: no resample)."""


@dataclass
class ProblemResult:
    """Everything the loop did on one problem (one line of the JSONL)."""

    id: str
    answer: str
    method: str
    level: str
    exit: int = 0
    """1 verified, 2 disagreement (localizer says no error), 3 max iterations (0 while running)."""
    question: str = ""
    attempts: list[Attempt] = field(default_factory=list)
    rounds: list[Round] = field(default_factory=list)

    @property
    def first_correct(self) -> bool:
        return self.attempts[0].correct

    @property
    def final_correct(self) -> bool:
        return self.attempts[-1].correct

    @property
    def final_correct_a(self) -> bool:
        """Thought-ICS-A: the first answer is kept on exits (2) and (3)."""
        return self.final_correct if self.exit == 1 else self.first_correct

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(first_correct=self.first_correct, final_correct=self.final_correct,
                 final_correct_a=self.final_correct_a, exit_name=EXITS.get(self.exit))
        return d


# ----------------------------------------------------------------------------- the loop
class _State:
    def __init__(self, task, problem):
        self.problem = problem
        self.prompt = task.prompt(problem)
        self.res = ProblemResult(id=str(problem.id), answer=str(problem.answer), method="", level="",
                                 question=str(problem.question))
        self.sample = None  # current chain (a Policy Sample)

    def add(self, task, sample, reset_at=None):
        self.sample = sample
        self.res.attempts.append(Attempt(
            text=sample.text, n_thoughts=len(sample.thoughts), answer=sample.answer,
            correct=bool(task.reward(self.problem, sample.text) >= 1.0), finish=sample.finish,
            reset_at=reset_at, prefix_tokens=int(sample.prefix_len)))


def _chunks(xs: list, k: int):
    for i in range(0, len(xs), k):
        yield xs[i:i + k]


def _complete(policy, prompts: list[str], cfg: ICSConfig, gen) -> list[str]:
    out: list[str] = []
    for chunk in _chunks(prompts, cfg.batch_size):
        out += policy.complete(chunk, temperature=cfg.temperature_judge,
                               max_new_tokens=cfg.judge_max_new_tokens, generator=gen)
    return out


def _chain_kw(cfg: ICSConfig, gen, temperature: float) -> dict:
    return dict(temperature=temperature, top_p=cfg.top_p, max_thoughts=cfg.max_thoughts,
                max_thought_tokens=cfg.max_thought_tokens, max_new_tokens=cfg.max_new_tokens,
                generator=gen)


def _generate(policy, prompts: list[str], cfg, gen, temperature) -> list:
    out = []
    for chunk in _chunks(prompts, cfg.batch_size):
        out += [g[0] for g in policy.generate(chunk, n=1, **_chain_kw(cfg, gen, temperature))]
    return out


def _true_first_error(task, problem, thoughts) -> int | None:
    if not getattr(task, "has_step_checker", False):
        return None
    return task.first_error(problem, list(thoughts))


def _verify(policy, task, states: list[_State], cfg, gen, it: int) -> list[Round]:
    if cfg.level != "L3":
        return [Round(iteration=it, verified=s.res.attempts[-1].correct) for s in states]
    k = cfg.verify_votes
    prompts = [B.verification_prompt(task, s.problem, s.sample.thoughts, s.sample.answer)
               for s in states for _ in range(k)]
    texts = _complete(policy, prompts, cfg, gen)
    rounds = []
    for i, s in enumerate(states):
        t = texts[i * k:(i + 1) * k]
        votes = [B.parse_verdict(x, task.fmt) for x in t]
        rounds.append(Round(iteration=it, verified=B.majority_verified(votes), verdicts=t,
                            votes_yes=sum(v is True for v in votes),
                            votes_unparseable=sum(v is None for v in votes)))
    return rounds


def _oracle_index(task, s: _State, f: int | None) -> tuple[int, str]:
    """Oracle reset: the true first error; with none found, 0 if the answer is right (the oracle
    disagrees with a wrong L3 verdict) else the last thought (wrong answer, no wrong step: e.g.
    a chain cut by the budget), redone."""
    n = len(s.sample.thoughts)
    if n == 0:
        return 1, "empty"
    if f is not None:
        return f, "oracle"
    return (0, "oracle_none") if s.res.attempts[-1].correct else (n, "oracle_none")


def _localize(policy, task, states, rounds, cfg, gen) -> list[int | None]:
    """Fill each round's localization fields; return the token cut of each reset (None: e == 0)."""
    gt = cfg.level == "L1"
    calls: list[tuple[int, str]] = []  # (state index, prompt)
    flats = {}
    for i, (s, r) in enumerate(zip(states, rounds)):
        r.true_first_error = _true_first_error(task, s.problem, s.sample.thoughts)
        if cfg.method == "refine":
            calls.append((i, B.refine_feedback_prompt(task, s.problem, s.sample.thoughts,
                                                      ground_truth=s.problem.answer if gt else None)))
        elif cfg.method == "thought" and cfg.localizer == "model" and s.sample.thoughts:
            calls.append((i, localization_prompt(task, s.problem, list(s.sample.thoughts),
                                                 ground_truth=s.problem.answer if gt else None)))
        elif cfg.method == "token" and cfg.localizer == "model":
            flats[i] = B.flatten_with_map(s.sample.text, task.fmt.delimiter)
            if flats[i][0].strip():
                calls.append((i, B.token_localization_prompt(
                    task, s.problem, flats[i][0], ground_truth=s.problem.answer if gt else None)))
    texts = dict(zip([i for i, _ in calls], _complete(policy, [p for _, p in calls], cfg, gen)))
    cuts: list[int | None] = []
    for i, (s, r) in enumerate(zip(states, rounds)):
        smp, n = s.sample, len(s.sample.thoughts)
        r.loc_text = texts.get(i)
        if cfg.method == "scratch" or cfg.method == "refine":
            cuts.append(0)
            continue
        if cfg.localizer == "oracle":
            e, r.loc_source = _oracle_index(task, s, r.true_first_error)
        elif cfg.method == "thought":
            if n == 0:
                e, r.loc_source = 1, "empty"
            else:
                loc = parse_localization(r.loc_text, n, task.fmt, allow_zero=True)
                e, r.loc_source = loc.index, loc.source
        else:  # token-level localization by quoting
            flat, idx = flats[i]
            if i not in texts:
                pos, r.loc_source = 0, "empty"
            else:
                pos, r.loc_source = B.locate_quote(flat, task.fmt.extract_answer(r.loc_text))
            if pos is None:
                r.loc_index = 0
                cuts.append(None)
                continue
            cut = B.char_to_token_cut(policy.decode, smp.response_ids, idx[pos])
            r.loc_index = B.thought_of_token(smp.thought_ends[:n], cut)
            cuts.append(cut)
            continue
        r.loc_index = e
        cuts.append(None if e == 0 else prefix_cut(smp.thought_ends, e))
    return cuts


def prefix_cut(thought_ends: Sequence[int], e: int) -> int:
    """Tokens kept when resetting at thought ``e``: thoughts 1..e-1, i.e.
    ``response_ids[:thought_ends[e-2]]`` (0 tokens for e = 1)."""
    if e < 1 or e > len(thought_ends) + 1:
        raise ValueError(f"e: expected 1 <= e <= {len(thought_ends) + 1}, got {e}")
    return 0 if e == 1 else int(thought_ends[e - 2])


def run_ics(policy, task, problems: Sequence, cfg: ICSConfig | None = None, *,
            progress: bool = False, generator=None) -> list[ProblemResult]:
    """Run the configured correction loop on every problem; batched across problems.

    ``policy`` needs ``generate``, ``continue_many`` (else ``continue_from`` per reset), ``complete``
    and ``decode`` (llm.policy.Policy or a test double); ``task`` needs ``prompt``, ``reward``, ``fmt``
    and, for the oracle localizer and the localization metrics, ``first_error``.
    """
    cfg = cfg or ICSConfig()
    if cfg.localizer == "oracle" and not getattr(task, "has_step_checker", False):
        raise ValueError(f"ICSConfig.localizer='oracle' needs a task with a step checker; task "
                         f"{getattr(task, 'name', task)!r} has none")
    if generator is None:
        import torch
        generator = torch.Generator().manual_seed(cfg.seed)
    states = [_State(task, p) for p in problems]
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

    for s, x in zip(states, _generate(policy, [s.prompt for s in states], cfg, generator,
                                      cfg.temperature_first)):
        s.add(task, x)
    for it in range(1, cfg.max_iters + 1):
        active = [s for s in states if s.res.exit == 0]
        if not active:
            break
        rounds = _verify(policy, task, active, cfg, generator, it)
        for s, r in zip(active, rounds):
            s.res.rounds.append(r)
            if r.verified:
                finish(s, 1)
        pending = [(s, r) for s, r in zip(active, rounds) if not r.verified]
        if not pending:
            continue
        cuts = _localize(policy, task, [s for s, _ in pending], [r for _, r in pending], cfg,
                         generator)
        resample = []
        for (s, r), cut in zip(pending, cuts):
            if cut is None:
                finish(s, 2)
            else:
                resample.append((s, r, cut))
        _resample(policy, task, resample, cfg, generator)
    for s in states:
        if s.res.exit == 0:
            finish(s, 3)
    if bar is not None:
        bar.close()
    return [s.res for s in states]


def _resample(policy, task, items, cfg, gen) -> None:
    t = cfg.temperature_resample
    if cfg.method in ("scratch", "refine"):
        prompts = [s.prompt if cfg.method == "scratch" else
                   B.refine_prompt(task, s.problem, s.sample.thoughts, r.loc_text or "")
                   for s, r, _ in items]
        new = _generate(policy, prompts, cfg, gen, t)
        for (s, r, _), x in zip(items, new):
            s.add(task, x)
            r.resample_correct = s.res.attempts[-1].correct
        return
    prompts = [B.context_prompt(task, s.problem, s.sample.thoughts, r.loc_index) if cfg.context else s.prompt
               for s, r, _ in items]
    prefixes = [list(s.sample.response_ids[:cut]) for s, _, cut in items]
    kw = _chain_kw(cfg, gen, t)
    if hasattr(policy, "continue_many"):  # one decode loop per batch_size resets
        new = [g[0] for c in _chunks(list(range(len(items))), cfg.batch_size)
               for g in policy.continue_many([prompts[i] for i in c], [prefixes[i] for i in c], 1, **kw)]
    else:
        new = [policy.continue_from(p, q, 1, **kw)[0] for p, q in zip(prompts, prefixes)]
    for (s, r, _), x in zip(items, new):
        s.add(task, x, reset_at=r.loc_index)
        r.resample_correct = s.res.attempts[-1].correct


# ----------------------------------------------------------------------------- metrics
def _rate(num: int, den: int) -> float:
    return num / den if den else float("nan")


def transition_counts(before: Sequence[bool], after: Sequence[bool]) -> dict[str, float]:
    """Fixed / broke / net / lift of a before -> after correctness change.

    fixed = #(wrong -> right), broke = #(right -> wrong), net = fixed - broke,
    lift = fixed / #(wrong before)  (self-correction lift: share of initially wrong answers that
    end correct; NaN when none was wrong). Accuracies are means over the problems.
    """
    if len(before) != len(after):
        raise ValueError(f"before/after: expected equal lengths, got {len(before)} and {len(after)}")
    fixed = sum(1 for b, a in zip(before, after) if not b and a)
    broke = sum(1 for b, a in zip(before, after) if b and not a)
    wrong = sum(1 for b in before if not b)
    n = len(before)
    return dict(n=n, acc_before=_rate(sum(map(bool, before)), n),
                acc_after=_rate(sum(map(bool, after)), n), fixed=fixed, broke=broke,
                net=fixed - broke, lift=_rate(fixed, wrong))


def localization_scores(pairs: Sequence[tuple[int, int]]) -> dict[str, float]:
    """Localization accuracy of (e, f) pairs: predicted reset thought e (0 = "no error") and the
    task's true first wrong thought f >= 1.

    exact = #(e == f) / N; within1 = #(e >= 1 and |e - f| <= 1) / N; over resets only (e >= 1):
    clean = #(e <= f) / #(e >= 1) -- the kept prefix (thoughts 1..e-1) holds no wrong thought.
    """
    n = len(pairs)
    resets = [(e, f) for e, f in pairs if e >= 1]
    return dict(n_localized=n, loc_exact=_rate(sum(e == f for e, f in pairs), n),
                loc_within1=_rate(sum(e >= 1 and abs(e - f) <= 1 for e, f in pairs), n),
                n_resets_known=len(resets), clean_prefix=_rate(sum(e <= f for e, f in resets),
                                                               len(resets)))


def summarize(results: Sequence[ProblemResult]) -> dict[str, Any]:
    """Summary of one run: accuracy before/after, fixed/broke/net/lift for Thought-ICS and ICS-A,
    per-exit shares with their fixed/broke, localization accuracy and clean-prefix rate against
    ``first_error``, correction rate from clean vs erroneous prefixes, fallbacks and budget.
    """
    first = [r.first_correct for r in results]
    out: dict[str, Any] = transition_counts(first, [r.final_correct for r in results])
    a = transition_counts(first, [r.final_correct_a for r in results])
    out.update({f"{k}_a": a[k] for k in ("acc_after", "fixed", "broke", "net", "lift")})
    n = len(results)
    for code, name in EXITS.items():
        sub = [r for r in results if r.exit == code]
        t = transition_counts([r.first_correct for r in sub], [r.final_correct for r in sub])
        out[f"exit{code}_{name}"] = dict(count=len(sub), share=_rate(len(sub), n),
                                         fixed=t["fixed"], broke=t["broke"], net=t["net"])
    rounds = [rd for r in results for rd in r.rounds]
    pairs = [(rd.loc_index, rd.true_first_error) for rd in rounds
             if rd.loc_index is not None and rd.true_first_error is not None]
    out.update(localization_scores(pairs))
    clean = [rd.resample_correct for rd in rounds if rd.resample_correct is not None
             and rd.true_first_error is not None and rd.loc_index and rd.loc_index <= rd.true_first_error]
    dirty = [rd.resample_correct for rd in rounds if rd.resample_correct is not None
             and rd.true_first_error is not None and rd.loc_index and rd.loc_index > rd.true_first_error]
    out.update(correct_from_clean=_rate(sum(clean), len(clean)),
               correct_from_dirty=_rate(sum(dirty), len(dirty)))
    sources: dict[str, int] = {}
    for rd in rounds:
        if rd.loc_source is not None:
            sources[rd.loc_source] = sources.get(rd.loc_source, 0) + 1
    out["loc_sources"] = dict(sorted(sources.items()))
    out["fallbacks"] = dict(
        verdict_unparseable=sum(rd.votes_unparseable for rd in rounds),
        localization_fallback=sources.get("fallback", 0),
        localization_empty=sources.get("empty", 0),
        quote_fuzzy=sources.get("quote_fuzzy", 0),
        oracle_none=sources.get("oracle_none", 0))
    out["verdict_calls"] = sum(len(rd.verdicts) for rd in rounds)
    out["chains"] = sum(len(r.attempts) for r in results)
    out["judge_calls"] = out["verdict_calls"] + sum(rd.loc_text is not None for rd in rounds)
    return out


def format_summary(summaries: dict[str, dict]) -> str:
    """Plain-text table, one row per run label (e.g. "thought L2"), percentages."""
    def pct(x):
        return "  -  " if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:5.1f}"

    head = (f"{'run':<24}{'n':>5}{'before':>8}{'after':>8}{'ICS-A':>8}{'fixed':>7}{'broke':>7}"
            f"{'net':>6}{'lift':>7}{'liftA':>7}{'ex1%':>7}{'ex2%':>7}{'ex3%':>7}{'locEx':>7}"
            f"{'loc±1':>7}{'clean':>7}{'fallb':>7}{'chains':>8}")
    lines = [head, "-" * len(head)]
    for label, s in summaries.items():
        fb = sum(s["fallbacks"].values())
        lines.append(
            f"{label:<24}{s['n']:>5}{pct(s['acc_before']):>8}{pct(s['acc_after']):>8}"
            f"{pct(s['acc_after_a']):>8}{s['fixed']:>7}{s['broke']:>7}{s['net']:>6}"
            f"{pct(s['lift']):>7}{pct(s['lift_a']):>7}"
            + "".join(f"{pct(s[k]['share']):>7}" for k in s if k.startswith("exit"))
            + f"{pct(s['loc_exact']):>7}{pct(s['loc_within1']):>7}{pct(s['clean_prefix']):>7}"
            f"{fb:>7}{s['chains']:>8}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- CLI
TINY_BUDGET = dict(max_thoughts=8, max_thought_tokens=16)
"""Chain budget the CLI uses for ``--model tiny`` (its arith thoughts are a few characters)."""

def write_run(out_dir: Path, label: str, cfg: ICSConfig, results: Sequence[ProblemResult],
              summary: dict) -> Path:
    """``<out_dir>/<label>.jsonl``: one line per problem (every attempt, every round with its
    verdicts, localization text/index/source, the exit); ``<label>.summary.json``: config + summary."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = label.replace(" ", "_")
    path = out_dir / f"{stem}.jsonl"
    with path.open("w") as f:
        for r in results:
            f.write(json.dumps(r.to_json()) + "\n")
    (out_dir / f"{stem}.summary.json").write_text(
        json.dumps({"config": asdict(cfg), "summary": summary}, indent=1, default=str))
    return path


def _parser() -> argparse.ArgumentParser:
    d = ICSConfig()
    p = argparse.ArgumentParser(
        prog="python -m llm.ics", description="Thought-ICS and baselines on one model and task; "
        "writes per-problem JSONL and a summary table.")
    p.add_argument("--model", default="tiny", help="'tiny' (built on first use), an HF dir or hub name")
    p.add_argument("--task", default="arith", help="'arith', 'rg:<dataset>' or a .jsonl/.parquet path")
    p.add_argument("--level", default=d.level, choices=get_args(Level))
    p.add_argument("--method", nargs="+", default=["thought"],
                   choices=list(get_args(Method)) + ["all"], help="one or more; 'all' = every method")
    p.add_argument("--localizer", nargs="+", default=["model"], choices=get_args(LocalizerKind),
                   help="'oracle' = task.first_error (upper bound; thought/token only)")
    p.add_argument("--n", type=int, default=200, help="problems")
    p.add_argument("--split", default="test")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--max-iters", type=int, default=d.max_iters)
    p.add_argument("--temperature-first", type=float, default=d.temperature_first)
    p.add_argument("--temperature-resample", type=float, default=d.temperature_resample)
    p.add_argument("--temperature-judge", type=float, default=d.temperature_judge)
    p.add_argument("--top-p", type=float, default=d.top_p)
    p.add_argument("--votes", type=int, default=d.verify_votes, help="L3 majority vote over k verdicts")
    p.add_argument("--context", action="store_true", help="resample conditioned on the failed chain")
    p.add_argument("--max-thoughts", type=int, default=None,
                   help=f"default {d.max_thoughts}; {TINY_BUDGET['max_thoughts']} for --model tiny")
    p.add_argument("--max-thought-tokens", type=int, default=None,
                   help=f"default {d.max_thought_tokens}; {TINY_BUDGET['max_thought_tokens']} for --model tiny")
    p.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens)
    p.add_argument("--judge-max-new-tokens", type=int, default=d.judge_max_new_tokens)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default=None, help="e.g. bfloat16 on GPU")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--out", default="runs/ics", help="output directory")
    p.add_argument("--no-progress", action="store_true")
    return p


def configs_from_args(args) -> dict[str, ICSConfig]:
    """One config per (method, localizer) pair the arguments ask for; labels like 'thought-oracle L2'."""
    d = ICSConfig()
    budget = TINY_BUDGET if args.model == "tiny" else dict(max_thoughts=d.max_thoughts,
                                                           max_thought_tokens=d.max_thought_tokens)
    max_thoughts = args.max_thoughts if args.max_thoughts is not None else budget["max_thoughts"]
    max_tt = (args.max_thought_tokens if args.max_thought_tokens is not None
              else budget["max_thought_tokens"])
    methods = list(get_args(Method)) if "all" in args.method else list(dict.fromkeys(args.method))
    out = {}
    for m in methods:
        for loc in dict.fromkeys(args.localizer):
            if loc == "oracle" and m not in ("thought", "token"):
                continue
            ctx = args.context and m in ("thought", "token")
            label = f"{m}{'-oracle' if loc == 'oracle' else ''}{'-ctx' if ctx else ''} {args.level}"
            out[label] = ICSConfig(
                method=m, level=args.level, localizer=loc, max_iters=args.max_iters,
                temperature_first=args.temperature_first,
                temperature_resample=args.temperature_resample,
                temperature_judge=args.temperature_judge, top_p=args.top_p,
                verify_votes=args.votes, context=ctx, max_thoughts=max_thoughts,
                max_thought_tokens=max_tt, max_new_tokens=args.max_new_tokens,
                judge_max_new_tokens=args.judge_max_new_tokens, batch_size=args.batch_size,
                seed=args.seed)
    if not out:
        raise ValueError(f"--localizer oracle needs --method thought or token (got {methods})")
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, dict]:
    args = _parser().parse_args(argv)
    configs = configs_from_args(args)  # validate before loading a model
    import torch

    from llm.models import load_policy
    if args.threads:
        torch.set_num_threads(args.threads)
    policy = load_policy(args.model, device=args.device, dtype=args.dtype)
    task = policy.get_task(args.task)
    problems = task.sample(args.n, args.seed, split=args.split)
    out_dir = Path(args.out)
    summaries = {}
    for label, cfg in configs.items():
        gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
        results = run_ics(policy, task, problems, cfg, progress=not args.no_progress, generator=gen)
        summaries[label] = summarize(results)
        path = write_run(out_dir, label, cfg, results, summaries[label])
        print(f"wrote {path}", file=sys.stderr)
    table = format_summary(summaries)
    head = f"model={args.model} task={args.task} n={len(problems)} split={args.split} seed={args.seed}"
    (out_dir / "summary.txt").write_text(head + "\n" + table + "\n")
    print(head)
    print(table)
    return summaries


if __name__ == "__main__":
    main()
