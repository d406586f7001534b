"""RL training of a thought-structured LM policy: GRPO, RRPO, SRPO, oracle reset.

    python -m llm.train --method srpo                       # tiny default model, built-in arith task, CPU
    python -m llm.train --method grpo --model path/to/hf_dir --task rg:chain_sum --steps 200
    python -m llm.train --config configs/paper.yaml --lora.enabled true
    torchrun --nproc_per_node 2 -m llm.train --method srpo  # DDP (gloo on CPU, NCCL on GPU); --fsdp true: FSDP2
    python -m llm.train --resume --out_dir runs/x           # continue a killed run exactly

One step: sample this step's prompts (seeded data order, sharded over ranks) -> build rollouts
(``llm.rollouts``) -> loss (``llm.losses``) with gradient accumulation over micro-batches, divided by
the *global* denominator so that any number of ranks / micro-batches computes the same gradient ->
clip -> AdamW -> scheduler. Rank 0 appends one JSON line per step to ``out_dir/metrics.jsonl``
(and eval records), keeps ``out_dir/config.yaml``, and writes atomic checkpoints to
``out_dir/checkpoints``. A NaN/inf loss or gradient skips the update (logged as ``skipped``).
"""
from __future__ import annotations

import contextlib
import copy
import json
import math
import sys
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import checkpoint as ckpt
from . import distributed as D
from .config import TrainConfig, parse_args, validate_startup
from .losses import policy_loss, token_logprobs
from .rollouts import RolloutBatch, _mix, build_rollouts

TIME_KEYS = ("step_time_s", "gen_time_s", "update_time_s", "elapsed_s", "eval_time_s")
"""metrics that measure wall time (excluded when comparing runs)"""


# ----------------------------------------------------------------------------- set-up helpers

def _task_kwargs(cfg: TrainConfig, policy) -> dict:
    """Task settings saved beside the model (the tiny default records the arith variant it was trained on)."""
    meta = getattr(policy, "meta", {}) or {}
    t = meta.get("task")
    if isinstance(t, dict) and t.get("name") == cfg.task:
        return {k: v for k, v in t.items() if k != "name"}
    return {}


def _resolve_device_dtype(cfg: TrainConfig, info: D.DistInfo) -> tuple[str, torch.dtype]:
    dev = info.device if cfg.device == "auto" else (info.device if cfg.device == "cuda" else "cpu")
    if cfg.dtype == "auto":
        dt = torch.bfloat16 if dev.startswith("cuda") else torch.float32
    else:
        dt = {"float32": torch.float32, "bfloat16": torch.bfloat16}[cfg.dtype]
    return dev, dt


def load_policy(cfg: TrainConfig, info: D.DistInfo):
    """Resolve (rank 0 first: building the tiny default takes minutes) and load the policy."""
    from .policy import Policy
    from .tiny import resolve_model
    if info.is_main:
        path = resolve_model(cfg.model)
    D.barrier(info)
    if not info.is_main:
        path = resolve_model(cfg.model)
    dev, dt = _resolve_device_dtype(cfg, info)
    return Policy.from_pretrained(path, device=dev, dtype=dt)


