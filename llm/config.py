"""Typed training configuration: ``TrainConfig``, YAML loading, CLI overrides, start-up validation.

Every field is documented once: the run-level fields here, the four sections ``TrainConfig`` holds
(``rollout``, ``loss``, ``optim``, ``lora``) in ``llm.config_sections`` (re-exported here, with the
method names ``METHODS``). A YAML file mirrors that nesting::

    method: srpo
    model: tiny
    rollout: {temperature: 0.7, n_fresh: 4}
    optim: {lr: 5.0e-5}

On the command line (``llm.cli``, built with tyro) every field is ``--section.field VALUE``
(``--rollout.temperature 0.7``) and, where the field name is unique across sections, also plain
``--field VALUE`` (``--temperature 0.7``); ``--help`` lists every field with its docstring and default.
Order of precedence: dataclass defaults < ``--config file.yaml`` < command-line flags.

``validate_startup`` runs the checks that need no model (method, task, model path, budgets,
world size) so that a bad run fails in a second with a message saying how to fix it.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Literal

import yaml

from .config_file import FieldError, build, check_finite, read_yaml
from .config_sections import (CHECKER_METHODS, METHODS, RESET_METHODS, SECTIONS, LoraConfig,  # noqa: F401
                              LossConfig, Method, OptimConfig, RolloutConfig, _choice, _positive)

__all__ = ["CHECKER_METHODS", "DESCRIPTION", "METHODS", "RESET_METHODS", "SECTIONS", "LoraConfig", "LossConfig",
           "Method", "OptimConfig", "RolloutConfig", "TrainConfig", "command_line_request", "from_dict", "load_yaml",
           "parse_args", "parse_command_line", "validate_startup", "yaml_fields"]


@dataclass
class TrainConfig:
    """One RL training run. Defaults train the tiny default model on the built-in arith task, on CPU."""
    method: Method = "srpo"
    """grpo | rrpo | srpo | oracle | noisy | random (copied into rollout.method; the reset distribution of
    ``llm.resets``: start | random_failed | self | oracle | noisy(q) | random)"""
    model: str = "tiny"
    """"tiny" (built-in default, built on first use), a local HF model dir, or a hub name already cached"""
    task: str = "arith"
    """"arith" (built-in step task), "rg:<dataset>" (reasoning-gym), or a .jsonl / .parquet file"""
    steps: int = 100
    """rollout batches (training steps); each gives mini_batches optimizer steps"""
    prompts_per_step: int = 16
    """prompts per step over all ranks (paper 32); each gives rollout.rollouts_per_prompt samples"""
    mini_batches: int = 1
    """optimizer (AdamW) steps per rollout batch, one per mini-batch of prompts_per_step / mini_batches
    prompts, one pass over the batch (the paper: 32 prompts in mini-batches of 8: 4). Only the first
    mini-batch is on-policy: REINFORCE has no importance ratio, so later ones use samples of an older
    policy; the lr schedule advances per optimizer step (its length is steps x mini_batches x inner_epochs)"""
    micro_batch_size: int = 64
    """most sequences per forward/backward pass (gradient accumulation inside a step; exact)"""
    micro_batch_tokens: int = 2048
    """most padded tokens (sequences x the longest) per forward/backward pass; the step's samples are
    sorted by length before they are cut into micro-batches, so little compute goes to padding
    (0: no token cap; a longer sequence gets a pass of its own)"""
    # ---------------------------------------------------------------- update forward and memory (issue 18)
    update_forward: Literal["auto", "shared", "packed", "naive"] = "auto"
    """forward of the update (docs/llm.md, "The trainer's step"): shared (each group's shared tokens run once
    per pass, keys/values fanned out to its suffixes), packed (the same as one packed row per group), naive
    (every sample whole, padded); same loss and gradient up to float summation order. auto: shared, packed
    under FSDP2"""
    gradient_checkpointing: bool = False
    """recompute each decoder layer's activations in the backward instead of keeping them (Hugging Face's
    non-reentrant checkpointing; the shared forward checkpoints the same layers itself): less memory for
    long responses, one more forward of the layers in time (docs/benchmarks.md, "Gradient checkpointing")"""
    # ---------------------------------------------------------------- end of issue-18 fields
    train_size: int = 4096
    """training problems drawn once (seeded) from the task's train split, reshuffled each epoch"""
    eval_every: int = 25
    """greedy pass@1 on the held-out split every this many steps (0: never; also after the last step)"""
    eval_size: int = 128
    """held-out (test split) problems for evaluation"""
    eval_seed: int = 0
    """seeds the held-out problems (not the run's seed): runs with different seeds and methods are
    evaluated on the same problems, so their differences can be paired"""
    eval_sampled: int = 0
    """also a sampled probe at evaluation: this many chains per held-out problem at rollout.temperature and
    top_p, from a generator seeded by eval_seed (the same random numbers for every run); 0: greedy only"""
    eval_start: bool = True
    """evaluate before the first step (off when the step-0 numbers are known, e.g. many runs of one model
    on one held-out set)"""
    seed: int = 0
    """seeds the data order, sampling and initialisation"""
    out_dir: str = "runs/default"
    """metrics.jsonl, config.yaml, checkpoints/ and final/ go here"""
    save_every: int = 25
    """checkpoint every this many steps (0: only at the end)"""
    keep_checkpoints: int = 2
    """most recent checkpoints kept"""
    resume: bool = False
    """continue the run in out_dir: its saved config.yaml, the newest intact checkpoint in out_dir/checkpoints
    (none: restart at step 0, old metrics moved aside); flags that change the run's meaning are refused
    unless allow_config_change is set (docs/llm.md, "Reliability")"""
    allow_config_change: bool = False
    """with resume: apply flags that change the run's meaning (method, lr, seed, steps under a decaying
    schedule, ...) instead of refusing them; each change is logged, written to config_history.jsonl and to
    metrics.jsonl (a "config_change" record) and takes effect from the step the run restarts at"""
    tensorboard: bool = False
    """also log to TensorBoard (only if the tensorboard package is installed)"""
    progress: bool = True
    """show a tqdm progress bar (rank 0)"""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """auto: cuda if available"""
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    """auto: bfloat16 on GPU, float32 on CPU"""
    fsdp: bool = False
    """shard the model with FSDP2 (multi-process; meant for GPUs, also runs on CPU/gloo); otherwise DDP"""
    num_threads: int = 0
    """torch CPU threads per process (0: leave torch's default)"""
    max_skipped_steps: int = 5
    """stop a diverging run after this many consecutive steps whose update was skipped for a non-finite
    loss or gradient: exit code 3, and no checkpoint of that state (0: never stop)"""
    long_prompts: Literal["fail", "skip"] = "fail"
    """training or evaluation problems whose prompt does not fit the model's context (checked at start):
    fail (name them and stop) or skip (drop them; how many is logged and written to config_history.jsonl)"""
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)

    def __post_init__(self) -> None:
        for name, cls in SECTIONS.items():
            v = getattr(self, name)
            if not isinstance(v, cls):
                setattr(self, name, build(cls, v, prefix=f"{name}."))
        check_finite(self)
        _choice("method", self.method, METHODS)
        if self.rollout.method != self.method:  # the top-level method is the one users set
            self.rollout = dataclasses.replace(self.rollout, method=self.method)
        for n in ("steps", "prompts_per_step", "micro_batch_size", "train_size", "eval_size", "keep_checkpoints",
                  "mini_batches"):
            _positive(n, getattr(self, n))
        if self.prompts_per_step % self.mini_batches:
            raise FieldError("mini_batches", f"prompts_per_step={self.prompts_per_step} must be divisible by "
                             f"mini_batches={self.mini_batches} (a mini-batch holds whole prompts); e.g. "
                             "--mini_batches 1")
        for n in ("eval_every", "save_every", "num_threads", "micro_batch_tokens", "max_skipped_steps",
                  "eval_sampled"):
            _positive(n, getattr(self, n), allow_zero=True)
        _choice("long_prompts", self.long_prompts, ("fail", "skip"))
        _choice("device", self.device, ("auto", "cpu", "cuda"))
        _choice("dtype", self.dtype, ("auto", "float32", "bfloat16"))
        if not isinstance(self.model, str) or not self.model:
            raise ValueError(f"model must be a non-empty string, got {self.model!r}")
        if not isinstance(self.task, str) or not self.task:
            raise ValueError(f"task must be a non-empty string, got {self.task!r}")

    @property
    def optimizer_steps(self) -> int:
        """Optimizer steps of the whole run (the length of the lr schedule): steps x mini_batches x
        loss.inner_epochs."""
        return self.steps * self.mini_batches * self.loss.inner_epochs

    @property
    def samples_per_step(self) -> int:
        """Trained sequences per step over all ranks."""
        return self.prompts_per_step * self.rollout.rollouts_per_prompt

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save_yaml(self, path: str | os.PathLike) -> None:
        """Write the config as YAML, atomically (``llm.rundir.atomic_write_text``)."""
        from .rundir import atomic_write_text

        d = self.to_dict()
        d["optim"]["betas"] = list(d["optim"]["betas"])
        atomic_write_text(path, yaml.safe_dump(d, sort_keys=False))


