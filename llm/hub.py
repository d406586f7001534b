"""Where a model comes from, decided in one place: path or hub name, dtype names, and the settings
saved beside a model (``credit_resets.json``).

Nothing here loads a model (``llm.models`` does); this module imports no other ``llm`` module, so
every layer may use it (see ``docs/architecture.md``, "Dependency direction").
"""
from __future__ import annotations

import json
import os
from pathlib import Path

FORMAT_FILE = "credit_resets.json"
"""Small json beside a saved model holding its ThoughtFormat (``"fmt"``) and task settings (``"task"``)."""

DTYPES = ("float32", "fp32", "bfloat16", "bf16", "float16", "fp16")
"""dtype names accepted everywhere a dtype is given as text (besides ``"auto"``)."""


def is_path_like(name: str) -> bool:
    """True when ``name`` must be a local path rather than a hub name (``org/model``): it exists on disk,
    starts with ``/``, ``.`` or ``~``, ends with a path separator, holds an empty path component
    (``//``) or more than one ``/`` (a hub name has exactly one)."""
    if not isinstance(name, (str, os.PathLike)):
        raise TypeError(f"name: expected a str, got {type(name).__name__}")
    s = str(name)
    return (s.startswith(("/", ".", "~")) or s.endswith(("/", os.sep)) or "//" in s or s.count("/") > 1
            or Path(s).expanduser().exists())


def resolve_dtype(dtype, device: str = "cpu"):
    """A ``torch.dtype`` (or None: the model's own) from a dtype or its name. ``"auto"`` is bfloat16 on a
    CUDA device and float32 otherwise; names: see :data:`DTYPES`."""
    import torch

    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if dtype not in table:
        raise ValueError(f"dtype: expected a torch.dtype, 'auto' or one of {sorted(table)}, got {dtype!r}")
    return table[dtype]


def read_meta(path: str | os.PathLike) -> dict:
    """The ``credit_resets.json`` beside a model directory ({} when absent or for a hub name)."""
    f = Path(path) / FORMAT_FILE
    return json.loads(f.read_text()) if f.is_file() else {}


def task_settings(meta: dict, name: str | None) -> dict:
    """Task keywords saved beside a model (e.g. the arith difficulty the tiny default was trained on) when
    ``name`` is the task it was trained on (or None), else {}. The one reader of ``meta["task"]``."""
    saved = (meta or {}).get("task")
    if not isinstance(saved, dict) or (name is not None and saved.get("name") != name):
        return {}
    return {k: v for k, v in saved.items() if k != "name"}
