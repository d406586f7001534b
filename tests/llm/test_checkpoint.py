"""Atomic checkpoints: round trip, temp files ignored, pruning, poisoned states refused, RNG restore."""
import random

import numpy as np
import pytest
import torch

from llm import checkpoint as C


def _state(val=1.0):
    m = torch.nn.Linear(3, 2)
    with torch.no_grad():
        m.weight.fill_(val)
    opt = torch.optim.AdamW(m.parameters(), lr=0.1)
    m(torch.ones(1, 3)).sum().backward()
    opt.step()
    return {"model": m.state_dict(), "optimizer": opt.state_dict(), "data_position": 12}


def test_round_trip_and_latest(tmp_path):
    p = C.save_checkpoint(tmp_path, 3, _state())
    assert p.name == "step_00000003.pt" and C.latest_checkpoint(tmp_path) == p
    st = C.load_checkpoint(p)
    assert st["step"] == 3 and st["data_position"] == 12
    torch.testing.assert_close(st["model"]["weight"], _state()["model"]["weight"])
    assert "state" in st["optimizer"] and len(st["optimizer"]["state"]) == 2


def test_keep_last_and_ignore_partial_files(tmp_path):
    for s in (1, 2, 3, 4):
        C.save_checkpoint(tmp_path, s, _state(), keep=2)
    assert [p.name for p in C.list_checkpoints(tmp_path)] == ["step_00000003.pt", "step_00000004.pt"]
    # a run killed mid-write leaves a temp file (and maybe a truncated one): never picked up
    (tmp_path / ".tmp-step_00000005.pt-123").write_bytes(b"garbage")
    assert C.latest_checkpoint(tmp_path).name == "step_00000004.pt"
    C.save_checkpoint(tmp_path, 6, _state(), keep=2)  # cleans the leftover
    assert not list(tmp_path.glob(".tmp-*"))
    assert C.latest_checkpoint(tmp_path / "nope") is None


def test_poisoned_state_is_never_written(tmp_path):
    C.save_checkpoint(tmp_path, 1, _state())
    with pytest.raises(ValueError, match="poisoned.*weight"):
        C.save_checkpoint(tmp_path, 2, _state(float("nan")))
    bad = _state()
    bad["model"]["bias"] = torch.tensor([float("inf"), 0.0])
    with pytest.raises(ValueError, match="poisoned"):
        C.save_checkpoint(tmp_path, 2, bad)
    assert [p.name for p in C.list_checkpoints(tmp_path)] == ["step_00000001.pt"]
    assert not list(tmp_path.glob(".tmp-*"))


def test_rng_state_round_trip():
    st = C.rng_state()
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    C.set_rng_state(st)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a


def test_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="model"):
        C.save_checkpoint(tmp_path, 1, {"optimizer": {}})
    with pytest.raises(ValueError, match="not a file"):
        C.load_checkpoint(tmp_path / "missing.pt")