def _mirror_method(d: dict, where) -> dict:
    """``rollout.method`` follows the top-level ``method``: copied into the rollout section before that
    section is checked (its reset budget depends on the method); a different value is refused."""
    ro, method = d.get("rollout"), d.get("method", TrainConfig.method)
    if not isinstance(ro, dict) or method not in METHODS:
        return d
    if ro.get("method", method) != method:
        raise where("rollout.method", f"rollout.method follows method; set method instead (got rollout.method="
                                      f"{ro['method']!r}, method={method!r})")
    return {**d, "rollout": {**ro, "method": method}}


def from_dict(d: dict, *, file: str | None = None, lines: dict[str, int] | None = None) -> TrainConfig:
    """Build a TrainConfig from a (YAML-like) nested dict: values converted by each field's type
    (``"1e-4"`` -> ``1e-4``), unknown keys and bad values raise ValueError naming the field (and
    ``file:line`` when ``file`` is given)."""
    from .config_file import _Where

    if not isinstance(d or {}, dict):
        raise ValueError(f"config must be a mapping of fields, got {d!r}")
    return build(TrainConfig, _mirror_method(dict(d or {}), _Where(file, lines)), file=file, lines=lines)


def load_yaml(path: str | os.PathLike) -> TrainConfig:
    """A TrainConfig from a YAML file; every error is one line ``file:line: field ...``."""
    data, lines = read_yaml(path)
    return from_dict(data, file=str(path), lines=lines)


