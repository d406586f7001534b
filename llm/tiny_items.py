"""The replies the tiny default learns for the localization and verification prompts (the reply
targets of ``llm.tiny``'s warm start): one item per thought, then the boxed step or verdict.

``TRAIN["items"]`` in ``llm.tiny`` picks the item kind (:data:`ITEMS`); ``"inverse"`` is the shipped
recipe (v7; ``"resolve"`` was v6's). Part of the recipe that ``llm.tiny.recipe`` pins: a change here that alters a target means
a rebuild. Measured numbers of every kind: ``experiments/tiny_recipes.md``.
"""
from __future__ import annotations

from .tasks import _EQ_RE, _OPS, ArithTask

ITEMS = ("resolve", "local", "inverse", "local_answer")
"""The item kinds of a localization / verification reply (``TRAIN["items"]``, default ``"resolve"``)."""

MISSING_ANSWER = "?"
"""Item of the missing answer in a ``"local_answer"`` verification reply: a chain whose thoughts are
all right but that gives no answer ends ``...,8-2=6,?[NO]``, one whose answer is present
``...,8-2=6,6[YES]`` (``"local"``: ``...,8-2=6[NO]``, the same as a wrong last equation's reply)."""


def _answer_split(task: ArithTask, thought: str) -> tuple[str | None, str]:
    """``(answer, body)`` of a thought: its boxed answer (None if none) and the text before the box."""
    ans = task.fmt.extract_answer(thought)
    return ans, thought if ans is None else thought[: thought.rfind(task.fmt.answer_open)]


def _check_items(task: ArithTask, problem, thoughts: list[str]) -> list[str]:
    """What each thought of ``thoughts`` should say, re-derived from the problem (never from the chain):
    for a thought with an equation, the operation it should apply and the true result, ``"-2=6"``
    (``"3+5=8"`` for the first operation, which also names the first term); for a thought with an
    answer (or with equations beyond the last operation), the final answer; for a thought with
    neither, the running value."""
    m = problem.meta
    terms, ops = m["terms"], m["ops"]
    v, s, out = terms[0], 0, []
    for t in thoughts:
        ans, body = _answer_split(task, t)
        item = None
        for _ in _EQ_RE.findall(body):
            if s < len(ops):
                head = str(v) if s == 0 else ""
                v = _OPS[ops[s]](v, terms[s + 1])
                item = f"{head}{ops[s]}{terms[s + 1]}={v}"
            s += 1
        if ans is not None or s > len(ops):
            item = problem.answer
        out.append(str(v) if item is None else item)
    return out


_INVERSE = {"+": "-", "-": "+"}


def _local_items(task: ArithTask, problem, thoughts: list[str], inverse: bool = False) -> list[tuple[str, bool]]:
    """``(item, ok)`` for each thought: what the thought should say GIVEN THE CHAIN's previous value
    (a local check, never a re-solve) and whether it says it. For an equation ``a o b = c`` the item is
    ``f"{prev}{o_s}{b_s}={prev o_s b_s}"``: ``prev`` the result the chain wrote last (the first term
    before any), ``o_s`` / ``b_s`` the ``s``-th operation and operand of the question, the result exact;
    the equation is right iff it equals its item. A thought with several equations takes the item of its
    first wrong one, else of its last. A thought holding the answer (with right equations, if any) has
    the final answer as item, right iff it matches; an equation beyond the last operation too (always
    wrong: the answer is due). A thought with neither has the chain's running value (never wrong).
    The first thought with ``ok`` False is ``task.first_error`` (before it, ``prev`` is the true value).

    ``inverse``: an equation's item undoes the operation on the WRITTEN result instead, ``"6+2=8"`` for
    ``8-2=6`` (``f"{c}{inverse o_s}{b_s}={c inverse o_s b_s}"``, to be compared with ``prev``: a check
    that computes differently from generation); ``*`` keeps the forward item. Right iff the result
    matches ``prev`` and ``a o b`` is ``prev o_s b_s`` (so ``ok`` is the same as without ``inverse``)."""
    m = problem.meta
    terms, ops = m["terms"], m["ops"]
    prev, s, out = terms[0], 0, []
    for t in thoughts:
        ans, body = _answer_split(task, t)
        checks = []
        for a, o, b, c in _EQ_RE.findall(body):
            o = "*" if o in "x\u00d7" else o
            if s < len(ops):
                op, b_s, want = ops[s], terms[s + 1], _OPS[ops[s]](prev, terms[s + 1])
                item = f"{prev}{op}{b_s}={want}"
                if inverse and op in _INVERSE:
                    item = f"{c}{_INVERSE[op]}{b_s}={_OPS[_INVERSE[op]](int(c), b_s)}"
                checks.append((item, (int(a), o, int(b), int(c)) == (prev, op, b_s, want)))
            else:
                checks.append((problem.answer, False))
            prev, s = int(c), s + 1
        bad = next((item for item, ok in checks if not ok), None)
        if bad is not None:
            out.append((bad, False))
        elif ans is not None:
            out.append((problem.answer, task.answer_correct(problem, ans)))
        else:
            out.append((checks[-1][0] if checks else str(prev), True))
    return out


