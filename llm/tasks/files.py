"""File tasks: a local ``.jsonl`` / ``.parquet`` file of ``question`` / ``answer`` rows (GSM8K / MATH
style), answers checked by normalisation and ``math-verify`` (:mod:`llm.tasks.answers`)."""
from __future__ import annotations

import json
import random
from pathlib import Path

from ..thoughts import DEFAULT_FORMAT, ThoughtFormat
from .answers import answers_match, math_equal
from .base import Problem, Task, _check_n_seed, _in_split


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
