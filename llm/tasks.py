"""Tasks with verifiers: problems, prompts, 0/1 rewards and (where possible) a step checker.

A task yields prompts with a checkable answer and may also return the index of the first
wrong thought of a chain: the step checker that makes the oracle reset possible
(``docs/llm.md``, "Tasks and verifiers"). Sources:

* ``"arith"``: built-in procedural multi-step arithmetic, one operation per thought, with an
  exact step checker (:class:`ArithTask`);
* ``"rg:<dataset>"``: a reasoning-gym procedural dataset scored with its own ``score_answer``
  (:class:`ReasoningGymTask`);
* a ``.jsonl`` / ``.parquet`` path with ``question`` / ``answer`` columns, GSM8K/MATH style,
  compared after number normalisation and, failing that, by ``math-verify`` (symbolic equivalence:
  ``\\frac{\\sqrt2}{2}`` = ``\\sqrt{2}/2``; :class:`FileTask`, :func:`math_equal`).

Train and test splits are disjoint by construction: a problem belongs to the test split iff
a hash of its question falls in the test bucket (1 in 5), so the same question can never be
drawn in both.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import random
import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from .thoughts import DEFAULT_FORMAT, ThoughtFormat

SPLITS = ("train", "test")


@dataclass
class Problem:
    """One problem: an id, the question text, the reference answer and task-specific metadata."""

    id: str
    question: str
    answer: str
    meta: dict = field(default_factory=dict)


def _in_split(question: str, split: str) -> bool:
    """Deterministic disjoint split: test iff sha256(question) mod 5 == 0."""
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {SPLITS}, got {split!r}")
    h = int(hashlib.sha256(question.encode()).hexdigest()[:8], 16)
    return (h % 5 == 0) == (split == "test")


def _check_n_seed(n, seed):
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"n: expected a non-negative int, got {n!r}")
    if not isinstance(seed, int):
        raise TypeError(f"seed: expected an int, got {type(seed).__name__}")


# ------------------------------------------------------------------ normalisation
_NUM_CLEAN = re.compile(r"\\!|\\,|\\ |\\%|%|\$|\\\$|,|\s")


def normalize_answer(s: str) -> str:
    """Canonical text of an answer: strip ``\\text{}``, ``$``, thousands commas, spaces, a trailing
    period; numbers (integers, decimals, ``a/b``, ``\\frac{a}{b}``) become an exact reduced fraction
    string (``"0.50"``, ``"1/2"`` and ``"\\frac{1}{2}"`` all give ``"1/2"``; ``"3.0"`` gives ``"3"``)."""
    s = s.strip()
    s = re.sub(r"\\text\{([^}]*)\}", r"\1", s)
    s = re.sub(r"\\(?:d|t)?frac\{([^{}]+)\}\{([^{}]+)\}", r"\1/\2", s)
    s = _NUM_CLEAN.sub("", s).rstrip(".")
    if s.startswith("+"):
        s = s[1:]
    try:
        if "/" in s:
            a, b = s.split("/")
            q = Fraction(Fraction(a), Fraction(b))
        else:
            q = Fraction(s)
    except (ValueError, ZeroDivisionError):
        return s.lower()
    return str(q.numerator) if q.denominator == 1 else f"{q.numerator}/{q.denominator}"


def answers_match(pred: str | None, gold: str) -> bool:
    """True iff both answers normalise to the same text (see :func:`normalize_answer`)."""
    return pred is not None and normalize_answer(pred) == normalize_answer(gold)


MATH_MAX_CHARS = 200
"""Longest answer (either side) handed to math-verify; longer ones are compared as text only."""
_TOO_HEAVY = re.compile(r"\d{41}|(\^|\*\*)[^^*]*(\^|\*\*)[^^*]*(\^|\*\*)|\d{4,}\s*!")


class _NoTimeoutNotice:
    """Drops math-verify's notice that its timeout is off (it is off on purpose, see :func:`math_equal`)."""

    def filter(self, record) -> bool:
        return not str(record.msg).startswith("Timeout is disabled")


def _math_verify():
    import logging

    import math_verify

    for name in ("math_verify.parser", "math_verify.grader"):
        lg = logging.getLogger(name)
        if not any(isinstance(f, _NoTimeoutNotice) for f in lg.filters):
            lg.addFilter(_NoTimeoutNotice())
    return math_verify


