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
    """Write ``stem.json`` (meta, rows, targets), ``stem.csv`` (rows) and ``stem.md`` (the
    README tables and the targets); returns the CSV and JSON paths."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    js, cs = stem.with_suffix(".json"), stem.with_suffix(".csv")
    stem.with_suffix(".md").write_text(
        f"<!-- {meta.get('command')}, {meta.get('date')}, load average "
        f"{meta.get('loadavg_start')} -> {meta.get('loadavg_end')} -->\n\n"
        + readme_tables(rows) + "\n\n" + "\n".join(target_lines(targets)) + "\n")
    with open(js, "w") as f:
        json.dump({"meta": meta, "rows": rows, "targets": targets}, f, indent=1)
    with open(cs, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(ROW_KEYS))
        w.writeheader()
        w.writerows(rows)
    return cs, js


def _ms(t):
    if t is None:
        return "-"
    return f"{t * 1e3:.3g} ms" if t < 1 else f"{t:.3g} s"


def _find(rows, mdp_part, op, impl_prefix):
    for r in rows:
        if mdp_part in r["mdp"] and r["op"] == op and r["impl"].startswith(impl_prefix):
            return r
    return None


def _peer_cell(r):
    if r is None:
        return "n/a"
    if "timeout" in r["status"]:
        return f"> {r['status'].split('> ')[1]}"
    return _ms(r["median_s"])


def readme_tables(rows) -> str:
    """The README's "Tabular kernels" tables (markdown) from one run's rows: the evaluation rows
    against the machine and scipy, and the peers summary. Rows not run are left out."""
    from . import eval_rows as E
    out = []
    ev = [r for r in rows if r["op"] in (E.OP_TREE, E.OP_GARNET)]
    if ev:
        out += ["| case | cpi | yardstick | cpi / yardstick | peer | cpi / peer | residual cpi / peer |",
                "|---|---|---|---|---|---|---|"]
        for impl in (E.CPI, "cpi.evaluate (V + d)"):
            r = _find(ev, "thought_tree", E.OP_TREE, impl)
            y = _find(ev, "thought_tree", E.OP_TREE, E.PLAIN_TREE)
            if r and y:
                out.append(f"| {r['mdp']}: `{impl.split(' ')[0]}` | **{_ms(r['median_s'])}** | "
                           f"{_ms(y['median_s'])} (plain numba pass) | **{r['x_vs_yardstick']:.2f}x** "
                           f"| | | {fmt(r['residual'], 'e')} |")
        for kind in ("stochastic", "deterministic"):
            sc = _find(ev, kind, E.OP_GARNET, E.SCIPY)
            y = _find(ev, kind, E.OP_GARNET, E.PLAIN_P)
            for impl in (E.CPI, E.CPI_1T):
                r = _find(ev, kind, E.OP_GARNET, impl)
                if r and sc and y:
                    who = "`cpi.value`" + (", 1 numba thread" if impl == E.CPI_1T else "")
                    out.append(f"| {r['mdp']}: {who} | **{_ms(r['median_s'])}** | "
                               f"{_ms(y['median_s'])} (one pass over P) | {r['x_vs_yardstick']:.1f}x | "
                               f"{_ms(sc['median_s'])} (scipy Pi P + bicgstab 1e-10) | "
                               f"**{r['median_s'] / sc['median_s']:.2f}x** | "
                               f"{fmt(r['residual'], 'e')} / {fmt(sc['residual'], 'e')} |")
        out.append("")
    peers = [r for r in rows if r not in ev]
    if peers:
        out += ["| MDP | operation | cpi | QuantEcon | pymdptoolbox | scipy |",
                "|---|---|---|---|---|---|"]
        for part, op, cpi_impl, sc_impl in (
                ("garnet S=20000", "policy evaluation", "cpi.evaluate", "scipy bicgstab"),
                ("garnet S=20000", "VI sweep", "cpi.bellman_sweep", "scipy CSR"),
                ("garnet S=2500", "policy evaluation", "cpi.evaluate", "scipy bicgstab"),
                ("thought_tree", "policy evaluation", "cpi.evaluate", "scipy spsolve"),
                ("thought_tree", "VI sweep", "cpi.bellman_sweep", "scipy CSR")):
            c = _find(peers, part, op, cpi_impl)
            if c is None:
                continue
            qe = _find(peers, part, op, "quantecon")
            md = _find(peers, part, op, "pymdptoolbox")
            sc = _find(peers, part, op, sc_impl)
            cell = f"**{_ms(c['median_s'])}**"
            if op == "VI sweep":
                cell += f" ({c['GBps_P']:.1f} GB/s)"
            out.append(f"| {c['mdp']} | {op} | {cell} | {_peer_cell(qe)} | {_peer_cell(md)} | "
                       f"{_peer_cell(sc)} |")
        cp = _find(peers, "thought_tree", "VI sweep", "numpy copy") or \
            _find(peers, "garnet", "VI sweep", "numpy copy")
        if cp:
            out.append(f"| {cp['impl']} | | {cp['GBps_P']:.1f} GB/s read + write | | | |")
    return "\n".join(out)
