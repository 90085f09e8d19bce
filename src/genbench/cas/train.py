"""Train a recipe's classifier on a labelled set and measure it on another.

Training runs on the shared engine (``genbench.training``), one checkpoint per epoch:
deterministic on CPU for a given seed (and thread count): the initial weights come from
``torch.manual_seed(seed)``, and epoch e's order and augmentation from a generator seeded with
(seed, e), so a run resumed from its epoch-e checkpoint continues exactly as if it had never
stopped. A checkpoint (model, optimiser, sampler and RNG state, step) is written atomically
after every epoch. Under torchrun the model is wrapped in DistributedDataParallel; process r
takes every W-th example of each epoch's order and the global batch is split across processes
(batch norm statistics are per process).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from genbench import distributed
from genbench.cas.data import LabelledImages
from genbench.cas.recipes import NETWORKS, Recipe
from genbench.training import (
    Callback,
    StepContext,
    TrainConfig,
    TrainTask,
    run_device,
    train,
)
from genbench.training.sampler import steps_per_epoch

CHECKPOINT_NAME = "checkpoint.pt"


@dataclass
class Accuracy:
    top1: float
    top5: float
    top5_k: int                        # min(5, number of classes)
    per_class: list[float | None]      # None for a class absent from the test set
    counts: list[int]                  # test examples per class

    def to_dict(self) -> dict:
        return {"top1": self.top1, "top5": self.top5, "top5_k": self.top5_k,
                "per_class": self.per_class, "counts": self.counts}


def build_network(recipe: Recipe, num_classes: int) -> nn.Module:
    return NETWORKS[recipe.network](recipe, num_classes, 3)


def _prepare(images: torch.Tensor, recipe: Recipe) -> torch.Tensor:
    """uint8 N×3×H×W -> float in [-1, 1], resized to the recipe's input size if it has one."""
    x = images.float().div_(127.5).sub_(1.0)
    if recipe.input_size is not None and x.shape[-1] != recipe.input_size:
        x = F.interpolate(x, size=(recipe.input_size, recipe.input_size), mode="bilinear",
                          antialias=True, align_corners=False)
    return x


def _augment(x: torch.Tensor, recipe: Recipe, gen: torch.Generator) -> torch.Tensor:
    """Random crops of the zero-padded images (the same size back) and random flips."""
    n, _, h, w = x.shape
    if recipe.crop_padding:
        p = recipe.crop_padding
        padded = F.pad(x, (p, p, p, p))
        dy = torch.randint(0, 2 * p + 1, (n,), generator=gen).tolist()
        dx = torch.randint(0, 2 * p + 1, (n,), generator=gen).tolist()
        out = torch.stack([padded[i, :, a:a + h, b:b + w]
                           for i, (a, b) in enumerate(zip(dy, dx, strict=True))])
        x = out
    if recipe.flip:
        flip = torch.rand(n, generator=gen) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    return x


def _lr_at(recipe: Recipe, step: int, steps_per_epoch: int) -> float:
    epoch = step / steps_per_epoch
    if epoch < recipe.warmup_epochs:
        return recipe.lr * epoch / recipe.warmup_epochs
    if recipe.schedule == "linear":
        span = max(recipe.epochs - recipe.warmup_epochs, 1e-9)
        return recipe.lr * max(0.0, 1.0 - (epoch - recipe.warmup_epochs) / span)
    return recipe.lr * 0.1 ** sum(epoch >= m for m in recipe.milestones)


def _optimizer(net: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    decay = [p for p in net.parameters() if p.ndim > 1]
    no_decay = [p for p in net.parameters() if p.ndim <= 1]  # batch norm and biases
    return torch.optim.SGD([{"params": decay, "weight_decay": recipe.weight_decay},
                            {"params": no_decay, "weight_decay": 0.0}],
                           lr=recipe.lr, momentum=0.9, nesterov=True)


class _ClassifierTask(TrainTask):
    """The recipe's classifier on ``data`` with label-smoothed cross-entropy; keeps the
    current epoch's running loss and accuracy for the progress bar."""

    def __init__(self, data: LabelledImages, recipe: Recipe, num_classes: int,
                 steps_per_epoch: int) -> None:
        self.data, self.recipe, self.num_classes = data, recipe, num_classes
        self.steps_per_epoch = steps_per_epoch
        self.track = False
        self.seen, self.correct, self.loss_sum = 0, 0, 0.0

    @property
    def num_examples(self) -> int:
        return len(self.data)

    def build_network(self, device: torch.device) -> nn.Module:
        net = build_network(self.recipe, self.num_classes)
        return net.to(device).to(memory_format=torch.channels_last)

    def build_optimizer(self, network: nn.Module) -> torch.optim.Optimizer:
        return _optimizer(network, self.recipe)

    def lr(self, step: int) -> float:
        return _lr_at(self.recipe, step, self.steps_per_epoch)

    def make_batch(self, indices: torch.Tensor, generator: torch.Generator,
                   device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        x = _augment(_prepare(self.data.images[indices], self.recipe), self.recipe, generator)
        x = x.to(device).contiguous(memory_format=torch.channels_last)
        return x, self.data.labels[indices].to(device)

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor],
             step: int) -> torch.Tensor:
        x, y = batch
        logits = model(x)
        loss = F.cross_entropy(logits, y, label_smoothing=self.recipe.label_smoothing)
        if self.track:
            self.seen += len(y)
            self.correct += int((logits.argmax(1) == y).sum())
            self.loss_sum += float(loss.detach()) * len(y)
        return loss


