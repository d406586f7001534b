"""Shared pieces of the trainer tests: a saved micro model, a task the random micro model gets right
about a third of the time (so advantages are non-zero), and a small config."""
from __future__ import annotations

import json
from pathlib import Path

from llm.config import parse_args
from llm.tasks import ArithTask
from llm.thoughts import TINY_FORMAT

TIME_KEYS = ("step_time_s", "gen_time_s", "update_time_s", "elapsed_s", "eval_time_s")


class EvenTask(ArithTask):
    """Reward 1 when the response is non-empty and starts with a character of even code point."""

    def reward(self, problem, response):
        return 1.0 if response and ord(response[0]) % 2 == 0 else 0.0


def even_task():
    return EvenTask(fmt=TINY_FORMAT)


def save_micro(dirpath: Path) -> str:
    from llm.tiny import micro_policy
    d = Path(dirpath) / "micro"
    if not (d / "config.json").is_file():
        micro_policy(0).save_pretrained(d)
    return str(d)


def micro_cfg(model_dir: str, out_dir: str, method: str = "srpo", *extra: str):
    return parse_args(["--model", model_dir, "--method", method, "--steps", "4", "--prompts_per_step", "4",
                       "--max_thoughts", "3", "--max_thought_tokens", "40", "--max_new_tokens", "40",
                       "--eval_every", "2", "--eval_size", "8", "--out_dir", out_dir, "--train_size", "32",
                       "--micro_batch_size", "12", "--loc_max_new_tokens", "8", "--progress", "false",
                       "--lr", "1e-2", "--save_every", "2", *extra])


def strip_times(records):
    return [{k: v for k, v in r.items() if k not in TIME_KEYS} for r in records]


def read_metrics(out) -> list[dict]:
    """The records of ``out/metrics.jsonl`` (blank lines skipped)."""
    return [json.loads(x) for x in (Path(out) / "metrics.jsonl").read_text().splitlines() if x.strip()]


class Killed(Exception):
    """Raised by :class:`DiesAfterStep3` to simulate a kill inside the training loop."""


def dies_after_step3():
    """A ``Trainer`` subclass killed after step 3's metrics were written, before the step-4 checkpoint."""
    from llm import train as T

    class DiesAfterStep3(T.Trainer):
        def log(self, rec):
            super().log(rec)
            if rec["kind"] == "train" and rec["step"] == 3:
                raise Killed

    return DiesAfterStep3
