"""Scale-out: the same training code under `torchrun --nproc_per_node=N` (DistributedDataParallel,
gloo on CPU, nccl on GPU). Outside torchrun everything here is a no-op with world size 1."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_from_env(device: torch.device | None = None) -> DistInfo:
    """Join the process group torchrun describes (WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR...)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()

    backend = "nccl" if device is not None and device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), backend)


def wrap(model: torch.nn.Module, info: DistInfo, device: torch.device) -> torch.nn.Module:
    if not info.active:
        return model

    ids = [device.index if device.index is not None else info.local_rank] if device.type == "cuda" else None
    # find_unused_parameters: frozen blocks in block-wise fine-tuning take no gradient
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=False)


def epoch_indices(n: int, epoch: int, seed: int, info: DistInfo, shuffle: bool = True) -> list[int]:
    """This rank's sample order for one epoch (DistributedSampler semantics; all of them when
    not distributed)."""
    if not info.active:
        g = torch.Generator().manual_seed(seed + epoch)
        return torch.randperm(n, generator=g).tolist() if shuffle else list(range(n))
    sampler = DistributedSampler(
        range(n), num_replicas=info.world_size, rank=info.rank, shuffle=shuffle, seed=seed, drop_last=False
    )
    sampler.set_epoch(epoch)
    return list(sampler)


def barrier(info: DistInfo) -> None:
    if info.active:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    if info.active:
        if dist.is_initialized():
            dist.destroy_process_group()
