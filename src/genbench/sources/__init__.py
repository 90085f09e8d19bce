"""Image sources: everything genbench can read images from, behind one interface."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from genbench.errors import GenbenchError
from genbench.sources.arrays import ArraySource, GeneratorSource, NpySource, NpzSource
from genbench.sources.base import ImageSource, float_to_uint8
from genbench.sources.datasets import DATASETS, fashion_mnist, register_dataset
from genbench.sources.files import IMAGE_EXTENSIONS, ImageFolderSource, ZipSource

__all__ = [
    "DATASETS", "IMAGE_EXTENSIONS", "ArraySource", "GeneratorSource", "ImageFolderSource",
    "ImageSource", "NpySource", "NpzSource", "ZipSource", "fashion_mnist", "float_to_uint8",
    "open_source", "register_dataset",
]

SourceLike = ImageSource | str | os.PathLike | np.ndarray | torch.Tensor


def open_source(spec: SourceLike, *, num_images: int | None = None,
                batch_size: int = 64, with_labels: bool = False) -> ImageSource:
    """Turn what a user passes into an ImageSource: a data set name (``fashion-mnist:test``,
    ``digits``), a folder, a ``.zip``, an ADM-style ``.npz``, a ``.npy``, a numpy array, a torch
    tensor, or a callable ``batch_size -> images`` (needs ``num_images``). ``with_labels``
    labels a folder's images by their first-level sub-folder (one per class)."""
    if isinstance(spec, ImageSource):
        return spec
    if isinstance(spec, np.ndarray | torch.Tensor):
        return ArraySource(spec)
    if callable(spec):
        return GeneratorSource(spec, num_images, batch_size=batch_size,
                               name=getattr(spec, "__name__", "generator"))
    if isinstance(spec, str) and spec in DATASETS:
        return DATASETS[spec]()
    path = Path(spec)
    if path.is_dir():
        return ImageFolderSource(path, with_labels=with_labels)
    if not path.exists():
        hint = f"; built-in data sets: {', '.join(DATASETS)}" if ":" in str(spec) or \
            not path.suffix else ""
        raise GenbenchError(f"{spec}: no such file or folder{hint}")
    suffix = path.suffix.lower()
    if suffix == ".zip":
        return ZipSource(path)
    if suffix == ".npz":
        return NpzSource(path)
    if suffix == ".npy":
        return NpySource(path)
    raise GenbenchError(f"{spec}: cannot read images from a {suffix or 'extension-less'} file; "
                        "give a folder, .zip, .npz (ADM batch), .npy or a data set name")
