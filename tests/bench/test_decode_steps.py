"""``experiments/bench/decode_steps.py``: the sampling variants keep exactly the current nucleus, map sorted
draws back to vocabulary ids, and the ``--quick`` mode runs."""
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "experiments" / "bench"))
import decode_steps as D  # noqa: E402


@pytest.mark.parametrize("kind", ["flat", "peaked"])
@pytest.mark.parametrize("k", [4, 256])
def test_topk_keeps_the_sorted_nucleus(kind, k):
    logits = D.make_logits(kind, 5, 3000, seed=1)
    assert D.check_same_nucleus(logits, 0.7, 0.95, k=k) == 0.0


@pytest.mark.parametrize("name", list(D.SAMPLERS))
def test_samplers_return_vocabulary_ids(name):
    logits = torch.full((3, 50), -30.0)
    logits[0, 7], logits[1, 42], logits[2, 0] = 0.0, 0.0, 0.0   # one token holds all the mass in each row
    out = D.SAMPLERS[name](logits, 0.7, 0.95, torch.Generator().manual_seed(0))
    assert out.tolist() == [7, 42, 0]


def test_peaked_logits_have_a_small_nucleus():
    r = D.bench_sampling(4, 32000, "peaked", reps=1)
    assert 20 <= r["mean_nucleus_tokens"] <= 2000 and r["same_nucleus_max_abs_diff"] == 0.0


def test_quick_runs(tmp_path):
    res = D.main(["--quick", "--out", str(tmp_path / "d.json")])
    assert {r["logits"] for r in res["sampling"]} == {"flat", "peaked"}
    assert all(v > 0 for r in res["kv_append"] for v in [r["ms_per_step"]["cat"]])
