"""Thought format: round trips, answer extraction with nesting, malformed text."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from llm.thoughts import DEFAULT_FORMAT, TINY_FORMAT, ThoughtFormat

FORMATS = [DEFAULT_FORMAT, TINY_FORMAT]


def _thought(fmt):
    # printable text without the delimiter and without answer markers, already trimmed
    bad = set(fmt.delimiter + fmt.answer_open + fmt.answer_close)
    return st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126).filter(lambda c: c not in bad),
                   max_size=12).map(str.strip)


@pytest.mark.parametrize("fmt", FORMATS)
def test_split_join_round_trip(fmt):
    @given(st.lists(_thought(fmt), max_size=6))
    def prop(ts):
        assert fmt.split(fmt.join(ts)) == ts
        assert fmt.truncate_to_complete(fmt.join(ts)) == fmt.join(ts)
    prop()


@pytest.mark.parametrize("fmt", FORMATS)
def test_final_answer_thought_counts_without_delimiter(fmt):
    text = f"a{fmt.delimiter} b {fmt.delimiter}so {fmt.box('42')}"
    assert fmt.split(text) == ["a", "b", f"so {fmt.box('42')}"]
    assert fmt.extract_answer(text) == "42"
    # an incomplete trailing thought (no delimiter, no answer) is dropped
    assert fmt.split(f"a{fmt.delimiter}partial") == ["a"]
    assert fmt.truncate_to_complete(f"a{fmt.delimiter}partial") == f"a{fmt.delimiter}"
    assert fmt.truncate_to_complete("partial") == ""


@given(st.lists(_thought(TINY_FORMAT), max_size=5), st.text(max_size=20))
def test_truncate_is_prefix_and_idempotent(ts, tail):
    text = TINY_FORMAT.join(ts) + tail
    cut = TINY_FORMAT.truncate_to_complete(text)
    assert text.startswith(cut)
    assert TINY_FORMAT.truncate_to_complete(cut) == cut
    assert TINY_FORMAT.split(cut) == TINY_FORMAT.split(text)


def test_extract_answer_nested_and_last_wins():
    f = DEFAULT_FORMAT
    assert f.extract_answer(r"x \boxed{\frac{1}{2}} y") == r"\frac{1}{2}"
    assert f.extract_answer(r"\boxed{1} then \boxed{ 2 }") == "2"
    assert f.extract_answer(r"\boxed{1} then \boxed{2") == "1"  # unclosed last box ignored
    assert f.extract_answer("no answer here") is None
    assert f.extract_answer(r"\boxed{}") == ""
    assert TINY_FORMAT.extract_answer("1+2=3;[3]") == "3"
    assert TINY_FORMAT.extract_answer("[[1]2]") == "[1]2"


@given(st.text(max_size=40))
def test_malformed_text_never_crashes(text):
    for f in FORMATS:
        ans = f.extract_answer(text)
        assert ans is None or isinstance(ans, str)
        for t in f.split(text):
            assert f.delimiter not in t
        assert text.startswith(f.truncate_to_complete(text))


def test_numbered_and_validation():
    assert DEFAULT_FORMAT.numbered(["a", "b"]) == "Step 1: a\nStep 2: b"
    with pytest.raises(ValueError, match="delimiter"):
        ThoughtFormat(delimiter="")
    with pytest.raises(ValueError, match="contains the delimiter"):
        TINY_FORMAT.join(["a;b"])
