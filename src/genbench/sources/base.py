"""The image-source interface: random access to uint8 RGB images, plus a content fingerprint.

Every source yields H×W×3 uint8 numpy arrays (any size; mixed sizes are fine). Grayscale is
repeated to three channels; alpha is dropped and palettes expanded (as PIL's ``convert('RGB')``,
which pytorch-fid and clean-fid use); floats are rounded, never truncated.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
import torch

from genbench.errors import GenbenchError


class ImageSource(ABC):
    """Random-access images. Subclasses implement ``__len__``, ``load`` and ``fingerprint``."""

    #: Class label per image (int64 array) when the source carries labels, else None.
    labels: np.ndarray | None = None
    #: Names of the classes (index = label) when the source knows them, else None.
    class_names: tuple[str, ...] | None = None

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def load(self, index: int) -> np.ndarray:
        """Image ``index`` as H×W×3 uint8; raises BadImageError for an undecodable file."""

    def load_many(self, indices: Sequence[int]) -> list[np.ndarray]:
        return [self.load(i) for i in indices]

    def location(self, index: int) -> str:
        """Where image ``index`` comes from, for error messages."""
        return f"{self.describe()}[{index}]"

    @abstractmethod
    def fingerprint(self) -> str | None:
        """A digest of the images' content (None: not cacheable, e.g. a generator)."""

    @abstractmethod
    def describe(self) -> str:
        """A short human-readable name (path, data set name ...)."""


def float_to_uint8(x: np.ndarray | torch.Tensor, value_range: str = "auto") -> np.ndarray:
    """Round float images to uint8. ``value_range``: '0,1', '-1,1' or 'auto' (values below 0
    mean [-1, 1]). Values are clamped to the range; rounding is half-to-even (np.rint)."""
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    arr = arr.astype(np.float64, copy=False)
    if arr.size and not np.isfinite(arr).all():
        raise GenbenchError("float images contain NaN or infinite values")
    lo = float(arr.min()) if arr.size else 0.0
    hi = float(arr.max()) if arr.size else 0.0
    if value_range == "auto":
        if hi > 1.0 + 1e-6 or lo < -1.0 - 1e-6:
            raise GenbenchError(
                f"float images must lie in [0, 1] or [-1, 1], found values in [{lo:.3g}, "
                f"{hi:.3g}]; convert to uint8 yourself or rescale")
        value_range = "-1,1" if lo < 0 else "0,1"
    if value_range == "-1,1":
        scaled = (arr + 1.0) * 127.5
    elif value_range == "0,1":
        scaled = arr * 255.0
    else:
        raise GenbenchError(f"value_range must be 'auto', '0,1' or '-1,1', got {value_range!r}")
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def to_rgb_hwc(image: np.ndarray, where: str) -> np.ndarray:
    """H×W, H×W×1, H×W×3 or H×W×4 uint8 -> contiguous H×W×3 uint8."""
    if image.dtype != np.uint8:
        raise GenbenchError(f"{where}: expected uint8 pixels, got {image.dtype}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise GenbenchError(f"{where}: expected H×W×C with C in 1, 3, 4, got {image.shape}")
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    elif image.shape[2] == 4:
        image = image[:, :, :3]
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise GenbenchError(f"{where}: empty image of shape {image.shape}")
    return np.ascontiguousarray(image)


def array_digest(*arrays: np.ndarray) -> str:
    """sha256 over the shapes, dtypes and bytes of arrays."""
    h = hashlib.sha256()
    for arr in arrays:
        arr = np.ascontiguousarray(arr)
        h.update(f"{arr.dtype.str}{arr.shape}".encode())
        step = max(1, (1 << 24) // max(1, arr[0].nbytes if arr.ndim else 1))
        for start in range(0, len(arr) if arr.ndim else 1, step):
            h.update(arr[start:start + step].tobytes() if arr.ndim else arr.tobytes())
    return h.hexdigest()
