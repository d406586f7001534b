"""The sections of a training configuration: how rollouts are sampled (:class:`RolloutConfig`), the
policy-gradient objective (:class:`LossConfig`), AdamW and the schedule (:class:`OptimConfig`), LoRA
(:class:`LoraConfig`), and the training methods (:data:`METHODS`).

Every field is documented once, here or in ``llm.config`` (``TrainConfig``, which holds these four
sections); the docstrings are the ``--help`` text. Each section checks its own fields in
``__post_init__`` and raises ``FieldError`` / ``ValueError`` naming the field and how to fix it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from .config_file import FieldError, check_finite
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
    kv_reuse: bool = True
    """reset methods: keep the fresh tries' keys/values during the step and reuse them where a later call
    starts with the same tokens (a continuation's prompt + prefix; the compact localization prompt, which
    quotes the parent verbatim), so only the new tokens are prefilled. Same samples up to float rounding;
    memory: the keys/values of every try of the step (off: recompute)"""

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


SECTIONS = {"rollout": RolloutConfig, "loss": LossConfig, "optim": OptimConfig, "lora": LoraConfig}
