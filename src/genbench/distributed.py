"""torch.distributed glue: under ``torchrun`` each process takes every world-th chunk of images
and the float64 moment sums are all-reduced, so every process ends with the statistics a single
process would compute. Without torchrun everything here is a no-op."""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init_distributed(device: str = "cpu") -> DistContext:
    """Join the process group torchrun set up (gloo on CPU, nccl on CUDA); idempotent."""
    if not launched_by_torchrun():
        return DistContext()
    if not dist.is_initialized():
        use_cuda = device.startswith("cuda")
        if use_cuda:  # "cuda" then means this process's own GPU
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        atexit.register(_leave_process_group)
    return DistContext(dist.get_rank(), dist.get_world_size())


def _leave_process_group() -> None:
    """At exit, destroy the group ``init_distributed`` created while the interpreter is still
    whole: left to interpreter teardown, gloo's worker threads can abort a process that has
    finished its work ("terminate called without an active exception", SIGABRT; seen once in
    CI on test_training's two-process run; pytorch/pytorch#190489)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def current() -> DistContext:
    if dist.is_available() and dist.is_initialized():
        return DistContext(dist.get_rank(), dist.get_world_size())
    return DistContext()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over processes in place (float64 stays float64)."""
    ctx = current()
    if ctx.active:
        if dist.get_backend() == "nccl" and tensor.device.type != "cuda":
            on_gpu = tensor.cuda()
            dist.all_reduce(on_gpu, op=dist.ReduceOp.SUM)
            tensor.copy_(on_gpu.cpu())
        else:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_(tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
    """Overwrite ``tensor`` in place with process ``src``'s."""
    if current().active:
        if dist.get_backend() == "nccl" and tensor.device.type != "cuda":
            on_gpu = tensor.cuda()
            dist.broadcast(on_gpu, src=src)
            tensor.copy_(on_gpu.cpu())
        else:
            dist.broadcast(tensor, src=src)
    return tensor


def all_true(flag: bool) -> bool:
    """Whether ``flag`` holds on every process (for decisions all processes take together)."""
    if not current().active:
        return flag
    value = torch.tensor([0.0 if flag else 1.0], dtype=torch.float64)
    return float(all_reduce_sum(value)[0]) == 0.0


def barrier() -> None:
    if current().active:
        dist.barrier()


def all_gather_objects(obj) -> list:
    ctx = current()
    if not ctx.active:
        return [obj]
    out = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out
