"""RL training of a thought-structured LM policy: GRPO, RRPO, SRPO, oracle reset.

    python -m llm.train --method srpo                       # tiny default model, built-in arith task, CPU
    python -m llm.train --method grpo --model path/to/hf_dir --task rg:chain_sum --steps 200
    python -m llm.train --config configs/paper.yaml --lora.enabled true
    torchrun --nproc_per_node 2 -m llm.train --method srpo  # DDP (gloo on CPU, NCCL on GPU); --fsdp true: FSDP2
    python -m llm.train --resume --out_dir runs/x           # continue a killed run exactly

One step: sample this step's prompts (seeded data order, sharded over ranks) -> build rollouts
(``llm.rollouts``) -> update (``llm.update``: loss from ``llm.losses`` over micro-batches, divided by
the *global* denominator, clip, AdamW, schedule) -> one metrics record (``llm.metrics``). Rank 0
appends it to ``out_dir/metrics.jsonl`` (and eval records), keeps ``out_dir/config.yaml``, and writes
atomic checkpoints to ``out_dir/checkpoints`` (``llm.checkpoint``). A NaN/inf loss or gradient skips
the update (logged as ``skipped``). The :class:`Trainer` holds the run's state and keeps the loop;
``docs/llm.md`` ("The trainer's step") walks through it.
"""
from __future__ import annotations

import copy
import json
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from . import checkpoint as ckpt
from . import distributed as D
from .config import TrainConfig, parse_args, validate_startup
from .hub import resolve_dtype
from .metrics import TIME_KEYS, evaluate, held_out_set, train_record  # noqa: F401  (TIME_KEYS: public, used by tests)
from .resets import reset_for
from .rollouts import RolloutBatch, build_rollouts
from .seeds import mix_seed
from .update import make_scheduler as _make_scheduler
from .update import micro_batches, split_to, update  # noqa: F401  (public re-exports)


def device_of(cfg: TrainConfig, info: D.DistInfo) -> str:
    """The device this rank runs on: ``cfg.device`` with "auto" (and "cuda") resolved by the process group."""
    return info.device if cfg.device in ("auto", "cuda") else "cpu"


def load_policy(cfg: TrainConfig, info: D.DistInfo):
    """Resolve (rank 0 first: building the tiny default takes minutes) and load the policy."""
    from .models import load_policy as load, resolve_model
    if info.is_main:
        resolve_model(cfg.model)
    D.barrier(info)
    dev = device_of(cfg, info)
    return load(cfg.model, device=dev, dtype=resolve_dtype(cfg.dtype, dev))


def apply_lora(policy, cfg: TrainConfig) -> None:
    """Wrap ``policy.model`` in peft LoRA adapters (``cfg.lora``); the base weights are frozen."""
    from peft import LoraConfig, get_peft_model
    lc = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                    target_modules=cfg.lora.targets, task_type="CAUSAL_LM")
    policy.model = get_peft_model(policy.model, lc)


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig):
    """The run's learning-rate schedule (``llm.update.make_scheduler`` with ``cfg.optim``), one step per
    optimizer step: ``cfg.optimizer_steps`` = steps x mini_batches x inner_epochs in all."""
    return _make_scheduler(opt, schedule=cfg.optim.schedule, warmup_steps=cfg.optim.warmup_steps,
                           total_steps=cfg.optimizer_steps)


def step_problems(train: list, step: int, n: int, seed: int) -> tuple[list, list[int]]:
    """The ``n`` problems of (1-based) ``step`` and their global data positions: a fresh seeded permutation of
    the training set every epoch; position ``p`` = ``(step - 1) * n + j``."""
    out, pos = [], []
    N = len(train)
    perms: dict[int, np.ndarray] = {}
    for j in range(n):
        p = (step - 1) * n + j
        ep = p // N
        if ep not in perms:
            perms[ep] = np.random.default_rng(mix_seed(seed, 7, ep)).permutation(N)
        out.append(train[int(perms[ep][p % N])])
        pos.append(p)
    return out, pos