def math_equal(pred: str | None, gold: str) -> bool:
    """Symbolic equivalence of two final answers with ``math-verify`` (LaTeX or plain expressions, e.g.
    ``\\frac{\\sqrt2}{2}`` and ``\\sqrt{2}/2``, ``1/2`` and ``0.5``, ``x^2+1`` and ``1+x^2``).

    math-verify bounds its own work with ``signal.alarm``, which raises outside the main thread (a
    tokenizer or data-loader thread, some launchers); it is called here with that timeout disabled, and
    the work is bounded instead by refusing inputs sympy could take long on: more than
    :data:`MATH_MAX_CHARS` characters, three or more exponents, a number of more than 40 digits, or the
    factorial of a number of four or more digits. Refused inputs are not equal (the caller's text
    comparison already ran). Implements: Hugging Face math-verify (Kydlicek et al., 2025).
    """
    if pred is None:
        return False
    for s in (pred, gold):
        if len(s) > MATH_MAX_CHARS or _TOO_HEAVY.search(s):
            return False
    mv = _math_verify()
    g = mv.parse(f"${gold}$", parsing_timeout=None)
    p = mv.parse(f"${pred}$", parsing_timeout=None)
    if not g or not p:
        return False
    return bool(mv.verify(g, p, timeout_seconds=None))


# ------------------------------------------------------------------------- base
class Task:
    """Base class. Subclasses set ``name`` and implement :meth:`_generate`."""

    name: str = "task"
    has_step_checker: bool = False

    def __init__(self, fmt: ThoughtFormat = DEFAULT_FORMAT):
        if not isinstance(fmt, ThoughtFormat):
            raise TypeError(f"fmt: expected a ThoughtFormat, got {type(fmt).__name__}")
        self.fmt = fmt

    def sample(self, n: int, seed: int, split: str = "train") -> list[Problem]:
        """``n`` problems of ``split``, a deterministic function of ``(n, seed, split)``."""
        raise NotImplementedError

    def prompt(self, problem: Problem) -> str:
        """Text given to the model; the response starts right after it."""
        if self.fmt.compact_prompts:
            return f"Q:{problem.question}\n"
        return (f"{problem.question}\n\nSolve step by step. End every step with {self.fmt.delimiter} and "
                f"put the final answer in {self.fmt.box('...')}.\n\n")

    def answer_correct(self, problem: Problem, answer: str) -> bool:
        return answers_match(answer, problem.answer)

    def reward(self, problem: Problem, response: str) -> float:
        """1.0 iff the response's last answer is correct; 0.0 when wrong or absent."""
        ans = self.fmt.extract_answer(response)
        if ans is None:
            return 0.0
        return 1.0 if self.answer_correct(problem, ans) else 0.0

    def first_error(self, problem: Problem, thoughts: list[str]) -> int | None:
        """1-based index of the first wrong thought, None if none is found."""
        raise NotImplementedError(f"task {self.name!r} has no step checker (has_step_checker=False)")


# ------------------------------------------------------------------------ arith
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


# ---------------------------------------------------------------- reasoning-gym
class ReasoningGymTask(Task):
    """Adapter over a reasoning-gym procedural dataset ``rg:<name>``; reward = 1 iff the dataset's own
    ``score_answer`` gives at least 0.99 for the extracted answer. ``dataset_kw`` go to
    ``reasoning_gym.create_dataset``."""

    def __init__(self, dataset: str, fmt: ThoughtFormat = DEFAULT_FORMAT, **dataset_kw):
        super().__init__(fmt)
        import reasoning_gym
        from reasoning_gym.factory import DATASETS

        if dataset not in DATASETS:
            raise ValueError(f"rg dataset: expected one of {sorted(DATASETS)}, got {dataset!r}")
        self._rg = reasoning_gym
        self.dataset, self.dataset_kw = dataset, dataset_kw
        self.name = f"rg:{dataset}"
        # score_answer depends on the entry only; one small instance scores every problem
        self._scorer = reasoning_gym.create_dataset(dataset, seed=0, size=1, **dataset_kw)

    def sample(self, n: int, seed: int, split: str = "train") -> list[Problem]:
        _check_n_seed(n, seed)
        _in_split("", split)
        out, chunk, offset = [], max(8, 2 * n if split == "train" else 6 * n), 0
        while len(out) < n:
            if offset > 50 * n + 1000:
                raise ValueError(f"sample: rg:{self.dataset} yields too few distinct {split} problems")
            ds_seed = (seed * 1_000_003 + offset) % (2 ** 31)
            ds = self._rg.create_dataset(self.dataset, seed=ds_seed, size=chunk, **self.dataset_kw)
            for j in range(len(ds)):
                e = ds[j]
                if _in_split(e["question"], split):
                    pid = f"{self.name}:{ds_seed}:{j}"
                    out.append(Problem(id=pid, question=e["question"], answer=str(e["answer"]), meta={"entry": e}))
                    if len(out) == n:
                        break
            offset += 1
        return out

    def answer_correct(self, problem: Problem, answer: str) -> bool:
        if "entry" not in problem.meta:
            return answers_match(answer, problem.answer)
        try:
            return float(self._scorer.score_answer(answer, problem.meta["entry"])) >= 0.99
        except Exception:  # a scorer that chokes on malformed model output scores 0
            return False


