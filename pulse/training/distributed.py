"""Data-parallel training across processes started by ``torchrun`` (NCCL on CUDA, gloo on CPU).

Gradients are averaged by hand, one flat all-reduce per optimiser step and network, rather than through the
``DistributedDataParallel`` wrapper: a GAN step runs each network in several phases (D frozen inside G's
step, G under no_grad inside D's, a lazy R1 pass with a double backward), which the wrapper's per-forward
bookkeeping does not fit, and with gradient accumulation one reduction per step is all that is needed.
This is what NVIDIA's StyleGAN3 trainer does too. A single process needs none of it and pays nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn


@dataclass(frozen=True)
class Processes:
    """Where this process stands: its rank among ``world`` and its GPU index on the node."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def start(device_type: str) -> Processes:
    """Join the process group that torchrun describes in the environment; a lone process joins nothing."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Processes()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device_type == "cuda":
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return Processes(rank, world, local_rank)


def stop(processes: Processes):
    if processes.world > 1 and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_weights(module: nn.Module, processes: Processes):
    """Make every rank's copy equal to rank 0's (parameters and buffers)."""
    if processes.world > 1:
        for tensor in list(module.parameters()) + list(module.buffers()):
            dense = tensor.data.contiguous()  # channels_last weights: collectives want the default layout
            dist.broadcast(dense, src=0)
            tensor.data.copy_(dense)


def average_gradients(module: nn.Module, processes: Processes):
    """Mean of every rank's gradients, in one flat all-reduce."""
    if processes.world == 1:
        return
    params = [p for p in module.parameters() if p.grad is not None]
    flat = torch.cat([p.grad.flatten() for p in params])
    dist.all_reduce(flat)
    flat /= processes.world
    for p, grad in zip(params, flat.split([p.numel() for p in params])):
        p.grad.copy_(grad.view_as(p))


def average(values: torch.Tensor, processes: Processes) -> torch.Tensor:
    """Mean over ranks of a small tensor of statistics (for logging)."""
    if processes.world > 1:
        dist.all_reduce(values)
        values /= processes.world
    return values


def gather(obj, processes: Processes) -> list:
    """Every rank's ``obj`` (picklable), in rank order, on every rank."""
    if processes.world == 1:
        return [obj]
    out = [None] * processes.world
    dist.all_gather_object(out, obj)
    return out


def barrier(processes: Processes):
    if processes.world > 1:
        dist.barrier()
