"""A shared training engine: a step-counted, seeded, resumable loop with gradient
accumulation, EMA, gradient clipping, bf16 autocast and DistributedDataParallel under
torchrun. See ``engine.py`` for the loop and its seeding, ``checkpoint.py`` for what a
checkpoint holds and ``sampler.py`` for which examples each process takes at each step."""

from genbench.training.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from genbench.training.engine import (
    Callback,
    StepContext,
    TrainConfig,
    TrainResult,
    TrainTask,
    resolve_amp,
    run_device,
    train,
)
from genbench.training.sampler import EpochSampler, steps_per_epoch

__all__ = ["Callback", "Checkpoint", "EpochSampler", "StepContext", "TrainConfig",
           "TrainResult", "TrainTask", "load_checkpoint", "resolve_amp", "run_device",
           "save_checkpoint", "steps_per_epoch", "train"]
