"""Localization prompts and parsing."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from llm.localize import localization_prompt, parse_localization
from llm.tasks import get_task
from llm.thoughts import DEFAULT_FORMAT, TINY_FORMAT


def test_prompt_contents_verbose_and_compact():
    for fmt in (DEFAULT_FORMAT, TINY_FORMAT):
        task = get_task("arith", fmt=fmt)
        p = task.make_problem([3, 5, 2], ["+", "-"])
        th = ["3+5=8", "8-2=7", fmt.box("7")]
        text = localization_prompt(task, p, th)
        assert p.question in text and "Step 2: 8-2=7" in text and "Step 3:" in text
        assert "6" not in text  # the ground truth is hidden by default
        assert "(6)" in localization_prompt(task, p, th, ground_truth="6") or "is 6." in \
            localization_prompt(task, p, th, ground_truth="6")
    with pytest.raises(ValueError, match="thoughts"):
        localization_prompt(task, p, [])


@pytest.mark.parametrize("text,n,expected", [
    (r"step 3 is wrong \boxed{2}", 5, (2, "boxed")),
    (r"\boxed{7}", 5, (5, "boxed")),            # clipped to n
    (r"\boxed{0}", 5, (1, "boxed")),            # 0 -> step 1
    (r"\boxed{x} Step 2 ... Step 4 broke", 5, (4, "step")),
    ("no idea", 5, (1, "fallback")),
    (r"\boxed{3} and \boxed{Step 2}", 5, (2, "boxed")),
])
def test_parse_cases(text, n, expected):
    loc = parse_localization(text, n, DEFAULT_FORMAT)
    assert (loc.index, loc.source) == expected


def test_allow_zero_and_bad_n():
    assert parse_localization("[0]", 4, TINY_FORMAT, allow_zero=True).index == 0
    assert parse_localization("[0]", 4, TINY_FORMAT).index == 1
    with pytest.raises(ValueError, match="n_thoughts"):
        parse_localization("[1]", 0, TINY_FORMAT)


@given(st.text(max_size=30), st.integers(1, 30), st.booleans())
def test_parse_always_in_range(text, n, allow_zero):
    loc = parse_localization(text, n, TINY_FORMAT, allow_zero=allow_zero)
    assert (0 if allow_zero else 1) <= loc.index <= n