class Trainer:
    """Holds the run's state; ``run()`` trains and returns the list of metric records (rank 0: all)."""

    def __init__(self, cfg: TrainConfig, info: D.DistInfo | None = None, *, task=None):
        self.cfg = cfg
        self.info = info or D.DistInfo()
        self.out = Path(cfg.out_dir)
        self.ckpt_dir = self.out / "checkpoints"
        self._check_start(task)
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        torch.manual_seed(cfg.seed)
        self.policy = load_policy(cfg, self.info)
        self.task = task if task is not None else self.policy.get_task(cfg.task)
        if cfg.lora.enabled:
            apply_lora(self.policy, cfg)
        self.ref_model = None
        if cfg.loss.beta > 0:
            self.ref_model = copy.deepcopy(self.policy.model).eval().requires_grad_(False)
        self.model = D.wrap_model(self.policy.model, self.info, fsdp=cfg.fsdp)
        self.params = [p for p in self.policy.model.parameters() if p.requires_grad]
        o = cfg.optim
        self.opt = torch.optim.AdamW(self.params, lr=o.lr, weight_decay=o.weight_decay, betas=o.betas)
        self.sched = make_scheduler(self.opt, cfg)
        self.train_set = self.task.sample(cfg.train_size, seed=cfg.seed, split="train")
        self.eval_set = held_out_set(self.task, cfg.eval_size, cfg.eval_seed)  # shared by all seeds and methods
        self.reset = reset_for(cfg.rollout)  # the reset distribution (llm.resets), passed to build_rollouts
        self.step = 0
        self.records: list[dict] = []
        self.elapsed0 = 0.0
        self.tb = None

    def _check_start(self, task) -> None:
        """Checks that need no model: the config (when no task object is given) and the output folder."""
        cfg = self.cfg
        if task is None:
            validate_startup(cfg, self.info.world_size)
        elif cfg.prompts_per_step % self.info.world_size:
            raise ValueError(f"prompts_per_step={cfg.prompts_per_step} must be divisible by {self.info.world_size}")
        if not cfg.resume and ckpt.latest_checkpoint(self.ckpt_dir) is not None:
            raise ValueError(f"out_dir {str(self.out)!r} already holds checkpoints; pass --resume to continue that "
                             f"run, or choose another --out_dir")

    @property
    def sharded(self) -> bool:
        """FSDP2 is in use (state dicts are gathered, generation runs inside ``full_params``)."""
        return self.cfg.fsdp and self.info.enabled

    # ---------------------------------------------------------------- state
    def save(self) -> Path | None:
        """Atomic checkpoint of the full training state (rank 0 writes; every rank takes part)."""
        state = {"model": ckpt.model_state(self.policy.model, sharded=self.sharded, lora=self.cfg.lora.enabled),
                 "optimizer": ckpt.optimizer_state(self.policy.model, self.opt, sharded=self.sharded),
                 "scheduler": self.sched.state_dict(), "rng": ckpt.rng_state(),
                 "data_position": self.step * self.cfg.prompts_per_step,
                 "elapsed_s": self.elapsed0 + time.perf_counter() - self.t0, "config": self.cfg.to_dict(),
                 "world_size": self.info.world_size, "backend": self.info.backend,
                 "wrapper": type(self.model).__name__}
        path = None
        if self.info.is_main:
            try:
                path = ckpt.save_checkpoint(self.ckpt_dir, self.step, state, keep=self.cfg.keep_checkpoints)
            except ValueError as e:  # poisoned state: keep the previous checkpoint, say so
                warnings.warn(str(e))
        D.barrier(self.info)
        return path

    def resume(self) -> None:
        """Continue from the latest checkpoint; metrics logged after it are dropped."""
        path = ckpt.latest_checkpoint(self.ckpt_dir)
        if path is None:
            if self.info.is_main:
                warnings.warn(f"--resume: no checkpoint in {self.ckpt_dir}; starting from step 0")
            return
        st = ckpt.load_checkpoint(path)
        ckpt.restore_training_state(st, self.policy.model, self.opt, self.sched, sharded=self.sharded,
                                    lora=self.cfg.lora.enabled, where=f"checkpoint {path}")
        self.step = int(st["step"])
        self.elapsed0 = float(st.get("elapsed_s", 0.0))
        if self.info.is_main:  # drop metrics written after the checkpoint (the run died after it)
            self.records = ckpt.trim_metrics(self.out / "metrics.jsonl", self.step)

    # ---------------------------------------------------------------- logging
    def log(self, rec: dict) -> None:
        """Keep a record; rank 0 appends it to metrics.jsonl (and TensorBoard)."""
        self.records.append(rec)
        if not self.info.is_main:
            return
        with open(self.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(rec) + "\n")
        if self.tb is not None:
            for k, v in rec.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                    self.tb.add_scalar(f"{rec['kind']}/{k}", v, rec["step"])

    def _open_tb(self) -> None:
        if not (self.cfg.tensorboard and self.info.is_main):
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
            self.tb = SummaryWriter(str(self.out / "tb"))
        except ImportError:
            warnings.warn("tensorboard=true but the tensorboard package is not installed; logging to JSONL only "
                          "(pip install tensorboard)")

    # ---------------------------------------------------------------- step pieces
    def evaluate(self) -> dict:
        """Greedy pass@1 on the held-out split (``llm.metrics.evaluate``)."""
        return evaluate(self.policy, self.model, self.task, self.eval_set, self.cfg.rollout, self.info,
                        self.cfg.fsdp, sampled=self.cfg.eval_sampled, sample_seed=self.cfg.eval_seed)

    def update(self, rb: RolloutBatch):
        """One optimisation step on the rollouts (``llm.update.update``); returns this rank's sums."""
        return update(self.policy, self.model, self.opt, self.sched, self.params, rb, self.cfg, self.info,
                      ref_model=self.ref_model)

    def rollouts(self, s: int) -> RolloutBatch:
        """This rank's share of step ``s``'s prompts, sampled and scored (``llm.rollouts``)."""
        cfg, info = self.cfg, self.info
        probs, pos = step_problems(self.train_set, s, cfg.prompts_per_step, cfg.seed)
        mine, _ = D.shard(list(zip(probs, pos)), info)
        seed = mix_seed(cfg.seed, 11, s) if cfg.rollout.sampling_rng == "per_prompt" else mix_seed(cfg.seed, 11, s,
                                                                                                   info.rank)
        with D.full_params(self.model, info, cfg.fsdp):  # FSDP: ranks decode different step counts
            return build_rollouts(self.policy, self.task, [p for p, _ in mine], cfg.rollout, seed=seed,
                                  prompt_ids=[q for _, q in mine], adv_eps=cfg.loss.adv_eps,
                                  adv_std=cfg.loss.adv_std, reset=self.reset)

    # ---------------------------------------------------------------- main loop
    def run(self) -> list[dict]:
        cfg, info = self.cfg, self.info
        self._begin()
        from tqdm.auto import tqdm
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not (info.is_main and cfg.progress),
                   desc=f"{cfg.method}", dynamic_ncols=True)
        while self.step < cfg.steps:
            t_step = time.perf_counter()
            s = self.step + 1
            t = time.perf_counter()
            rb = self.rollouts(s)
            t_gen = time.perf_counter() - t
            t = time.perf_counter()
            upd = self.update(rb)
            t_upd = time.perf_counter() - t
            self.step = s
            times = dict(step_time_s=time.perf_counter() - t_step, gen_time_s=t_gen, update_time_s=t_upd,
                         elapsed_s=self.elapsed0 + time.perf_counter() - self.t0)
            rec = train_record(rb, upd, step=s, method=cfg.method, prompts_per_step=cfg.prompts_per_step,
                               lr=self.sched.get_last_lr()[0], times=times, info=info)
            self.log(rec)
            if rec["skipped"] and info.is_main:
                warnings.warn(f"step {s}: {rec.get('skip_reason')}; update skipped (no checkpoint of a poisoned state)")
            if cfg.eval_every and (s % cfg.eval_every == 0 or s == cfg.steps):
                self.log({"kind": "eval", "step": s, **self.evaluate()})
            if (cfg.save_every and s % cfg.save_every == 0) or s == cfg.steps:
                self.save()
            bar.update(1)
            bar.set_postfix(reward=f"{rec['reward_mean']:.3f}", acc=f"{rec['accuracy']:.3f}")
        bar.close()
        if info.is_main:
            self._save_final()
        if self.tb is not None:
            self.tb.close()
        return self.records

    def _begin(self) -> None:
        """Output folder, resume or a fresh metrics file, config.yaml, TensorBoard, the step-0 evaluation."""
        cfg, info = self.cfg, self.info
        if info.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        D.barrier(info)
        self.t0 = time.perf_counter()
        if cfg.resume:
            self.resume()
        elif info.is_main:
            (self.out / "metrics.jsonl").write_text("")
        if info.is_main:
            cfg.save_yaml(self.out / "config.yaml")
        self._open_tb()
        if self.step == 0 and cfg.eval_every and cfg.eval_start:
            self.log({"kind": "eval", "step": 0, **self.evaluate()})

    def _save_final(self) -> None:
        if self.sharded:
            return  # the checkpoint holds the full state; HF export of a sharded model is left to the user
        final = self.out / "final"
        if self.cfg.lora.enabled:
            self.policy.model.save_pretrained(final)  # adapter only (peft format)
        else:
            self.policy.save_pretrained(final)


def train(cfg: TrainConfig, info: D.DistInfo | None = None, *, task=None) -> list[dict]:
    """Run a training job in this process (one rank of it under torchrun). Returns the metric records."""
    return Trainer(cfg, info, task=task).run()


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = parse_args(argv)
        validate_startup(cfg, D.env_world_size())  # before any process group or model: fail in a second
    except (ValueError, TypeError) as e:
        print(f"llm.train: error: {e}", file=sys.stderr)
        return 2
    info = D.init_distributed(cfg.device)
    try:
        train(cfg, info)
    except ValueError as e:
        print(f"llm.train: error: {e}", file=sys.stderr)
        return 2
    finally:
        D.shutdown(info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
