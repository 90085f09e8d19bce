"""The generator contract: a model is asked for images by seed.

``sample(seeds, labels=None)`` returns one uint8 N×3×H×W image per seed, image i made from
``seeds[i]`` (and ``labels[i]`` for a class-conditional model) alone: never from a shared
random stream, the batch it came in or the process that asked. A run of n images asks for
seeds 0..n-1 (plus an offset), so its result is the same with 1 or N processes, in any batch
size and after a resume. ``identity()`` (checkpoint hash plus sampler settings) makes the
images cacheable like any other source; None means uncacheable.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import numpy as np
import torch

from genbench.errors import GenbenchError

Images = np.ndarray | torch.Tensor


class Generator(ABC):
    """A model that draws images by seed. Class-conditional models set ``num_classes``."""

    #: number of classes of a class-conditional model (labels 0..num_classes-1), else None
    num_classes: int | None = None

    @abstractmethod
    def sample(self, seeds: np.ndarray, labels: np.ndarray | None = None) -> Images:
        """uint8 N×3×H×W (or N×1×H×W) images, image i from ``seeds[i]`` (and ``labels[i]``)."""

    def identity(self) -> str | None:
        """What determines the images besides the seed (e.g. checkpoint sha256 + sampler
        settings); None: the images are not cached."""
        return None

    def describe(self) -> str:
        return type(self).__name__


class FunctionGenerator(Generator):
    """A function ``fn(seeds, labels) -> images`` as a generator (``labels`` is None for an
    unconditional model). Give ``identity`` to make its images cacheable: it must change
    whenever the function's output would."""

    def __init__(self, fn: Callable[[np.ndarray, np.ndarray | None], Images], *,
                 identity: str | None = None, num_classes: int | None = None,
                 name: str | None = None) -> None:
        self.fn = fn
        self._identity = identity
        self.num_classes = num_classes
        self.name = name or getattr(fn, "__name__", "generator")

    def sample(self, seeds: np.ndarray, labels: np.ndarray | None = None) -> Images:
        return self.fn(seeds, labels)

    def identity(self) -> str | None:
        return self._identity

    def describe(self) -> str:
        return self.name


def as_generator(obj: object, where: str = "generator") -> Generator:
    """``obj`` if it is a Generator; a one-line error saying how to make one otherwise."""
    if isinstance(obj, Generator):
        return obj
    raise GenbenchError(f"{where}: expected a genbench Generator (sample(seeds, labels) -> "
                        f"uint8 N×3×H×W), got {type(obj).__name__}; wrap a function "
                        "fn(seeds, labels) as genbench.FunctionGenerator(fn)")
