"""Verdict rules of the Iterative PPO report topic: each small function's boundaries, and the
topic rendering a minimal result file."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
from reporting import iterative_ppo as ip  # noqa: E402


def contrast(mean, significant):
    return {"contrast": "x", "mean": mean, "ci95": 0.01, "p_holm": 0.01 if significant else 0.5,
            "significant": significant, "mde": 0.05}


@pytest.mark.parametrize("diff,verdict", [(0.0, "reproduced"), (1e-9, "reproduced"), (1.1e-9, "not reproduced"),
                                          (float("nan"), "not reproduced")])
def test_reduction_verdict(diff, verdict):
    assert ip.reduction_verdict(diff) == verdict


def test_improvement_verdict():
    assert ip.improvement_verdict(0.0, 0) == "reproduced"
    assert ip.improvement_verdict(-1e-9, 0) == "reproduced"
    assert ip.improvement_verdict(-2e-9, 0) == "not reproduced"
    assert ip.improvement_verdict(0.1, 1) == "not reproduced"


def test_contrast_verdict():
    up, flat, down = contrast(0.2, True), contrast(0.1, False), contrast(-0.2, True)
    assert ip.contrast_verdict([up, up, up, up]) == "reproduced"
    assert ip.contrast_verdict([up, flat, up, up]) == "partly reproduced"
    assert ip.contrast_verdict([flat, flat]) == "not reproduced"
    assert ip.contrast_verdict([up, up, down]) == "not reproduced"
    assert ip.contrast_verdict([]) == "not reproduced"


def test_slope_verdict():
    fit = lambda s, lo, hi: {"slope": s, "ci_lo": lo, "ci_hi": hi}  # noqa: E731
    assert ip.slope_verdict({"mc": fit(-0.5, -0.55, -0.45), "td": fit(-0.62, -0.7, -0.6)}) == "reproduced"
    assert ip.slope_verdict({"mc": fit(-0.5, -0.55, -0.45), "td": fit(-0.8, -0.9, -0.7)}) == "partly reproduced"
    assert ip.slope_verdict({"mc": fit(-1.0, -1.1, -0.9)}) == "not reproduced"


def test_iterations_to_close_and_bounds_verdict():
    assert ip.iterations_to_close([0.0, 0.4, 1.0 - 1e-12, 1.0]) == 2
    assert ip.iterations_to_close([0.0, 0.5]) == "more than 1"
    assert ip.bounds_verdict(0) == "reproduced" and ip.bounds_verdict(3) == "NOT reproduced"


def test_topic_renders_a_result_file():
    curve = {"mean": [0.0, 0.5, 1.0], "ci95": [0.0, 0.1, 0.0]}
    tt = {"per_instance": [100.0], "median": 100.0, "censored": 0}
    cfg = {"instances": 2, "iterations": 2, "batch_sizes": [10], "n_stages": 2, "vocab": 2, "length": 1,
           "gamma": 0.5, "inner_steps": 3, "eta": 1.0, "reinforce_n": 5}
    keys = ["pi", "exact_npg", "direct_npg", "reinforce", "ippo_mc_10", "ippo_td_10"]
    r = {"profile": "smoke", "date": "2026-01-01", "seconds": {"total": 1.0}, "config": cfg,
         "curves": {k: curve for k in keys}, "conversations_to_90pct": {k: tt for k in keys},
         "final_ci": {"offline_mc_10": [0.4, 0.1], "offline_td_10": [0.45, 0.1]},
         "contrasts": [contrast(0.2, True)] * 4, "exploratory": [contrast(0.0, False)], "budget": 20,
         "reduction_max_abs_diff": 0.0, "improvement_min_state_gain": 0.0,
         "q_fit": {e: {"slope": -0.5, "ci_lo": -0.6, "ci_hi": -0.4} for e in ("mc", "td")}}
    b = {"config": {"cases": 5}, "seconds": 1.0,
         "rows": [{"bound": "levels", "kind": "identity", "statement": "s", "status": "proved here", "cases": 5,
                   "violations": 0, "min_scaled_slack": 0.0, "median_slack": 0.0}]}
    claims = ip.claims({"ippo": r, "ippob": b})
    assert len(claims) == 4 and all(c.startswith("* **") for c in claims)
    assert "reproduced" in claims[0] and "closes the gap in 2 iterations" in claims[2]
    text = "\n".join(ip.section({"ippo": r, "ippob": b}))
    assert "offline MC: one batch of 20" in text and "**0 violations**" in text
    assert ip.claims({"ippo": None, "ippob": None}) == []
    assert "Not run." in ip.section({"ippo": None, "ippob": None})
