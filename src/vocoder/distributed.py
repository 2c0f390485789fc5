"""Data-parallel training across processes: PyTorch's own engine (torchrun, DDP), nothing
home-made.

A process started by ``torchrun`` (or ``vocoder train --nproc N``, which runs torchrun)
finds its rank in the environment; ``join`` starts the process group (nccl on CUDA,
gloo on CPU). One process is a world of size 1 and needs no group. Every collective here
is called by all ranks at the same steps, so none can wait forever on a rank that skipped
it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class World:
    """This process's place in the job."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0 validates, logs and writes checkpoints; the others wait for it."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on any (a stop decision all must share)."""
        if self.size == 1:
            return flag
        t = torch.tensor([int(flag)])
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def mean(self, value: float) -> float:
        """``value`` averaged over the ranks (the logged training loss of the whole batch)."""
        if self.size == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(t)
        return float(t.item()) / self.size


def join(cuda: bool) -> World:
    """This process's world from torchrun's environment, with the process group started
    when there is more than one rank (nccl for CUDA, gloo for CPU)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    world = World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        if cuda:
            torch.cuda.set_device(world.local_rank)
        dist.init_process_group("nccl" if cuda else "gloo")
    return world


def leave() -> None:
    """End this process's part in the group, if it joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def launch(nproc: int, argv: list[str]) -> int:
    """Run ``python -m vocoder ARGV`` as ``nproc`` ranks under torch's elastic launcher on
    this machine; returns its exit status (non-zero when any rank failed: the launcher
    then stops the others)."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "vocoder",
        *argv,
    ]
    return subprocess.run(command, check=False).returncode


def wrap(module: torch.nn.Module, device: torch.device, world: World) -> DistributedDataParallel:
    """``module`` under DDP, without the per-step broadcast of buffers: this model's buffers
    (the mel statistics and the input mask, 3N x inputs values) never change in training
    and start equal on every rank, so sending them each step would only cost time. (The
    keyword is deprecated in new torch for a replacement older torch lacks.)"""
    ids = [world.local_rank] if device.type == "cuda" else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return DistributedDataParallel(module, device_ids=ids, broadcast_buffers=False)
