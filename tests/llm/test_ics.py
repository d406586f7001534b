"""Thought-ICS loop, baselines and metrics (the llm.ics package).

Control flow is checked with a scripted test double of the Policy: a character-level
"tokenizer" (token id = ord(char)) and queues of given responses, so every prompt, prefix and
temperature the loop hands to the policy can be compared with hand-written expectations.
The problems are arith problems whose chains and first errors are written out by hand.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llm.ics import prompts as B
from llm.ics import (Attempt, ICSConfig, ProblemResult, Round, format_summary, localization_scores,
                     prefix_cut, run_ics, summarize, transition_counts)
from llm.localize import localization_prompt
from llm.tasks import get_task
from llm.thoughts import DEFAULT_FORMAT

D = DEFAULT_FORMAT.delimiter  # "</thought>"


@dataclass
class FakeSample:
    """Duck-typed llm.policy.Sample."""

    prompt_ids: list
    response_ids: list
    prefix_len: int
    text: str
    thoughts: list
    thought_ends: list
    answer: str | None
    finish: str


class ScriptedPolicy:
    """Policy double: chains come from per-prompt queues, judge replies from ``judge(prompt)``.

    ``chains[base_prompt]`` is a list of texts: the first chain of ``generate`` and, for
    ``continue_from``, the continuation appended to the given prefix. A prompt is matched to the
    base prompt it ends with (so ``context`` prompts, which end with the task prompt, match too).
    """

    def __init__(self, fmt, chains: dict[str, list[str]], judge: Callable[[str], str] = lambda p: ""):
        self.fmt, self.chains, self.judge = fmt, {k: list(v) for k, v in chains.items()}, judge
        self.calls: list[tuple] = []

    def encode(self, text):
        return [ord(c) for c in text]

    def decode(self, ids):
        return "".join(map(chr, ids))

    def _pop(self, prompt):
        keys = [k for k in self.chains if prompt.endswith(k)]
        assert len(keys) == 1, f"no unique script for prompt {prompt!r}"
        return self.chains[keys[0]].pop(0)

    def _sample(self, prompt, text, prefix_len):
        ends, i = [], 0
        while (j := text.find(self.fmt.delimiter, i)) >= 0:
            ends.append(j + len(self.fmt.delimiter))
            i = ends[-1]
        thoughts = self.fmt.split(text)
        if len(thoughts) > len(ends):
            ends.append(len(text))
        ans = self.fmt.extract_answer(text)
        return FakeSample(self.encode(prompt), self.encode(text), prefix_len, text, thoughts, ends, ans,
                          "answer" if ans is not None else "budget")

    def generate(self, prompts, *, n=1, temperature=1.0, **kw):
        out = []
        for p in prompts:
            self.calls.append(("generate", p, temperature))
            out.append([self._sample(p, self._pop(p), 0) for _ in range(n)])
        return out

    def continue_from(self, prompt, prefix_ids, k, *, temperature=1.0, **kw):
        prefix = self.decode(prefix_ids)
        self.calls.append(("continue", prompt, prefix, temperature))
        return [self._sample(prompt, prefix + self._pop(prompt), len(prefix_ids)) for _ in range(k)]

    def complete(self, prompts, *, temperature=0.3, max_new_tokens=64, greedy=False, generator=None):
        out = []
        for p in prompts:
            self.calls.append(("complete", p, temperature))
            out.append(self.judge(p))
        return out

    def of(self, kind):
        return [c for c in self.calls if c[0] == kind]


TASK = get_task("arith", fmt=DEFAULT_FORMAT)
P = TASK.make_problem([2, 3, 4], ["+", "+"])  # 2+3+4 = 9; steps 2+3=5, 5+4=9
PROMPT = TASK.prompt(P)
RIGHT = f"2+3=5{D}5+4=9{D}\\boxed{{9}}"
WRONG2 = f"2+3=5{D}5+4=10{D}\\boxed{{10}}"  # first error: thought 2
WRONG1 = f"2+3=6{D}6+4=10{D}\\boxed{{10}}"  # first error: thought 1
FIX2 = f"5+4=9{D}\\boxed{{9}}"  # continuation after "2+3=5</thought>"
BAD2 = f"5+4=11{D}\\boxed{{11}}"
box = DEFAULT_FORMAT.box


def run(chains, judge=lambda p: "", problems=(P,), **cfg):
    pol = ScriptedPolicy(DEFAULT_FORMAT, chains, judge)
    res = run_ics(pol, TASK, list(problems), ICSConfig(**cfg), generator=object())
    return pol, res


def test_first_error_of_hand_written_chains():
    assert TASK.first_error(P, DEFAULT_FORMAT.split(WRONG2)) == 2
    assert TASK.first_error(P, DEFAULT_FORMAT.split(WRONG1)) == 1
    assert TASK.first_error(P, DEFAULT_FORMAT.split(RIGHT)) is None


# ----------------------------------------------------------------------------- exits
def test_exit1_immediately_when_first_chain_is_right():
    pol, (r,) = run({PROMPT: [RIGHT]})
    assert r.exit == 1 and len(r.attempts) == 1 and len(r.rounds) == 1
    assert r.first_correct and r.final_correct and r.final_correct_a
    assert pol.of("complete") == [] and pol.of("continue") == []
    assert pol.of("generate") == [("generate", PROMPT, 1.0)]


def test_l2_localize_then_resample_from_clean_prefix():
    pol, (r,) = run({PROMPT: [WRONG2, FIX2]}, judge=lambda p: "Step 2 is wrong. " + box("2"))
    assert r.exit == 1 and [a.correct for a in r.attempts] == [False, True]
    (c,) = pol.of("complete")
    assert c == ("complete", localization_prompt(TASK, P, DEFAULT_FORMAT.split(WRONG2)), 0.3)
    (k,) = pol.of("continue")
    assert k == ("continue", PROMPT, f"2+3=5{D}", 0.7)  # thoughts 1..e-1 with e = 2
    rd = r.rounds[0]
    assert (rd.loc_index, rd.loc_source, rd.true_first_error, rd.resample_correct) == (2, "boxed", 2, True)
    assert r.attempts[1].reset_at == 2 and r.attempts[1].prefix_tokens == len(f"2+3=5{D}")
    assert r.rounds[1].verified and r.rounds[1].loc_index is None


def test_l1_shows_ground_truth_to_the_localizer():
    pol, (r,) = run({PROMPT: [WRONG2, FIX2]}, judge=lambda p: box("2"), level="L1")
    (c,) = pol.of("complete")
    assert c[1] == localization_prompt(TASK, P, DEFAULT_FORMAT.split(WRONG2), ground_truth="9")
    assert c[1] != localization_prompt(TASK, P, DEFAULT_FORMAT.split(WRONG2))


def test_exit2_localizer_says_zero_keeps_chain():
    pol, (r,) = run({PROMPT: [WRONG2]}, judge=lambda p: box("0"))
    assert r.exit == 2 and len(r.attempts) == 1 and pol.of("continue") == []
    assert r.rounds[0].loc_index == 0 and r.rounds[0].resample_correct is None


def test_exit3_max_iterations_counts_chains():
    pol, (r,) = run({PROMPT: [WRONG2, BAD2, BAD2]}, judge=lambda p: box("2"), max_iters=2)
    assert r.exit == 3 and len(r.attempts) == 3 and len(r.rounds) == 2
    assert [c[2] for c in pol.of("continue")] == [f"2+3=5{D}"] * 2


def test_ics_a_reverts_on_exit3_after_l3_rejects_a_right_answer():
    # L3: the model rejects its right first answer, localizes step 2, resamples a wrong one, rejects
    # again: exit 3 with a wrong final answer; Thought-ICS-A keeps the first (right) one.
    def judge(p):
        return box("NO") if "Correct?" in p or "YES or NO" in p else box("2")
    pol, (r,) = run({PROMPT: [RIGHT, BAD2, BAD2]}, judge=judge, level="L3", max_iters=2)
    assert r.exit == 3 and r.first_correct and not r.final_correct and r.final_correct_a
    s = summarize([r])
    assert (s["broke"], s["broke_a"], s["acc_after"], s["acc_after_a"]) == (1, 0, 0.0, 1.0)


def test_l3_majority_vote_and_unparseable_verdicts():
    replies = iter([box("YES"), "hmm", box("NO"),  # 1 yes of 3 -> needs correction
                    box("yes."), box("YES"), "???"])  # 2 of 3 -> verified
    def judge(p):
        return next(replies) if "YES or NO" in p else box("2")
    pol, (r,) = run({PROMPT: [WRONG2, BAD2]}, judge=judge, level="L3", verify_votes=3)
    assert r.exit == 1 and not r.final_correct  # self-verification accepted a wrong answer
    assert [(x.votes_yes, x.votes_unparseable, x.verified) for x in r.rounds] == [(1, 1, False), (2, 1, True)]
    s = summarize([r])
    assert s["fallbacks"]["verdict_unparseable"] == 2 and s["verdict_calls"] == 6
    assert s["judge_calls"] == 7  # 6 verdicts + 1 localization


def test_judge_prompts_too_long_for_the_context_are_not_sent_and_counted():
    """A verification or localization prompt that leaves no room in the context (a long chain quoted in
    full) is not sent: its empty reply is an unparseable verdict (needs correction) or the localizer's
    fallback (step 1), and ``judge_overflow`` counts it; the run goes on."""
    pol = ScriptedPolicy(DEFAULT_FORMAT, {PROMPT: [WRONG2, RIGHT]}, judge=lambda p: box("YES"))
    pol.encode_prompt, pol.max_len = pol.encode, len(PROMPT) + 20  # the chains fit, the judge prompts do not
    (r,) = run_ics(pol, TASK, [P], ICSConfig(level="L3", verify_votes=3, max_iters=1), generator=object())
    assert not pol.of("complete")  # nothing sent
    first = r.rounds[0]
    assert (first.votes_unparseable, first.verified, first.verdicts) == (3, False, ["", "", ""])
    assert first.loc_source == "fallback" and first.judge_overflow == 4  # 3 verdicts + the localization
    s = summarize([r])
    assert s["fallbacks"]["judge_overflow"] == sum(x.judge_overflow for x in r.rounds) >= 4


def test_localization_fallback_resets_to_step_one_and_is_counted():
    pol, (r,) = run({PROMPT: [WRONG2, RIGHT]}, judge=lambda p: "no idea")
    assert pol.of("continue")[0][2] == "" and r.rounds[0].loc_source == "fallback"
    assert summarize([r])["fallbacks"]["localization_fallback"] == 1


def test_oracle_localizer_uses_first_error_without_model_calls():
    pol, (r,) = run({PROMPT: [WRONG1, "2+3=5" + D + FIX2]}, localizer="oracle")
    assert pol.of("complete") == [] and pol.of("continue")[0][2] == ""
    assert r.rounds[0].loc_source == "oracle" and r.exit == 1


def test_context_mode_prompt_holds_failed_chain():
    pol, (r,) = run({PROMPT: [WRONG2, FIX2]}, judge=lambda p: box("2"), context=True)
    (k,) = pol.of("continue")
    assert k[1] == B.context_prompt(TASK, P, DEFAULT_FORMAT.split(WRONG2), 2) and k[1].endswith(PROMPT)
    assert "5+4=10" in k[1] and k[2] == f"2+3=5{D}"


# ----------------------------------------------------------------------------- baselines
def test_token_ics_resets_before_the_quoted_span():
    pol, (r,) = run({PROMPT: [WRONG2, "5+4=9" + D + box("9")]}, judge=lambda p: box("=10"),
                    method="token")
    (c,) = pol.of("complete")
    assert c[1] == B.token_localization_prompt(TASK, P, f"2+3=5 5+4=10 {box('10')}")
    # flat "2+3=5 5+4=10 ..." -> "=10" at flat 9 -> raw 5 + len(D) + 3: mid-thought 2
    assert pol.of("continue")[0][2] == f"2+3=5{D}5+4"
    assert (r.rounds[0].loc_index, r.rounds[0].loc_source) == (2, "quote")


@pytest.mark.parametrize("reply,source,prefix", [
    (box("5+4=10"), "quote", f"2+3=5{D}"),
    (box("5 + 4 = 10"), "fallback", ""),
    (box("5+4=10 \\boxed{10"), "fallback", ""),
    ("nothing boxed", "fallback", ""),
    (box("5+4=10   \\BOXED{10}"), "quote_fuzzy", f"2+3=5{D}"),  # case / spacing differ
])
def test_token_ics_quote_sources(reply, source, prefix):
    pol, (r,) = run({PROMPT: [WRONG2, "x"]}, judge=lambda p: reply, method="token", max_iters=1)
    assert r.rounds[0].loc_source == source and pol.of("continue")[0][2] == prefix


def test_token_ics_none_quote_is_exit2():
    pol, (r,) = run({PROMPT: [WRONG2]}, judge=lambda p: box("none"), method="token")
    assert r.exit == 2 and r.rounds[0].loc_index == 0


def test_scratch_resamples_fresh_chains_at_resample_temperature():
    pol, (r,) = run({PROMPT: [WRONG2, WRONG1, RIGHT]}, method="scratch", temperature_resample=0.5)
    assert [c[2] for c in pol.of("generate")] == [1.0, 0.5, 0.5] and pol.of("complete") == []
    assert r.exit == 1 and len(r.attempts) == 3


def test_refine_feeds_feedback_into_a_whole_new_chain():
    pol, (r,) = run({PROMPT: [WRONG2, RIGHT]}, judge=lambda p: "the sum 5+4 is off", method="refine",
                    level="L1")
    (c,) = pol.of("complete")
    assert c[1] == B.refine_feedback_prompt(TASK, P, DEFAULT_FORMAT.split(WRONG2), ground_truth="9")
    g = pol.of("generate")[1]
    assert g[1] == B.refine_prompt(TASK, P, DEFAULT_FORMAT.split(WRONG2), "the sum 5+4 is off")
    assert "the sum 5+4 is off" in g[1] and r.exit == 1 and r.final_correct


def test_batch_of_problems_finish_independently():
    q = TASK.make_problem([7, 1], ["-"])  # 7-1 = 6
    chains = {PROMPT: [WRONG2, FIX2], TASK.prompt(q): [f"7-1=6{D}" + box("6")]}
    pol, res = run(chains, judge=lambda p: box("2"), problems=(P, q), batch_size=1)
    assert [r.exit for r in res] == [1, 1] and [len(r.attempts) for r in res] == [2, 1]
    line = json.loads(json.dumps(res[0].to_json()))
    assert line["exit_name"] == "verified" and line["rounds"][0]["loc_index"] == 2


# ----------------------------------------------------------------------------- metrics
def _res(first, final, exit, pairs=()):
    r = ProblemResult(id="x", answer="1", method="thought", level="L2", exit=exit)
    r.attempts = [Attempt("", 0, None, first, "answer"), Attempt("", 0, None, final, "answer")]
    r.rounds = [Round(iteration=1, verified=False, loc_index=e, true_first_error=f, resample_correct=c)
                for e, f, c in pairs]
    return r


def test_summary_arithmetic_by_hand():
    res = [
        _res(False, True, 1, [(2, 2, True)]),  # fixed
        _res(True, True, 1),
        _res(True, False, 3, [(1, 3, False), (3, 2, False)]),  # broke; ICS-A keeps right
        _res(False, False, 2, [(0, 2, None)]),
        _res(False, True, 3, [(4, 1, True)]),  # fixed; ICS-A reverts to wrong
    ]
    s = summarize(res)
    assert (s["n"], s["acc_before"], s["acc_after"]) == (5, 0.4, 0.6)
    assert (s["fixed"], s["broke"], s["net"]) == (2, 1, 1) and s["lift"] == pytest.approx(2 / 3)
    assert (s["acc_after_a"], s["fixed_a"], s["broke_a"], s["net_a"]) == (0.6, 1, 0, 1)
    assert s["lift_a"] == pytest.approx(1 / 3)
    assert s["exit1_verified"] == dict(count=2, share=0.4, fixed=1, broke=0, net=1)
    assert s["exit2_disagreement"] == dict(count=1, share=0.2, fixed=0, broke=0, net=0)
    assert s["exit3_max_iters"] == dict(count=2, share=0.4, fixed=1, broke=1, net=0)
    # pairs (e, f): (2,2) (1,3) (3,2) (0,2) (4,1): exact 1/5; within 1: (2,2),(3,2) -> 2/5;
    # resets e >= 1: 4, clean e <= f: (2,2),(1,3) -> 2/4
    assert (s["n_localized"], s["loc_exact"], s["loc_within1"]) == (5, 0.2, 0.4)
    assert (s["n_resets_known"], s["clean_prefix"]) == (4, 0.5)
    # resample outcome from clean prefixes: (2,2) True, (1,3) False -> 1/2; dirty: (3,2) F, (4,1) T
    assert (s["correct_from_clean"], s["correct_from_dirty"]) == (0.5, 0.5)
    assert s["chains"] == 10
    table = format_summary({"thought L2": s})
    assert "thought L2" in table and " 40.0" in table and " 60.0" in table


def test_empty_denominators_are_nan():
    s = summarize([_res(True, True, 1)])
    assert math.isnan(s["lift"]) and math.isnan(s["loc_exact"]) and math.isnan(s["clean_prefix"])
    assert "  -  " in format_summary({"x": s})


@given(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=40))
def test_transition_counts_invariants(pairs):
    before, after = [b for b, _ in pairs], [a for _, a in pairs]
    t = transition_counts(before, after)
    n = len(pairs)
    assert t["acc_after"] - t["acc_before"] == pytest.approx(t["net"] / n)
    assert t["fixed"] + t["broke"] == sum(b != a for b, a in pairs)
    wrong = before.count(False)
    assert math.isnan(t["lift"]) if wrong == 0 else 0 <= t["lift"] <= 1
    if wrong:
        assert t["lift_lo"] <= t["lift"] <= t["lift_hi"] and t["wrong_before"] == wrong


def test_wilson_interval_reference_values():
    from llm.ics.metrics import wilson_interval
    # published case: 81 of 263 (Newcombe 1998, Stat. Med. 17:857, Table I, method 3): 0.2553 to 0.3662
    lo, hi = wilson_interval(81, 263)
    assert lo == pytest.approx(0.2553, abs=5e-5) and hi == pytest.approx(0.3662, abs=5e-5)
    # the ends: 0 of n has lower bound 0, n of n upper bound 1; the interval is the root set of the score test
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    from scipy import stats
    for k, n in ((3, 17), (50, 50), (0, 1)):
        lo, hi = wilson_interval(k, n)
        for p in (lo, hi):  # |p_hat - p| / sqrt(p (1 - p) / n) = z at both ends (where 0 < p < 1)
            if 0 < p < 1:
                assert abs(k / n - p) / math.sqrt(p * (1 - p) / n) == pytest.approx(stats.norm.ppf(0.975), rel=1e-9)
    assert all(math.isnan(x) for x in wilson_interval(0, 0))
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_localization_scores_edge_cases():
    assert localization_scores([(0, 1)])["loc_within1"] == 0.0  # "no error" is never a hit
    s = localization_scores([(1, 1), (2, 1)])
    assert (s["loc_exact"], s["loc_within1"], s["clean_prefix"]) == (0.5, 1.0, 0.5)


# ----------------------------------------------------------------------------- helpers
def test_prefix_cut():
    assert prefix_cut([4, 9, 12], 1) == 0 and prefix_cut([4, 9, 12], 3) == 9
    assert prefix_cut([4, 9, 12], 4) == 12
    with pytest.raises(ValueError, match="e: expected"):
        prefix_cut([4, 9], 4)


def test_parse_verdict_and_majority():
    f = DEFAULT_FORMAT
    assert B.parse_verdict(box("YES"), f) is True and B.parse_verdict("x " + box(" no "), f) is False
    assert B.parse_verdict(box("maybe"), f) is None and B.parse_verdict("YES", f) is None
    assert B.parse_verdict(box("NO") + " then " + box("Yes"), f) is True  # last box wins
    assert B.majority_verified([True, True, False, None]) is False  # tie -> needs correction
    assert B.majority_verified([True, None, True]) is True
    with pytest.raises(ValueError):
        B.majority_verified([])


def test_flatten_with_map_and_token_cut():
    text = f"ab{D}cd{D}e"
    flat, idx = B.flatten_with_map(text, D)
    assert flat == "ab cd e" and len(idx) == len(flat) + 1
    assert [text[idx[i]] for i in (0, 3, 4, 6)] == ["a", "c", "d", "e"] and idx[-1] == len(text)
    # a two-characters-per-token decode: a cut inside a token keeps only whole tokens before it
    ids = [0, 1, 2, 3]
    dec = lambda ids_: "xy" * len(ids_)  # noqa: E731
    assert [B.char_to_token_cut(dec, ids, p) for p in (0, 1, 2, 3, 8, 100)] == [0, 0, 1, 1, 4, 4]
    assert [B.thought_of_token([3, 7], c) for c in (0, 2, 3, 6, 7, 9)] == [1, 1, 2, 2, 3, 3]


@given(st.lists(st.text(alphabet="ab =+1\n", max_size=6), max_size=5))
def test_flatten_map_property(thoughts):
    text = DEFAULT_FORMAT.join(thoughts)
    flat, idx = B.flatten_with_map(text, D)
    assert flat == "".join(t + " " for t in thoughts) and idx[-1] == len(text)
    for i, ch in enumerate(flat):
        assert text[idx[i]] == ch or (ch == " " and text.startswith(D, idx[i]))
    # without spaces inside thoughts, the flat spaces before i are exactly the delimiters before idx[i]
    if not any(" " in t for t in thoughts):
        for i in range(len(flat) + 1):
            assert text[:idx[i]].count(D) == flat[:i].count(" ")


@pytest.mark.parametrize("kw,msg", [
    (dict(method="beam"), "method"), (dict(level="L4"), "level"), (dict(max_iters=0), "max_iters"),
    (dict(temperature_judge=-1.0), "temperature_judge"), (dict(top_p=0.0), "top_p"),
    (dict(method="scratch", localizer="oracle"), "oracle"), (dict(method="refine", context=True), "context"),
    (dict(level="L2", verify_votes=5), "verify_votes"), (dict(max_new_tokens=0), "max_new_tokens"),
])
def test_config_validation(kw, msg):
    with pytest.raises(ValueError, match=msg):
        ICSConfig(**kw)


def test_empty_chain_resets_to_start_without_a_localizer_call():
    pol, (r,) = run({PROMPT: ["2+3", RIGHT]})  # no complete thought, no answer
    assert pol.of("complete") == [] and pol.of("continue")[0][2] == ""
    assert r.rounds[0].loc_source == "empty" and summarize([r])["fallbacks"]["localization_empty"] == 1


def test_oracle_without_wrong_step_redoes_last_thought():
    # all written steps are right but the chain stopped before the answer: no first error
    pol, (r,) = run({PROMPT: [f"2+3=5{D}5+4=9{D}", box("9")]}, localizer="oracle")
    assert r.rounds[0].loc_source == "oracle_none" and pol.of("continue")[0][2] == f"2+3=5{D}"
    assert r.exit == 1


def test_cli_configs():
    from llm.ics import parse_command_line
    a, given = parse_command_line(["--method", "all", "--localizer", "model", "oracle", "--level", "L1",
                                   "--temperature-resample", "0.5", "--no-progress", "--votes", "1"])
    cfgs = a.configs()
    assert list(cfgs) == ["thought L1", "thought-oracle L1", "token L1", "token-oracle L1", "scratch L1",
                          "refine L1"]
    assert all(c.level == "L1" and c.temperature_resample == 0.5 for c in cfgs.values())
    assert all((c.max_thoughts, c.max_thought_tokens) == (8, 16) for c in cfgs.values())  # tiny budget
    assert not a.progress and given == {"method", "localizer", "level", "temperature_resample", "progress",
                                        "verify_votes"}
    with pytest.raises(ValueError, match="oracle"):
        parse_command_line(["--method", "scratch", "--localizer", "oracle"])
    with pytest.raises(ValueError, match="--level must be one of"):
        parse_command_line(["--level", "L4"])


# ----------------------------------------------------------------------------- end to end
SMALL = dict(max_iters=2, max_thoughts=4, max_thought_tokens=8, max_new_tokens=40, judge_max_new_tokens=6,
             batch_size=4)


@pytest.mark.parametrize("kw", [dict(method="thought", level="L2"), dict(method="token", level="L1"),
                                dict(method="thought", level="L3", verify_votes=3, context=True),
                                dict(method="refine", level="L2"), dict(method="thought", localizer="oracle")])
def test_end_to_end_on_micro_policy(kw):
    import torch

    from llm.tiny import micro_policy
    torch.set_num_threads(1)
    pol = micro_policy(0)
    task = get_task("arith", fmt=pol.fmt)
    probs = task.sample(3, seed=1, split="test")
    res = run_ics(pol, task, probs, ICSConfig(**SMALL, **kw), generator=torch.Generator().manual_seed(0))
    assert len(res) == 3
    for p, r in zip(probs, res):
        assert r.exit in (1, 2, 3) and 1 <= len(r.attempts) <= 3 and len(r.rounds) <= 2
        assert len(r.attempts) == 1 + sum(rd.resample_correct is not None for rd in r.rounds)
        for a in r.attempts:
            assert a.correct == (task.reward(p, a.text) == 1.0)
        for prev, a in zip(r.attempts, r.attempts[1:]):
            k = a.prefix_tokens  # char tokenizer: one token per character
            assert a.text[:k] == prev.text[:k]
            if kw.get("method") == "thought" and a.reset_at is not None:
                assert k == 0 or prev.text[:k].endswith(pol.fmt.delimiter)
                assert prev.text[:k].count(pol.fmt.delimiter) == a.reset_at - 1
        json.dumps(r.to_json())
    s = summarize(res)
    assert s["n"] == 3 and s["chains"] == sum(len(r.attempts) for r in res)
    if kw.get("level") == "L3":
        assert s["verdict_calls"] == 3 * sum(len(r.rounds) for r in res)


def test_cli_end_to_end_on_saved_micro_policy(tmp_path, capsys):
    from llm.ics import main
    from llm.tiny import micro_policy
    d = micro_policy(0).save_pretrained(tmp_path / "micro")
    out = tmp_path / "out"
    main(["--model", str(d), "--n", "3", "--method", "thought", "scratch", "--max_iters", "1",
          "--max_thoughts", "3", "--max-thought-tokens", "8", "--max_new_tokens", "30",
          "--judge_max_new_tokens", "6", "--out", str(out), "--progress", "false", "--threads", "1"])
    lines = (out / "thought_L2.jsonl").read_text().splitlines()
    assert len(lines) == 3 and {"attempts", "rounds", "exit"} <= set(json.loads(lines[0]))
    summ = json.loads((out / "scratch_L2.summary.json").read_text())
    assert summ["config"]["method"] == "scratch" and summ["summary"]["n"] == 3
    table = capsys.readouterr().out
    assert "thought L2" in table and "scratch L2" in table


@pytest.mark.parametrize("kw,reply", [(dict(method="thought", localizer="oracle"), None),
                                      (dict(method="thought"), "[2]"), (dict(method="token"), "[5+4=10]")])
def test_end_to_end_reset_keeps_real_token_prefix(kw, reply):
    """First chains are forced to start "2+3=5;5+4=10;" (wrong at thought 2) through the real
    continue_from, so the reset must keep exactly the tokens of "2+3=5;" from a real Sample."""
    import torch

    from llm.tiny import micro_policy
    torch.set_num_threads(1)
    pol = micro_policy(0)
    task = get_task("arith", fmt=pol.fmt)
    p = task.make_problem([2, 3, 4], ["+", "+"])
    given = pol.encode("2+3=5;5+4=10;")
    pol.generate = lambda prompts, *, n=1, **k: [pol.continue_from(q, given, n, **k) for q in prompts]
    if reply is not None:
        pol.complete = lambda prompts, **k: [reply] * len(prompts)
    cfg = ICSConfig(**SMALL | dict(max_iters=1), **kw)
    (r,) = run_ics(pol, task, [p], cfg, generator=torch.Generator().manual_seed(0))
    assert r.attempts[0].text.startswith("2+3=5;5+4=10;") and r.rounds[0].true_first_error == 2
    assert r.rounds[0].loc_index == 2 and r.exit == 3
    assert r.attempts[1].prefix_tokens == len(pol.encode("2+3=5;"))
    assert r.attempts[1].text.startswith("2+3=5;") and r.attempts[1].reset_at == 2


@pytest.mark.slow
def test_tiny_default_oracle_localizer_lift_at_l2():
    """Warm-started tiny default (built on first use, minutes): with an oracle saying "wrong" (L2)
    and the step checker localizing, resampling from the clean prefix fixes some wrong answers."""
    import torch

    from llm.policy import Policy
    from llm.tiny import TINY_TASK, ensure_tiny
    torch.set_num_threads(2)
    pol = Policy.from_pretrained(str(ensure_tiny()))
    task = get_task("arith", fmt=pol.fmt, **TINY_TASK)
    probs = task.sample(60, seed=0, split="test")
    cfg = ICSConfig(level="L2", localizer="oracle", max_thoughts=8, max_thought_tokens=16, batch_size=32)
    s = summarize(run_ics(pol, task, probs, cfg, generator=torch.Generator().manual_seed(0)))
    print("\n" + format_summary({"thought-oracle L2 (tiny, n=60)": s}))
    assert s["acc_before"] < 1.0 and s["lift"] > 0 and s["acc_after"] > s["acc_before"]
    assert s["broke"] == 0  # L2 never stops on a wrong answer and never rejects a right one
