"""RL training of a thought-structured LM policy: GRPO, RRPO, SRPO, oracle reset.

    python -m llm.train --method srpo                       # tiny default model, built-in arith task, CPU
    python -m llm.train --method grpo --model path/to/hf_dir --task rg:chain_sum --steps 200
    python -m llm.train --config configs/paper.yaml --lora.enabled true
    torchrun --nproc_per_node 2 -m llm.train --method srpo  # DDP (gloo on CPU, NCCL on GPU); --fsdp true: FSDP2
    python -m llm.train --resume --out_dir runs/x           # continue a killed run exactly

One step: sample this step's prompts (seeded data order, ``llm.problems``, sharded over ranks) -> build rollouts
(``llm.rollouts``) -> update (``llm.update``: loss from ``llm.losses`` over micro-batches, divided by
the *global* denominator, clip, AdamW, schedule) -> one metrics record (``llm.metrics``). Rank 0
appends it to ``out_dir/metrics.jsonl`` (and eval records), keeps ``out_dir/config.yaml`` and
``out_dir/config_history.jsonl``, and writes checksummed atomic checkpoints to ``out_dir/checkpoints``
(``llm.checkpoint``), holding ``out_dir/run.lock`` for the whole run (``llm.rundir``). A NaN/inf loss or
gradient skips the update (logged as ``skipped``, ``loss: null``, counted in ``skipped_steps``); after
``max_skipped_steps`` such steps in a row the run stops (:class:`TrainingDiverged`, exit code 3).
``--resume`` follows ``llm.resume``. The :class:`Trainer` holds the run's state and keeps the loop;
``docs/llm.md`` ("The trainer's step", "Reliability") walks through it.

Exit codes of ``python -m llm.train``: 0 done, 1 an I/O error (e.g. no space left on device), 2 a
refused config, input or run directory, 3 a diverged run.
"""
from __future__ import annotations

import copy
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

import torch

from . import checkpoint as ckpt
from . import distributed as D
from . import resume as R
from .config import TrainConfig, command_line_request, validate_startup
from .hub import resolve_dtype
from .metrics import TIME_KEYS, evaluate, train_record  # noqa: F401  (TIME_KEYS: public, used by tests)
from .problems import run_problems, step_problems
from .resets import reset_for
from .rollouts import RolloutBatch, build_rollouts
from .rundir import JsonlLog, RunDirBusy, RunLock, atomic_dir, move_aside
from .seeds import mix_seed
from .shared_prefix import enable_gradient_checkpointing
from .update import make_scheduler as _make_scheduler
from .update import resolve_forward
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


class TrainingDiverged(RuntimeError):
    """``max_skipped_steps`` consecutive updates were skipped for a non-finite loss or gradient."""


