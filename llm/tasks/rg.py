"""``"rg:<dataset>"`` tasks: reasoning-gym procedural datasets scored by their own ``score_answer``."""
from __future__ import annotations

from ..thoughts import DEFAULT_FORMAT, ThoughtFormat
from .answers import answers_match
from .base import Problem, Task, _check_n_seed, _in_split


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
