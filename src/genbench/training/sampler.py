"""Which examples each process trains on at each step, and the generator it augments them with.

Training is counted in steps; the data are still walked in epochs. With ``n`` examples, a
global batch ``B`` and ``W`` processes, each process takes ``b = max(1, B // W)`` examples a
step and an epoch has ``ceil(n / (b * W))`` steps. Step ``s`` lies in epoch ``e = s //
steps_per_epoch``, whose order is ``torch.randperm(n, generator=gen)`` with ``gen =
torch.Generator().manual_seed(seed * 1_000_003 + e)``; process ``r`` takes ``mine =
order[r::W]`` and step ``k`` of the epoch takes ``mine[k * b:(k + 1) * b]`` (``mine[:1]``
when that is empty, so every process keeps stepping: DistributedDataParallel needs matching
calls). The same ``gen``, just after the ``randperm``, is the epoch's augmentation generator:
the task draws from it step after step through the epoch.

The sampler's state (epoch, the generator's state, the next step) goes into a checkpoint, so
a run resumed at any step, mid-epoch too, draws exactly what it would have drawn.
"""

from __future__ import annotations

import math
from typing import Any

import torch

SEED_STRIDE = 1_000_003


def local_batch_size(batch_size: int, world_size: int = 1) -> int:
    """Examples each process takes per step for a global batch of ``batch_size``."""
    return max(1, batch_size // world_size)


def steps_per_epoch(num_examples: int, batch_size: int, world_size: int = 1) -> int:
    """Steps per pass over ``num_examples`` with a global batch of ``batch_size``."""
    if num_examples < 1:
        raise ValueError(f"cannot train on {num_examples} examples")
    return math.ceil(num_examples / (local_batch_size(batch_size, world_size) * world_size))


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The (CPU) generator of epoch ``epoch``: its order, then its augmentations."""
    return torch.Generator().manual_seed(seed * SEED_STRIDE + epoch)


class EpochSampler:
    """This process's example indices for each step (see the module docstring).

    Steps must be asked for in order (``indices(s)`` then ``indices(s + 1)`` ...), starting at
    an epoch's first step or where a loaded state left off: the augmentation generator can
    only be continued, not sought.
    """

    def __init__(self, num_examples: int, batch_size: int, seed: int, rank: int = 0,
                 world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
        self.num_examples = num_examples
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.local_batch = local_batch_size(batch_size, world_size)
        self.steps_per_epoch = steps_per_epoch(num_examples, batch_size, world_size)
        self._epoch: int | None = None
        self._gen: torch.Generator | None = None
        self._mine: torch.Tensor | None = None
        self._next_step = 0

    @property
    def epoch(self) -> int | None:
        """The epoch now drawn from (None before the first step)."""
        return self._epoch

    @property
    def generator(self) -> torch.Generator:
        """The current epoch's generator, for the task's augmentations."""
        if self._gen is None:
            raise RuntimeError("no epoch started yet: call indices(step) first")
        return self._gen

    def _start_epoch(self, epoch: int) -> None:
        gen = epoch_generator(self.seed, epoch)
        order = torch.randperm(self.num_examples, generator=gen)
        self._epoch, self._gen = epoch, gen
        self._mine = order[self.rank::self.world_size]

    def indices(self, step: int) -> torch.Tensor:
        """This process's example indices for step ``step`` (0-based, counted over the run)."""
        epoch, k = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            if k != 0:
                raise ValueError(f"step {step} is inside epoch {epoch}; the sampler can start "
                                 "an epoch only at its first step (load a state to resume)")
            self._start_epoch(epoch)
        elif step != self._next_step:
            raise ValueError(f"step {step} asked for, but the sampler is at step "
                             f"{self._next_step}: steps must be drawn in order")
        assert self._mine is not None
        idx = self._mine[k * self.local_batch:(k + 1) * self.local_batch]
        if len(idx) == 0:
            idx = self._mine[:1]
        self._next_step = step + 1
        return idx

    def state_dict(self) -> dict[str, Any]:
        return {"num_examples": self.num_examples, "seed": self.seed,
                "steps_per_epoch": self.steps_per_epoch, "epoch": self._epoch,
                "generator": None if self._gen is None else self._gen.get_state(),
                "next_step": self._next_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("num_examples", "seed", "steps_per_epoch"):
            if state[key] != getattr(self, key):
                raise ValueError(f"sampler state has {key}={state[key]}, this run "
                                 f"{getattr(self, key)}: it is not a state of this run")
        self._epoch = self._gen = self._mine = None
        if state["epoch"] is not None:
            self._start_epoch(int(state["epoch"]))
            assert self._gen is not None
            self._gen.set_state(state["generator"])
        self._next_step = int(state["next_step"])
