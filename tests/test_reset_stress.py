"""The stress tests of ``experiments/reset_complexity.py --full`` (trees and locks with Bernoulli leaves)
run end to end at smoke size: every instance gives its three measurements per reset, every run says why it
stopped, and each family is fitted against its own predictions."""
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

import reset_complexity as RC  # noqa: E402


def test_stress_path_runs_at_smoke_size():
    out = RC.run_stress("smoke", 0, n_states=5, seeds=1, budget=3000, trials=4, max_instances=4, n_cap=64)
    fams = {r["family"] for r in out["rows"]}
    assert fams == {"tree", "lock"}
    for fam in fams:
        rows = [r for r in out["rows"] if r["family"] == fam]
        assert {r["quantity"] for r in rows} == {"first_gain", "per_iteration_samples", "samples_to_target"}
        assert {r["reset"] for r in rows} == set(RC.RESETS)
        assert all(r["p"] > 0 for r in rows)
    assert out["runs"] and all(r["stop"] for r in out["runs"])
    assert {f["family"] for f in out["fits"]} == {"tree", "lock"}
    # one fit per (family, quantity, metric, reset), on one point per instance; the exact first gains
    # (no sampling, never censored) give a finite slope wherever there are 3 or more instances
    keys = [(f["family"], f["quantity"], f.get("metric"), f["reset"]) for f in out["fits"]]
    assert len(keys) == len(set(keys))
    gains = [f for f in out["fits"] if f["quantity"] == "first_gain" and f["n"] >= 3]
    assert gains and all(math.isfinite(f["slope"]) for f in gains), gains
