"""Callbacks a generator's training loop wants: score the model with genbench every N steps,
and save a grid of samples every N steps.

Both see the EMA network when there is one, switch it to eval mode for the duration, and run
inside ``torch.random.fork_rng``, so a run that evaluates is bit-identical to one that does
not (a generator that draws from the global RNG cannot shift the training stream). They run
on every process (the evaluation extracts its share of the images under torchrun, with
process 0's buffers, e.g. batch-norm statistics, broadcast first so that every process
samples the same model); only process 0 writes files. The model changes between calls, so
its images are never taken from the feature cache (the generator's identity is dropped).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from genbench import distributed
from genbench.evaluation import Evaluation
from genbench.generators import Generator
from genbench.report.grid import save_grid
from genbench.training.engine import Callback, StepContext

MakeGenerator = Callable[[nn.Module], Generator]


@contextlib.contextmanager
def isolated(network: nn.Module) -> Iterator[nn.Module]:
    """``network`` in eval mode, with the global RNG states (torch, CUDA, numpy) restored
    afterwards; the previous mode is restored too."""
    was_training = network.training
    numpy_state = np.random.get_state()
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        network.eval()
        try:
            with torch.no_grad():
                yield network
        finally:
            network.train(was_training)
            np.random.set_state(numpy_state)


def _model(context: StepContext, use_ema: bool) -> nn.Module:
    return context.ema_network if use_ema and context.ema_network is not None \
        else context.network


def sync_buffers(network: nn.Module) -> None:
    """Process 0's buffers on every process (no-op without torchrun)."""
    for buffer in network.buffers():
        distributed.broadcast_(buffer.data)


class _Uncached(Generator):
    """The same generator without an identity: a model in training is a new model at every
    evaluation, so its images must not come from the cache."""

    def __init__(self, inner: Generator) -> None:
        self.inner, self.num_classes = inner, inner.num_classes

    def sample(self, seeds: np.ndarray, labels: np.ndarray | None = None):
        return self.inner.sample(seeds, labels)

    def describe(self) -> str:
        return self.inner.describe()


class ScoreEvery(Callback):
    """Every ``every`` steps: ``evaluation.score(make_generator(network), num_images=n)``
    (image i from seed i, the same seeds each time). Results are kept in ``history`` and,
    with ``log``, appended to a JSON-lines file (one object per evaluation: step, metrics,
    seconds)."""

    def __init__(self, every: int, evaluation: Evaluation, make_generator: MakeGenerator,
                 num_images: int, *, log: str | Path | None = None,
                 use_ema: bool = True) -> None:
        super().__init__(every)
        self.evaluation, self.make_generator = evaluation, make_generator
        self.num_images, self.use_ema = num_images, use_ema
        self.log = Path(log) if log is not None else None
        self.history: list[dict] = []

    def __call__(self, context: StepContext) -> None:
        with isolated(_model(context, self.use_ema)) as network:
            sync_buffers(network)
            result = self.evaluation.score(_Uncached(self.make_generator(network)),
                                           num_images=self.num_images,
                                           desc=f"step {context.step}")
        entry = {"step": context.step, "metrics": result.metrics, "seconds": result.seconds,
                 "ema": self.use_ema and context.ema_network is not None}
        self.history.append(entry)
        if self.log is not None and distributed.current().is_main:
            self.log.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log, "a") as f:
                f.write(json.dumps(entry) + "\n")


class SampleGridEvery(Callback):
    """Every ``every`` steps: a PNG grid of the images of seeds 0..count-1 (and ``labels``
    for a class-conditional generator), written to ``folder/step-NNNNNNN.png``."""

    def __init__(self, every: int, make_generator: MakeGenerator, folder: str | Path, *,
                 count: int = 64, labels: np.ndarray | None = None,
                 use_ema: bool = True) -> None:
        super().__init__(every)
        self.make_generator, self.folder = make_generator, Path(folder)
        self.count, self.labels, self.use_ema = count, labels, use_ema
        self.written: list[Path] = []

    def __call__(self, context: StepContext) -> None:
        if not distributed.current().is_main:
            return
        with isolated(_model(context, self.use_ema)) as network:
            generator = self.make_generator(network)
            labels = self.labels
            if labels is None and generator.num_classes:
                labels = np.arange(self.count) % generator.num_classes
            images = generator.sample(np.arange(self.count), labels)
        self.written.append(save_grid(images, self.folder / f"step-{context.step:07d}.png"))


class ProgressEvery(Callback):
    """Every ``every`` steps (process 0): one line ``step s/S  loss  img/s  eta`` to stderr
    (unless ``quiet``) and, with ``log``, a JSON line (step, loss, images per second since the
    previous report, seconds). ``batch_size`` is the global batch."""

    def __init__(self, every: int, batch_size: int, *, log: str | Path | None = None,
                 quiet: bool = False, label: str = "train") -> None:
        super().__init__(every)
        self.batch_size, self.quiet, self.label = batch_size, quiet, label
        self.log = Path(log) if log is not None else None
        self._last: tuple[int, float] | None = None
        self.images_per_second: list[float] = []

    def __call__(self, context: StepContext) -> None:
        import sys
        import time

        now = time.perf_counter()
        if self._last is None:  # first report of this process: no interval to time yet
            self._last = (context.step, now)
            rate = None
        else:
            steps, since = context.step - self._last[0], now - self._last[1]
            rate = steps * self.batch_size / since if since > 0 else None
            self._last = (context.step, now)
            if rate is not None:
                self.images_per_second.append(rate)
        if not distributed.current().is_main:
            return
        entry = {"step": context.step, "loss": context.loss,
                 "images_per_second": rate, "epoch": round(context.epoch, 3)}
        if self.log is not None:
            self.log.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log, "a") as f:
                f.write(json.dumps(entry) + "\n")
        if not self.quiet:
            left = context.total_steps - context.step
            eta = "" if not rate else f"  eta {left * self.batch_size / rate / 60:.1f} min"
            speed = "" if rate is None else f"  {rate:.0f} img/s"
            print(f"{self.label}: step {context.step}/{context.total_steps}  loss "
                  f"{context.loss:.5f}{speed}{eta}", file=sys.stderr, flush=True)
