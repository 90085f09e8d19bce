"""One training loop for genbench's networks, counted in optimizer steps.

A ``TrainTask`` says what to train (network, optimizer, learning rate per step, how indices
become a batch, the loss); a ``TrainConfig`` says how (seed, length, global batch, gradient
accumulation, EMA, clipping, bf16 autocast, checkpoints, device); ``train`` runs it.

Seeding (everything derives from ``config.seed``):

* ``torch.manual_seed(seed)`` just before ``task.build_network``: the initial weights, and
  the global RNG stream after them (dropout and the like draw from it);
* the data order and augmentation of epoch ``e`` from a generator seeded with
  ``seed * 1_000_003 + e`` (see ``genbench.training.sampler``): the task's ``make_batch``
  gets it and draws from it sequentially through the epoch.

On the CPU a run is deterministic for a given seed and thread count, and a run resumed from
any checkpoint (one every ``checkpoint_every`` steps, and one after the last step) continues
bit for bit as if it had never stopped: a checkpoint holds the model, optimizer, EMA,
sampler and RNG states and the step (see ``genbench.training.checkpoint``).

One step (0-based index ``s``): the gradients are zeroed, every parameter group's ``lr`` is
set to ``task.lr(s)``, this process's examples of step ``s`` are split into ``grad_accum``
micro-batches (fewer when it has fewer examples), and for each the task makes the batch and
computes the loss (under bf16 autocast when enabled), which is divided by the number of
micro-batches and back-propagated. Gradients are clipped to ``clip_grad_norm`` (when set),
the optimizer steps and the EMA network is updated. Then, with ``t = s + 1`` steps done, a
checkpoint is written when due, and each callback whose ``every`` divides ``t`` is called.

Under torchrun (``genbench.distributed``: gloo on CPU, nccl on CUDA) the network is wrapped
in DistributedDataParallel: each process takes its share of the global batch, gradients are
averaged across processes once per step (``no_sync`` for all but the last micro-batch), and
batch norm statistics are per process.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from genbench import devices, distributed
from genbench.errors import GenbenchError
from genbench.training.checkpoint import (
    Checkpoint,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from genbench.training.sampler import EpochSampler

AmpMode = Literal["auto", "bf16", "off"]


@dataclass(frozen=True)
class TrainConfig:
    """How to train. Give the length as ``total_steps`` or as ``total_images`` (steps =
    ceil(total_images / batch_size)).

    * ``batch_size``: the global batch per optimizer step (split across processes, then
      into ``grad_accum`` micro-batches per process);
    * ``ema``: EMA decay (None: no EMA network); with ``ema_warmup`` the decay at step ``t``
      (0-based) is ``min(ema, (1 + t) / (10 + t))``;
    * ``clip_grad_norm``: max total gradient norm (None: no clipping);
    * ``amp``: "bf16" autocasts forward and loss to bfloat16; "auto" does so on CUDA devices
      that support bfloat16 and is off elsewhere (so CPU runs stay deterministic);
    * ``checkpoint_every``: steps between checkpoints (None: only after the last step);
      checkpoints are written only when ``train`` is given a path;
    * ``device``: as torch spells it, or "auto" (CUDA when present, else the CPU).
    """

    seed: int = 0
    total_steps: int | None = None
    total_images: int | None = None
    batch_size: int = 64
    grad_accum: int = 1
    ema: float | None = None
    ema_warmup: bool = False
    clip_grad_norm: float | None = None
    amp: AmpMode = "auto"
    checkpoint_every: int | None = None
    device: str = "auto"

    def __post_init__(self) -> None:
        if (self.total_steps is None) == (self.total_images is None):
            raise GenbenchError("give exactly one of total_steps and total_images")
        if (self.total_steps or 0) < 0 or (self.total_images or 0) < 0:
            raise GenbenchError("the training length cannot be negative")
        if self.batch_size < 1 or self.grad_accum < 1:
            raise GenbenchError("batch_size and grad_accum must be at least 1")
        if self.ema is not None and not 0.0 <= self.ema < 1.0:
            raise GenbenchError(f"ema decay must be in [0, 1), got {self.ema}")
        if self.amp not in ("auto", "bf16", "off"):
            raise GenbenchError(f"amp must be 'auto', 'bf16' or 'off', got {self.amp!r}")
        if self.checkpoint_every is not None and self.checkpoint_every < 1:
            raise GenbenchError("checkpoint_every must be at least 1 (or None)")

    @property
    def steps(self) -> int:
        """Optimizer steps of the whole run."""
        if self.total_steps is not None:
            return self.total_steps
        assert self.total_images is not None
        return math.ceil(self.total_images / self.batch_size)


class TrainTask(ABC):
    """What to train. The engine calls, in this order: ``build_network`` (just after
    ``torch.manual_seed(seed)``), ``build_optimizer``, then per step ``lr``, and per
    micro-batch ``make_batch`` and ``loss``."""

    @property
    @abstractmethod
    def num_examples(self) -> int:
        """Size of the training set (indices handed to ``make_batch`` are below it)."""

    @abstractmethod
    def build_network(self, device: torch.device) -> nn.Module:
        """The network, on ``device``."""

    @abstractmethod
    def build_optimizer(self, network: nn.Module) -> torch.optim.Optimizer:
        ...

    @abstractmethod
    def lr(self, step: int) -> float:
        """Learning rate of step ``step`` (0-based), set on every parameter group."""

    @abstractmethod
    def make_batch(self, indices: torch.Tensor, generator: torch.Generator,
                   device: torch.device) -> Any:
        """The micro-batch of examples ``indices`` on ``device``; random augmentations draw
        from ``generator`` (the epoch's, consumed in order through the epoch)."""

    @abstractmethod
    def loss(self, model: nn.Module, batch: Any, step: int) -> torch.Tensor:
        """Scalar loss of ``batch`` (a mean over its examples), computed with ``model`` (the
        network, or its DistributedDataParallel wrapper: call it, not the network)."""

    def state_dict(self) -> dict[str, Any]:
        """Extra state of the task to checkpoint (process 0's)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        """Restore what ``state_dict`` returned."""


@dataclass(frozen=True)
class StepContext:
    """What a callback sees: ``step`` optimizer steps are done."""

    step: int
    total_steps: int
    steps_per_epoch: int
    network: nn.Module                 # unwrapped from DistributedDataParallel
    ema_network: nn.Module | None
    optimizer: torch.optim.Optimizer
    rank: int
    world_size: int
    loss: float | None = None          # this step's loss on this process (all micro-batches)

    @property
    def epoch(self) -> float:
        """Epochs done (fractional)."""
        return self.step / self.steps_per_epoch


@dataclass
class Callback:
    """``fn(context)`` after every ``every``-th step (steps ``every``, ``2 * every``, ...
    counted over the whole run, resumed or not), on every process. Subclasses may override
    ``__call__`` instead of passing ``fn``."""

    every: int
    fn: Callable[[StepContext], None] | None = None

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ValueError(f"callback interval must be at least 1 step, got {self.every}")

    def __call__(self, context: StepContext) -> None:
        if self.fn is not None:
            self.fn(context)


@dataclass
class TrainResult:
    network: nn.Module                 # in eval mode
    ema_network: nn.Module | None      # None without EMA
    steps: int                         # steps of the run
    start_step: int                    # step it started (resumed) from
    steps_per_epoch: int
    amp: Literal["bf16", "off"]        # what autocast did
    seconds: float = 0.0               # wall seconds of steps 0..steps over every invocation,
    #                                    callbacks included (steps redone after an
    #                                    interruption count once)


def run_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch.device: "auto" is CUDA when present, else the CPU, and a bare
    "cuda" is this process's current GPU."""
    device = devices.resolve_device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def resolve_amp(amp: AmpMode, device: torch.device) -> Literal["bf16", "off"]:
    """What ``amp`` means on ``device``: "auto" is bf16 on CUDA devices that support it."""
    if amp == "auto":
        cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return "bf16" if cuda_bf16 else "off"
    if amp not in ("bf16", "off"):
        raise ValueError(f"amp must be 'auto', 'bf16' or 'off', got {amp!r}")
    return amp


def ema_decay(config: TrainConfig, step: int) -> float:
    """EMA decay applied after step ``step`` (0-based)."""
    assert config.ema is not None
    if config.ema_warmup:
        return min(config.ema, (1 + step) / (10 + step))
    return config.ema


@torch.no_grad()
def _update_ema(ema: nn.Module, net: nn.Module, decay: float) -> None:
    """ema ← decay · ema + (1 - decay) · net for parameters; buffers are copied."""
    for e, p in zip(ema.parameters(), net.parameters(), strict=True):
        e.mul_(decay).add_(p.detach(), alpha=1.0 - decay)
    for e, b in zip(ema.buffers(), net.buffers(), strict=True):
        e.copy_(b)


def _meta(config: TrainConfig, task: TrainTask) -> dict[str, Any]:
    return {"seed": config.seed, "batch_size": config.batch_size,
            "grad_accum": config.grad_accum, "num_examples": task.num_examples,
            "ema": config.ema is not None}


def train(task: TrainTask, config: TrainConfig, *,
          checkpoint_path: str | Path | None = None,
          callbacks: Sequence[Callback] = ()) -> TrainResult:
    """Train ``task`` as ``config`` says, resuming from ``checkpoint_path`` when it holds a
    checkpoint of this run (and writing checkpoints there)."""
    device = run_device(config.device)
    ctx = distributed.current()
    amp = resolve_amp(config.amp, device)
    total = config.steps
    sampler = EpochSampler(task.num_examples, config.batch_size, config.seed, ctx.rank,
                           ctx.world_size)
    torch.manual_seed(config.seed)
    net = task.build_network(device)
    optimizer = task.build_optimizer(net)
    ema = None
    if config.ema is not None:
        ema = copy.deepcopy(net).eval().requires_grad_(False)

    start, seconds_before = 0, 0.0
    saved = load_checkpoint(checkpoint_path) if checkpoint_path is not None else None
    if saved is not None:
        if saved.meta != _meta(config, task):
            raise GenbenchError(f"{checkpoint_path}: checkpoint of another run ({saved.meta}, "
                                f"this run {_meta(config, task)}); delete it to start over")
        net.load_state_dict(saved.model)
        optimizer.load_state_dict(saved.optimizer)
        if ema is not None:
            assert saved.ema is not None
            ema.load_state_dict(saved.ema)
        # same world size: each process its own state; otherwise (not bit-identical) reuse
        mine = ctx.rank % len(saved.sampler)
        sampler.load_state_dict(saved.sampler[mine])
        set_rng_state(saved.rng[mine], device)
        task.load_state_dict(saved.task)
        start, seconds_before = saved.step, saved.seconds

    model: nn.Module = net
    if ctx.active:
        model = nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None)
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if amp == "bf16" \
        else contextlib.nullcontext

    began = time.perf_counter()

    def elapsed() -> float:
        return seconds_before + time.perf_counter() - began

    recorded: dict[int, float] = {}  # step → the seconds its checkpoint holds

    def write_checkpoint(step: int) -> None:
        recorded[step] = elapsed()
        samplers = distributed.all_gather_objects(sampler.state_dict())
        rngs = distributed.all_gather_objects(rng_state(device))
        assert checkpoint_path is not None
        save_checkpoint(checkpoint_path, Checkpoint(
            step=step, world_size=ctx.world_size, model=net.state_dict(),
            optimizer=optimizer.state_dict(), ema=None if ema is None else ema.state_dict(),
            sampler=samplers, rng=rngs, task=task.state_dict(), meta=_meta(config, task),
            seconds=recorded[step]))

    model.train()
    for step in range(start, total):
        optimizer.zero_grad(set_to_none=True)
        lr = task.lr(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        idx = sampler.indices(step)
        micro = idx.tensor_split(min(config.grad_accum, len(idx)))
        step_loss = torch.zeros((), device=device)
        for j, part in enumerate(micro):
            batch = task.make_batch(part, sampler.generator, device)
            last = j == len(micro) - 1
            sync = contextlib.nullcontext() if last or not ctx.active else model.no_sync()
            with sync:
                with autocast():
                    loss = task.loss(model, batch, step)
                if len(micro) > 1:
                    loss = loss / len(micro)
                loss.backward()
            step_loss += loss.detach().float()
        if config.clip_grad_norm is not None:
            nn.utils.clip_grad_norm_(net.parameters(), config.clip_grad_norm)
        optimizer.step()
        if ema is not None:
            _update_ema(ema, net, ema_decay(config, step))

        done = step + 1
        if checkpoint_path is not None and (
                done == total or (config.checkpoint_every and done % config.checkpoint_every == 0)):
            write_checkpoint(done)
        due = [cb for cb in callbacks if done % cb.every == 0]
        if due:
            context = StepContext(done, total, sampler.steps_per_epoch, net, ema, optimizer,
                                  ctx.rank, ctx.world_size, float(step_loss))
            for cb in due:
                cb(context)
            model.train()  # a callback may have switched to eval mode
    # the seconds the final checkpoint holds, so that asking a finished run again reports
    # the same figure (without a checkpoint: up to now)
    seconds = seconds_before if start >= total else recorded.get(total, elapsed())
    return TrainResult(net.eval(), ema, total, start, sampler.steps_per_epoch, amp,
                       seconds=seconds)