def _items(task: ArithTask, problem, thoughts: list[str], items: str) -> list[str]:
    """The reply items of ``thoughts`` of kind ``items`` (:data:`ITEMS`)."""
    if items == "resolve":
        return _check_items(task, problem, thoughts)
    if items in ("local", "inverse", "local_answer"):
        return [item for item, _ in _local_items(task, problem, thoughts, inverse=items == "inverse")]
    raise ValueError(f"items: expected one of {ITEMS}, got {items!r}")


def localization_target(task: ArithTask, problem, chain: list[str], step: int, items: str = "resolve") -> str:
    """Reply the tiny default learns for a localization prompt over ``chain`` whose first wrong thought
    (``task.first_error``) is ``step``: it re-solves the problem and writes, for each thought up to
    ``step``, what that thought should say (:func:`_check_items`), followed by ``,`` when the chain's
    thought says it and by the boxed index at the first one that does not, e.g. ``"3+5=8,-2=6[2]"``
    for ``3+5-2+7`` over ``3+5=8;8-2=7;...``. Each item is computed as when solving (operation and
    operand read from the question, result from the model's own previous one), so a wrong value or a
    wrong operand in the chain shows as a mismatch; about 5 tokens a thought. The parser reads the
    last boxed integer, so the reply follows the localization contract. ``items="local"``: each item
    is instead the local check of :func:`_local_items` (``"3+5=8,8-2=6[2]"``: the left operand is the
    chain's previous value, so one slip of the reply does not carry to the next item); ``"inverse"``:
    the operation undone on the thought's written result (``"8-5=3,7+2=9[2]"`` over the same chain:
    ``8-2=7`` undone gives 9, not the 8 it started from)."""
    return ",".join(_items(task, problem, chain[:step], items)) + task.fmt.box(str(step))


def verification_target(task: ArithTask, problem, chain: list[str], answer: str | None,
                        items: str = "resolve") -> str:
    """Reply to the L3 question (``verification_prompt``) about ``chain`` and its ``answer``: the same
    items as :func:`localization_target` (kind ``items``) up to the first wrong thought (or over the
    whole chain), then ``box("NO")`` if a thought is wrong or the answer is missing or wrong, else
    ``box("YES")``. ``items="local_answer"``: a chain with no wrong thought and no answer gets the
    item :data:`MISSING_ANSWER` before its ``box("NO")``, so that the reply departs from a right chain's
    one item before the verdict (localization is unchanged: such a chain has no first error)."""
    e = task.first_error(problem, chain) if chain else None
    out = _items(task, problem, chain if e is None else chain[:e], items)
    if items == "local_answer" and e is None and answer is None:
        out.append(MISSING_ANSWER)
    ok = e is None and answer is not None and task.answer_correct(problem, answer)
    return ",".join(out) + task.fmt.box("YES" if ok else "NO")
