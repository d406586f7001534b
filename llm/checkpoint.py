"""Checkpoints that lose nothing: model, optimizer, scheduler, RNG states, data position and step.

A checkpoint is a payload ``<dir>/step_00000010.pt`` and its manifest ``<dir>/step_00000010.json``
(step, size, sha256 of the payload, the run's config). Both are written to a temporary file in the
same directory, flushed, fsync'ed and moved into place with ``os.replace`` (atomic on POSIX), the
manifest last (``llm.rundir.atomic_write``); the sha256 is computed while the payload is written.
:func:`load_checkpoint` checks size and sha256 before loading and raises :class:`CorruptCheckpoint`
naming the file; :func:`newest_intact` returns the newest checkpoint that passes and lists the newer
ones it skipped. A checkpoint without a manifest (an older version of this package) is checked by
loading it. ``save_checkpoint`` refuses a model state holding NaN/inf, so a poisoned state is never
written, and reports a full disk as "no space left on device" (:class:`CheckpointWriteError`), the
previous checkpoint untouched. Temporary files (``.tmp-*``) are never picked up and are removed on
the next save.

The training state (:func:`model_state`, :func:`optimizer_state`, :func:`restore_training_state`) covers
one process, DDP (the module's own state), LoRA (adapters only) and FSDP2 (full state dicts gathered to
CPU with ``torch.distributed.checkpoint.state_dict``, written by rank 0 as the same single file). A
sharded ``torch.distributed.checkpoint.save`` (a directory of per-rank files) is not used: it would add a
second on-disk format and its own atomic-directory handling, and every model this package trains fits
one host's CPU memory as a full state dict (``docs/llm.md``, "Checkpoints").
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .rundir import atomic_write, atomic_write_text, move_aside, no_space

_NAME = re.compile(r"^step_(\d{8})\.pt$")
MANIFEST_FORMAT = "credit-resets checkpoint 1"


def rng_state() -> dict[str, Any]:
    """Python, NumPy, torch CPU (and CUDA, if available) generator states."""
    st = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict[str, Any]) -> None:
    """Inverse of ``rng_state``."""
    random.setstate(st["python"])
    np.random.set_state(st["numpy"])
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def nonfinite_tensors(state: dict[str, Any]) -> list[str]:
    """Names of floating-point tensors in ``state`` (nested dicts allowed) holding NaN or inf."""
    bad: list[str] = []

    def walk(prefix: str, obj: Any) -> None:
        if isinstance(obj, torch.Tensor):
            if obj.is_floating_point() and not bool(torch.isfinite(obj).all()):
                bad.append(prefix)
        elif isinstance(obj, dict):
            for k, v in obj.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                walk(f"{prefix}[{i}]", v)

    walk("", state)
    return bad


def checkpoint_path(directory: str | os.PathLike, step: int) -> Path:
    return Path(directory) / f"step_{step:08d}.pt"


def manifest_path(path: str | os.PathLike) -> Path:
    """The manifest beside a checkpoint: ``step_00000010.json`` for ``step_00000010.pt``."""
    return Path(path).with_suffix(".json")


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (the previous checkpoints are untouched)."""


class CorruptCheckpoint(ValueError):
    """A checkpoint failed its integrity check or could not be loaded."""


