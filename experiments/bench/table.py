"""Formatting and files of the kernel benchmark: the markdown table, the target lines, and
``<stem>.csv`` / ``<stem>.json`` (metadata, rows, targets)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

from .common import ROW_KEYS

HEAD = ["MDP", "operation", "implementation", "median", "n", "spread (min-max)", "GB/s (P)",
        "x vs cpi", "x vs yardstick", "rel. err", "residual", "status"]


def fmt(x, kind):
    """``s``: seconds as ms / s; ``gb``: 2 decimals; ``x``: a ratio; ``e``: 1 significant digit."""
    if x is None:
        return "-"
    if kind == "s":
        return f"{x * 1e3:.2f} ms" if x < 1 else f"{x:.2f} s"
    if kind == "gb":
        return f"{x:.2f}"
    if kind == "x":
        return f"{x:.2f}" if x < 10 else f"{x:.0f}"
    if kind == "e":
        return f"{x:.0e}"
    return str(x)


def table(rows) -> str:
    """A markdown table of the rows (one line per contender)."""
    lines = ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    for r in rows:
        spread = "-" if r["min_s"] is None else f"{fmt(r['min_s'], 's')} - {fmt(r['max_s'], 's')}"
        x = fmt(r["x_vs_cpi"], "x")
        if r["x_vs_cpi"] is not None and "timeout" in r["status"]:
            x = ">= " + x
        med = fmt(r["median_s"], "s") if r["median_s"] is not None else r["status"]
        lines.append("| " + " | ".join([
            r["mdp"], r["op"], r["impl"], med, str(r["n"]), spread, fmt(r["GBps_P"], "gb"), x,
            fmt(r["x_vs_yardstick"], "x"), fmt(r["rel_err"], "e"), fmt(r["residual"], "e"),
            r["status"]]) + " |")
    return "\n".join(lines)


def target_lines(targets) -> list[str]:
    lines = []
    for t in targets:
        flag = "MET " if t["met"] else ("MISS" if t["met"] is False else "OPEN")
        lines.append(f"  [{flag}] {t['target']}: {t['measured']}")
    if any(t["met"] is None for t in targets):
        lines.append("  OPEN = the peer hit the cap: only a lower bound, below the target, is known.")
    return lines


def write(stem: Path, meta: dict, rows, targets) -> tuple[Path, Path]:
    """Write ``stem.json`` (meta, rows, targets) and ``stem.csv`` (rows); returns both paths."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    js, cs = stem.with_suffix(".json"), stem.with_suffix(".csv")
    with open(js, "w") as f:
        json.dump({"meta": meta, "rows": rows, "targets": targets}, f, indent=1)
    with open(cs, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(ROW_KEYS))
        w.writeheader()
        w.writerows(rows)
    return cs, js