def yaml_fields(path: str | os.PathLike) -> frozenset[str]:
    """Dotted names of the fields a YAML config file sets (sections expanded to their fields)."""
    from .cli import leaves

    _, lines = read_yaml(path)
    out = {k for k in lines if k in leaves(TrainConfig)}
    if "method" in out:
        out.add("rollout.method")
    return frozenset(out)


# ----------------------------------------------------------------------------- command line
DESCRIPTION = "RL training of a thought-structured LM policy with GRPO / RRPO / SRPO / oracle resets."


def parse_command_line(argv: list[str] | None = None) -> tuple[TrainConfig, frozenset[str]]:
    """Defaults < ``--config`` YAML < flags (``llm.cli``: tyro, with the short forms ``--lr``,
    ``--max_thoughts``, ...). Returns the config and the dotted names of the fields given on the command
    line (e.g. ``{"optim.lr", "resume"}``). Raises ValueError with a fix-it message on bad values."""
    return _parse(argv, load_yaml)


def _parse(argv, load) -> tuple[TrainConfig, frozenset[str]]:
    from .cli import parse

    return parse(TrainConfig, argv, prog="python -m llm.train", description=DESCRIPTION, load=load,
                 refuse={"rollout.method": "--rollout.method follows --method; set --method instead"},
                 mirror={"method": "rollout.method"})


def command_line_request(argv: list[str] | None = None) -> tuple[TrainConfig, frozenset[str]]:
    """:func:`parse_command_line`, with the fields a ``--config`` file sets counted as given too: the set
    ``--resume`` compares with the run's saved config (``llm.resume``)."""
    files: list[str] = []

    def load(path):
        files.append(path)
        return load_yaml(path)

    cfg, explicit = _parse(argv, load)
    return cfg, explicit | (yaml_fields(files[0]) if files else frozenset())


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    """The config of :func:`parse_command_line` (without the set of explicit fields)."""
    return parse_command_line(argv)[0]


# ----------------------------------------------------------------------------- start-up checks

def validate_startup(cfg: TrainConfig, world_size: int = 1):
    """All checks that need no model. Returns the Task object (cheap to build) for reuse."""
    if cfg.prompts_per_step % world_size:
        raise ValueError(f"prompts_per_step={cfg.prompts_per_step} must be divisible by the number of processes "
                         f"({world_size}) so that every rank gets the same prompts; e.g. --prompts_per_step "
                         f"{(cfg.prompts_per_step // world_size + 1) * world_size}")
    if (cfg.prompts_per_step // world_size) % cfg.mini_batches:
        raise ValueError(f"prompts_per_step / processes = {cfg.prompts_per_step // world_size} must be divisible by "
                         f"mini_batches={cfg.mini_batches} (every rank cuts its prompts into equal mini-batches)")
    if cfg.eval_size < world_size:
        raise ValueError(f"eval_size={cfg.eval_size} must be >= the number of processes ({world_size})")
    from .models import check_model_arg
    from .tasks import get_task  # cheap: no model
    check_model_arg(cfg.model)
    task = get_task(cfg.task)
    if cfg.method in CHECKER_METHODS and not getattr(task, "has_step_checker", False):
        raise ValueError(f"method {cfg.method!r} needs a task with a step checker (first_error); task {cfg.task!r} "
                         f"has none. Use --method rrpo or srpo, or the built-in 'arith' task")
    return task
