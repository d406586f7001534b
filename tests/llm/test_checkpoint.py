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


# ----------------------------------------------------------------------------- integrity (issue rows 3, 4)
def test_manifest_holds_size_and_sha256_of_the_payload(tmp_path):
    import hashlib
    import json
    p = C.save_checkpoint(tmp_path, 5, {**_state(), "config": {"seed": 3}})
    m = json.loads(C.manifest_path(p).read_text())
    assert m["step"] == 5 and m["payload"] == p.name and m["bytes"] == p.stat().st_size
    assert m["sha256"] == hashlib.sha256(p.read_bytes()).hexdigest()  # hashed while written = the file
    assert m["config"] == {"seed": 3}
    assert C.verify_checkpoint(p) == m


def _truncate(p):
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _empty(p):
    p.write_bytes(b"")


def _flip(p, n=200):
    b = bytearray(p.read_bytes())
    mid = len(b) // 2
    for i in range(mid, mid + n):
        b[i] ^= 0xFF
    p.write_bytes(bytes(b))


@pytest.mark.parametrize("damage, why", [(_truncate, "truncated"), (_empty, "truncated"), (_flip, "sha256")])
def test_a_damaged_newest_checkpoint_is_named_and_the_previous_one_used(tmp_path, damage, why):
    for s in (2, 4, 6):
        C.save_checkpoint(tmp_path, s, _state(float(s)), keep=3)
    damage(tmp_path / "step_00000006.pt")
    with pytest.raises(C.CorruptCheckpoint, match=f"step_00000006.pt.*{why}"):
        C.load_checkpoint(tmp_path / "step_00000006.pt")
    path, st, skipped = C.newest_intact(tmp_path)
    assert path.name == "step_00000004.pt" and st["step"] == 4
    torch.testing.assert_close(st["model"]["weight"], _state(4.0)["model"]["weight"])
    assert [n for n, _ in skipped] == ["step_00000006.pt"] and why in skipped[0][1]
    moved = C.set_aside(tmp_path, [n for n, _ in skipped])
    assert [p.name for p in moved] == ["step_00000006.aside-1.pt"]
    assert (tmp_path / "step_00000006.aside-1.json").is_file()  # kept for inspection, never picked up
    assert [p.name for p in C.list_checkpoints(tmp_path)] == ["step_00000002.pt", "step_00000004.pt"]


def test_every_checkpoint_corrupt_gives_none(tmp_path):
    C.save_checkpoint(tmp_path, 1, _state())
    _flip(tmp_path / "step_00000001.pt")
    path, st, skipped = C.newest_intact(tmp_path)
    assert path is None and st is None and skipped[0][0] == "step_00000001.pt"
    assert C.newest_intact(tmp_path / "none") == (None, None, [])


def test_checkpoint_without_manifest_is_checked_by_loading(tmp_path):
    """An older version wrote no manifest: a loadable payload is used, a broken one is skipped."""
    C.save_checkpoint(tmp_path, 1, _state(1.0))
    C.save_checkpoint(tmp_path, 2, _state(2.0))
    for s in (1, 2):
        C.manifest_path(C.checkpoint_path(tmp_path, s)).unlink()
    assert C.load_checkpoint(tmp_path / "step_00000002.pt")["step"] == 2
    _truncate(tmp_path / "step_00000002.pt")
    path, st, skipped = C.newest_intact(tmp_path)
    assert path.name == "step_00000001.pt" and "cannot be loaded" in skipped[0][1]


def test_disk_full_says_no_space_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    """torch.save turns the OSError of a full disk into "enforce fail ... unexpected pos"; the writer keeps
    the OSError and the error says what happened."""
    import errno
    C.save_checkpoint(tmp_path, 2, _state(2.0))
    real = C._HashingWriter.write

    def full(self, b):
        if self.bytes + len(b) > 1000:
            self.error = OSError(errno.ENOSPC, "No space left on device")
            raise self.error
        return real(self, b)

    monkeypatch.setattr(C._HashingWriter, "write", full)
    with pytest.raises(C.CheckpointWriteError, match="step_00000004.pt.*no space left on device.*step_00000002.pt is kept"):
        C.save_checkpoint(tmp_path, 4, _state(4.0))
    assert [p.name for p in C.list_checkpoints(tmp_path)] == ["step_00000002.pt"]
    assert not list(tmp_path.glob(".tmp-*")) and not (tmp_path / "step_00000004.json").exists()
    assert C.load_checkpoint(tmp_path / "step_00000002.pt")["step"] == 2


def test_a_failed_manifest_write_removes_its_payload(tmp_path, monkeypatch):
    import errno
    C.save_checkpoint(tmp_path, 1, _state())

    def fail(path, text):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(C, "atomic_write_text", fail)
    with pytest.raises(C.CheckpointWriteError, match="no space left on device"):
        C.save_checkpoint(tmp_path, 2, _state())
    assert [p.name for p in C.list_checkpoints(tmp_path)] == ["step_00000001.pt"]
