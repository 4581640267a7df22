"""DDP under ``torchrun``: read the launcher's environment, set up the process group, wrap the model.

Single-process runs (no ``WORLD_SIZE`` in the environment) pass through unchanged.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """True on the process that writes logs and checkpoints."""
        return self.rank == 0


def setup() -> DistInfo:
    """Initialise ``torch.distributed`` from torchrun's variables when present."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local)


def device_for(info: DistInfo) -> torch.device:
    """The device this process trains on."""
    return torch.device(f"cuda:{info.local_rank}") if torch.cuda.is_available() else torch.device("cpu")


def wrap(model: nn.Module, info: DistInfo) -> nn.Module:
    """Wrap in DistributedDataParallel when running on several processes (else return ``model``).

    Pass one module holding every trained parameter (``loop.Trainable``: student + adapters). On GPUs
    BatchNorm becomes SyncBatchNorm (statistics over the global batch; converted in place, so the
    caller's references to submodules stay valid). On CPU (gloo) torch has no SyncBatchNorm: each
    process normalises with its own batch's statistics, and DDP broadcasts rank 0's running
    statistics before every forward.
    """
    if info.world_size <= 1:
        return model
    ids = None
    if torch.cuda.is_available():
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        ids = [info.local_rank]
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)


def all_reduce_mean(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Mean of a tensor over all processes (for logging)."""
    if info.world_size <= 1:
        return value
    value = value.detach().clone()
    dist.all_reduce(value)
    return value / info.world_size


def cleanup(info: DistInfo) -> None:
    """Tear the process group down."""
    if info.world_size > 1 and dist.is_initialized():
        dist.destroy_process_group()
