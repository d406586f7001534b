"""The TRL side of the training-step benchmarks (``train_step.py``, ``realistic.py``): the task's
problems as a ``datasets.Dataset`` and a reward function that scores with the task and counts the
generated tokens (TRL reports no per-step token count of its own)."""
from __future__ import annotations


def trl_dataset_and_reward(task, probs):
    """``(dataset, reward, tokens)``: ``dataset`` has columns ``prompt`` and ``pid``; ``reward`` is a
    ``GRPOTrainer`` reward function (``task.reward`` of each completion); ``tokens`` receives the number of
    completion tokens of every reward call."""
    from datasets import Dataset

    by_id = {p.id: p for p in probs}
    ds = Dataset.from_dict({"prompt": [task.prompt(p) for p in probs], "pid": [p.id for p in probs]})
    tokens: list[int] = []

    def reward(prompts, completions, completion_ids, pid, **kw):
        tokens.append(sum(len(c) for c in completion_ids))
        return [float(task.reward(by_id[i], c)) for i, c in zip(pid, completions)]

    return ds, reward, tokens
