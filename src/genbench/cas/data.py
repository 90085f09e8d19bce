"""Labelled image sets for CAS: real train/test data and class-conditional samples, held as
uint8 N×3×H×W tensors (the small recipe's data sets fit in memory: 60,000 × 28² × 3 bytes
is 141 MB)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from genbench.errors import GenbenchError
from genbench.sources import ImageSource, open_source


@dataclass
class LabelledImages:
    images: torch.Tensor                  # uint8, N × 3 × H × W
    labels: torch.Tensor                  # int64, N
    name: str
    fingerprint: str | None = None        # content identity (for caches), None if unknown
    notes: list[str] = field(default_factory=list)
    class_names: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def size(self) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[3])

    def counts(self, num_classes: int) -> np.ndarray:
        return np.bincount(self.labels.numpy(), minlength=num_classes)

    def resized(self, size: tuple[int, int]) -> LabelledImages:
        """The images resized (bilinear, antialiased, rounded) to ``size``, with a note."""
        if self.size == tuple(size):
            return self
        out = []
        for start in range(0, len(self), 1024):
            x = self.images[start:start + 1024].float()
            x = F.interpolate(x, size=size, mode="bilinear", antialias=True,
                              align_corners=False)
            out.append(x.round_().clamp_(0, 255).to(torch.uint8))
        note = (f"{self.name}: images are {self.size[0]}×{self.size[1]}, resized to "
                f"{size[0]}×{size[1]} (bilinear, antialiased) to match the real data")
        fp = f"{self.fingerprint}@{size[0]}x{size[1]}" if self.fingerprint else None
        return LabelledImages(torch.cat(out), self.labels, self.name, fp, [*self.notes, note],
                              self.class_names)


def _stack(images: list[np.ndarray], where: str) -> torch.Tensor:
    shapes = {img.shape for img in images}
    if len(shapes) > 1:
        raise GenbenchError(f"{where}: images have different sizes ({sorted(shapes)[:3]} ...); "
                            "CAS needs one size per data set")
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()


def _folder_labels(source: ImageSource, class_names: tuple[str, ...]) -> np.ndarray:
    """Labels of a class-folder source in the real data's numbering: a sub-folder named by
    an integer is that class; otherwise it must be one of the real data's class names."""
    names = list(source.class_names)
    ids = []
    for name in names:
        if name.lstrip("-").isdigit():
            ids.append(int(name))
        elif name in class_names:
            ids.append(class_names.index(name))
        else:
            raise GenbenchError(f"{source.describe()}: sub-folder {name!r} is neither a class "
                                f"number nor a class name of the real data (classes: "
                                f"{', '.join(class_names)})")
    return np.asarray(ids, dtype=np.int64)[np.asarray(source.labels)]


def _is_folder(source: ImageSource) -> bool:
    from genbench.sources.files import ImageFolderSource

    return isinstance(source, ImageFolderSource)


def load_labelled(spec: str | os.PathLike | ImageSource, role: str, progress: bool = True,
                  class_names: tuple[str, ...] | None = None) -> LabelledImages:
    """A labelled data set from a source spec (a data set name such as fashion-mnist:train,
    an ADM .npz with arr_1 labels, a folder with one sub-folder per class, ...).
    For samples, ``class_names`` are the real data's: class sub-folders are then numbered as
    the real classes (by integer name or by class name); without it a folder's classes are
    its sorted sub-folder names."""
    source = spec if isinstance(spec, ImageSource) else open_source(spec, with_labels=True)
    if source.labels is None:
        raise GenbenchError(f"{role} {source.describe()}: has no labels; CAS needs a class per "
                            "image (a folder with one sub-folder per class, an .npz with "
                            "arr_1 labels, or a data set such as fashion-mnist:train)")
    n = len(source)
    images: list[np.ndarray] = []
    with tqdm(total=n, desc=f"loading {role}", unit="img", disable=not progress,
              dynamic_ncols=True) as bar:
        for start in range(0, n, 1000):
            batch = source.load_many(list(range(start, min(start + 1000, n))))
            images += batch
            bar.update(len(batch))
    own_names = source.class_names
    if _is_folder(source) and class_names is not None:
        raw, own_names = _folder_labels(source, class_names), class_names
    else:
        raw = np.asarray(source.labels, dtype=np.int64)
    return LabelledImages(_stack(images, source.describe()), torch.as_tensor(raw),
                          source.describe(), source.fingerprint(),
                          class_names=tuple(own_names) if own_names else None)


def matched_labels(real_train: LabelledImages, per_class: int | None, num_classes: int,
                   seed: int) -> np.ndarray:
    """Labels to draw: the real training set's labels (per-class counts matched, as the paper
    prescribes: every real example replaced by a sample of its class), or ``per_class`` of
    every class; shuffled with ``seed``."""
    if per_class is not None:
        if per_class < 1:
            raise GenbenchError(f"--per-class must be >= 1, got {per_class}")
        labels = np.repeat(np.arange(num_classes), per_class)
    else:
        labels = real_train.labels.numpy().copy()
    np.random.default_rng(seed).shuffle(labels)
    return labels
