"""A generator as an image source: image i of a run is ``generator.sample([seed + i])``."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import numpy as np
import torch

from genbench.errors import GenbenchError
from genbench.generators.base import Generator
from genbench.sources.base import ImageSource, array_digest, to_rgb_hwc


def balanced_labels(num_images: int, num_classes: int) -> np.ndarray:
    """Label of image i: i mod num_classes (every class equally often, fixed per index)."""
    return np.arange(num_images, dtype=np.int64) % num_classes


def checked_images(images, count: int, name: str) -> list[np.ndarray]:
    """A generator's ``sample()`` output as ``count`` RGB H×W×3 uint8 images; one error line
    naming the generator when it is not uint8 N×3×H×W (or N×1×H×W) with N = ``count``."""
    arr = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) \
        else np.asarray(images)
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[1] not in (1, 3):
        raise GenbenchError(f"{name}: sample() must return uint8 N×3×H×W images, got "
                            f"{arr.dtype} {tuple(arr.shape)}")
    if len(arr) != count:
        raise GenbenchError(f"{name}: asked for {count} images, got {len(arr)}")
    where = f"{name} output"
    return [to_rgb_hwc(img.transpose(1, 2, 0), where) for img in arr]


class SeededSource(ImageSource):
    """``num_images`` images of ``generator``, image i drawn from seed ``seed + i`` (and label
    ``labels[i]`` for a class-conditional generator: by default ``i mod num_classes``).

    Which images a process or a resumed run asks for never changes what they are, so the
    features are the same with 1 or N processes; with a generator identity they are cached
    (the key holds the identity, the first seed and the labels)."""

    parallel_load = False  # a model drawing images: run in this process

    def __init__(self, generator: Generator, num_images: int, *, seed: int = 0,
                 labels: Sequence[int] | np.ndarray | None = None,
                 batch_size: int = 64) -> None:
        if num_images is None or int(num_images) < 1:
            raise GenbenchError(f"{generator.describe()}: a generator needs the number of "
                                "images to draw (--num-images / n >= 1)")
        if batch_size < 1:
            raise GenbenchError(f"batch size must be >= 1, got {batch_size}")
        self.generator = generator
        self.num_images = int(num_images)
        self.seed = int(seed)
        self.batch_size = int(batch_size)
        if labels is None and generator.num_classes:
            labels = balanced_labels(self.num_images, generator.num_classes)
        if labels is not None:
            labels = np.asarray(labels)
            if labels.shape != (self.num_images,) or not np.issubdtype(labels.dtype,
                                                                       np.integer):
                raise GenbenchError(f"{generator.describe()}: labels must be {self.num_images} "
                                    f"integers, got {labels.dtype} {labels.shape}")
            if generator.num_classes and (labels.min() < 0
                                          or labels.max() >= generator.num_classes):
                raise GenbenchError(f"{generator.describe()}: labels must lie in 0.."
                                    f"{generator.num_classes - 1}")
            self.labels = labels.astype(np.int64)

    def __len__(self) -> int:
        return self.num_images

    def load(self, index: int) -> np.ndarray:
        return self.load_many([index])[0]

    def load_many(self, indices: Sequence[int]) -> list[np.ndarray]:
        indices = np.asarray(indices, dtype=np.int64)
        out: list[np.ndarray] = []
        for start in range(0, len(indices), self.batch_size):
            part = indices[start:start + self.batch_size]
            labels = None if self.labels is None else self.labels[part]
            out += checked_images(self.generator.sample(self.seed + part, labels),
                                  len(part), self.generator.describe())
        return out

    def fingerprint(self) -> str | None:
        identity = self.generator.identity()
        if identity is None:
            return None
        labels = None if self.labels is None else array_digest(self.labels)
        payload = json.dumps({"generator": identity, "seed": self.seed, "labels": labels},
                             sort_keys=True)
        return "generator:" + hashlib.sha256(payload.encode()).hexdigest()

    def describe(self) -> str:
        return self.generator.describe()
