"""What ``--resume`` continues, and what it refuses (``docs/llm.md``, "Reliability").

``python -m llm.train --resume --out_dir A`` continues the run in ``A`` with ITS config: the saved
``A/config.yaml`` (or, without one, the config in the newest checkpoint's manifest), not the defaults.
Fields given on the command line (or by a ``--config`` file) that differ from the saved values are
sorted into:

* free fields (:data:`FREE`): how the run is watched or where it writes, never what it computes:
  ``progress``, ``num_threads``, ``tensorboard``, ``keep_checkpoints``, ``save_every``, ``eval_every``,
  ``out_dir``, ``max_skipped_steps``, and ``micro_batch_size`` / ``micro_batch_tokens`` (the same gradient
  up to float summation order). Applied and recorded.
* ``steps``: may grow when the learning rate does not depend on it (``optim.schedule: constant``, with or
  without warm-up); under a ``linear`` or ``cosine`` schedule the total sets the lr of every step, the
  steps already taken included, so a new total is a change of meaning. It can never go below the step
  the run restarts from.
* everything else changes the run's meaning (method, model, task, seed, lr, ...): refused with a
  message naming each field, old and new value, unless ``--allow_config_change`` is given; then each
  change is logged, recorded (``config_history.jsonl`` and a ``config_change`` record in
  ``metrics.jsonl``) and applied from the restart step.

Nothing that did not happen is recorded: ``config.yaml`` is rewritten only once the run has been accepted
(lock held, checkpoint restored), and always with the config in effect.
"""
from __future__ import annotations

import os
import socket
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import checkpoint as ckpt
from . import distributed as D
from .cli import build, leaves
from .config import TrainConfig, from_dict, load_yaml
from .rundir import JsonlLog, move_aside, read_jsonl, write_jsonl

FREE = frozenset({"progress", "num_threads", "tensorboard", "keep_checkpoints", "save_every", "eval_every",
                  "out_dir", "max_skipped_steps", "micro_batch_size", "micro_batch_tokens"})
"""Fields that may differ on resume without ``--allow_config_change``."""
NOT_COMPARED = frozenset({"resume", "allow_config_change", "rollout.method"})
"""Taken from the command line as given (``rollout.method`` follows ``method``)."""
DECAYING = ("linear", "cosine")
"""Schedules whose learning rate at every step depends on ``steps``."""


def flat(cfg: TrainConfig) -> dict[str, Any]:
    """Dotted field name -> value (tuples as lists, so YAML / JSON round trips compare equal)."""
    d = cfg.to_dict()
    out = {}
    for name in leaves(TrainConfig):
        v = d
        for part in name.split("."):
            v = v[part]
        out[name] = list(v) if isinstance(v, tuple) else v
    return out


def needs_override(name: str, old: TrainConfig, new: TrainConfig) -> bool:
    """Whether changing field ``name`` from ``old`` to ``new`` changes the run's meaning."""
    if name in FREE or name in NOT_COMPARED:
        return False
    if name == "steps":
        return old.optim.schedule in DECAYING or new.optim.schedule in DECAYING
    return True


def diff(old: TrainConfig, new: TrainConfig, names=None) -> dict[str, list]:
    """``{field: [old, new]}`` of the fields (all, or ``names``) whose values differ."""
    a, b = flat(old), flat(new)
    return {n: [a[n], b[n]] for n in a if (names is None or n in names) and n not in NOT_COMPARED and a[n] != b[n]}


@dataclass
class ResumeRequest:
    """The config a resumed run will use and how it differs from the saved one."""
    cfg: TrainConfig
    source: str | None
    """where the saved config came from (``config.yaml``, a checkpoint manifest) or None (nothing to resume)"""
    changes: dict[str, list] = field(default_factory=dict)
    """every field whose value differs from the saved config: ``{name: [old, new]}``"""
    overridden: list[str] = field(default_factory=list)
    """the changes that needed ``allow_config_change``"""


def saved_config(out_dir: str | os.PathLike) -> tuple[TrainConfig | None, str | None]:
    """The run's saved config: ``config.yaml``, else the newest checkpoint manifest's, else (None, None)."""
    out = Path(out_dir)
    if (out / "config.yaml").is_file():
        return load_yaml(out / "config.yaml"), str(out / "config.yaml")
    for p in reversed(ckpt.list_checkpoints(out / "checkpoints")):
        try:
            info = ckpt.read_manifest(p)
        except ckpt.CorruptCheckpoint:
            continue
        if info and isinstance(info.get("config"), dict):
            return from_dict(info["config"]), str(ckpt.manifest_path(p))
    return None, None


