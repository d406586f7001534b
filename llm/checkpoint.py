"""Checkpoints that lose nothing: model, optimizer, scheduler, RNG states, data position and step.

A checkpoint is one file ``<dir>/step_00000010.pt``, written to a temporary file in the same
directory, flushed and fsync'ed, then moved into place with ``os.replace`` (atomic on POSIX): a run
killed at any moment leaves either the previous checkpoints or the new complete one, never a
partial file. Temporary files (``.tmp-*``) are ignored by ``latest_checkpoint`` and removed on the
next save. ``save_checkpoint`` refuses a model state holding NaN/inf, so a poisoned state is never
written.

The training state (:func:`model_state`, :func:`optimizer_state`, :func:`restore_training_state`) covers
one process, DDP (the module's own state), LoRA (adapters only) and FSDP2 (full state dicts gathered to
CPU with ``torch.distributed.checkpoint.state_dict``, written by rank 0 as the same single file). A
sharded ``torch.distributed.checkpoint.save`` (a directory of per-rank files) is not used: it would add a
second on-disk format and its own atomic-directory handling, and every model this package trains fits
one host's CPU memory as a full state dict (``docs/llm.md``, "Checkpoints").
"""
from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

_NAME = re.compile(r"^step_(\d{8})\.pt$")


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


def save_checkpoint(directory: str | os.PathLike, step: int, state: dict[str, Any], *, keep: int = 2) -> Path:
    """Atomically write ``state`` (must contain "model") as the checkpoint of ``step``; keep the last ``keep``.

    Raises ValueError (writing nothing) if the model or optimizer state holds NaN/inf.
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
    tmp = d / f".tmp-{final.name}-{os.getpid()}"
    with open(tmp, "wb") as f:
        torch.save({**state, "step": step}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)
    try:  # make the rename itself durable
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass
    for old in list_checkpoints(d)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    return final


def list_checkpoints(directory: str | os.PathLike) -> list[Path]:
    """Complete checkpoints in ``directory``, oldest first."""
    d = Path(directory)
    if not d.is_dir():
        return []
    return sorted((p for p in d.iterdir() if _NAME.match(p.name)), key=lambda p: int(_NAME.match(p.name).group(1)))


def latest_checkpoint(directory: str | os.PathLike) -> Path | None:
    ck = list_checkpoints(directory)
    return ck[-1] if ck else None


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by ``save_checkpoint`` (trusted local file: full unpickling for RNG states)."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"load_checkpoint: {str(p)!r} is not a file")
    return torch.load(p, map_location=map_location, weights_only=False)


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


def trim_metrics(path: str | os.PathLike, step: int) -> list[dict]:
    """Drop the lines of a ``metrics.jsonl`` written after ``step`` (a run that died after its last
    checkpoint), atomically; returns the kept records ([] when the file is absent)."""
    import json

    mf = Path(path)
    if not mf.is_file():
        return []
    keep = [ln for ln in mf.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= step]
    tmp = mf.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(k + "\n" for k in keep))
    tmp.replace(mf)
    return [json.loads(k) for k in keep]
