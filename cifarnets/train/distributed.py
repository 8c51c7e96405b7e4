"""Just enough of ``torch.distributed`` for `fit` to run unchanged under ``torchrun``.

``torchrun --nproc-per-node N -m cifarnets train ...`` (or any launcher that sets RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT) makes `fit` join a process group: NCCL
on CUDA, gloo on CPU. Each rank trains on its shard of every epoch (`DeviceLoader`'s
``rank``/``world_size``), gradients are averaged by DistributedDataParallel, metrics are
summed over ranks, and only rank 0 writes files.
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass
from typing import Optional

import torch
import torch.distributed as dist
import torch.nn as nn

from ..errors import RunError

__all__ = ["DeviceError", "DistContext", "DistributedError", "env_world", "setup_distributed", "resolve_device"]


DeviceError = RunError  # kept name; the kind is cifarnets.errors.RunError


DistributedError = RunError  # kept name; the kind is cifarnets.errors.RunError


logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job; ``world_size == 1`` for a plain single-process run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # True when `setup_distributed` created the process group (and must destroy it)

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files and calls callbacks."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum `tensor` over ranks in place (no-op in a single process)."""
        if self.distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def broadcast_buffers(self, module: nn.Module) -> None:
        """Give every rank rank 0's buffers (BatchNorm running statistics).

        DDP broadcasts buffers before each *training* forward, so after the last step of an
        epoch every rank holds statistics updated with its own last batch; evaluation and the
        checkpoint must agree on one set: rank 0's.
        """
        if self.distributed:
            for buffer in module.buffers():
                dist.broadcast(buffer, src=0)

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def env_world() -> Optional[tuple[int, int, int]]:
    """(rank, world_size, local_rank) from torchrun's environment, or None outside a launcher."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    try:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local = int(os.environ.get("LOCAL_RANK", rank))
    except ValueError as err:
        raise DeviceError(f"RANK/WORLD_SIZE/LOCAL_RANK must be integers: {err}") from err
    return rank, world, local


def resolve_device(requested: Optional[str], local_rank: int = 0, distributed: bool = False) -> torch.device:
    """The device of a run: `requested`, else CUDA (``cuda:LOCAL_RANK`` under torchrun), MPS, CPU."""
    if requested is None or requested == "auto":
        if torch.cuda.is_available():
            requested = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available() and not distributed:
            requested = "mps"
        else:
            requested = "cpu"
    try:
        device = torch.device(requested)
    except (RuntimeError, TypeError) as err:
        raise DeviceError(f"device {requested!r} is not a device name; use cpu, cuda, cuda:1 or mps") from err
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {requested!r} was asked for but CUDA is not available; "
                               "use device='cpu' (--device cpu)")
        if device.index is None:
            device = torch.device("cuda", local_rank if distributed else torch.cuda.current_device())
        torch.cuda.set_device(device)
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError("device 'mps' was asked for but MPS is not available; use device='cpu' (--device cpu)")
    return device


def setup_distributed(requested_device: Optional[str], timeout_s: float = 600.0) -> tuple[DistContext, torch.device]:
    """Join (or create) the process group if launched by torchrun; return the context and device.

    A process group the caller already initialised is used as it is (and not destroyed by
    `fit`); otherwise one is created with NCCL for CUDA devices and gloo for CPU, whose
    collectives give up after `timeout_s` seconds: a stopped or dead peer becomes an error
    (`fit` raises `DistributedError`) instead of a hang.
    """
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        local = int(os.environ.get("LOCAL_RANK", rank))
        device = resolve_device(requested_device, local, world > 1)
        return DistContext(rank, world, local, owns_group=False), device
    env = env_world()
    if env is None or env[1] <= 1:
        return DistContext(), resolve_device(requested_device)
    rank, world, local = env
    if not dist.is_available():
        raise DeviceError("launched with WORLD_SIZE > 1 but this torch build has no torch.distributed")
    device = resolve_device(requested_device, local, True)
    backend = "nccl" if device.type == "cuda" else "gloo"
    kwargs: dict = {"device_id": device} if device.type == "cuda" else {}
    kwargs["timeout"] = datetime.timedelta(seconds=timeout_s)
    dist.init_process_group(backend=backend, rank=rank, world_size=world, **kwargs)
    logger.info("rank %d/%d joined a %s process group on %s", rank, world, backend, device)
    return DistContext(rank, world, local, owns_group=True), device


def teardown(ctx: DistContext) -> None:
    """Destroy the process group if `setup_distributed` created it."""
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()
