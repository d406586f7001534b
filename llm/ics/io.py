"""Files of a Thought-ICS run: ``<label>.jsonl`` (one line per problem) and ``<label>.summary.json``."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

from .config import ICSConfig
from .records import ProblemResult


def stem(label: str) -> str:
    """File stem of a run label (spaces become underscores)."""
    return label.replace(" ", "_")


def write_run(out_dir: Path, label: str, cfg: ICSConfig, results: Sequence[ProblemResult],
              summary: dict, model: str | None = None) -> Path:
    """``<out_dir>/<label>.jsonl``: one line per problem (every attempt, every round with its
    verdicts, localization text/index/source, the exit); ``<label>.summary.json``: config + summary
    (+ ``model``, the fingerprint of the model it ran, ``llm.models.model_fingerprint``, when given)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{stem(label)}.jsonl"
    with path.open("w") as f:
        for r in results:
            f.write(json.dumps(r.to_json()) + "\n")
    (out_dir / f"{stem(label)}.summary.json").write_text(
        json.dumps({"config": asdict(cfg), "summary": summary, **({} if model is None else {"model": model})},
                   indent=1, default=str))
    return path


def read_summary(out_dir: Path, label: str, cfg: ICSConfig, n: int, model: str | None = None) -> dict | None:
    """The saved summary of a run with exactly this config and ``n`` problems (and, when ``model`` is
    given, run on the model with that fingerprint), a cache hit; else None."""
    f = Path(out_dir) / f"{stem(label)}.summary.json"
    if not f.is_file():
        return None
    saved = json.loads(f.read_text())
    if saved.get("config") != json.loads(json.dumps(asdict(cfg), default=str)) or saved["summary"]["n"] != n:
        return None
    if model is not None and saved.get("model") != model:
        return None
    return saved
