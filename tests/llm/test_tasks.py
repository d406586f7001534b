"""Tasks: seeded disjoint sampling, rewards, the exact step checker, reasoning-gym and file tasks."""
import json
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llm.tasks import answers_match, get_task, normalize_answer
from llm.thoughts import DEFAULT_FORMAT, TINY_FORMAT


def test_arith_sampling_seeded_and_disjoint():
    t = get_task("arith")
    a, b = t.sample(50, seed=1), t.sample(50, seed=1)
    assert [p.question for p in a] == [p.question for p in b]
    assert [p.question for p in t.sample(50, seed=2)] != [p.question for p in a]
    train = {p.question for p in t.sample(300, seed=0)}
    test = {p.question for p in t.sample(300, seed=0, split="test")}
    assert not train & test
    for p in a:
        assert 3 <= len(p.meta["terms"]) <= 5
        assert eval(p.question) == int(p.answer)  # left-to-right +/- equals Python's evaluation


def test_arith_solution_reward_and_checker_hand_example():
    t = get_task("arith", fmt=TINY_FORMAT)
    p = t.make_problem([3, 5, 2, 7], ["+", "-", "+"])
    assert p.answer == "13"
    sol = t.solution(p)
    assert sol == ["3+5=8", "8-2=6", "6+7=13", "[13]"]
    assert t.reward(p, TINY_FORMAT.join(sol)) == 1.0
    assert t.first_error(p, sol) is None
    assert t.first_error(p, ["3+5=8", "8-2=7", "7+7=14", "[14]"]) == 2
    assert t.first_error(p, ["3+5=8", "8-3=5", "5+7=12", "[12]"]) == 2   # wrong operand
    assert t.first_error(p, ["3+5=8", "8-2=6", "6+7=13", "[12]"]) == 4   # only the answer
    assert t.first_error(p, ["3+5=8", "hmm", "8-2=6"]) is None            # neutral thought, unfinished
    assert t.reward(p, "3+5=8;8-2=6") == 0.0                              # no answer -> 0
    assert t.reward(p, "[12]") == 0.0


def test_checker_finds_injected_error():
    @given(st.integers(0, 10_000), st.data())
    def prop(seed, data):
        t = get_task("arith", fmt=TINY_FORMAT, digits=2, ops="+-*")
        p = t.sample(1, seed=seed)[0]
        n_ops = len(p.meta["ops"])
        step = data.draw(st.integers(1, n_ops + 1))
        chain = t.corrupt(p, step, random.Random(seed))
        assert t.first_error(p, chain) == step
        if "*" not in p.meta["ops"]:  # (a later "*0" can absorb the error and still give the right answer)
            assert t.reward(p, TINY_FORMAT.join(chain)) == 0.0
    prop()


def test_checker_verbose_text():
    t = get_task("arith")
    p = t.make_problem([4, 3, 9], ["-", "+"])
    th = ["First, 4 - 3 = 1.", "Then we add: 1 + 9 = 10.", r"The answer is \boxed{10}."]
    assert t.first_error(p, th) is None and t.reward(p, DEFAULT_FORMAT.join(th)) == 1.0
    assert t.first_error(p, ["4 - 3 = 1", "1 + 9 = 11", r"\boxed{11}"]) == 2


def test_has_step_checker_flag_and_bad_input(tmp_path):
    with pytest.raises(ValueError, match="arith"):
        get_task("nope")
    with pytest.raises(ValueError, match="rg dataset"):
        get_task("rg:not_a_dataset")
    with pytest.raises(ValueError, match="does not exist"):
        get_task(str(tmp_path / "missing.jsonl"))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty"):
        get_task(str(empty))
    with pytest.raises(ValueError, match="split"):
        get_task("arith").sample(3, 0, split="dev")
    with pytest.raises(ValueError, match="digits"):
        get_task("arith", digits=0)


@pytest.mark.parametrize("a,b,eq", [
    ("1,000", "1000", True), ("$5.00", "5", True), ("0.5", r"\frac{1}{2}", True), ("1/2", "2/4", True),
    ("3.", "3", True), ("-4", "-4.0", True), ("4", "5", False), ("x+1", "x + 1", True), ("abc", "abd", False),
])
def test_normalize_numbers(a, b, eq):
    assert answers_match(a, b) is eq
    assert normalize_answer(a) == normalize_answer(normalize_answer(a))


