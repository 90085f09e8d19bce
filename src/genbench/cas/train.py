"""Train a recipe's classifier on a labelled set and measure it on another.

Deterministic on CPU for a given seed (and thread count): the initial weights come from
``torch.manual_seed(seed)``, and epoch e's order and augmentation from a generator seeded with
(seed, e), so a run resumed from its epoch-e checkpoint continues exactly as if it had never
stopped. A checkpoint (model, optimiser, epoch) is written atomically after every epoch.
Under torchrun the model is wrapped in DistributedDataParallel; process r takes every W-th
example of each epoch's order and the global batch is split across processes (batch norm
statistics are per process).
"""

from __future__ import annotations

import math
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
from genbench.fileio import atomic_path

CHECKPOINT_NAME = "checkpoint.pt"


@dataclass
class Accuracy:
    top1: float
    top5: float
    top5_k: int                        # min(5, number of classes)
    per_class: list[float | None]      # None for a class absent from the test set
    counts: list[int]                  # test examples per class

    def as_dict(self) -> dict:
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


def train_classifier(data: LabelledImages, recipe: Recipe, num_classes: int, *, seed: int = 0,
                     device: str | torch.device = "cpu", checkpoint_dir: Path | None = None,
                     progress: bool = True, desc: str = "train",
                     on_epoch_end: Callable[[int], None] | None = None) -> nn.Module:
    """The recipe's network trained on ``data`` (resuming from ``checkpoint_dir`` when it
    holds a checkpoint of this run)."""
    device = torch.device(device)
    ctx = distributed.current()
    torch.manual_seed(seed)
    net = build_network(recipe, num_classes).to(device).to(memory_format=torch.channels_last)
    optimizer = _optimizer(net, recipe)
    start_epoch = 0
    ckpt = checkpoint_dir / CHECKPOINT_NAME if checkpoint_dir is not None else None
    if ckpt is not None and ckpt.is_file():
        state = torch.load(ckpt, map_location=device, weights_only=True)
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch = int(state["epoch"])
    model = net
    if ctx.world_size > 1:
        model = nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None)
    n = len(data)
    local_batch = max(1, recipe.batch_size // ctx.world_size)
    steps_per_epoch = math.ceil(n / (local_batch * ctx.world_size))
    for epoch in range(start_epoch, recipe.epochs):
        gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(n, generator=gen)
        mine = order[ctx.rank::ctx.world_size]
        model.train()
        seen, correct, loss_sum = 0, 0, 0.0
        bar = tqdm(range(steps_per_epoch), desc=f"{desc} {epoch + 1}/{recipe.epochs}",
                   unit="step", disable=not (progress and ctx.is_main), dynamic_ncols=True,
                   leave=False)
        for step in bar:
            idx = mine[step * local_batch:(step + 1) * local_batch]
            if len(idx) == 0:
                idx = mine[:1]  # keep every process stepping (DDP needs matching calls)
            x = _augment(_prepare(data.images[idx], recipe), recipe, gen)
            x = x.to(device).contiguous(memory_format=torch.channels_last)
            y = data.labels[idx].to(device)
            for group in optimizer.param_groups:
                group["lr"] = _lr_at(recipe, epoch * steps_per_epoch + step, steps_per_epoch)
            logits = model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=recipe.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += len(idx)
            correct += int((logits.argmax(1) == y).sum())
            loss_sum += float(loss.detach()) * len(idx)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
        bar.close()
        if ckpt is not None and ctx.is_main:
            ckpt.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(ckpt) as tmp:
                torch.save({"model": net.state_dict(), "optimizer": optimizer.state_dict(),
                            "epoch": epoch + 1}, tmp)
        distributed.barrier()
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1)
    return net.eval()


@torch.inference_mode()
def evaluate_classifier(net: nn.Module, data: LabelledImages, recipe: Recipe, num_classes: int,
                        device: str | torch.device = "cpu", batch_size: int = 500) -> Accuracy:
    """Top-1, top-k (k = min(5, classes)) and per-class top-1 accuracy on ``data``."""
    device = torch.device(device)
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