class _HashingWriter:
    """File wrapper for ``torch.save``: hashes and counts the bytes as they are written and keeps the
    ``OSError`` a write raised (``torch.save`` reports it only as "enforce fail ... unexpected pos")."""

    def __init__(self, f):
        self.f, self.sha, self.bytes, self.error = f, hashlib.sha256(), 0, None

    def write(self, b) -> int:
        try:
            n = self.f.write(b)
        except OSError as e:
            self.error = e
            raise
        self.sha.update(memoryview(b)[:n])
        self.bytes += n
        return n

    def flush(self) -> None:
        self.f.flush()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def save_checkpoint(directory: str | os.PathLike, step: int, state: dict[str, Any], *, keep: int = 2) -> Path:
    """Atomically write ``state`` (must contain "model") as the checkpoint of ``step``; keep the last ``keep``.

    The payload ``step_<step>.pt`` is written (temporary file, fsync, rename) while its sha256 is computed,
    then its manifest ``step_<step>.json`` (step, size, sha256, config) the same way, last: a checkpoint
    is complete when its manifest exists. Raises ValueError (writing nothing) if the model or optimizer
    state holds NaN/inf, and :class:`CheckpointWriteError` ("no space left on device", ...) when the disk
    refuses the write; in both cases the previous checkpoints are kept as they were.
    """
    if "model" not in state:
        raise ValueError("save_checkpoint: state must contain a 'model' entry")
    bad = nonfinite_tensors({"model": state["model"], "optimizer": state.get("optimizer", {})})
    if bad:
        raise ValueError(f"save_checkpoint: refusing to write a poisoned checkpoint at step {step}: non-finite "
                         f"values in {bad[:5]}{' ...' if len(bad) > 5 else ''}")
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    for old in d.glob(".tmp-*"):  # leftovers of a run killed mid-write
        old.unlink(missing_ok=True)
    final = checkpoint_path(d, step)
    manifest = manifest_path(final)
    writer: list[_HashingWriter] = []

    def payload(f) -> None:
        writer.append(_HashingWriter(f))
        torch.save({**state, "step": step}, writer[0])

    try:
        atomic_write(final, payload)
        w = writer[0]
        info = {"format": MANIFEST_FORMAT, "step": step, "payload": final.name, "bytes": w.bytes,
                "sha256": w.sha.hexdigest(), "written": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "config": state.get("config")}
        try:
            atomic_write_text(manifest, json.dumps(info, indent=1))
        except BaseException:
            final.unlink(missing_ok=True)  # a payload without its manifest must not look newer than the last one
            raise
    except (OSError, RuntimeError) as e:
        err = writer[0].error if writer and writer[0].error is not None else e
        prev = [p.name for p in list_checkpoints(d) if p != final]
        kept = f"the previous checkpoint {prev[-1]} is kept" if prev else "no earlier checkpoint exists"
        what = "no space left on device" if no_space(err) else f"{type(err).__name__}: {err}"
        raise CheckpointWriteError(getattr(err, "errno", None) or errno.EIO,
                                   f"could not write checkpoint {final.name} in {d}: {what}; {kept}") from err
    for old in list_checkpoints(d)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
        manifest_path(old).unlink(missing_ok=True)
    for orphan in d.glob("step_*.json"):  # manifests whose payload was pruned by a run killed in between
        if not orphan.with_suffix(".pt").exists():
            orphan.unlink(missing_ok=True)
    return final


def list_checkpoints(directory: str | os.PathLike) -> list[Path]:
    """Checkpoint payloads in ``directory``, oldest first (not verified: see :func:`verify_checkpoint`)."""
    d = Path(directory)
    if not d.is_dir():
        return []
    return sorted((p for p in d.iterdir() if _NAME.match(p.name)), key=lambda p: int(_NAME.match(p.name).group(1)))


def latest_checkpoint(directory: str | os.PathLike) -> Path | None:
    """The newest checkpoint payload by name (not verified; resume uses :func:`newest_intact`)."""
    ck = list_checkpoints(directory)
    return ck[-1] if ck else None


def read_manifest(path: str | os.PathLike) -> dict | None:
    """The manifest of checkpoint ``path`` (None when there is none; CorruptCheckpoint when unreadable)."""
    m = manifest_path(path)
    if not m.is_file():
        return None
    try:
        info = json.loads(m.read_text())
        if not isinstance(info, dict) or "sha256" not in info or "bytes" not in info:
            raise ValueError("no sha256/bytes entry")
    except (OSError, ValueError) as e:
        raise CorruptCheckpoint(f"{Path(path).name}: its manifest {m.name} is unreadable ({e})") from None
    return info


