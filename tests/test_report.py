"""The report's verdict rules: each is a small function whose boundaries are checked here."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
from reporting import bounds, ics, llm, resets  # noqa: E402
from reporting.common import ci_overlaps  # noqa: E402


def fit(slope, lo, hi):
    return {"slope": slope, "ci_lo": lo, "ci_hi": hi}


def test_ci_overlap_edges():
    assert ci_overlaps(fit(-1.0, -1.5, -0.5), -2.5, -1.5)      # touches the interval's end
    assert not ci_overlaps(fit(-1.0, -1.4, -0.5), -2.5, -1.5)
    assert not ci_overlaps(None, 0, 1)
    assert not ci_overlaps(fit(float("nan"), -1, 1), 0, 1)


def rfit(lo, hi, pred, rival, slope=None):
    return {"slope": (lo + hi) / 2 if slope is None else slope, "ci_lo": lo, "ci_hi": hi,
            "predicted_slope": pred, "rival_slope": rival}


def test_reset_slope_verdicts():
    v = resets.slope_verdict
    assert v(rfit(-2.2, -1.8, -2.0, 0.0)) == "reproduced"
    assert v(rfit(-2.5, -1.5, -2.0, 0.0)) == "reproduced"                  # half-width exactly 0.5
    assert v(rfit(-2.51, -1.5, -2.0, 0.0)) == "not resolved at this size"  # wider than +-0.5
    assert v(rfit(-0.3, 0.3, -0.1, -2.0)) == "reproduced"
    assert v(rfit(-0.8, 0.1, 0.0, -0.5)) == "not resolved at this size"    # contains the rival too
    assert v(rfit(-1.2, -0.8, -2.0, 0.0)) == "not reproduced"              # narrow, misses the prediction
    assert v(rfit(-1.2, 0.2, -2.0, 0.0)) == "not resolved at this size"    # misses it, but wide
    assert v(rfit(float("nan"), float("nan"), -2.0, 0.0)) == "not resolved at this size"
    assert v(rfit(-0.2, 0.2, 0.0, float("nan"))) == "reproduced"           # no rival (noisy on trees)


def test_reset_exact_verdict():
    assert resets.exact_verdict({"slope": 2.04, "predicted_slope": 2.0}) == "reproduced"
    assert resets.exact_verdict({"slope": 1.94, "predicted_slope": 2.0}) == "not reproduced"
    assert resets.exact_verdict({"slope": float("nan"), "predicted_slope": 2.0}) == "not resolved at this size"


def test_reset_claims_and_section_read_the_fits():
    fits = [{"family": "gated_trap", "quantity": q, "metric": m, "reset": r, "step": "kakade_langford",
             "slope": s, "ci_lo": s - 0.1, "ci_hi": s + 0.1, "predicted_slope": s, "theory_slope": s,
             "rival": "oracle", "rival_slope": 0.0, "n": 9, "n_censored": 1, "verdict": "reproduced"}
            for q, m in (("per_iteration_samples", "n"), ("first_gain", "n"), ("samples_to_target", "rollouts"))
            for r, s in (("random", -2.0), ("oracle", 0.0), ("noisy", -0.1))]
    rc = {"fits": fits, "rule": "R.", "design": {"n_actions": 3, "r_good": 0.8, "r_bad": 0.2, "gate_depth": 1,
                                                 "depth": 3, "tau": 0.1, "frac": 0.5, "level": 0.9, "target": 0.5},
          "mde": {"pilot_sd_log_n": 0.2, "per_iteration_slope": 0.2, "per_iteration_contrast": 0.3},
          "sizes": {"ps": [0.1] * 9, "ps_c": [0.1] * 7, "trials": 300, "seeds": 2},
          "runs": [{"stop": "target"}, {"stop": "budget"}], "seconds": 60, "profile": "quick"}
    claims = resets.claims({"rc": rc})
    assert len(claims) == 4 and "RR -2.00 [-2.10, -1.90] (predicted -2.00) -> reproduced" in claims[0]
    text = "\n".join(resets.section({"rc": rc}))
    assert "budget 1, target 1" in text and text.count("| random | kakade_langford |") == 3
    assert resets.claims({"rc": None}) == [] and "Not run." in resets.section({"rc": None})


def test_llm_verdicts():
    up, flat, down = {"mean": 0.05, "ci95": 0.01}, {"mean": 0.0, "ci95": 0.02}, {"mean": -0.05, "ci95": 0.01}
    assert llm.paired_verdict([up, up]).startswith("reproduced")
    assert llm.paired_verdict([up, flat]).startswith("not distinguishable")
    assert llm.paired_verdict([up, down]).startswith("contradicted")
    assert llm.paired_verdict([]).startswith("not distinguishable")
    a, b = {"final_mean": 0.6, "final_ci95": 0.01}, {"final_mean": 0.5, "final_ci95": 0.01}
    assert llm.unpaired_verdict(a, b).startswith("reproduced")
    assert llm.unpaired_verdict(b, a).startswith("contradicted")
    assert llm.speedup_verdict(300, 200) == "reproduced (1.50x)"
    assert llm.speedup_verdict(290, 200) == "not reproduced (1.45x)"


@pytest.mark.parametrize("lift,verdict", [(0.2, "reproduced"), (0.4, "reproduced"), (0.41, "exceeded"),
                                          (0.19, "not reproduced")])
def test_ics_lift_verdict(lift, verdict):
    assert ics.lift_verdict(lift) == verdict


def test_ics_l3_verdict():
    l2 = {"lift": 0.4}
    assert ics.l3_verdict(l2, {"lift": 0.1, "verdict_calls": 10, "fallbacks": {"verdict_unparseable": 6}}
                          ).startswith("not testable")
    assert ics.l3_verdict(l2, {"lift": 0.1, "verdict_calls": 10, "fallbacks": {"verdict_unparseable": 5}}
                          ) == "consistent"
    assert ics.l3_verdict(l2, {"lift": 0.5, "verdict_calls": 10, "fallbacks": {"verdict_unparseable": 0}}
                          ) == "not seen"


def test_bounds_verdicts():
    assert bounds.cpi_verdict(0) == "reproduced" and bounds.cpi_verdict(1) == "NOT reproduced"
    pg = {"config": {"tol": 1e-9}, "results": {"a": {"min_rel_slack": -1e-10}, "b": {"min_rel_slack": -1e-8}}}
    assert bounds.pg_violated(pg) == ["b"]
