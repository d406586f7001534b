"""Local-check replies of the tiny default (``TRAIN["items"] = "local"``): each item is what a thought
should say given the chain's previous value; the first item a thought does not say is the step
checker's first error, on hand cases, injected errors and arbitrarily edited chains."""
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llm.localize import parse_localization, parse_verdict
from llm.tasks import ArithTask
from llm.thoughts import TINY_FORMAT
from llm.tiny import MISSING_ANSWER, _local_items, localization_target, train_tiny, verification_target
from llm.tiny import warm_start_pairs as _pairs

TASK = ArithTask(TINY_FORMAT, min_terms=2, max_terms=8, ops="+-*")
P = ArithTask(TINY_FORMAT).make_problem([3, 5, 2, 7], ["+", "-", "+"])  # 3+5=8, 8-2=6, 6+7=13


def _first_mismatch(problem, chain):
    return next((i for i, (_, ok) in enumerate(_local_items(TASK, problem, chain), 1) if not ok), None)


def test_local_targets_hand_examples():
    loc = lambda chain, e: localization_target(TASK, P, chain, e, "local")  # noqa: E731
    ver = lambda chain, a: verification_target(TASK, P, chain, a, "local")  # noqa: E731
    assert loc(["3+5=8", "8-2=7", "7+7=14", "[14]"], 2) == "3+5=8,8-2=6[2]"  # wrong result
    assert loc(["3+5=8", "8-3=5", "5+7=12", "[12]"], 2) == "3+5=8,8-2=6[2]"  # wrong operand
    assert loc(["3+5=8", "9-2=7", "7+7=14", "[14]"], 2) == "3+5=8,8-2=6[2]"  # wrong copy of the value
    assert loc(["3+5=8", "8-2=6", "6+7=13", "[12]"], 4) == "3+5=8,8-2=6,6+7=13,13[4]"  # the answer thought
    assert ver(["3+5=8", "8-2=6", "6+7=13", "[13]"], "13") == "3+5=8,8-2=6,6+7=13,13[YES]"
    assert ver(["3+5=8", "8-2=7", "7+7=14", "[14]"], "14") == "3+5=8,8-2=6[NO]"
    assert ver(["3+5=8", "8-2=6"], None) == "3+5=8,8-2=6[NO]"  # no answer: NO
    # a premature answer should state the final answer; a thought with no equation the running value
    assert loc(["3+5=8", "[8]"], 2) == "3+5=8,13[2]"
    assert loc(["3+5=8", "hm", "8-2=9", "[9]"], 3) == "3+5=8,8,8-2=6[3]"
    # local: after the first error each thought is checked against the CHAIN's previous value
    assert _local_items(TASK, P, ["3+5=8", "8-2=7", "7+7=14", "[14]"]) == [
        ("3+5=8", True), ("8-2=6", False), ("7+7=14", True), ("13", False)]
    # several equations in one thought: the first wrong one's item; one past the last operation: the answer
    assert _local_items(TASK, P, ["3+5=9 9-2=7"]) == [("3+5=8", False)]
    assert _local_items(TASK, P, ["3+5=8 8-2=6"]) == [("8-2=6", True)]
    assert _local_items(TASK, P, ["3+5=8", "8-2=6", "6+7=13", "13+1=14"])[-1] == ("13", False)
    # spacing and an x for * are the checker's business, not a mismatch
    q = TASK.make_problem([4, 3], ["*"])
    assert _local_items(TASK, q, ["4 x 3 = 12", "[12]"]) == [("4*3=12", True), ("12", True)]
    assert TASK.first_error(q, ["4 x 3 = 12", "[12]"]) is None
    # inverse: the operation undone on the written result, to be compared with the previous value
    inv = lambda chain, e: localization_target(TASK, P, chain, e, "inverse")  # noqa: E731
    assert inv(["3+5=8", "8-2=7", "7+7=14", "[14]"], 2) == "8-5=3,7+2=9[2]"  # 9 is not the 8 before
    assert inv(["3+5=8", "9-2=7", "7+7=14", "[14]"], 2) == "8-5=3,7+2=9[2]"
    assert verification_target(TASK, P, ["3+5=8", "8-2=6", "6+7=13", "[13]"], "13",
                               "inverse") == "8-5=3,6+2=8,13-7=6,13[YES]"
    assert _local_items(TASK, q, ["4x3=12"], inverse=True) == [("4*3=12", True)]  # * keeps the forward item
    assert _local_items(TASK, TASK.make_problem([4, 0, 1], ["+", "-"]), ["4-0=4"], inverse=True) == [
        ("4-0=4", False)]  # the wrong operation with operand 0: the value checks, the operation does not
    # local_answer: a right chain without an answer says so with an item of its own before the NO
    la = lambda chain, a: verification_target(TASK, P, chain, a, "local_answer")  # noqa: E731
    assert la(["3+5=8", "8-2=6", "6+7=13"], None) == "3+5=8,8-2=6,6+7=13,?[NO]"
    assert la(["3+5=8", "8-2=6", "6+7=13", "[13]"], "13") == "3+5=8,8-2=6,6+7=13,13[YES]"
    assert la(["3+5=8", "8-2=6"], None) == "3+5=8,8-2=6,?[NO]"  # stopped early, no answer
    assert la(["3+5=8", "8-2=7"], None) == "3+5=8,8-2=6[NO]"  # a wrong thought first: as "local"
    assert la(["3+5=8", "8-2=6", "6+7=13", "[12]"], "12") == "3+5=8,8-2=6,6+7=13,13[NO]"
    assert la([], None) == "?[NO]"
    assert localization_target(TASK, P, ["3+5=8", "8-2=7"], 2, "local_answer") == "3+5=8,8-2=6[2]"
    with pytest.raises(ValueError, match="items"):
        localization_target(TASK, P, ["3+5=9"], 1, "inverse?")
    with pytest.raises(ValueError, match="items"):
        train_tiny(steps=1, train_kw={"items": "nope"})