def verify_checkpoint(path: str | os.PathLike) -> dict | None:
    """Check ``path`` against its manifest (size, then sha256); returns the manifest, or None for a
    checkpoint without one (written by an older version: it can only be checked by loading it). Raises
    :class:`CorruptCheckpoint` saying what is wrong."""
    p = Path(path)
    if not p.is_file():
        raise CorruptCheckpoint(f"{p.name}: not a file")
    info = read_manifest(p)
    size = p.stat().st_size
    if info is None:
        if size == 0:
            raise CorruptCheckpoint(f"{p.name}: empty file")
        return None
    if size != info["bytes"]:
        raise CorruptCheckpoint(f"{p.name}: {size} bytes on disk, its manifest says {info['bytes']} "
                                f"({'truncated' if size < info['bytes'] else 'grown'})")
    digest = sha256_file(p)
    if digest != info["sha256"]:
        raise CorruptCheckpoint(f"{p.name}: sha256 {digest[:12]}... does not match its manifest's "
                                f"{info['sha256'][:12]}... (the file changed after it was written)")
    return info


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu", *,
                    verify: bool = True) -> dict[str, Any]:
    """Load a checkpoint written by ``save_checkpoint`` (trusted local file: full unpickling for RNG states),
    checked against its manifest first (``verify``). Raises :class:`CorruptCheckpoint` (a ValueError)
    naming the file when it is corrupt, truncated or not loadable."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"load_checkpoint: {str(p)!r} is not a file")
    if verify:
        verify_checkpoint(p)
    try:
        st = torch.load(p, map_location=map_location, weights_only=False)
    except Exception as e:  # noqa: BLE001  (torch raises RuntimeError, EOFError, UnpicklingError, ...)
        raise CorruptCheckpoint(f"{p.name}: cannot be loaded ({type(e).__name__}: {str(e)[:200]})") from None
    if not isinstance(st, dict) or "model" not in st:
        raise CorruptCheckpoint(f"{p.name}: not a training checkpoint (no 'model' entry)")
    return st


def newest_intact(directory: str | os.PathLike, map_location: str | torch.device = "cpu"
                  ) -> tuple[Path | None, dict | None, list[tuple[str, str]]]:
    """The newest checkpoint of ``directory`` that passes :func:`load_checkpoint` (integrity check and
    load), its loaded state, and ``(name, reason)`` of every newer one skipped as corrupt."""
    skipped: list[tuple[str, str]] = []
    for p in reversed(list_checkpoints(directory)):
        try:
            return p, load_checkpoint(p, map_location), skipped
        except CorruptCheckpoint as e:
            skipped.append((p.name, str(e)))
    return None, None, skipped


def set_aside(directory: str | os.PathLike, names: list[str]) -> list[Path]:
    """Rename skipped (corrupt) checkpoints and their manifests out of the way (``step_X.aside-1.pt``):
    kept for inspection, never deleted, never picked up or pruned again."""
    out = []
    for name in names:
        p = Path(directory) / name
        if p.exists():
            out.append(move_aside(p))
        if manifest_path(p).exists():
            move_aside(manifest_path(p))
    return out


# ----------------------------------------------------------------------------- training state
def model_state(model: torch.nn.Module, *, sharded: bool, lora: bool) -> dict[str, torch.Tensor]:
    """What a checkpoint stores of the model: under FSDP2 (``sharded``) the full state dict gathered to
    CPU (``torch.distributed.checkpoint.state_dict``); with LoRA only the trainable adapter tensors (the
    frozen base is the model directory); else every tensor, detached CPU copies."""
    if sharded:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
        return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    sd = model.state_dict()
    if lora:
        names = {n for n, p in model.named_parameters() if p.requires_grad}
        sd = {k: v for k, v in sd.items() if k in names}
    return {k: v.detach().cpu().clone() for k, v in sd.items()}


def optimizer_state(model: torch.nn.Module, opt: torch.optim.Optimizer, *, sharded: bool) -> dict:
    """The optimizer's state dict (under FSDP2 the full one, gathered to CPU)."""
    if sharded:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict
        return get_optimizer_state_dict(model, opt, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return opt.state_dict()


def restore_training_state(st: dict, model: torch.nn.Module, opt: torch.optim.Optimizer, sched, *,
                           sharded: bool, lora: bool, where: str = "checkpoint") -> None:
    """Load model, optimizer, scheduler and RNG states of a checkpoint written from :func:`model_state` /
    :func:`optimizer_state` into the live objects (ValueError naming ``where`` on a model mismatch)."""
    if sharded:
        from torch.distributed.checkpoint.state_dict import (StateDictOptions, set_model_state_dict,
                                                            set_optimizer_state_dict)
        opts = StateDictOptions(full_state_dict=True)
        set_model_state_dict(model, st["model"], options=opts)
        set_optimizer_state_dict(model, opt, st["optimizer"], options=opts)
    else:
        _, unexpected = model.load_state_dict(st["model"], strict=not lora)
        if unexpected:
            raise ValueError(f"{where} does not match the model: unexpected keys {unexpected[:5]}")
        opt.load_state_dict(st["optimizer"])
    sched.load_state_dict(st["scheduler"])
    set_rng_state(st["rng"])
