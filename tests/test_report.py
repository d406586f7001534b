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


def test_slope_verdicts():
    assert resets.slope_verdict(fit(-2, -2.2, -1.8), fit(0, -0.3, 0.3)) == "reproduced"
    assert resets.slope_verdict(fit(-2, -2.2, -1.8), fit(1, 0.8, 1.2)) == "partly reproduced"
    assert resets.slope_verdict(fit(-1.3, -1.4, -1.2), fit(0.5, 0.51, 0.6)) == "partly reproduced"  # gap -1.8
    assert resets.slope_verdict(fit(0, -0.1, 0.1), fit(1, 0.9, 1.1)) == "not reproduced"


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
