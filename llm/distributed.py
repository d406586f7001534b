"""Thin layer over ``torch.distributed`` for ``torchrun`` launches (no home-made cluster code).

* CPU: gloo backend, the model wrapped in DDP (or FSDP2, for tests of that path).
* GPU: NCCL backend, one GPU per process (``LOCAL_RANK``), DDP or FSDP2 (``fully_shard`` on every
  decoder layer and the root; generation runs inside :func:`full_params`).
* Single process (no ``WORLD_SIZE`` or ``WORLD_SIZE=1``): nothing is initialised and every helper is
  the identity, so the same trainer code runs everywhere. ``CREDIT_RESETS_DIST=1`` under
  ``torchrun --nproc_per_node 1`` initialises a one-process group anyway, which runs the DDP / FSDP2
  and NCCL code paths on a machine with one GPU (``experiments/gpu_check.py``).

Prompts are sharded in contiguous blocks (rank r gets block r of the step's prompts); metrics are
gathered as lists and reduced on every rank; only rank 0 writes files.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    """Where this process sits in the job."""
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    """None when not distributed"""
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """A process group is in use: several processes, or one forced by ``CREDIT_RESETS_DIST=1``."""
        return self.world_size > 1 or self.backend is not None


def env_world_size() -> int:
    """WORLD_SIZE as set by torchrun (1 when absent)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_distributed(device: str = "auto") -> DistInfo:
    """Initialise the process group from torchrun's environment (gloo on CPU, nccl on GPU)."""
    world = env_world_size()
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but no GPU is visible; use --device cpu")
    dev = f"cuda:{local}" if use_cuda else "cpu"
    if world <= 1 and os.environ.get("CREDIT_RESETS_DIST") != "1":
        return DistInfo(device=dev if use_cuda else "cpu")
    backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local, backend=backend,
                    device=dev)


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def shard(items: list, info: DistInfo) -> tuple[list, int]:
    """Contiguous block of ``items`` for this rank and its offset; ``len(items)`` must divide evenly."""
    n = len(items)
    if n % info.world_size:
        raise ValueError(f"shard: {n} items cannot be split evenly over {info.world_size} ranks")
    per = n // info.world_size
    return items[info.rank * per:(info.rank + 1) * per], info.rank * per


def all_sum(values: list[float], info: DistInfo) -> list[float]:
    """Element-wise sum over ranks (float64)."""
    if not info.enabled:
        return [float(v) for v in values]
    t = torch.tensor(values, dtype=torch.float64, device=info.device if info.backend == "nccl" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.cpu().tolist()


def all_max(value: float, info: DistInfo) -> float:
    if not info.enabled:
        return float(value)
    t = torch.tensor([value], dtype=torch.float64, device=info.device if info.backend == "nccl" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def gather_lists(d: dict[str, list], info: DistInfo) -> dict[str, list]:
    """Concatenate each list over ranks, in rank order (identity in one process)."""
    if not info.enabled:
        return {k: list(v) for k, v in d.items()}
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, d)
    return {k: [x for part in out for x in part[k]] for k in d}


def wrap_model(model: torch.nn.Module, info: DistInfo, *, fsdp: bool = False) -> torch.nn.Module:
    """DDP (CPU or GPU) or FSDP2 around ``model``; the model itself in one process.

    FSDP2 is meant for GPUs (NCCL) and also runs on CPU with gloo (that is how it is tested).
    Generation keeps using the unwrapped module: DDP shares its parameters, and FSDP2's
    ``fully_shard`` modifies the module in place; wrap generation in :func:`full_params`.
    """
    if not info.enabled:
        return model
    if fsdp:
        from torch.distributed.fsdp import fully_shard
        layers = getattr(getattr(model, "model", model), "layers", None)
        if layers is None:  # peft wraps: PeftModel.base_model.model.model.layers
            inner = getattr(getattr(getattr(model, "base_model", None), "model", None), "model", None)
            layers = getattr(inner, "layers", [])
        for layer in layers:
            fully_shard(layer)
        fully_shard(model)
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP
    ids = [info.local_rank] if info.backend == "nccl" else None
    return DDP(model, device_ids=ids)


@contextmanager
def full_params(model: torch.nn.Module, info: DistInfo, fsdp: bool):
    """FSDP2: gather every shard once and keep the full parameters until the block ends.

    A sharded forward all-gathers (a collective), so every rank must run the same number of
    forwards; decode loops do not (each rank's prompts stop at different steps), which would
    hang. Inside this block forwards are local. No-op without FSDP.
    """
    if not (fsdp and info.enabled):
        yield
        return
    from torch.distributed.fsdp import FSDPModule
    mods = [m for m in model.modules() if isinstance(m, FSDPModule)]
    for m in mods:
        m.unshard()
    for m in mods:
        m.set_reshard_after_forward(False, recurse=False)
    try:
        yield
    finally:
        for m in mods:
            m.set_reshard_after_forward(True, recurse=False)
            m.reshard()