def request(cfg: TrainConfig, given: frozenset[str] | None = None) -> ResumeRequest:
    """The config of ``--resume``: the saved one, with the fields in ``given`` (None: every field) taken
    from ``cfg`` where they differ. Raises ValueError naming every refused change (see the module doc)."""
    saved, source = saved_config(cfg.out_dir)
    if saved is None:
        return ResumeRequest(cfg, None)
    want = flat(cfg)
    over = {n: want[n] for n in want
            if n not in NOT_COMPARED and (given is None or n in given) and want[n] != flat(saved)[n]}
    over |= {"out_dir": cfg.out_dir, "resume": True, "allow_config_change": cfg.allow_config_change}
    if "method" in over:
        over["rollout.method"] = over["method"]
    if "optim.betas" in over:
        over["optim.betas"] = tuple(over["optim.betas"])
    merged = build(TrainConfig, saved, over)
    changes = diff(saved, merged)
    refused = [n for n in changes if needs_override(n, saved, merged)]
    if refused and not cfg.allow_config_change:
        shown = "; ".join(f"{n}: {changes[n][0]!r} -> {changes[n][1]!r}" for n in refused)
        why = (f" (under the {saved.optim.schedule} schedule the number of steps sets the learning rate of "
               f"every step, those already taken included)" if "steps" in refused else "")
        raise ValueError(f"--resume: these settings differ from the run's saved config ({source}) and would change "
                         f"what the run computes: {shown}{why}. Leave them out to continue the run as it was, or "
                         f"add --allow_config_change to apply them from the restart step (logged and recorded). "
                         f"Free to change: {', '.join('--' + f for f in sorted(FREE))}")
    return ResumeRequest(merged, source, changes, refused)


# ----------------------------------------------------------------------------- the run's files on resume
def restart_metrics(path: str | os.PathLike, step: int | None) -> tuple[list[dict], str]:
    """Make ``metrics.jsonl`` hold exactly what happened up to the restart ``step``: a torn last line is
    dropped (with a warning naming the file), records after ``step`` (and a ``config_change`` record at
    ``step``, written again if it still applies) are removed atomically. With no checkpoint (``step`` None)
    the old file is moved aside (``metrics.aside-<n>.jsonl``) and the run starts clean. Returns the kept
    records and a note for the history."""
    p = Path(path)
    recs, torn = read_jsonl(p)
    notes = []
    if torn is not None:
        warnings.warn(f"{p}: dropped a torn last line (the run was killed while writing it): {torn[:80]!r}")
        notes.append("dropped a torn last line")
    if step is None:
        if p.is_file() and p.stat().st_size:
            dest = move_aside(p)
            warnings.warn(f"no checkpoint to restart from: the old {p.name} was moved aside to {dest.name} and the "
                          f"run starts at step 0")
            notes.append(f"no checkpoint: old metrics moved aside to {dest.name}")
        write_jsonl(p, [])
        return [], "; ".join(notes)
    keep = [r for r in recs if r.get("step", 0) < step or (r.get("step", 0) == step and r.get("kind") != "config_change")]
    if len(keep) != len(recs) or torn is not None:
        write_jsonl(p, keep)
        notes.append(f"dropped {len(recs) - len(keep)} record(s) written after step {step}")
    return keep, "; ".join(notes)


def history_entry(event: str, step: int, **extra) -> dict:
    """One line of ``config_history.jsonl``: what started, when, where, from which step."""
    return {"event": event, "step": step, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "pid": os.getpid(),
            "host": socket.gethostname(), **{k: v for k, v in extra.items() if v not in (None, [], {}, "")}}


def append_history(out_dir: str | os.PathLike, entry: dict) -> None:
    JsonlLog(Path(out_dir) / "config_history.jsonl").append(entry)


def apply_optim_settings(opt, sched, cfg: TrainConfig) -> None:
    """After restoring a checkpoint written under other optimizer settings: the AdamW hyper-parameters and
    the schedule's base lr from ``cfg``, the current lr recomputed at the restored schedule position."""
    o = cfg.optim
    sched.base_lrs = [o.lr for _ in opt.param_groups]
    for g, lam in zip(opt.param_groups, sched.lr_lambdas):
        g.update(initial_lr=o.lr, lr=o.lr * lam(sched.last_epoch), weight_decay=o.weight_decay, betas=o.betas)
    sched._last_lr = [g["lr"] for g in opt.param_groups]


