"""Two CPU processes (gloo; DDP, and FSDP2) reproduce a single-process run with the same global batch."""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from llm import distributed as D

from ._trainkit import even_task, micro_cfg, save_micro, strip_times

pytest.importorskip("llm.tiny")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, model_dir: str, out: str, method: str, extra: tuple = ()):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from llm.train import train
    info = D.init_distributed("cpu")
    try:
        train(micro_cfg(model_dir, out, method, "--sampling_rng", "per_prompt", "--device", "cpu", *extra), info,
              task=even_task())
    finally:
        D.shutdown(info)


def _read(p):
    return [json.loads(x) for x in Path(p).read_text().splitlines() if x.strip()]


def _close(a, b, path=""):
    if isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-4, abs=1e-5), path
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _close(a[k], b[k], f"{path}.{k}")
    else:
        assert a == b, path


# each spawned process spends ~5-10 s importing transformers on a shared 2-core box: one method by default
@pytest.mark.parametrize("method", ["srpo", pytest.param("grpo", marks=pytest.mark.slow),
                                    pytest.param("oracle", marks=pytest.mark.slow)])
def test_two_gloo_processes_match_one_process(tmp_path, method):
    torch.set_num_threads(1)
    model_dir = save_micro(tmp_path)
    from llm.train import train
    single = train(micro_cfg(model_dir, str(tmp_path / "one"), method, "--sampling_rng", "per_prompt"),
                   task=even_task())
    mp.spawn(_worker, args=(2, _free_port(), model_dir, str(tmp_path / "two"), method), nprocs=2, join=True)
    two = _read(tmp_path / "two" / "metrics.jsonl")
    one = strip_times(json.loads(json.dumps(single)))
    two = strip_times(two)
    assert len(one) == len(two)
    for a, b in zip(one, two):
        _close(a, b, f"step {a['step']} {a['kind']}")
    assert any(r["kind"] == "train" and r["grad_norm"] for r in one)
    a = torch.load(tmp_path / "one" / "checkpoints" / "step_00000004.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "two" / "checkpoints" / "step_00000004.pt", weights_only=False)["model"]
    _same_updates(model_dir, a, b)


@pytest.mark.slow
def test_two_gloo_processes_with_mini_batches_match_one_process(tmp_path):
    """Two AdamW steps per batch (``--mini_batches 2``): every rank cuts its 2 prompts into 2 mini-batches
    of one prompt, each mini-batch's denominator is global, so 2 processes reproduce one process."""
    torch.set_num_threads(1)
    model_dir = save_micro(tmp_path)
    from llm.train import train
    extra = ("--mini_batches", "2")
    single = train(micro_cfg(model_dir, str(tmp_path / "one"), "srpo", "--sampling_rng", "per_prompt", *extra),
                   task=even_task())
    mp.spawn(_worker, args=(2, _free_port(), model_dir, str(tmp_path / "two"), "srpo", extra), nprocs=2, join=True)
    one = strip_times(json.loads(json.dumps(single)))
    two = strip_times(_read(tmp_path / "two" / "metrics.jsonl"))
    assert len(one) == len(two) and all(r["opt_steps"] == 2 for r in one if r["kind"] == "train")
    for a, b in zip(one, two):
        _close(a, b, f"step {a['step']} {a['kind']}")
    a = torch.load(tmp_path / "one" / "checkpoints" / "step_00000004.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "two" / "checkpoints" / "step_00000004.pt", weights_only=False)["model"]
    _same_updates(model_dir, a, b)


def _same_updates(model_dir: str, a: dict, b: dict, rtol: float = 1e-3) -> None:
    """The two runs moved every weight tensor the same way: ``|dA - dB| <= rtol |dA|`` (Frobenius) for
    the updates ``d = final - initial``. Element-wise closeness is the wrong test after Adam steps: a
    coordinate whose gradient is float noise (~1e-9) gets an update of order lr in a direction set by
    summation order, and the two runs sum their micro-batches in different orders (seen: one element
    of 2048 off by 2-3e-5 at lr 1e-2, in about half of the oracle runs)."""
    from safetensors.torch import load_file
    init = load_file(str(Path(model_dir) / "model.safetensors"))
    checked = 0
    for k, w0 in init.items():
        da, db = a[k].float() - w0.float(), b[k].float() - w0.float()
        assert float((da - db).norm()) <= rtol * float(da.norm()) + 1e-7, k
        checked += 1
    assert checked == len(init) and checked > 0


def test_two_gloo_processes_with_fsdp_match_one_process(tmp_path):
    """FSDP2 (fully_shard per layer + root) on 2 CPU processes: same metrics and final weights as one
    process. SRPO's ranks decode different numbers of steps (fresh tries, localization, continuations),
    which only works because generation runs inside ``full_params`` (a sharded forward is a
    collective); the checkpoint is the gathered full state dict."""
    torch.set_num_threads(1)
    model_dir = save_micro(tmp_path)
    from llm.train import train
    single = train(micro_cfg(model_dir, str(tmp_path / "one"), "srpo", "--sampling_rng", "per_prompt"),
                   task=even_task())
    _spawn_fsdp(model_dir, tmp_path / "two")
    one = strip_times(json.loads(json.dumps(single)))
    two = strip_times(_read(tmp_path / "two" / "metrics.jsonl"))
    assert len(one) == len(two)
    for a, b in zip(one, two):
        _close(a, b, f"step {a['step']} {a['kind']}")
    a = torch.load(tmp_path / "one" / "checkpoints" / "step_00000004.pt", weights_only=False)
    b = torch.load(tmp_path / "two" / "checkpoints" / "step_00000004.pt", weights_only=False)
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=1e-4, atol=1e-5)
    # stopped after step 2 and resumed from the FSDP checkpoint (full state dicts): same as uninterrupted
    _spawn_fsdp(model_dir, tmp_path / "three", "--steps", "2")
    _spawn_fsdp(model_dir, tmp_path / "three", "--steps", "4", "--resume")
    assert strip_times(_read(tmp_path / "three" / "metrics.jsonl")) == two


def _spawn_fsdp(model_dir: str, out, *extra: str, limit_s: float = 300):
    ctx = mp.spawn(_worker, args=(2, _free_port(), model_dir, str(out), "srpo", ("--fsdp", "true", *extra)),
                   nprocs=2, join=False)
    deadline = time.monotonic() + limit_s
    while not ctx.join(timeout=5):  # a rank stuck in a collective would otherwise hang the suite
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.terminate()
            pytest.fail(f"2-process FSDP run did not finish in {limit_s:.0f} s (a rank waiting in a collective?)")


def test_shard_and_single_process_helpers():
    info = D.DistInfo(rank=1, world_size=2)
    assert D.shard(list(range(6)), info) == ([3, 4, 5], 3)
    with pytest.raises(ValueError, match="evenly"):
        D.shard(list(range(5)), info)
    one = D.DistInfo()
    assert D.all_sum([1, 2.5], one) == [1.0, 2.5] and D.gather_lists({"a": [1]}, one) == {"a": [1]}
    m = torch.nn.Linear(2, 2)
    assert D.wrap_model(m, one) is m
    with D.full_params(m, one, fsdp=True):  # no-op in one process
        pass


def test_forced_one_process_group(monkeypatch):
    """CREDIT_RESETS_DIST=1 with WORLD_SIZE=1 initialises a real one-process group (what lets the DDP /
    FSDP2 / NCCL paths run on a one-GPU machine); without it one process stays undistributed."""
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(_free_port()))
    assert not D.init_distributed("cpu").enabled
    monkeypatch.setenv("CREDIT_RESETS_DIST", "1")
    info = D.init_distributed("cpu")
    try:
        assert info.enabled and info.backend == "gloo" and info.world_size == 1
        assert D.all_sum([1.0, 2.0], info) == [1.0, 2.0] and D.all_max(3.0, info) == 3.0
        m = D.wrap_model(torch.nn.Linear(2, 2), info)
        assert type(m).__name__ == "DistributedDataParallel"
    finally:
        D.shutdown(info)


@pytest.mark.slow
def test_gpu_check_script_on_cpu(tmp_path):
    """experiments/gpu_check.py (the prepared device check) passes on CPU: single, ddp1, fsdp1 runs."""
    import subprocess
    import sys
    root = Path(__file__).resolve().parents[2]
    p = subprocess.run([sys.executable, str(root / "experiments" / "gpu_check.py"), "--out", str(tmp_path / "out"),
                        "--work", str(tmp_path / "work"), "--device", "cpu", "--size", "micro", "--skip_speed"],
                       cwd=root, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    res = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert [c["backend"] for c in res["checks"]] == [None, "gloo", "gloo"]
    assert all(c["ok"] for c in res["checks"])
