"""Localization prompts and parsing."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from llm.localize import default_loc_tokens, localization_prompt, parse_localization
from llm.tasks import get_task
from llm.thoughts import DEFAULT_FORMAT, TINY_FORMAT


def test_prompt_contents_verbose_and_compact():
    for fmt in (DEFAULT_FORMAT, TINY_FORMAT):
        task = get_task("arith", fmt=fmt)
        p = task.make_problem([3, 5, 2], ["+", "-"])
        th = ["3+5=8", "8-2=7", fmt.box("7")]
        text = localization_prompt(task, p, th)
        if fmt.compact_prompts:  # the chain as written (the parent's own tokens), not renumbered
            assert p.question in text and "8-2=7;" in text and "Step" not in text
        else:
            assert p.question in text and "Step 2: 8-2=7" in text and "Step 3:" in text
        assert "6" not in text  # the ground truth is hidden by default
        assert "(6)" in localization_prompt(task, p, th, ground_truth="6") or "is 6." in \
            localization_prompt(task, p, th, ground_truth="6")
    with pytest.raises(ValueError, match="thoughts"):
        localization_prompt(task, p, [])


def test_verbose_prompt_asks_for_the_originating_step():
    """The paper's instructions (in our words): originating step, not the symptom; justification
    criterion; no re-solving; exactly one step in 1..n; the box as the last line."""
    task = get_task("arith", fmt=DEFAULT_FORMAT)
    p = task.make_problem([3, 5, 2], ["+", "-"])
    text = localization_prompt(task, p, ["3+5=8", "8-2=7", DEFAULT_FORMAT.box("7")])
    low = text.lower()
    for phrase in ("originat", "not the symptom", "cannot be justified", "do not solve the problem again",
                   "exactly one step number, from 1 to 3", "stop at the first step you cannot justify",
                   r"end your reply with \boxed{n}", "not the answer to the problem", r"nothing after \boxed{n}"):
        assert phrase in low, phrase
    tiny_task = get_task("arith", fmt=TINY_FORMAT)
    compact = localization_prompt(tiny_task, p, ["3+5=8", "8-2=7", "[7]"])
    # the chain quoted as the model wrote it, after its own prompt: the parent's tokens are a prefix
    assert compact == f"Q:{p.question}\n3+5=8;8-2=7;[7]\nWrong. First wrong step?\n"
    assert compact.startswith(tiny_task.prompt(p) + "3+5=8;8-2=7;[7]")
    assert localization_prompt(tiny_task, p, ["3+5=8", "8-2=7", "[7]"], ground_truth="6").endswith(
        "\nWrong (6). First wrong step?\n")
    assert default_loc_tokens(DEFAULT_FORMAT) == 4096 and default_loc_tokens(TINY_FORMAT) == 96


@pytest.mark.parametrize("text,n,expected", [
    (r"step 3 is wrong \boxed{2}", 5, (2, "boxed", 2)),
    (r"\boxed{5}", 5, (5, "boxed", 5)),
    (r"\boxed{0}", 5, (1, "zero", 0)),                          # 0 -> step 1, counted as its own kind
    (r"\boxed{7}", 5, (1, "fallback", 7)),                      # out of range, no "Step N": step 1, not 5
    (r"\boxed{-1}", 5, (1, "fallback", -1)),
    (r"Step 4 broke, so \boxed{7}", 5, (4, "step", 7)),         # out of range box -> the Step rule
    (r"\boxed{x} Step 2 ... Step 4 broke", 5, (4, "step", None)),
    (r"Step 2 is wrong ... see Step 9", 5, (1, "fallback", None)),  # only the LAST "Step N" is read
    (r"\boxed{3} and \boxed{Step 2}", 5, (2, "step", None)),    # only the LAST box is read
    (r"\boxed{3} and then \boxed{x}", 5, (1, "fallback", None)),
    (r"\boxed{2} then \boxed{3", 5, (1, "fallback", None)),     # unclosed last box: no box
    (r"\boxed{\boxed{3}}", 5, (3, "boxed", 3)),
    ("Step3", 5, (1, "fallback", None)),                        # "Step N" needs a space, as the paper's rule
    ("no idea", 5, (1, "fallback", None)),
])
def test_parse_cases(text, n, expected):
    loc = parse_localization(text, n, DEFAULT_FORMAT)
    assert (loc.index, loc.source, loc.boxed) == expected
    assert loc.box_out_of_range == (loc.boxed is not None and not 0 <= loc.boxed <= n)


def test_allow_zero_and_bad_n():
    assert parse_localization("[0]", 4, TINY_FORMAT, allow_zero=True).index == 0
    assert parse_localization("[0]", 4, TINY_FORMAT, allow_zero=True).source == "boxed"
    assert parse_localization("[0]", 4, TINY_FORMAT).index == 1
    assert parse_localization("1:3+5=8|8y2:8-2=6|7n[2]", 4, TINY_FORMAT).index == 2  # a tiny default reply
    with pytest.raises(ValueError, match="n_thoughts"):
        parse_localization("[1]", 0, TINY_FORMAT)


@given(st.text(max_size=30), st.integers(1, 30), st.booleans())
def test_parse_always_in_range(text, n, allow_zero):
    loc = parse_localization(text, n, TINY_FORMAT, allow_zero=allow_zero)
    assert (0 if allow_zero else 1) <= loc.index <= n


@given(st.integers(-3, 40), st.integers(1, 30), st.text(alphabet="Step 0123456789x", max_size=20))
def test_an_in_range_last_box_always_wins(box, n, noise):
    loc = parse_localization(f"{noise} [{box}]", n, TINY_FORMAT)
    if 0 <= box <= n:
        assert (loc.index, loc.source) == (max(box, 1), "boxed" if box else "zero")
    else:
        assert loc.source in ("step", "fallback") and loc.boxed == box and 1 <= loc.index <= n