class ResumeMixin:
    """The resume half of ``llm.train.Trainer`` (uses its ``cfg``, ``info``, ``out``, ``ckpt_dir``, ``policy``,
    ``opt``, ``sched``, ``sharded``, ``log`` and ``_on_main``): find the newest intact checkpoint at
    construction (so a bad request fails before the model loads), restore it when the run begins."""

    def _find_checkpoint(self) -> tuple:
        """(path, state, skipped, step) of the newest intact checkpoint (step -1: none), chosen by rank 0
        (corrupt newer ones named in a warning) and loaded by every rank."""
        cfg, info = self.cfg, self.info
        found = self._on_main(lambda: ckpt.newest_intact(self.ckpt_dir), "read the checkpoints")
        path, st, skipped = found if found is not None else (None, None, [])
        for _, why in skipped if info.is_main else []:
            warnings.warn(f"--resume: skipped a corrupt checkpoint: {why}")
        step = int(D.all_max(st["step"] if st is not None else -1, info))
        if step >= 0 and not info.is_main:
            path = ckpt.checkpoint_path(self.ckpt_dir, step)
            st = ckpt.load_checkpoint(path, verify=False)  # rank 0 verified it
        if step > cfg.steps:
            raise ValueError(f"--resume: steps={cfg.steps} is below the step the run restarts from ({step}); "
                             f"a run cannot be shortened after the fact")
        return path, st, skipped, step

    def resume(self) -> None:
        """Continue from the newest intact checkpoint (corrupt newer ones are reported by name and set
        aside); metrics are trimmed to it. Without one the run restarts at step 0, old metrics moved aside."""
        cfg, info = self.cfg, self.info
        path, st, skipped, step = self.found
        self.found = None  # the state is restored below: do not keep a second copy
        self.history = dict(event="resume" if step >= 0 else "restart", checkpoint=path.name if path else None,
                            skipped_checkpoints=[{"name": n, "reason": r} for n, r in skipped])
        if step < 0:
            if info.is_main:
                if not skipped and not (self.out / "config.yaml").is_file():
                    warnings.warn(f"--resume: nothing to resume in {str(self.out)!r}; starting a new run")
                else:
                    warnings.warn(f"--resume: no intact checkpoint in {self.ckpt_dir}; restarting at step 0")
                self.records, self.history["metrics"] = restart_metrics(self.out / "metrics.jsonl", None)
                ckpt.set_aside(self.ckpt_dir, [n for n, _ in skipped])
            return
        ckpt.restore_training_state(st, self.policy.model, self.opt, self.sched, sharded=self.sharded,
                                    lora=cfg.lora.enabled, where=f"checkpoint {path}")
        trained = self._checkpoint_config(st)
        if trained is not None and diff(trained, cfg, {n for n in flat(cfg) if n.startswith("optim.")} | {"steps"}):
            apply_optim_settings(self.opt, self.sched, cfg)  # the optimizer state carries the old settings
        self.step = step
        self.elapsed0 = float(st.get("elapsed_s", 0.0))
        self.skipped_steps = int(st.get("skipped_steps", 0))
        self.consecutive_skipped = int(st.get("consecutive_skipped", 0))
        changed = {n: v for n, v in diff(trained, cfg).items() if needs_override(n, trained, cfg)} if trained else {}
        if st.get("world_size", info.world_size) != info.world_size and info.is_main:
            warnings.warn(f"--resume: the checkpoint was written by {st['world_size']} process(es), this run has "
                          f"{info.world_size}: sampling with rollout.sampling_rng=batched differs from here on")
            self.history["world_size"] = [st["world_size"], info.world_size]
        if info.is_main:
            self.records, self.history["metrics"] = restart_metrics(self.out / "metrics.jsonl", step)
            ckpt.set_aside(self.ckpt_dir, [n for n, _ in skipped])
            self.history["checkpoint_config_differs"] = changed
        if changed:
            self.log({"kind": "config_change", "step": step, "changes": changed})

    def _checkpoint_config(self, st: dict) -> TrainConfig | None:
        """The config a checkpoint was trained with (None when it holds none this version can read)."""
        try:
            return from_dict(st["config"]) if isinstance(st.get("config"), dict) else None
        except (ValueError, TypeError) as e:
            if self.info.is_main:
                warnings.warn(f"--resume: the checkpoint's config is not readable by this version ({e})")
            return None

