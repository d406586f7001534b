"""Configuration of one Thought-ICS (or baseline) run: methods, verifier levels, localizers, budgets."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

Method = Literal["thought", "token", "scratch", "refine"]
Level = Literal["L1", "L2", "L3"]
LocalizerKind = Literal["model", "oracle"]
EXITS = {1: "verified", 2: "disagreement", 3: "max_iters"}
"""Exit codes of the loop: (1) verified, (2) the localizer says nothing is wrong, (3) max iterations."""

TINY_BUDGET = dict(max_thoughts=8, max_thought_tokens=16)
"""Chain budget used for the tiny default (its arith thoughts are a few characters)."""


@dataclass
class ICSConfig:
    """Configuration of one Thought-ICS (or baseline) run; saved beside every result."""

    method: Method = "thought"
    """"thought" (Thought-ICS), "token" (Token-ICS), "scratch" (resample from scratch), "refine"."""
    level: Level = "L2"
    """Verifier oracle level: "L1" ground truth shown to the localizer, "L2" told only "wrong",
    "L3" the model verifies itself."""
    localizer: LocalizerKind = "model"
    """"model": the policy localizes its own error; "oracle": the task's first_error (upper bound;
    needs a task with a step checker; only for "thought" / "token")."""
    max_iters: int = 10
    """L: at most this many verify/localize/resample rounds (so at most 1 + L chains)."""
    temperature_first: float = 1.0
    """Temperature of the first chain."""
    temperature_resample: float = 0.7
    """Temperature of every later chain (resample / scratch / refine)."""
    temperature_judge: float = 0.3
    """Temperature of the verifier (L3), localizer and Self-Refine feedback calls."""
    top_p: float = 1.0
    """Nucleus sampling for the chains."""
    verify_votes: int = 1
    """L3 only: k verdict samples, verified iff #YES > k/2 (paper: 1, 5 or 9)."""
    context: bool = False
    """Resample conditioned on the failed chain (shown before the task prompt); thought/token only."""
    max_thoughts: int = 20
    """Per chain, passed to Policy.generate / continue_from."""
    max_thought_tokens: int = 256
    """Per-thought token cap, passed to the policy."""
    max_new_tokens: int | None = None
    """Total token budget per chain (None: the policy's default)."""
    thought_cap: Literal["keep", "end"] = "end"
    """A thought reaching max_thought_tokens: "end" ends the chain (the rule the recorded ICS results used);
    "keep" keeps it and goes on, as SRPO's rollouts and the paper's generator (``llm.decode``)."""
    budget_scope: Literal["response", "sampled"] = "sampled"
    """What max_new_tokens counts in a resample from a kept prefix: "sampled" tokens only (the recorded
    results), or the whole "response" (prefix included, as SRPO's rollouts)."""
    judge_max_new_tokens: int = 96
    """Token budget of a verdict / localization / feedback completion (the tiny default's localization
    replies run up to 88 tokens)."""
    batch_size: int = 16
    """Prompts per batched generate / complete call."""
    seed: int = 0
    """Seed of the torch.Generator handed to the policy."""

    def __post_init__(self) -> None:
        for name, lit in (("method", Method), ("level", Level), ("localizer", LocalizerKind),
                          ("thought_cap", Literal["keep", "end"]), ("budget_scope", Literal["response", "sampled"])):
            val = getattr(self, name)
            if val not in get_args(lit):
                raise ValueError(f"ICSConfig.{name}: expected one of {get_args(lit)}, got {val!r}")
        for name in ("max_iters", "verify_votes", "max_thoughts", "max_thought_tokens",
                     "judge_max_new_tokens", "batch_size"):
            val = getattr(self, name)
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                raise ValueError(f"ICSConfig.{name}: expected an int >= 1, got {val!r}")
        if self.max_new_tokens is not None and (not isinstance(self.max_new_tokens, int)
                                                or self.max_new_tokens < 1):
            raise ValueError(f"ICSConfig.max_new_tokens: expected None or an int >= 1, "
                             f"got {self.max_new_tokens!r}")
        for name in ("temperature_first", "temperature_resample", "temperature_judge"):
            val = getattr(self, name)
            if not isinstance(val, (int, float)) or not math.isfinite(val) or val < 0:
                raise ValueError(f"ICSConfig.{name}: expected a finite float >= 0, got {val!r}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"ICSConfig.top_p: expected 0 < top_p <= 1, got {self.top_p!r}")
        if self.localizer == "oracle" and self.method not in ("thought", "token"):
            raise ValueError(f"ICSConfig.localizer='oracle' needs method 'thought' or 'token' "
                             f"(got method={self.method!r}): the other methods do not localize")
        if self.context and self.method not in ("thought", "token"):
            raise ValueError(f"ICSConfig.context=True needs method 'thought' or 'token' (got "
                             f"method={self.method!r}); 'refine' always conditions on the failed chain")
        if self.verify_votes > 1 and self.level != "L3":
            raise ValueError(f"ICSConfig.verify_votes={self.verify_votes} only applies to level "
                             f"'L3' (got level={self.level!r}); set verify_votes=1")


def run_label(cfg: ICSConfig) -> str:
    """The name of a run in files and tables, e.g. ``"thought-oracle L2"`` or ``"token-ctx L3"``."""
    return (f"{cfg.method}{'-oracle' if cfg.localizer == 'oracle' else ''}{'-ctx' if cfg.context else ''} "
            f"{cfg.level}")