class _EpochBar(Callback):
    """One progress bar per epoch, with its running loss and accuracy (process 0 only)."""

    def __init__(self, task: _ClassifierTask, epochs: int, desc: str) -> None:
        super().__init__(every=1)
        self.task, self.epochs, self.desc = task, epochs, desc
        self.bar: tqdm | None = None
        task.track = True

    def __call__(self, context: StepContext) -> None:
        task, spe = self.task, context.steps_per_epoch
        epoch, k = divmod(context.step - 1, spe)
        if self.bar is None:
            self.bar = tqdm(total=spe, initial=k, desc=f"{self.desc} {epoch + 1}/{self.epochs}",
                            unit="step", dynamic_ncols=True, leave=False)
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{task.loss_sum / task.seen:.3f}",
                             acc=f"{task.correct / task.seen:.3f}")
        if k == spe - 1:
            self.bar.close()
            self.bar = None
            task.seen, task.correct, task.loss_sum = 0, 0, 0.0


def train_classifier(data: LabelledImages, recipe: Recipe, num_classes: int, *, seed: int = 0,
                     device: str | torch.device = "cpu", checkpoint_dir: Path | None = None,
                     progress: bool = True, desc: str = "train",
                     on_epoch_end: Callable[[int], None] | None = None) -> nn.Module:
    """The recipe's network trained on ``data`` (resuming from ``checkpoint_dir`` when it
    holds a checkpoint of this run)."""
    ctx = distributed.current()
    spe = steps_per_epoch(len(data), recipe.batch_size, ctx.world_size)
    task = _ClassifierTask(data, recipe, num_classes, spe)
    config = TrainConfig(seed=seed, total_steps=recipe.epochs * spe,
                         batch_size=recipe.batch_size, amp="off", checkpoint_every=spe,
                         device=str(run_device(device)))
    callbacks: list[Callback] = []
    if progress and ctx.is_main:
        callbacks.append(_EpochBar(task, recipe.epochs, desc))
    if on_epoch_end is not None:
        callbacks.append(Callback(spe, lambda c: on_epoch_end(c.step // c.steps_per_epoch)))
    ckpt = checkpoint_dir / CHECKPOINT_NAME if checkpoint_dir is not None else None
    return train(task, config, checkpoint_path=ckpt, callbacks=callbacks).network


@torch.inference_mode()
def evaluate_classifier(net: nn.Module, data: LabelledImages, recipe: Recipe, num_classes: int,
                        device: str | torch.device = "cpu", batch_size: int = 500) -> Accuracy:
    """Top-1, top-k (k = min(5, classes)) and per-class top-1 accuracy on ``data``."""
    device = run_device(device)
    net.eval()
    k = min(5, num_classes)
    hits1, hitsk = [], []
    for start in range(0, len(data), batch_size):
        x = _prepare(data.images[start:start + batch_size], recipe).to(device)
        logits = net(x.contiguous(memory_format=torch.channels_last)).float().cpu()
        y = data.labels[start:start + batch_size]
        top = logits.topk(k, dim=1).indices
        hits1.append(top[:, 0] == y)
        hitsk.append((top == y[:, None]).any(dim=1))
    h1, hk = torch.cat(hits1).numpy(), torch.cat(hitsk).numpy()
    labels = data.labels.numpy()
    counts = np.bincount(labels, minlength=num_classes)
    correct = np.bincount(labels, weights=h1, minlength=num_classes)
    per_class = [float(c / m) if m else None for c, m in zip(correct, counts, strict=True)]
    return Accuracy(float(h1.mean()), float(hk.mean()), k, per_class,
                    [int(c) for c in counts])
