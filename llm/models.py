"""Model resolution: the one place where a model argument (``"tiny"``, a local directory, or a hub name
already in the local cache) becomes a path, and then a loaded :class:`llm.policy.Policy`.

Used by the trainer's config checks, ``llm.train``, ``llm.ics``, the experiments and the benchmarks.
Whether a string is a path is decided by ``llm.hub.is_path_like``; nothing is downloaded at run time.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .hub import is_path_like
from .policy import Policy
from .tiny import TINY, ensure_tiny

__all__ = ["TINY", "resolve_model", "check_model_arg", "load_policy", "model_fingerprint"]


def resolve_model(name_or_dir: str | os.PathLike) -> str:
    """``"tiny"`` -> the warm-started default's directory (``llm.tiny.ensure_tiny``: the shipped build or a
    cached one, built on first use); an existing local directory -> itself; a path-like string that is
    not a directory -> ValueError; anything else is passed on as a hub name."""
    if not isinstance(name_or_dir, (str, Path)):
        raise TypeError(f"name_or_dir: expected a str, got {type(name_or_dir).__name__}")
    s = str(name_or_dir)
    if s == TINY:
        return str(ensure_tiny())
    if Path(s).is_dir():
        return s
    if is_path_like(s):
        raise ValueError(f"name_or_dir: model directory {s!r} does not exist (or is not a directory)")
    return s


def check_model_arg(model: str) -> None:
    """Fail fast on a model argument that cannot be loaded offline (nothing is loaded or built here)."""
    if model == TINY:
        return
    p = Path(model).expanduser()
    if p.exists():
        if not p.is_dir() or not (p / "config.json").is_file():
            raise ValueError(f"model={model!r} is not a Hugging Face model directory (no config.json in it); pass "
                             f"a directory written by save_pretrained, 'tiny', or a cached hub name")
        return
    if is_path_like(model):
        raise ValueError(f"model path {model!r} does not exist; pass an existing model directory or 'tiny'")
    try:  # a hub name: only usable if already in the local cache (no downloads at run time)
        from huggingface_hub import try_to_load_from_cache
        hit = try_to_load_from_cache(model, "config.json")
    except Exception:  # noqa: BLE001 - any failure means "not cached"
        hit = None
    if not isinstance(hit, str):
        raise ValueError(f"model {model!r} is neither a local directory nor a hub model in the local cache, and "
                         f"nothing is downloaded at run time; pass a local directory or 'tiny'")


def load_policy(name_or_dir: str | os.PathLike, *, device="cpu", dtype=None, fmt=None) -> Policy:
    """``Policy.from_pretrained(resolve_model(name_or_dir), ...)``: ``load_policy("tiny")`` is the offline
    default. ``dtype``: a torch dtype, a name or ``"auto"`` (``llm.hub.resolve_dtype``)."""
    return Policy.from_pretrained(resolve_model(name_or_dir), device=device, dtype=dtype, fmt=fmt)


def model_fingerprint(name_or_dir: str | os.PathLike) -> str:
    """What a cached result was computed with: sha256 (16 hex digits) of the resolved model directory's
    ``config.json`` and weight files (``*.safetensors``, ``*.bin``), or the hub name itself when it is
    not a local directory. Experiments store it with a finished run and redo the run when it differs (a
    rebuilt tiny default, new weights in the same directory)."""
    path = Path(resolve_model(name_or_dir))
    if not path.is_dir():
        return str(name_or_dir)
    h = hashlib.sha256()
    for f in sorted([path / "config.json"] + list(path.glob("*.safetensors")) + list(path.glob("*.bin"))):
        if f.is_file():
            h.update(f.name.encode())
            with f.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()[:16]
