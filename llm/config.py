"""Typed training configuration: dataclasses, YAML loading, CLI overrides, start-up validation.

Every field is documented once, here. ``TrainConfig`` holds four sections (``rollout``, ``loss``,
``optim``, ``lora``); a YAML file mirrors that nesting::

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
from typing import Any, Literal

import yaml

from .config_file import FieldError, build, check_finite, read_yaml
from .losses import AGGREGATIONS, LOSS_KINDS, STD_KINDS

METHODS: tuple[str, ...] = ("grpo", "rrpo", "srpo", "oracle", "noisy", "random")
"""training methods; each names a reset distribution (``llm.resets.METHOD_RESET``: grpo = start, rrpo =
random_failed, srpo = self, oracle = oracle, noisy = noisy(q), random = random)"""
RESET_METHODS: tuple[str, ...] = ("rrpo", "srpo", "oracle", "noisy", "random")
CHECKER_METHODS: tuple[str, ...] = ("oracle", "noisy")
"""methods whose reset reads the task's step checker"""
Method = Literal["grpo", "rrpo", "srpo", "oracle", "noisy", "random"]


def _choice(name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise FieldError(name, f"{name} must be one of {list(choices)}, got {value!r}")


def _positive(name: str, value: Any, *, allow_zero: bool = False) -> None:
    lo_ok = value >= 0 if allow_zero else value > 0
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not lo_ok:
        raise FieldError(name, f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")


@dataclass
class RolloutConfig:
    """How rollouts are sampled for each prompt (``docs/llm.md``, "Rollouts per method")."""
    method: Method = "srpo"
    """the reset distribution (``llm.resets``): grpo (start): all rollouts fresh, one group. rrpo / srpo /
    oracle / noisy: ``n_fresh`` fresh chains + reset continuations from the first failed fresh chain, reset
    step uniform (random_failed) / self-localized (self) / the task's first wrong thought (oracle) / the
    first wrong thought with probability q, else uniform (noisy). random: the parent is the first fresh
    chain with a thought, right or wrong, reset step uniform. Set from the top-level ``method``."""
    q: float = 0.5
    """noisy: probability that the reset is the checker's first wrong thought (else a uniform thought of the
    failed chain); q = 0 is rrpo's law, q = 1 the oracle's (``cpi.resets.Noisy``'s q)"""
    rollouts_per_prompt: int = 8
    """trained samples per prompt (the budget; equal across methods so comparisons are fair)"""
    n_fresh: int = 4
    """reset methods: fresh chains kept per prompt; the rest of the budget are reset continuations"""
    n_resets: int = 1
    """reset methods: failed parents reset per prompt; each gives one group of
    ``(rollouts_per_prompt - n_fresh) / n_resets`` continuations (paper ablation: 1x4 best)"""
    max_tries: int = 12
    """reset methods: most fresh chains sampled per prompt while looking for a failed parent; with no
    failure in that many tries the prompt gets ``rollouts_per_prompt`` fresh chains in one group"""
    temperature: float = 0.7
    """sampling temperature of fresh chains and continuations (paper 0.7)"""
    top_p: float = 0.95
    """nucleus sampling (paper 0.95)"""
    max_thoughts: int = 20
    """a chain stops after this many thoughts (paper 20)"""
    max_thought_tokens: int = 256
    """token cap of one thought (paper 256)"""
    max_new_tokens: int | None = None
    """token budget of a whole response (None: max_thoughts * max_thought_tokens)"""
    thought_cap: Literal["keep", "end"] = "keep"
    """a thought reaching max_thought_tokens without a delimiter: keep: it stays a thought and generation
    goes on (the paper); end: the chain ends there, cut back to its last complete thought (reward 0
    without an answer; the earlier default of this package)"""
    budget_scope: Literal["response", "sampled"] = "response"
    """what max_new_tokens counts in a reset continuation: response: the kept prefix plus the sampled
    suffix (the paper); sampled: the sampled tokens only (the earlier default)"""
    chat_template: Literal["auto", "on", "off"] = "off"
    """wrap the task prompt in the tokenizer's chat template: auto (when it has one), on, off (the paper
    sends its thought prompt as raw text, so off)"""
    loc_temperature: float = 0.3
    """srpo: temperature of the self-localization call (paper 0.3); never trained on"""
    loc_top_p: float | None = None
    """srpo: nucleus sampling of the localization call (None: top_p, as the paper's call inherits it)"""
    loc_max_new_tokens: int | None = None
    """srpo: token budget of the localization reply (None: 4096 with the verbose prompt, as the paper;
    96 with the tiny default's compact prompt, whose replies run up to 88 tokens)"""
    loc_chat_template: Literal["auto", "on", "off"] = "auto"
    """srpo: wrap the localization prompt in the chat template: auto (when the tokenizer has one: the
    paper), on, off"""
    loc_stop_at_answer: bool | None = None
    """srpo: stop the localization reply at its first complete answer box (None: yes for compact prompts,
    whose replies end with the box; no for the verbose prompt, which runs to EOS as in the paper so that
    a quoted box cannot cut the reasoning short; the parser reads the last box)"""
    sampling_rng: Literal["batched", "per_prompt"] = "batched"
    """batched: one generator per rank and step, prompts decoded together (fastest). per_prompt: a
    generator per (step, prompt), each prompt decoded alone, so samples do not depend on how
    prompts are split across ranks (used to check multi-process runs against one process)"""

    def __post_init__(self) -> None:
        check_finite(self, "rollout.")
        _choice("rollout.method", self.method, METHODS)
        _choice("rollout.sampling_rng", self.sampling_rng, ("batched", "per_prompt"))
        _choice("rollout.thought_cap", self.thought_cap, ("keep", "end"))
        _choice("rollout.budget_scope", self.budget_scope, ("response", "sampled"))
        _choice("rollout.chat_template", self.chat_template, ("auto", "on", "off"))
        _choice("rollout.loc_chat_template", self.loc_chat_template, ("auto", "on", "off"))
        for n in ("rollouts_per_prompt", "max_thoughts", "max_thought_tokens"):
            _positive(f"rollout.{n}", getattr(self, n))
        for n in ("max_new_tokens", "loc_max_new_tokens"):
            if getattr(self, n) is not None:
                _positive(f"rollout.{n}", getattr(self, n))
        _positive("rollout.temperature", self.temperature)
        _positive("rollout.loc_temperature", self.loc_temperature)
        if isinstance(self.q, bool) or not isinstance(self.q, (int, float)) or not 0.0 <= self.q <= 1.0:
            raise ValueError(f"rollout.q must be in [0, 1] (noisy reset: probability of the checker's step), "
                             f"got {self.q!r}")
        for n in ("top_p", "loc_top_p"):
            v = getattr(self, n)
            if v is not None and not (isinstance(v, (int, float)) and 0.0 < v <= 1.0):
                raise ValueError(f"rollout.{n} must be in (0, 1], got {v!r}")
        if self.rollouts_per_prompt < 2:
            raise ValueError(f"rollout.rollouts_per_prompt must be >= 2 (a group of one has zero advantage), "
                             f"got {self.rollouts_per_prompt}")
        if self.method in RESET_METHODS:
            self._check_reset_budget()

    def _check_reset_budget(self) -> None:
        n_reset = self.rollouts_per_prompt - self.n_fresh
        if self.n_fresh < 2:
            raise ValueError(f"rollout.n_fresh must be >= 2 for method {self.method!r} (the fresh group is "
                             f"normalised on its own), got {self.n_fresh}; e.g. --n_fresh 4")
        if self.n_resets < 1:
            raise ValueError(f"rollout.n_resets must be >= 1 for method {self.method!r}, got {self.n_resets}")
        if n_reset < 2 * self.n_resets:
            raise ValueError(
                f"budget too small for a reset group: rollouts_per_prompt={self.rollouts_per_prompt} - "
                f"n_fresh={self.n_fresh} leaves {n_reset} continuations for {self.n_resets} reset group(s); each "
                f"group needs >= 2. Raise --rollouts_per_prompt or lower --n_fresh / --n_resets "
                f"(paper: 8 = 4 fresh + 1 reset x 4)")
        if n_reset % self.n_resets:
            raise ValueError(
                f"group size does not divide: {n_reset} reset continuations (rollouts_per_prompt - n_fresh) "
                f"cannot be split into {self.n_resets} equal reset groups; choose n_resets dividing {n_reset}")
        if self.max_tries < self.n_fresh + self.n_resets:
            raise ValueError(f"rollout.max_tries={self.max_tries} must be >= n_fresh + n_resets = "
                             f"{self.n_fresh + self.n_resets} (kept fresh chains plus failed parents)")

    @property
    def continuations_per_reset(self) -> int:
        """Size of each reset group."""
        return (self.rollouts_per_prompt - self.n_fresh) // max(self.n_resets, 1)

    @property
    def response_budget(self) -> int:
        """Token budget of one response."""
        return self.max_new_tokens or self.max_thoughts * self.max_thought_tokens


@dataclass
class LossConfig:
    """Policy-gradient objective (``llm/losses.py`` has the formulas)."""
    kind: Literal["reinforce", "ppo"] = "reinforce"
    """reinforce: ``-A log pi`` (paper default, unclipped); ppo: clipped importance ratio"""
    agg: Literal["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"] = "seq-mean-token-mean"
    """how per-token losses are averaged (paper default: mean over sequences of the token mean)"""
    eps: float = 0.2
    """ppo: lower clip ``1 - eps`` (and upper, unless eps_high is set)"""
    eps_high: float | None = None
    """ppo: upper clip ``1 + eps_high`` (DAPO-style asymmetric clipping); None = eps"""
    beta: float = 0.0
    """weight of the k3 KL to the frozen initial policy (paper default 0; ablation 0.01)"""
    inner_epochs: int = 1
    """optimisation passes over each batch of rollouts (> 1 only makes sense with kind=ppo)"""
    adv_eps: float = 1e-6
    """``eps`` in ``(r - mean) / (std + eps)`` (SRPO's official runs divide by std alone: 0; verl's GRPO 1e-6)"""
    adv_std: Literal["population", "unbiased"] = "population"
    """std of the group advantage: population (divide by n; SRPO's official runs) or unbiased (n - 1, torch.std;
    verl's GRPO, the paper's GRPO baseline)"""
    dual_clip: float | None = None
    """ppo: dual-clip constant c > 1 (Ye et al. 2020): the loss of a negative-advantage token is at most c|A|
    (the paper's GRPO baseline: verl's clip_ratio_c = 3); None: off"""
    norm_len: int | None = None
    """seq-mean-token-sum-norm: the constant L_norm (None: the response token budget)"""

    def __post_init__(self) -> None:
        check_finite(self, "loss.")
        _choice("loss.kind", self.kind, LOSS_KINDS)
        _choice("loss.agg", self.agg, AGGREGATIONS)
        _positive("loss.eps", self.eps)
        if self.eps_high is not None:
            _positive("loss.eps_high", self.eps_high)
        _positive("loss.beta", self.beta, allow_zero=True)
        _positive("loss.inner_epochs", self.inner_epochs)
        _positive("loss.adv_eps", self.adv_eps, allow_zero=True)
        _choice("loss.adv_std", self.adv_std, STD_KINDS)
        if self.dual_clip is not None and not (isinstance(self.dual_clip, (int, float)) and self.dual_clip > 1):
            raise ValueError(f"loss.dual_clip must be > 1 (or none), got {self.dual_clip!r}")
        if self.inner_epochs > 1 and self.kind == "reinforce":
            raise ValueError("loss.inner_epochs > 1 with loss.kind='reinforce' reuses stale samples without an "
                             "importance ratio; use --loss.kind ppo or --inner_epochs 1")


@dataclass
class OptimConfig:
    """AdamW and the learning-rate schedule. Paper: lr 5e-5, weight decay 0.01, grad clip 1.0 (7B-14B
    models with LoRA)."""
    lr: float = 5e-5
    """learning rate (paper 5e-5). On the tiny default a larger lr (2e-4, 5e-4) lowered the training reward
    within 20 steps in our runs, so the default stays at the paper's value"""
    weight_decay: float = 0.01
    """AdamW decoupled weight decay (paper 0.01)"""
    grad_clip: float = 1.0
    """max global gradient norm (paper 1.0); 0 disables clipping"""
    betas: tuple[float, float] = (0.9, 0.999)
    """AdamW betas"""
    warmup_steps: int = 0
    """linear warm-up, in optimizer steps (mini_batches x inner_epochs per training step)"""
    schedule: Literal["constant", "linear", "cosine"] = "constant"
    """learning-rate decay after warm-up, one step per optimizer step (to 0 at the last for linear / cosine)"""

    def __post_init__(self) -> None:
        check_finite(self, "optim.")
        _positive("optim.lr", self.lr)
        _positive("optim.weight_decay", self.weight_decay, allow_zero=True)
        _positive("optim.grad_clip", self.grad_clip, allow_zero=True)
        _positive("optim.warmup_steps", self.warmup_steps, allow_zero=True)
        _choice("optim.schedule", self.schedule, ("constant", "linear", "cosine"))
        self.betas = tuple(float(b) for b in self.betas)  # YAML gives a list
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"optim.betas must be two numbers in [0, 1), got {self.betas!r}")


@dataclass
class LoraConfig:
    """Optional LoRA adapters through ``peft`` (paper: r 64, alpha 64, all linear layers)."""
    enabled: bool = False
    """train LoRA adapters instead of all weights"""
    r: int = 64
    """adapter rank"""
    alpha: float = 64.0
    """scaling numerator (scale alpha / r)"""
    dropout: float = 0.0
    """dropout on the adapter input"""
    target_modules: str = "all-linear"
    """comma-separated module names, or "all-linear" (every linear layer but the output head)"""

    def __post_init__(self) -> None:
        check_finite(self, "lora.")
        _positive("lora.r", self.r)
        _positive("lora.alpha", self.alpha)
        if not 0 <= self.dropout < 1:
            raise ValueError(f"lora.dropout must be in [0, 1), got {self.dropout!r}")

    @property
    def targets(self) -> str | list[str]:
        """``target_modules`` in the form peft expects."""
        t = self.target_modules.strip()
        return t if t == "all-linear" else [s.strip() for s in t.split(",") if s.strip()]


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


SECTIONS = {"rollout": RolloutConfig, "loss": LossConfig, "optim": OptimConfig, "lora": LoraConfig}


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
