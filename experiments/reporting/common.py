"""Small helpers shared by the report topics: loading, number formatting, interval checks."""
from __future__ import annotations

import json
import math
from pathlib import Path


def load(figs: Path, name: str):
    """The JSON file ``figs / name``, or None when the step that writes it has not run."""
    p = Path(figs) / name
    return json.loads(p.read_text()) if p.exists() else None


def missing(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def pct(x, digits=1):
    return "n/a" if missing(x) else f"{100 * x:.{digits}f}%"


def fmt(x, digits=3):
    return "n/a" if missing(x) else f"{x:.{digits}f}"


def ci_overlaps(f: dict | None, lo: float, hi: float) -> bool:
    """Does the 95% CI ``[f['ci_lo'], f['ci_hi']]`` of a fitted slope overlap ``[lo, hi]``?"""
    return f is not None and not missing(f["slope"]) and f["ci_lo"] <= hi and f["ci_hi"] >= lo
