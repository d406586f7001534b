"""The built-in ``"arith"`` task: procedural multi-step arithmetic with an exact step checker."""
from __future__ import annotations

import itertools
import random
import re

from ..thoughts import DEFAULT_FORMAT, ThoughtFormat
from .answers import answers_match
from .base import Problem, Task, _check_n_seed, _in_split

_EQ_RE = re.compile(r"(-?\d+)\s*([-+*x\u00d7])\s*(-?\d+)\s*=\s*(-?\d+)")
_OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


class ArithTask(Task):
    """Procedural multi-step arithmetic ``t0 o1 t1 o2 t2 ...`` evaluated left to right, one operation
    per thought (``"3+5=8"``, ``"8-2=6"``, ...), then the answer thought (``box(6)``).

    Step checker (exact): thought ``i`` may contain equations ``a o b = c``; the ``s``-th equation
    of the chain is right iff ``a`` is the running value, ``o`` and ``b`` are the ``s``-th operation
    and operand and ``c = a o b``. A thought with an answer is wrong iff the answer is not the final
    value. Thoughts with neither are neutral. The first wrong thought is returned.
    """

    name = "arith"
    has_step_checker = True

    def __init__(self, fmt: ThoughtFormat = DEFAULT_FORMAT, *, min_terms: int = 3, max_terms: int = 5,
                 digits: int = 1, ops: str = "+-"):
        super().__init__(fmt)
        if not (isinstance(min_terms, int) and isinstance(max_terms, int) and 2 <= min_terms <= max_terms):
            raise ValueError(f"terms: expected ints 2 <= min_terms <= max_terms, got {min_terms}, {max_terms}")
        if not isinstance(digits, int) or not 1 <= digits <= 6:
            raise ValueError(f"digits: expected an int in [1, 6], got {digits!r}")
        if not ops or set(ops) - set(_OPS):
            raise ValueError(f"ops: expected a non-empty string over {''.join(_OPS)!r}, got {ops!r}")
        self.min_terms, self.max_terms, self.digits, self.ops = min_terms, max_terms, digits, ops

    def settings(self) -> dict:
        return {"min_terms": self.min_terms, "max_terms": self.max_terms, "digits": self.digits, "ops": self.ops}

    def make_problem(self, terms: list[int], ops: list[str]) -> Problem:
        """Problem for ``terms[0] ops[0] terms[1] ...`` (left to right)."""
        q = str(terms[0]) + "".join(f"{o}{t}" for o, t in zip(ops, terms[1:]))
        v, values = terms[0], []
        for o, t in zip(ops, terms[1:]):
            v = _OPS[o](v, t)
            values.append(v)
        return Problem(id=f"arith:{q}", question=q, answer=str(v),
                       meta={"terms": list(terms), "ops": list(ops), "values": values})

    def space_size(self) -> int:
        """Number of distinct problems at this difficulty (both splits)."""
        return sum((10 ** self.digits) ** k * len(self.ops) ** (k - 1)
                   for k in range(self.min_terms, self.max_terms + 1))

    def distinct(self, n: int, seed: int, split: str = "test") -> list[Problem]:
        """``n`` *different* problems of ``split`` (seeded), or every problem of the split when it holds fewer:
        a held-out set without repeats (at 3 one-digit terms and ``+-`` the test split has ~800 problems).
        Small spaces are enumerated and shuffled; large ones are drawn with rejection of repeats."""
        _check_n_seed(n, seed)
        _in_split("", split)
        rng = random.Random(f"arith-distinct:{seed}:{split}")
        if self.space_size() <= 200_000:
            hi = 10 ** self.digits
            pool = []
            for k in range(self.min_terms, self.max_terms + 1):
                for terms in itertools.product(range(hi), repeat=k):
                    for ops in itertools.product(self.ops, repeat=k - 1):
                        p = self.make_problem(list(terms), list(ops))
                        if _in_split(p.question, split):
                            pool.append(p)
            rng.shuffle(pool)
            return pool[:n]
        m = n + n // 8 + 8
        while True:  # sample(m) is a prefix of sample(2m): double until n distinct problems are found
            out = list({p.question: p for p in self.sample(m, seed=seed, split=split)}.values())
            if len(out) >= n:
                return out[:n]
            m *= 2

    def sample(self, n: int, seed: int, split: str = "train") -> list[Problem]:
        _check_n_seed(n, seed)
        rng = random.Random(f"arith:{seed}:{split}")
        out = []
        hi = 10 ** self.digits - 1
        for _ in range(1000 * n + 1000):
            if len(out) == n:
                return out
            k = rng.randint(self.min_terms, self.max_terms)
            p = self.make_problem([rng.randint(0, hi) for _ in range(k)], [rng.choice(self.ops) for _ in range(k - 1)])
            if _in_split(p.question, split):
                out.append(p)
        raise ValueError(f"sample: could not draw {n} {split} problems at this difficulty ({self.settings()})")

    def solution(self, problem: Problem) -> list[str]:
        """Canonical thought chain: one ``a o b = c`` per operation, then the boxed answer."""
        m = problem.meta
        prev = [m["terms"][0]] + m["values"][:-1]
        steps = [f"{a}{o}{b}={c}" for a, o, b, c in zip(prev, m["ops"], m["terms"][1:], m["values"])]
        return steps + [self.fmt.box(problem.answer)]

    def corrupt(self, problem: Problem, step: int, rng: random.Random) -> list[str]:
        """A chain whose FIRST wrong thought is ``step`` (1-based; ``step = n_ops + 1`` corrupts only the
        answer): a wrong result (70%) or a wrong operand (30%) at ``step``, later steps computed
        correctly from the wrong value. Used for localization training and checker tests."""
        m = problem.meta
        n_ops = len(m["ops"])
        if not 1 <= step <= n_ops + 1:
            raise ValueError(f"step: expected 1..{n_ops + 1}, got {step}")
        v, steps = m["terms"][0], []
        for i, (o, b) in enumerate(zip(m["ops"], m["terms"][1:]), 1):
            a = v
            if i == step:
                if rng.random() < 0.3:
                    b = b + rng.choice([d for d in (-2, -1, 1, 2) if b + d >= 0])
                    c = _OPS[o](a, b)
                else:
                    c = _OPS[o](a, b) + rng.choice([-2, -1, 1, 2, 10, -10])
            else:
                c = _OPS[o](a, b)
            steps.append(f"{a}{o}{b}={c}")
            v = c
        if step == n_ops + 1:
            v = v + rng.choice([-2, -1, 1, 2])
        return steps + [self.fmt.box(str(v))]

    def first_error(self, problem: Problem, thoughts: list[str]) -> int | None:
        m = problem.meta
        terms, ops, final = m["terms"], m["ops"], int(problem.answer)
        v, s = terms[0], 0
        for i, t in enumerate(thoughts, 1):
            body = t
            ans = self.fmt.extract_answer(t)
            if ans is not None:  # check equations before the answer marker only
                body = t[: t.rfind(self.fmt.answer_open)]
            for a, o, b, c in _EQ_RE.findall(body):
                o = "*" if o in "x\u00d7" else o
                if s >= len(ops) or int(a) != v or o != ops[s] or int(b) != terms[s + 1] \
                        or int(c) != _OPS[o](v, terms[s + 1]):
                    return i
                v, s = int(c), s + 1
            if ans is not None and not answers_match(ans, str(final)):
                return i
        return None
