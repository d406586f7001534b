"""``experiments/bench/train_step.py``: paired ratios match each step to the GRPO step of the same round and
step (warm-up steps left out), and the bootstrap interval brackets the median within the ratios' range."""
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "experiments" / "bench"))
import train_step as T  # noqa: E402


def _rows(times: dict) -> list[dict]:
    return [{"round": r, "step": s, "seconds": t} for (r, s), t in times.items()]


def test_paired_ratios_by_round_and_step():
    grpo = {(0, 1): 9.0, (0, 2): 1.0, (0, 3): 2.0, (1, 1): 9.0, (1, 2): 4.0, (1, 3): 0.5}
    srpo = {(0, 1): 1.0, (0, 2): 1.5, (0, 3): 2.2, (1, 1): 1.0, (1, 2): 5.0, (1, 3): 0.7}
    out = T.paired_ratios({"ours_grpo": _rows(grpo), "ours_srpo": _rows(srpo)}, "ours_srpo")
    want = [1.5 / 1.0, 2.2 / 2.0, 5.0 / 4.0, 0.7 / 0.5]   # step 1 of each round is the warm-up
    assert out["ratios"] == want
    assert out["median"] == statistics.median(want)
    lo, hi = out["ci95"]
    assert min(want) <= lo <= out["median"] <= hi <= max(want)