def test_reasoning_gym_adapter_scoring():
    t = get_task("rg:chain_sum")
    assert not t.has_step_checker
    ps = t.sample(6, seed=3)
    assert len(ps) == 6 and [p.question for p in ps] == [p.question for p in t.sample(6, seed=3)]
    assert not {p.question for p in ps} & {p.question for p in t.sample(20, seed=3, split="test")}
    p = ps[0]
    assert t.reward(p, DEFAULT_FORMAT.join(["think"]) + DEFAULT_FORMAT.box(p.answer)) == 1.0
    assert t.reward(p, DEFAULT_FORMAT.box(str(int(p.answer) + 1))) == 0.0
    assert t.reward(p, "no answer") == 0.0
    assert p.question in t.prompt(p)
    with pytest.raises(NotImplementedError):
        t.first_error(p, ["x"])
    g = get_task("rg:gsm_symbolic").sample(2, seed=0)
    assert all(q.answer for q in g)


def test_jsonl_and_parquet_files(tmp_path):
    rows = [{"question": f"What is {i}+{i}?", "answer": f"Add them. #### {2 * i:,}"} for i in range(500, 540)]
    f = tmp_path / "gsm.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in rows))
    t = get_task(str(f))
    ps = t.sample(10, seed=0)
    assert len(ps) == 10
    p = ps[0]
    i = int(p.question.split()[2].split("+")[0])
    assert t.reward(p, rf"so \boxed{{{2 * i}}}") == 1.0
    assert t.reward(p, rf"so \boxed{{{2 * i}.0}}") == 1.0
    assert t.reward(p, rf"so \boxed{{{2 * i + 1}}}") == 0.0
    import pyarrow as pa
    import pyarrow.parquet as papq
    pq = tmp_path / "math.parquet"
    papq.write_table(pa.table({"question": ["half of one?"] * 3, "answer": [r"it is \boxed{\frac{1}{2}}"] * 3}), pq)
    t2 = get_task(str(pq))
    assert t2.problems[0].answer == r"\frac{1}{2}"
    assert t2.reward(t2.problems[0], r"\boxed{0.5}") == 1.0
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"q": 1}))
    with pytest.raises(ValueError, match="lacks"):
        get_task(str(bad))


@pytest.mark.parametrize("gold, pred, ok", [
    (r"\frac{\sqrt2}{2}", r"\sqrt{2}/2", True),      # wrong under the text normaliser alone
    (r"\frac{\sqrt{3}}{2}", r"\sqrt{3}/2", True),
    (r"\frac{1}{2}", "0.5", True),
    (r"2\sqrt{2}", r"\sqrt{8}", True),
    ("x^2+1", "1+x^2", True),
    (r"\frac{\sqrt2}{2}", r"\sqrt{3}/2", False),
    ("72", "73", False),
    (r"\pi", "3.14", False),
])
def test_file_task_checks_answers_with_math_verify(tmp_path, gold, pred, ok):
    f = tmp_path / "d.jsonl"
    f.write_text(json.dumps({"question": "q?", "answer": gold}) + "\n")
    task = get_task(str(f))
    (p,) = task.problems
    assert task.reward(p, f"... \\boxed{{{pred}}}") == float(ok)


def test_math_verify_runs_outside_the_main_thread_and_refuses_heavy_inputs():
    import threading

    from llm.tasks import MATH_MAX_CHARS, math_equal
    got = []
    t = threading.Thread(target=lambda: got.append(math_equal(r"\sqrt{2}/2", r"\frac{\sqrt2}{2}")))
    t.start()
    t.join(60)
    assert got == [True]  # math-verify's own signal-based timeout would raise here
    assert not math_equal("2^{3^{4^{5}}}", "1") and not math_equal("1" * 50, "1" * 50 + "0")
    assert not math_equal("1+" * MATH_MAX_CHARS + "1", str(MATH_MAX_CHARS + 1))  # too long: not sent
    assert not math_equal(None, "1")