# -------------------------------------------------------------------- file task
def _gold_from_solution(ans: str, fmt: ThoughtFormat) -> str:
    """GSM8K ``"... #### 72"`` -> ``"72"``; MATH ``"... \\boxed{x}"`` -> ``"x"``; otherwise unchanged."""
    if "####" in ans:
        return ans.split("####")[-1].strip()
    if "\\boxed{" in ans:
        return DEFAULT_FORMAT.extract_answer(ans) or ans
    return ans.strip()


def _check_row(r, question_key: str, answer_key: str, where: str) -> None:
    """A data row must be an object whose question and answer are non-empty text or numbers: a null
    answer would become the string ``'None'`` (and ``\\boxed{None}`` would score 1)."""
    if not isinstance(r, dict):
        raise ValueError(f"{where}: expected an object with {question_key!r} and {answer_key!r}, got "
                         f"{type(r).__name__}")
    if question_key not in r or answer_key not in r:
        raise ValueError(f"{where} lacks {question_key!r} or {answer_key!r} (has {sorted(r)})")
    for key in (question_key, answer_key):
        v = r[key]
        if v is None or isinstance(v, bool) or not isinstance(v, (str, int, float)) or not str(v).strip():
            raise ValueError(f"{where}: {key!r} must be a non-empty text or number, got {v!r}")


def long_prompts(task: "Task", problems: list[Problem], tokenizer, limit: int) -> list[tuple[Problem, int]]:
    """``(problem, prompt tokens)`` of each distinct problem whose encoded prompt (special tokens included)
    has at least ``limit`` tokens: no room left for a response in a context of ``limit`` tokens."""
    uniq = list({p.id: p for p in problems}.values())
    if not uniq:
        return []
    ids = tokenizer([task.prompt(p) for p in uniq], add_special_tokens=True)["input_ids"]
    return [(p, len(x)) for p, x in zip(uniq, ids) if len(x) >= limit]


def describe(problem: Problem) -> str:
    """A problem as a reader finds it: the file row (and line) for a data file, else its id."""
    where = problem.meta.get("where")
    return f"{problem.id.rsplit(':', 1)[0]} {where}" if where else f"problem {problem.id[:60]!r}"