@given(st.integers(0, 100_000), st.integers(0, 7))
def test_local_items_on_injected_errors(seed, which):
    """``task.corrupt`` chains: the first local mismatch is the injected step (= ``first_error``); every
    item before it IS the chain's thought (a right thought says exactly its item), the item at it is not."""
    p = TASK.sample(1, seed=seed, split="train")[0]
    step = 1 + which % (len(p.meta["ops"]) + 1)
    chain = TASK.corrupt(p, step, random.Random(seed))
    assert _first_mismatch(p, chain) == TASK.first_error(p, chain) == step
    reply = localization_target(TASK, p, chain, step, "local")
    assert parse_localization(reply, len(chain), TINY_FORMAT).index == step
    items = reply[: reply.index("[")].split(",")
    said = [t[1:-1] if t.startswith("[") else t for t in chain]  # the answer thought says its answer
    assert items[:-1] == said[: step - 1] and items[-1] != said[step - 1]
    assert verification_target(TASK, p, chain, TINY_FORMAT.extract_answer(chain[-1]), "local").endswith("[NO]")
    sol = TASK.solution(p)
    ver = verification_target(TASK, p, sol, p.answer, "local")
    assert ver == ",".join(t.strip("[]") for t in sol) + "[YES]"


def _eq(thought):
    """The only equation of a thought without spaces or an answer, else Nones."""
    from llm.tasks.arith import _EQ_RE

    m = _EQ_RE.findall(thought)
    if len(m) != 1 or "[" in thought:
        return None, None, None, None
    a, o, b, c = m[0]
    return int(a), o, int(b), int(c)


def _edit(chain: list[str], rng: random.Random) -> list[str]:
    """One random edit of a chain: a digit changed, a thought dropped / repeated / inserted, spaces,
    an operation rewritten, the answer moved or removed, an equation appended."""
    chain = list(chain)
    i = rng.randrange(len(chain))
    kind = rng.randrange(9)
    if kind == 0:  # change one digit of a thought
        t = chain[i]
        pos = [j for j, c in enumerate(t) if c.isdigit()]
        if pos:
            j = rng.choice(pos)
            chain[i] = t[:j] + str((int(t[j]) + rng.randint(1, 9)) % 10) + t[j + 1:]
    elif kind == 1:
        del chain[i]
    elif kind == 2:
        chain.insert(i, chain[i])
    elif kind == 3:
        chain.insert(i, rng.choice(["hm", "ok", "so", "7"]))
    elif kind == 4:
        chain[i] = " ".join(chain[i]).replace("- ", "-", rng.randint(0, 1))
    elif kind == 5:
        chain[i] = chain[i].replace("*", "x").replace("+", rng.choice("+-"))
    elif kind == 6:
        chain.insert(i, TINY_FORMAT.box(str(rng.randint(-20, 20))))
    elif kind == 7:
        chain = chain[:-1]
    else:
        chain[i] = chain[i] + " " + rng.choice(["1+1=2", "3-1=2", "2*2=4"])
    return chain


@given(st.integers(0, 100_000), st.integers(0, 7), st.integers(0, 4))
def test_first_local_mismatch_is_the_step_checkers_first_error(seed, which, edits):
    """On any chain (a solution or an injected error, then up to 4 random edits) the first thought that
    does not say its local item is ``task.first_error`` (None when every thought says it), and a clean
    single-equation thought says it iff its text is the item."""
    rng = random.Random(seed)
    p = TASK.sample(1, seed=seed, split="train")[0]
    n = len(p.meta["ops"]) + 1
    chain = TASK.solution(p) if which == 0 else TASK.corrupt(p, 1 + which % n, rng)
    for _ in range(edits):
        if chain:
            chain = _edit(chain, rng)
    e = TASK.first_error(p, chain)
    assert _first_mismatch(p, chain) == e
    local, inverse = _local_items(TASK, p, chain), _local_items(TASK, p, chain, inverse=True)
    assert [ok for _, ok in inverse] == [ok for _, ok in local]
    for (item, ok), (a, o, b, c) in zip(inverse, [_eq(t) for t in chain]):  # an inverse item undoes its thought
        if ok and a is not None and o in "+-":
            x, y = item.split("=")
            assert eval(x) == int(y) == a and x.startswith(str(c))
    for t, (item, ok) in zip(chain, _local_items(TASK, p, chain)):
        if " " not in t and "x" not in t and t.count("=") == 1 and "[" not in t:
            assert ok == (t == item)
    if chain:
        ans = TINY_FORMAT.extract_answer(chain[-1])
        v = verification_target(TASK, p, chain, ans, "local")
        assert parse_verdict(v, TINY_FORMAT) is (e is None and ans is not None and TASK.answer_correct(p, ans))
        if e is not None:
            assert parse_localization(localization_target(TASK, p, chain, e, "local"), len(chain),
                                      TINY_FORMAT).index == e
    _check_local_answer(p, chain, e)