class Trainer(R.ResumeMixin):
    """Holds the run's state; ``run()`` trains and returns the list of metric records (rank 0: all).

    Construction takes the run directory's lock (rank 0; released by ``run()`` or :meth:`close`), resolves
    ``--resume`` (``llm.resume.request``: ``given`` are the fields set on the command line, None: all of
    ``cfg``), validates, loads the model and checks that every prompt fits its context."""

    def __init__(self, cfg: TrainConfig, info: D.DistInfo | None = None, *, task=None,
                 given: frozenset[str] | None = None):
        self.info = info or D.DistInfo()
        self.out = Path(cfg.out_dir)
        self.ckpt_dir = self.out / "checkpoints"
        self.lock = RunLock(self.out)
        self._on_main(self.lock.acquire, "lock the run directory")
        try:
            self._setup(cfg, task, given)
        except BaseException:
            self.close()
            raise

    def _setup(self, cfg: TrainConfig, task, given) -> None:
        self.request = R.request(cfg, given) if cfg.resume else None
        self.cfg = cfg = self.request.cfg if self.request else cfg
        self._check_start(task)
        self.found = self._find_checkpoint() if cfg.resume else None
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
        if cfg.gradient_checkpointing:  # before wrapping (DDP / FSDP2 see the checkpointed layers)
            enable_gradient_checkpointing(self.policy.model)
        self.forward = resolve_forward(cfg.update_forward, cfg.fsdp and self.info.enabled)
        self.model = D.wrap_model(self.policy.model, self.info, fsdp=cfg.fsdp)
        self.params = [p for p in self.policy.model.parameters() if p.requires_grad]
        o = cfg.optim
        self.opt = torch.optim.AdamW(self.params, lr=o.lr, weight_decay=o.weight_decay, betas=o.betas)
        self.sched = make_scheduler(self.opt, cfg)
        # training and held-out problems, every prompt checked against the model's context (llm.problems)
        self.train_set, self.eval_set, self.dropped = run_problems(self.task, self.policy, cfg, self.info.world_size,
                                                                   self.info.is_main)
        self.reset = reset_for(cfg.rollout)  # the reset distribution (llm.resets), passed to build_rollouts
        self.step = 0
        self.records: list[dict] = []
        self.elapsed0 = 0.0
        self.skipped_steps = 0
        """steps whose update was skipped (non-finite loss or gradient), over the whole run"""
        self.consecutive_skipped = 0
        self.tb = None
        self.metrics = JsonlLog(self.out / "metrics.jsonl")
        self.history: dict = {}
        if self.request and self.request.overridden and self.info.is_main:
            for n in self.request.overridden:
                old, new = self.request.changes[n]
                warnings.warn(f"--resume --allow_config_change: {n} {old!r} -> {new!r} (applied from the restart step)")

    def _on_main(self, fn: Callable, what: str):
        """``fn()`` on rank 0; every rank learns whether it failed (rank 0 re-raises, the others raise too)."""
        err, out = None, None
        if self.info.is_main:
            try:
                out = fn()
            except Exception as e:  # noqa: BLE001  (re-raised below, after the other ranks know)
                err = e
        if D.all_max(1.0 if err is not None else 0.0, self.info) > 0:
            if err is not None:
                raise err
            raise RuntimeError(f"rank 0 failed to {what}; see its error")
        return out

    def close(self) -> None:
        """Release the run directory (also done when ``run()`` ends, however it ends)."""
        if getattr(self, "tb", None) is not None:
            self.tb.close()
            self.tb = None
        self.lock.release()

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
        """Atomic checkpoint of the full training state (rank 0 writes; every rank takes part). A poisoned
        state is refused with a warning; a failed write (e.g. no space left) stops the run on every rank."""
        state = {"model": ckpt.model_state(self.policy.model, sharded=self.sharded, lora=self.cfg.lora.enabled),
                 "optimizer": ckpt.optimizer_state(self.policy.model, self.opt, sharded=self.sharded),
                 "scheduler": self.sched.state_dict(), "rng": ckpt.rng_state(),
                 "data_position": self.step * self.cfg.prompts_per_step,
                 "elapsed_s": self.elapsed0 + time.perf_counter() - self.t0, "config": self.cfg.to_dict(),
                 "world_size": self.info.world_size, "backend": self.info.backend,
                 "wrapper": type(self.model).__name__, "skipped_steps": self.skipped_steps,
                 "consecutive_skipped": self.consecutive_skipped}

        def write():
            try:
                return ckpt.save_checkpoint(self.ckpt_dir, self.step, state, keep=self.cfg.keep_checkpoints)
            except ckpt.CheckpointWriteError:
                raise
            except ValueError as e:  # poisoned state: keep the previous checkpoint, say so
                warnings.warn(str(e))
                return None

        return self._on_main(write, "write a checkpoint")

    # ---------------------------------------------------------------- logging
    def log(self, rec: dict) -> None:
        """Keep a record; rank 0 appends it to metrics.jsonl (one whole line, fsync'ed) and TensorBoard."""
        self.records.append(rec)
        if not self.info.is_main:
            return
        self.metrics.append(rec)
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
        """Train to ``cfg.steps``; the run directory is released however this ends."""
        try:
            self._begin()
            self._loop()
            if self.info.is_main:
                self._save_final()
        finally:
            self.close()
        return self.records

    def _loop(self) -> None:
        cfg, info = self.cfg, self.info
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
            self.log(self._watch(rec))
            if cfg.eval_every and (s % cfg.eval_every == 0 or s == cfg.steps):
                self.log({"kind": "eval", "step": s, **self.evaluate()})
            if (cfg.save_every and s % cfg.save_every == 0) or s == cfg.steps:
                self.save()
            bar.update(1)
            bar.set_postfix(reward=_fmt(rec["reward_mean"]), acc=_fmt(rec["accuracy"]))
        bar.close()

    def _watch(self, rec: dict) -> dict:
        """Count skipped updates and flag divergence (``diverging``: this step's loss, gradient or reward was
        non-finite); after ``max_skipped_steps`` skipped steps in a row, log why and stop the run."""
        cfg, s = self.cfg, rec["step"]
        self.skipped_steps += bool(rec["skipped"])
        self.consecutive_skipped = self.consecutive_skipped + 1 if rec["skipped"] else 0
        diverging = bool(rec["skipped"]) or (rec["reward_mean"] is None and rec["samples"] > 0)
        rec = {**rec, "skipped_steps": self.skipped_steps, "diverging": diverging}
        n, cap = self.consecutive_skipped, cfg.max_skipped_steps
        if diverging and self.info.is_main:
            why = rec.get("skip_reason") or "non-finite reward"
            warnings.warn(f"step {s}: diverging: {why}; update skipped (no checkpoint of a poisoned state); "
                          f"{n} skipped in a row" + (f", the run stops at {cap}" if cap else ""))
        if cap and n >= cap:
            last = ckpt.latest_checkpoint(self.ckpt_dir)
            msg = (f"training diverged: {n} consecutive steps ({s - n + 1}-{s}) skipped for a non-finite loss or "
                   f"gradient (max_skipped_steps={cap}); step {s} is not checkpointed, the newest checkpoint is "
                   f"{last.name if last else 'none'} (skipped steps leave the weights unchanged). Lower --lr, "
                   f"check the task's rewards, or continue from a checkpoint with --resume --allow_config_change "
                   f"and other settings")
            self.log(rec)
            self.log({"kind": "stopped", "step": s, "reason": "diverged", "message": msg})
            if self.info.is_main:
                R.append_history(self.out, R.history_entry("stopped", s, reason=msg))
            raise TrainingDiverged(msg)
        return rec

    def _begin(self) -> None:
        """Resume or a fresh metrics file, config.yaml, the history line, TensorBoard, the step-0 evaluation."""
        cfg, info = self.cfg, self.info
        D.barrier(info)
        self.t0 = time.perf_counter()
        if cfg.resume:
            self.resume()
        elif info.is_main:
            mf = self.out / "metrics.jsonl"
            if mf.is_file() and mf.stat().st_size:  # a fresh run never overwrites old metrics
                dest = move_aside(mf)
                warnings.warn(f"{mf} held metrics of an earlier run (no checkpoint): moved aside to {dest.name}")
                self.history["metrics"] = f"old metrics moved aside to {dest.name}"
            mf.write_text("")
        if info.is_main:
            cfg.save_yaml(self.out / "config.yaml")
            req = self.request
            R.append_history(self.out, R.history_entry(
                self.history.pop("event", "start"), self.step, config_source=req.source if req else None,
                changes=req.changes if req else None, overridden=req.overridden if req else None,
                long_prompts_dropped=self.dropped, **self.history))
        self._open_tb()
        if self.step == 0 and cfg.eval_every and cfg.eval_start:
            self.log({"kind": "eval", "step": 0, **self.evaluate()})

    def _save_final(self) -> None:
        """``out_dir/final``: the model (or the LoRA adapter) in Hugging Face format, replaced as a whole."""
        if self.sharded:
            return  # the checkpoint holds the full state; HF export of a sharded model is left to the user
        if self.cfg.lora.enabled:
            atomic_dir(self.out / "final", self.policy.model.save_pretrained)  # adapter only (peft format)
        else:
            atomic_dir(self.out / "final", self.policy.save_pretrained)


