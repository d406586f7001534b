"""Smoke test of the one-command reproduction: every figure, table and the report are produced."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FIGURES = ["reset_complexity", "pg_suboptimality", "td_error", "td_one_step", "llm_accuracy", "llm_resets",
           "llm_localization", "llm_dial_stage1", "llm_dial_stage2", "ics_lift", "iterative_ppo"]
TABLES = ["bounds_check.csv", "bounds_check.json", "pg_td_check.json", "reset_complexity.json",
          "reset_complexity_fits.csv", "llm_compare.json", "llm_dial.json", "ics_summary.json", "iterative_ppo.json",
          "iterative_ppo_bounds.json"]


def test_reproduce_smoke_produces_every_figure_and_the_report(tmp_path):
    runs, figs = tmp_path / "runs", tmp_path / "figs"
    r = subprocess.run([sys.executable, str(ROOT / "experiments" / "reproduce.py"), "--smoke",
                        "--runs", str(runs), "--figs", str(figs)], cwd=ROOT, capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    for stem in FIGURES:
        png, csv = figs / f"{stem}.png", figs / f"{stem}.csv"
        assert png.stat().st_size > 1000, png
        assert csv.stat().st_size > 0 and len(csv.read_text().splitlines()) >= 2, csv
    for name in TABLES:
        assert (figs / name).stat().st_size > 0, name
    report = (figs / "REPORT.md").read_text()
    for method in ("GRPO", "RRPO", "SRPO", "ORACLE", "Thought-ICS", "Token-ICS", "Self-Refine", "CARO"):
        assert method.lower() in report.lower(), method
    assert "not run" not in report.lower()
    assert (figs / "README.md").read_text().count(".png") >= len(FIGURES)
    # a second run resumes: every step is cached and skipped
    r2 = subprocess.run([sys.executable, str(ROOT / "experiments" / "reproduce.py"), "--smoke",
                         "--runs", str(runs), "--figs", str(figs)], cwd=ROOT, capture_output=True, text=True,
                        timeout=300)
    assert r2.returncode == 0 and r2.stdout.count("skipped") == 8, r2.stdout
