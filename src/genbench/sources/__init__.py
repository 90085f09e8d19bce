"""Image sources: everything genbench can read images from, behind one interface."""

from __future__ import annotations

import os

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
    """The images ``spec`` names (as ``genbench.resolve.resolve_input`` decides: a data set
    name, a folder, a ``.zip``, an ADM-style ``.npz``, a ``.npy``, an array or tensor, a
    Generator, or a callable ``batch_size -> images`` that needs ``num_images``).
    ``with_labels`` labels a folder's images by their first-level sub-folder (one per
    class). An input that holds no images (statistics, features) is an error."""
    from genbench.resolve import ResolveOptions, resolve_input

    resolved = resolve_input(spec, ResolveOptions(num_images=num_images, batch_size=batch_size,
                                                  with_labels=with_labels))
    if resolved.source is None and resolved.kind == "generator":
        raise GenbenchError(f"{resolved.label}: a generator needs num_images")
    if resolved.source is None:
        raise GenbenchError(f"{resolved.label}: holds {resolved.kind}, not images")
    return resolved.source