class FileTask(Task):
    """Local ``.jsonl`` or ``.parquet`` file with ``question`` and ``answer`` fields (GSM8K / MATH style);
    an answer is right when it normalises to the reference's text (:func:`normalize_answer`, exact for
    numbers) or is symbolically equal to it (:func:`math_equal`)."""

    def __init__(self, path: str | Path, fmt: ThoughtFormat = DEFAULT_FORMAT, *,
                 question_key: str = "question", answer_key: str = "answer"):
        super().__init__(fmt)
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"task file: {str(path)!r} does not exist")
        if path.suffix == ".jsonl":
            rows, where = [], []
            for ln, line in enumerate(path.read_text().splitlines(), 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as e:
                        raise ValueError(f"task file {path}: line {ln} is not JSON ({e})") from None
                    where.append(f"row {len(rows) - 1} (line {ln})")
        elif path.suffix == ".parquet":
            import pyarrow.parquet as pq

            rows = pq.read_table(path).to_pylist()
            where = [f"row {i}" for i in range(len(rows))]
        else:
            raise ValueError(f"task file: expected a .jsonl or .parquet path, got {str(path)!r}")
        if not rows:
            raise ValueError(f"task file {path}: the dataset is empty")
        for r, w in zip(rows, where):
            _check_row(r, question_key, answer_key, f"task file {path}: {w}")
        self.name = str(path)
        self.problems = [Problem(id=f"{path.name}:{i}", question=str(r[question_key]),
                                 answer=_gold_from_solution(str(r[answer_key]), fmt), meta={"row": i, "where": w})
                         for i, (r, w) in enumerate(zip(rows, where))]

    def answer_correct(self, problem: Problem, answer: str) -> bool:
        return answers_match(answer, problem.answer) or math_equal(answer, problem.answer)

    def sample(self, n: int, seed: int, split: str = "train") -> list[Problem]:
        """``n`` problems of ``split`` drawn without replacement while possible, then cycled."""
        _check_n_seed(n, seed)
        pool = [p for p in self.problems if _in_split(p.question, split)]
        if not pool:
            raise ValueError(f"sample: task file {self.name} has no {split} problems "
                             f"({len(self.problems)} rows; 1 in 5 goes to test by question hash)")
        rng = random.Random(f"file:{seed}:{split}")
        out = []
        while len(out) < n:
            rng.shuffle(pool)
            out += pool[: n - len(out)]
        return out


_OPTION = re.compile(r"^[A-Za-z_]\w*=[^,=:]*$")


def parse_task_spec(spec: str) -> tuple[str, dict]:
    """``"name:key=value,key=value"`` -> ``(name, {key: value})``: task options written into the task string,
    so that they travel through ``--task``, the experiments and the saved ``config.yaml`` as one value.

    The options are the part after the last ``:`` when every comma-separated piece of it is ``key=value``
    (so ``rg:chain_sum`` and file paths are left alone); values are ints when they read as ints, floats when
    they read as floats, else text. For ``arith``, ``terms=N`` fixes the chain length: ``min_terms =
    max_terms = N`` (the difficulty knob: ``arith:terms=6``)."""
    if not isinstance(spec, (str, Path)):
        raise TypeError(f"task: expected a str, got {type(spec).__name__}")
    s = str(spec)
    head, sep, tail = s.rpartition(":")
    if not sep or not head or not tail or not all(_OPTION.match(p) for p in tail.split(",")):
        return s, {}
    kw: dict = {}
    for piece in tail.split(","):
        k, v = piece.split("=", 1)
        for conv in (int, float):
            try:
                v = conv(v)
                break
            except ValueError:
                continue
        if k in kw:
            raise ValueError(f"task {s!r}: option {k!r} given twice")
        kw[k] = v
    if head == "arith" and "terms" in kw:
        n = kw.pop("terms")
        if "min_terms" in kw or "max_terms" in kw:
            raise ValueError(f"task {s!r}: give either terms or min_terms/max_terms")
        kw["min_terms"] = kw["max_terms"] = n
    return head, kw


def get_task(name_or_path: str, **kw) -> Task:
    """``"arith"`` (kw: fmt, min_terms, max_terms, digits, ops), ``"rg:<dataset>"`` (kw: fmt and
    create_dataset options) or a ``.jsonl`` / ``.parquet`` path (kw: fmt, question_key, answer_key).
    Options may also be written into the name (:func:`parse_task_spec`: ``"arith:terms=6"``,
    ``"arith:min_terms=3,max_terms=8"``, ``"rg:chain_sum:min_terms=2"``); they override keywords of the
    same name. Pass ``fmt=policy.fmt`` so prompts and answers use the policy's markers."""
    if not isinstance(name_or_path, (str, Path)):
        raise TypeError(f"name_or_path: expected a str, got {type(name_or_path).__name__}")
    s, opts = parse_task_spec(str(name_or_path))
    kw = {**kw, **opts}
    try:
        if s == "arith":
            return ArithTask(**kw)
        if s.startswith("rg:"):
            return ReasoningGymTask(s[3:], **kw)
        if s.endswith((".jsonl", ".parquet")):
            return FileTask(s, **kw)
    except TypeError as e:  # an option the task does not take
        raise ValueError(f"task {str(name_or_path)!r}: {e}") from None
    raise ValueError(f"task: expected 'arith', 'rg:<reasoning-gym dataset>' or a .jsonl/.parquet path, got {s!r}")
