"""Report topic: CPI bounds and the policy-gradient / TD results on random MDPs."""
from __future__ import annotations

from .common import fmt

FILES = {"b": "bounds_check.json", "pg": "pg_td_check.json"}


def cpi_verdict(violations: int) -> str:
    """Rule: a bound is reproduced when no random case violates it (tolerance 1e-9 max(1, ||V||))."""
    return "reproduced" if violations == 0 else "NOT reproduced"


def pg_violated(pg: dict) -> list[str]:
    """Results whose smallest relative slack is below the check's tolerance (violated)."""
    tol = pg["config"].get("tol", 1e-9)
    return [k for k, v in pg["results"].items() if v["min_rel_slack"] < -tol]


def claims(d) -> list[str]:
    b, pg = d["b"], d["pg"]
    out = []
    if b is not None:
        viol = sum(r["violations"] for r in b["rows"])
        out.append(f"* **CPI improvement bounds (Kakade & Langford 2002 Thm 4.1 / Cor 4.2; Pirotta et al. 2013; "
                   f"final guarantee)** - {cpi_verdict(viol)}: "
                   f"{viol} violations in {sum(r['cases'] for r in b['rows'])} bound evaluations on random "
                   "garnets, thought trees and locks (tolerance 1e-9 max(1, ||V||)).")
    if pg is not None:
        bad = pg_violated(pg)
        out.append(f"* **Policy-gradient and TD(0) rates and lemmas (Bhandari & Russo; Agarwal et al.; "
                   f"Bhandari, Russo & Singal)** - {'reproduced' if not bad else 'NOT reproduced: ' + ', '.join(bad)}"
                   " on random MDPs/MRPs; constants marked [cited] were not re-derived here.")
    return out


def section(d) -> list[str]:
    b, pg = d["b"], d["pg"]
    lines = ["## Bound checks (tabular theory)", ""]
    if b is None:
        lines += ["CPI bound check: not run.", ""]
    else:
        rows = b["rows"]
        viol = sum(r["violations"] for r in rows)
        lines += [f"CPI bounds (`experiments/check_bounds.py`, {b['config']['cases']} random MDPs x "
                  f"{b['config']['alphas']} step sizes, {b['seconds']:.0f} s): **{viol} violations**. "
                  "Slack = bound side minus realised side (negative = violated); scaled by max(1, ||V||_inf); "
                  "tightness = bound / realised gain (1 = tight).", "",
                  "| bound | cases | violations | min slack | min scaled slack | median tightness |",
                  "|---|---:|---:|---:|---:|---:|"]
        for r in rows:
            lines.append(f"| {r['bound']} | {r['cases']} | {r['violations']} | {r['min_slack']:.2e} | "
                         f"{r['min_slack_scaled']:.2e} | {fmt(r['median_tightness'], 3)} |")
        lines.append("")
    if pg is None:
        lines += ["Policy-gradient / TD check: not run.", ""]
    else:
        res = pg["results"]
        bad = pg_violated(pg)
        lines += [f"Policy-gradient and TD results (`experiments/check_pg_td.py`): {len(res)} results, "
                  f"**{len(bad)} violated**{': ' + ', '.join(bad) if bad else ''}. "
                  "`[cited]` marks constants taken from the papers, not re-derived.", "",
                  "| result | cases | min slack | min relative slack |", "|---|---:|---:|---:|"]
        for k, v in res.items():
            lines.append(f"| {k} | {v['cases']} | {v['min_slack']:.2e} | {v['min_rel_slack']:.2e} |")
        lines.append("")
    return lines


FIGURES = [
    ("pg_suboptimality.png", "pg_*.csv", "Sub-optimality vs iteration of each exact policy optimiser "
     "(projected PG, softmax PG, NPG, soft PI, PI) on a log scale, with its bound overlaid."),
    ("td_error.png", "td_*.csv", "TD(0) with linear features: error vs T (mean-path, i.i.d., Markov) "
     "against the finite-time bounds."),
    ("td_one_step.png", "td_one_step.csv", "One-step improvement with a TD-estimated Q: gain relative to "
     "the exact policy-iteration step vs estimation error / action gap."),
]


def captions(d, figs) -> list[str]:
    cap = [f"* `{png}` ({data}) - {text}" for png, data, text in FIGURES if (figs / png).exists()]
    if d["b"]:
        cap.append(f"* `bounds_check.csv` / `.json` - CPI bound slack table "
                   f"({sum(r['violations'] for r in d['b']['rows'])} violations).")
    if d["pg"]:
        cap.append("* `pg_td_check.json` - policy-gradient / TD slack table.")
    return cap
