"""Summaries of Thought-ICS runs: fixed / broke / net / lift (with and without ICS-A), exits, localization
accuracy against the task's step checker, fallbacks and budget; a plain-text table."""
from __future__ import annotations

import math
from typing import Any, Sequence

from ..stats import wilson_interval
from .config import EXITS
from .records import ProblemResult


def _rate(num: int, den: int) -> float:
    return num / den if den else float("nan")


def transition_counts(before: Sequence[bool], after: Sequence[bool]) -> dict[str, float]:
    """Fixed / broke / net / lift of a before -> after correctness change.

    fixed = #(wrong -> right), broke = #(right -> wrong), net = fixed - broke,
    lift = fixed / #(wrong before)  (self-correction lift: share of initially wrong answers that
    end correct; NaN when none was wrong) with its Wilson 95% interval ``lift_lo``, ``lift_hi``.
    Accuracies are means over the problems.
    """
    if len(before) != len(after):
        raise ValueError(f"before/after: expected equal lengths, got {len(before)} and {len(after)}")
    fixed = sum(1 for b, a in zip(before, after) if not b and a)
    broke = sum(1 for b, a in zip(before, after) if b and not a)
    wrong = sum(1 for b in before if not b)
    n = len(before)
    lo, hi = wilson_interval(fixed, wrong)
    return dict(n=n, acc_before=_rate(sum(map(bool, before)), n),
                acc_after=_rate(sum(map(bool, after)), n), fixed=fixed, broke=broke,
                net=fixed - broke, lift=_rate(fixed, wrong), lift_lo=lo, lift_hi=hi, wrong_before=wrong)


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
    out.update({f"{k}_a": a[k] for k in ("acc_after", "fixed", "broke", "net", "lift", "lift_lo", "lift_hi")})
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
        oracle_none=sources.get("oracle_none", 0),
        judge_overflow=sum(getattr(rd, "judge_overflow", 0) for rd in rounds))
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