def _fmt(x) -> str:
    return "nan" if x is None else f"{x:.3f}"


def train(cfg: TrainConfig, info: D.DistInfo | None = None, *, task=None,
          given: frozenset[str] | None = None) -> list[dict]:
    """Run a training job in this process (one rank of it under torchrun). Returns the metric records.
    ``given``: with ``cfg.resume``, the fields set on the command line (None: every field of ``cfg``)."""
    return Trainer(cfg, info, task=task, given=given).run()


def main(argv: list[str] | None = None) -> int:
    try:
        cfg, given = command_line_request(argv)
        if cfg.resume:  # the run's saved config with the given changes (checked again under the lock)
            cfg = R.request(cfg, given).cfg
        validate_startup(cfg, D.env_world_size())  # before any process group or model: fail in a second
    except (ValueError, TypeError) as e:
        print(f"llm.train: error: {e}", file=sys.stderr)
        return 2
    info = D.init_distributed(cfg.device)
    try:
        train(cfg, info)
    except TrainingDiverged as e:
        print(f"llm.train: error: {e}", file=sys.stderr)
        return 3
    except (ValueError, TypeError, RunDirBusy) as e:
        print(f"llm.train: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"llm.train: error: {e}", file=sys.stderr)
        return 1
    finally:
        D.shutdown(info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