def _check_local_answer(p, chain, e):
    """``"local_answer"``: the localization reply and the items are those of ``"local"`` (first mismatch =
    ``first_error``); the verification reply too, except that a chain with no wrong thought and no
    answer ends with the item ``MISSING_ANSWER`` before its NO; the verdict contract holds."""
    if e is not None:
        la = localization_target(TASK, p, chain, e, "local_answer")
        assert la == localization_target(TASK, p, chain, e, "local")
        assert parse_localization(la, max(len(chain), 1), TINY_FORMAT).index == e
    for ans in {None, TINY_FORMAT.extract_answer(chain[-1]) if chain else None, p.answer}:
        v = verification_target(TASK, p, chain, ans, "local_answer")
        loc = verification_target(TASK, p, chain, ans, "local")
        want_ok = e is None and ans is not None and TASK.answer_correct(p, ans)
        assert parse_verdict(v, TINY_FORMAT) is want_ok
        items = v[: v.rindex("[")].split(",") if v[: v.rindex("[")] else []
        if e is None and ans is None:
            assert items[-1] == MISSING_ANSWER and v == ",".join(items) + "[NO]"
            assert v[: -len("?[NO]")] == loc[: -len("[NO]")] + ("," if chain else "")
            right = verification_target(TASK, p, chain, p.answer, "local_answer")  # the answer present
            assert right[: right.rindex("[")] != v[: v.rindex("[")]  # they part before the verdict
        else:
            assert v == loc and MISSING_ANSWER not in items


def test_local_warm_start_pairs():
    """``items="local"`` changes only the replies' items: same prompts, same boxes as the re-solve."""
    task = ArithTask(TINY_FORMAT)
    for kind in ("loc", "ver"):
        res = _pairs(task, random.Random(3), 40, kind, seed=5)
        loc = _pairs(task, random.Random(3), 40, kind, seed=5, items="local")
        assert [q for q, _ in res] == [q for q, _ in loc]
        assert [t[t.index("["):] for _, t in res] == [t[t.index("["):] for _, t in loc]
        assert res != loc
        # local_answer differs from local only on chains without an answer (own chains, never these)
        assert _pairs(task, random.Random(3), 40, kind, seed=5, items="local_answer") == loc


def test_screening_script_rows(model_dir, tmp_path, monkeypatch):
    """``experiments/tiny_screen.py``: each NAME=DIR is evaluated with the screening sizes, its JSON
    written, and one table row printed (here with a stand-in evaluation: the micro model's junk chains
    overflow its 256-token context; ``evaluate_tiny`` itself is tested in test_tiny.py)."""
    import json
    import sys
    from pathlib import Path

    import llm.tiny

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "experiments"))
    import tiny_screen

    r = lambda k, n: {"rate": k / n, "k": k, "n": n, "wilson95": [0.0, 1.0]}  # noqa: E731
    res = {"accuracy": r(1, 4), "own": {"success": r(1, 2), "failures": 10, "localization": {
        "exact": r(3, 10), "chance": 0.15, "exact_over_chance": 2.0, "at_or_before": r(6, 10),
        "uniform_at_or_before": 0.55, "reply_tokens_mean": 20.25, "reply_tokens_max": 40},
        "verification": {"parseable": r(8, 8), "accuracy": r(6, 8), "majority_baseline": 0.625,
                         "recall_correct": r(2, 3), "recall_wrong": r(4, 5)}}}
    calls = []
    monkeypatch.setattr(llm.tiny, "evaluate_tiny", lambda pol, **kw: calls.append(kw) or dict(res))
    rows = tiny_screen.main([f"m={model_dir}", "--own_prompts", "7", "--out", str(tmp_path)])
    assert calls == [{"n": 300, "own_prompts": 7, "own_samples": 4, "lengths": ()}]
    assert rows == ["| m | 0.250 | 0.500 | 10 | 0.300 [0.000, 1.000] (0.150) | 2.00 | 0.600 (0.550) "
                    "| 20.2 / 40 | 1.000 | 0.750 [0.000, 1.000] (0.625) | 0.667 / 0.800 |"]
    assert rows[0].count("|") == tiny_screen.HEADER.split("\n")[0].count("|")
    assert json.loads((tmp_path / "m.json").read_text())["model"] == str(model_dir)
    with pytest.raises(ValueError, match="NAME=MODEL_DIR"):
        tiny_screen.main(["nodir", "--out", str(tmp_path)])