def apply_lora(policy, cfg: TrainConfig) -> None:
    from peft import LoraConfig, get_peft_model
    lc = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                    target_modules=cfg.lora.targets, task_type="CAUSAL_LM")
    policy.model = get_peft_model(policy.model, lc)


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup_steps``, then constant / linear / cosine decay to 0 at ``steps``."""
    W, T, kind = cfg.optim.warmup_steps, cfg.steps, cfg.optim.schedule

    def f(s: int) -> float:
        if W and s < W:
            return (s + 1) / W
        if kind == "constant":
            return 1.0
        frac = min(1.0, (s - W) / max(1, T - W))
        return 1.0 - frac if kind == "linear" else 0.5 * (1.0 + math.cos(math.pi * frac))

    return torch.optim.lr_scheduler.LambdaLR(opt, f)


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
            perms[ep] = np.random.default_rng(_mix(seed, 7, ep)).permutation(N)
        out.append(train[int(perms[ep][p % N])])
        pos.append(p)
    return out, pos


def micro_batches(lengths: list[int], max_seqs: int, max_tokens: int = 0) -> list[list[int]]:
    """Sample indices of each forward/backward pass: the samples sorted by length (longest first, ties
    by index), cut so that a pass holds at most ``max_seqs`` sequences and, if ``max_tokens > 0``, at
    most ``max_tokens`` padded tokens (sequences x the longest); a longer sequence gets a pass alone.
    Every index appears exactly once. Gradient accumulation over passes is exact, so this only changes
    how much compute goes to padding (and float summation order)."""
    if max_seqs < 1 or max_tokens < 0:
        raise ValueError(f"micro_batches: need max_seqs >= 1 and max_tokens >= 0, got {max_seqs}, {max_tokens}")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    out: list[list[int]] = []
    for i in order:
        cur = out[-1] if out else None
        if cur is None or len(cur) >= max_seqs or (max_tokens and (len(cur) + 1) * lengths[cur[0]] > max_tokens):
            out.append([i])
        else:
            cur.append(i)
    return out


def split_to(chunks: list[list[int]], lengths: list[int], k: int) -> list[list[int]]:
    """``chunks`` with the one of most padded tokens halved until there are ``k`` (ranks must run the
    same number of passes under FSDP, where every forward is a collective); once every chunk is a
    single sequence, empty chunks (a zero-weight pass) make up the rest."""
    out = [list(c) for c in chunks]
    if not out:
        return [[] for _ in range(k)]
    while len(out) < k:
        j = max(range(len(out)), key=lambda q: (len(out[q]) * max((lengths[i] for i in out[q]), default=0), -q))
        if len(out[j]) < 2:
            out += [[] for _ in range(k - len(out))]
            break
        h = len(out[j]) // 2
        out[j:j + 1] = [out[j][:h], out[j][h:]]
    return out


@contextlib.contextmanager
def _no_sync(model, active: bool):
    """Skip the gradient all-reduce on all but the last micro-batch (DDP ``no_sync`` / FSDP2 flag)."""
    if not active:
        yield
    elif hasattr(model, "no_sync"):
        with model.no_sync():
            yield
    elif hasattr(model, "set_requires_gradient_sync"):
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)
    else:
        yield


# ----------------------------------------------------------------------------- the trainer

class Trainer:
    """Holds the run's state; ``run()`` trains and returns the list of metric records (rank 0: all)."""

    def __init__(self, cfg: TrainConfig, info: D.DistInfo | None = None, *, task=None):
        self.cfg = cfg
        self.info = info or D.DistInfo()
        self.out = Path(cfg.out_dir)
        self.ckpt_dir = self.out / "checkpoints"
        # ---- start-up checks: no model loaded yet
        if task is None:
            validate_startup(cfg, self.info.world_size)
        elif cfg.prompts_per_step % self.info.world_size:
            raise ValueError(f"prompts_per_step={cfg.prompts_per_step} must be divisible by {self.info.world_size}")
        if not cfg.resume and ckpt.latest_checkpoint(self.ckpt_dir) is not None:
            raise ValueError(f"out_dir {str(self.out)!r} already holds checkpoints; pass --resume to continue that "
                             f"run, or choose another --out_dir")
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        torch.manual_seed(cfg.seed)
        # ---- model, task, optimizer
        self.policy = load_policy(cfg, self.info)
        if task is None:
            from .tasks import get_task
            task = get_task(cfg.task, fmt=self.policy.fmt, **_task_kwargs(cfg, self.policy))
        self.task = task
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
        self.eval_set = self.task.sample(cfg.eval_size, seed=cfg.seed, split="test")
        self.step = 0
        self.records: list[dict] = []
        self.elapsed0 = 0.0
        self.tb = None

    # ---------------------------------------------------------------- state
    def _model_state(self) -> dict:
        if self.cfg.fsdp and self.info.enabled:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
            return get_model_state_dict(self.policy.model, options=StateDictOptions(full_state_dict=True,
                                                                                     cpu_offload=True))
        sd = self.policy.model.state_dict()
        if self.cfg.lora.enabled:  # adapters only: the frozen base is the model directory
            names = {n for n, p in self.policy.model.named_parameters() if p.requires_grad}
            sd = {k: v for k, v in sd.items() if k in names}
        return {k: v.detach().cpu().clone() for k, v in sd.items()}

    def _optim_state(self) -> dict:
        if self.cfg.fsdp and self.info.enabled:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict
            return get_optimizer_state_dict(self.policy.model, self.opt,
                                            options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return self.opt.state_dict()

    def save(self) -> Path | None:
        state = {"model": self._model_state(), "optimizer": self._optim_state(), "scheduler": self.sched.state_dict(),
                 "rng": ckpt.rng_state(), "data_position": self.step * self.cfg.prompts_per_step,
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
        path = ckpt.latest_checkpoint(self.ckpt_dir)
        if path is None:
            if self.info.is_main:
                warnings.warn(f"--resume: no checkpoint in {self.ckpt_dir}; starting from step 0")
            return
        st = ckpt.load_checkpoint(path)
        if self.cfg.fsdp and self.info.enabled:
            from torch.distributed.checkpoint.state_dict import (StateDictOptions, set_model_state_dict,
                                                                set_optimizer_state_dict)
            opts = StateDictOptions(full_state_dict=True)
            set_model_state_dict(self.policy.model, st["model"], options=opts)
            set_optimizer_state_dict(self.policy.model, self.opt, st["optimizer"], options=opts)
        else:
            missing, unexpected = self.policy.model.load_state_dict(st["model"], strict=not self.cfg.lora.enabled)
            if unexpected:
                raise ValueError(f"checkpoint {path} does not match the model: unexpected keys {unexpected[:5]}")
            self.opt.load_state_dict(st["optimizer"])
        self.sched.load_state_dict(st["scheduler"])
        ckpt.set_rng_state(st["rng"])
        self.step = int(st["step"])
        self.elapsed0 = float(st.get("elapsed_s", 0.0))
        if self.info.is_main:  # drop metrics written after the checkpoint (the run died after it)
            mf = self.out / "metrics.jsonl"
            if mf.is_file():
                keep = [ln for ln in mf.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= self.step]
                tmp = mf.with_suffix(".jsonl.tmp")
                tmp.write_text("".join(k + "\n" for k in keep))
                tmp.replace(mf)
                self.records = [json.loads(k) for k in keep]

    # ---------------------------------------------------------------- logging
    def _log(self, rec: dict) -> None:
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

    # ---------------------------------------------------------------- evaluation
    @torch.no_grad()
    def evaluate(self) -> dict:
        """Greedy pass@1 on the held-out split (no resets at test time), reduced over ranks."""
        t = time.perf_counter()
        mine, _ = D.shard(self.eval_set[: len(self.eval_set) // self.info.world_size * self.info.world_size],
                          self.info)
        r = self.cfg.rollout
        rewards = []
        with D.full_params(self.model, self.info, self.cfg.fsdp):
            for i in range(0, len(mine), 64):
                chunk = mine[i:i + 64]
                out = self.policy.generate([self.task.prompt(p) for p in chunk], n=1, greedy=True,
                                           max_thoughts=r.max_thoughts, max_thought_tokens=r.max_thought_tokens,
                                           max_new_tokens=r.max_new_tokens)
                rewards += [float(self.task.reward(p, row[0].text)) for p, row in zip(chunk, out)]
        s = D.all_sum([sum(rewards), len(rewards)], self.info)
        return {"eval_pass@1": s[0] / max(s[1], 1.0), "eval_n": int(s[1]), "eval_time_s": time.perf_counter() - t}

    # ---------------------------------------------------------------- one update
    def _forward_logp(self, model, batch, with_entropy: bool):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
        return token_logprobs(logits, batch["input_ids"], with_entropy=with_entropy)

    def update(self, rb: RolloutBatch) -> dict:
        """Loss, backward over micro-batches, clip, AdamW step. Returns local sums for the metrics."""
        cfg, L, info = self.cfg, self.cfg.loss, self.info
        n = len(rb)
        lengths = [len(s.prompt_ids) + len(s.response_ids) for s in rb.samples]
        chunks = micro_batches(lengths, cfg.micro_batch_size, cfg.micro_batch_tokens)
        if info.enabled:  # equal pass counts on every rank (FSDP: each forward is a collective)
            chunks = split_to(chunks, lengths, int(D.all_max(len(chunks), info)))
        batches = [rb.collate(self.policy, c or [0]) for c in chunks]
        for c, b in zip(chunks, batches):
            if not c:  # zero-weight pass: runs the collectives, adds nothing
                b["response_mask"].zero_()
        masks = [b["response_mask"][:, 1:] for b in batches]                     # (b, T-1) each
        n_tok = [int(m.sum().item()) for m in masks]
        n_seq_tok = sum(int((m.sum(1) > 0).sum().item()) for m in masks)
        g_tok, g_seq_tok, g_seq = D.all_sum([sum(n_tok), n_seq_tok, n], info)
        den = {"token-mean": g_tok, "seq-mean-token-mean": g_seq_tok, "seq-mean-token-sum-norm": g_seq}[L.agg]
        norm_len = L.norm_len or cfg.rollout.response_budget
        self.policy.model.train()
        old = ref = None
        with torch.no_grad():
            if L.kind == "ppo" and L.inner_epochs > 1:
                old = [self._forward_logp(self.policy.model, b, False)[0] for b in batches]
            if self.ref_model is not None:
                ref = [self._forward_logp(self.ref_model, b, False)[0] for b in batches]
        W = info.world_size
        sums = dict(loss=0.0, kl=0.0, clip=0.0, ent=0.0, tok=float(sum(n_tok)), grad_norm=float("nan"), skipped=0.0)
        for epoch in range(L.inner_epochs):
            self.opt.zero_grad(set_to_none=True)
            bad = 0.0
            ep_loss = 0.0
            for j, b in enumerate(batches):
                with _no_sync(self.model, info.enabled and j < len(batches) - 1):
                    logp, ent = self._forward_logp(self.model, b, with_entropy=epoch == 0)
                    out = policy_loss(logp, b["advantages"].to(logp.device), masks[j], kind=L.kind, agg=L.agg,
                                      old_logp=None if old is None else old[j], eps=L.eps, eps_high=L.eps_high,
                                      ref_logp=None if ref is None else ref[j], beta=L.beta, norm_len=norm_len,
                                      denominator=den)
                    (out.loss * W).backward()  # DDP averages over ranks; * W makes it the global sum / den
                v = float(out.loss.detach())
                bad = max(bad, 0.0 if math.isfinite(v) else 1.0)
                ep_loss += v if math.isfinite(v) else 0.0
                if epoch == 0:
                    sums["kl"] += out.stats["kl"] * n_tok[j]
                    sums["clip"] += out.stats["clip_frac"] * n_tok[j]
                    sums["ent"] += float((ent * masks[j]).sum())
            if epoch == 0:
                sums["loss"] = ep_loss
            clip = cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else float("inf")
            gn = float(torch.nn.utils.clip_grad_norm_(self.params, clip))
            if D.all_max(max(bad, 0.0 if math.isfinite(gn) else 1.0), info) > 0:
                self.opt.zero_grad(set_to_none=True)
                sums["skipped"] = 1.0
                sums["skip_reason"] = "non-finite loss" if D.all_max(bad, info) > 0 else "non-finite gradient"
                break
            if epoch == 0:
                sums["grad_norm"] = gn
            self.opt.step()
        self.sched.step()
        self.opt.zero_grad(set_to_none=True)
        return sums

    # ---------------------------------------------------------------- metrics
    def _metrics(self, rb: RolloutBatch, upd: dict, times: dict) -> dict:
        info = self.info
        kinds = [m["kind"] for m in rb.meta]
        lists = dict(
            rewards=rb.rewards.tolist(), adv=rb.advantages.tolist(), kinds=kinds,
            first=rb.stats.get("first_round_rewards", rb.rewards.tolist()),
            reset_steps=list(rb.stats.get("reset_steps", [])),
            reset_rel=list(rb.stats.get("reset_rel", [])),
        )
        g = D.gather_lists(lists, info)
        c = D.all_sum([rb.stats.get("tokens_generated", 0), upd["tok"], rb.stats.get("parents", 0),
                       rb.stats.get("loc_calls", 0), rb.stats.get("loc_fallbacks", 0),
                       rb.stats.get("no_failure_prompts", 0), rb.stats.get("fresh_tries", 0), len(rb),
                       upd["loss"], upd["kl"], upd["clip"], upd["ent"],
                       rb.stats.get("loc_checked", 0), rb.stats.get("loc_hits", 0), rb.stats.get("loc_hits1", 0),
                       rb.stats.get("loc_chance_sum", 0.0)], info)
        (tok_gen, tok_tr, parents, loc_calls, loc_fb, no_fail, tries, N, loss, kl, clip, ent,
         loc_n, loc_hit, loc_hit1, loc_chance) = c
        r = np.asarray(g["rewards"], dtype=float)
        a = np.asarray(g["adv"], dtype=float)
        fresh = np.asarray([x for x, k in zip(g["rewards"], g["kinds"]) if k == "fresh"], dtype=float)
        reset = np.asarray([x for x, k in zip(g["rewards"], g["kinds"]) if k == "reset"], dtype=float)
        P = self.cfg.prompts_per_step

        def mean(x):
            return float(x.mean()) if len(x) else float("nan")

        rec = dict(kind="train", step=self.step, method=self.cfg.method,
                   reward_mean=mean(r), accuracy=mean(np.asarray(g["first"], dtype=float)),
                   reward_fresh=mean(fresh), reward_reset=mean(reset),
                   adv_mean=mean(a), adv_std=float(a.std()) if len(a) else float("nan"),
                   adv_abs_mean=mean(np.abs(a)), adv_zero_frac=mean((a == 0).astype(float)),
                   loss=loss, kl=kl / max(tok_tr, 1.0), entropy=ent / max(tok_tr, 1.0),
                   clip_frac=clip / max(tok_tr, 1.0), grad_norm=upd["grad_norm"],
                   lr=float(self.sched.get_last_lr()[0]),
                   tokens_generated=int(tok_gen), tokens_trained=int(tok_tr), samples=int(N), fresh_tries=int(tries),
                   resets=int(parents), reset_step_hist={str(k): v for k, v in sorted(Counter(g["reset_steps"]).items())},
                   reset_step_mean=mean(np.asarray(g["reset_steps"], dtype=float)),
                   reset_rel_mean=mean(np.asarray(g["reset_rel"], dtype=float)),
                   loc_calls=int(loc_calls), loc_fallback_rate=(loc_fb / loc_calls) if loc_calls else float("nan"),
                   no_failure_rate=no_fail / P, skipped=bool(upd["skipped"]),
                   loc_checked=int(loc_n), loc_exact=loc_hit / loc_n if loc_n else float("nan"),
                   loc_within1=loc_hit1 / loc_n if loc_n else float("nan"),
                   loc_chance=loc_chance / loc_n if loc_n else float("nan"), **times)
        if upd.get("skip_reason"):
            rec["skip_reason"] = upd["skip_reason"]
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in rec.items()}

    # ---------------------------------------------------------------- main loop
    def run(self) -> list[dict]:
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
        if self.step == 0 and cfg.eval_every:
            self._log({"kind": "eval", "step": 0, **self.evaluate()})
        from tqdm.auto import tqdm
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not (info.is_main and cfg.progress),
                   desc=f"{cfg.method}", dynamic_ncols=True)
        while self.step < cfg.steps:
            t_step = time.perf_counter()
            s = self.step + 1
            probs, pos = step_problems(self.train_set, s, cfg.prompts_per_step, cfg.seed)
            mine, off = D.shard(list(zip(probs, pos)), info)
            seed = _mix(cfg.seed, 11, s) if cfg.rollout.sampling_rng == "per_prompt" else _mix(cfg.seed, 11, s, info.rank)
            t = time.perf_counter()
            with D.full_params(self.model, info, cfg.fsdp):  # FSDP: ranks decode different step counts
                rb = build_rollouts(self.policy, self.task, [p for p, _ in mine], cfg.rollout, seed=seed,
                                    prompt_ids=[q for _, q in mine], adv_eps=cfg.loss.adv_eps)
            t_gen = time.perf_counter() - t
            t = time.perf_counter()
            upd = self.update(rb)
            t_upd = time.perf_counter() - t
            self.step = s
            times = dict(step_time_s=time.perf_counter() - t_step, gen_time_s=t_gen, update_time_s=t_upd,
                         elapsed_s=self.elapsed0 + time.perf_counter() - self.t0)
            rec = self._metrics(rb, upd, times)
            self._log(rec)
            if rec["skipped"] and info.is_main:
                warnings.warn(f"step {s}: {rec.get('skip_reason')}; update skipped (no checkpoint of a poisoned state)")
            if cfg.eval_every and (s % cfg.eval_every == 0 or s == cfg.steps):
                self._log({"kind": "eval", "step": s, **self.evaluate()})
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

    def _save_final(self) -> None:
        if self.cfg.fsdp and self.info.enabled:
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
        D_world = D.env_world_size()
        validate_startup(cfg, D_world)  # before any process group or model: fail in a second
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
