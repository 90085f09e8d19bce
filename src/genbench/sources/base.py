"""The image-source interface: random access to uint8 RGB images, plus a content fingerprint.

Every source yields H×W×3 uint8 numpy arrays (any size; mixed sizes are fine). Grayscale is
repeated to three channels; alpha is dropped and palettes expanded (as PIL's ``convert('RGB')``,
which pytorch-fid and clean-fid use); floats are rounded, never truncated.

Limits on hostile input, each raisable by an environment variable (a whole number; ``_``
separators allowed, e.g. ``GENBENCH_MAX_PIXELS=400_000_000``):

``GENBENCH_MAX_PIXELS``        pixels per image, checked from the file's header before any
                               pixel is decoded (default 8192 × 8192 = 64 Mi pixels). Above
                               Pillow's own ``Image.MAX_IMAGE_PIXELS`` it raises that too.
``GENBENCH_MAX_MEMBER_BYTES``  declared uncompressed size of an image inside a zip (default
                               256 MiB), checked before the member is read.
``GENBENCH_MAX_ARRAY_BYTES``   in-memory size of a *compressed* ``.npz`` array (default 4 GiB),
                               from its ``.npy`` header before it is decompressed (uncompressed
                               ``np.savez`` files are memory-mapped and have no limit).

An image over a limit raises ``ImageTooLargeError``, a ``BadImageError``: ``--skip-bad``
skips and counts it like an undecodable file.
"""

from __future__ import annotations

import hashlib
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
import torch

from genbench.errors import BadImageError, GenbenchError

DEFAULT_MAX_PIXELS = 8192 * 8192
DEFAULT_MAX_MEMBER_BYTES = 256 << 20
DEFAULT_MAX_ARRAY_BYTES = 4 << 30


def _env_limit(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise GenbenchError(f"{name}={raw!r}: expected a whole number >= 1 (unset it for the "
                            f"default, {default})")
    return value


def max_pixels() -> int:
    """Most pixels (width × height) genbench decodes per image: ``$GENBENCH_MAX_PIXELS``."""
    return _env_limit("GENBENCH_MAX_PIXELS", DEFAULT_MAX_PIXELS)


def max_member_bytes() -> int:
    """Largest declared uncompressed size of a zip member: ``$GENBENCH_MAX_MEMBER_BYTES``."""
    return _env_limit("GENBENCH_MAX_MEMBER_BYTES", DEFAULT_MAX_MEMBER_BYTES)


def max_array_bytes() -> int:
    """Largest compressed .npz array loaded into memory: ``$GENBENCH_MAX_ARRAY_BYTES``."""
    return _env_limit("GENBENCH_MAX_ARRAY_BYTES", DEFAULT_MAX_ARRAY_BYTES)


class ImageTooLargeError(BadImageError):
    """An image (or zip member) over one of the limits above; ``--skip-bad`` skips these."""

    def __init__(self, location: str, what: str, limit: int, env: str,
                 owner: str = "genbench's") -> None:
        GenbenchError.__init__(
            self, f"{location}: {what}, over {owner} limit of {limit:,} ({env}); refusing "
                  f"to decode it (a decompression bomb?): if you trust the file, raise {env}, "
                  "or pass --skip-bad to skip such files")
        self.location = location


def display_path(path: str | bytes | os.PathLike) -> str:
    """``path`` for a one-line message: undecodable bytes of a file name (held as surrogate
    escapes, see ``os.fsdecode``) shown as ``\\xe9``, control and other unprintable
    characters as Python escapes, so printing the message never fails or breaks the line."""
    text = os.fsdecode(os.fspath(path))
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch.isprintable():
            out.append(ch)
        elif "\udc80" <= ch <= "\udcff":  # a byte that was not valid UTF-8 (surrogateescape)
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        else:
            out.append(ch.encode("unicode_escape", "backslashreplace").decode("ascii"))
    return "".join(out)


class ImageSource(ABC):
    """Random-access images. Subclasses implement ``__len__``, ``load`` and ``fingerprint``."""

    #: Class label per image (int64 array) when the source carries labels, else None.
    labels: np.ndarray | None = None
    #: Names of the classes (index = label) when the source knows them, else None.
    class_names: tuple[str, ...] | None = None
    #: whether worker processes may decode it (``--workers``): files and arrays yes, a
    #: generator (a model drawing images) no
    parallel_load: bool = True

    def for_worker(self) -> ImageSource:
        """This source as a worker process should use it (its own file handles)."""
        return self

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


def class_labels(labels: np.ndarray, where: str) -> np.ndarray:
    """Class labels as int64, refused unless they are whole numbers >= 0 (floats are never
    truncated: 2.7 is an error, 3.0 is 3)."""
    labels = np.asarray(labels)
    if labels.dtype == bool or not (np.issubdtype(labels.dtype, np.integer)
                                    or np.issubdtype(labels.dtype, np.floating)):
        raise GenbenchError(f"{where}: labels must be integers, got {labels.dtype}")
    if np.issubdtype(labels.dtype, np.floating):
        whole = np.isfinite(labels) & (labels == np.round(labels))
        if not whole.all():
            bad = labels[~whole][:5]
            raise GenbenchError(f"{where}: labels must be whole numbers (class indices), got "
                                f"{', '.join(map(str, bad))}")
    out = labels.astype(np.int64)
    if len(out) and out.min() < 0:
        raise GenbenchError(f"{where}: negative label(s) "
                            f"{', '.join(map(str, np.unique(out[out < 0])[:5]))}; classes are "
                            "numbered from 0")
    return out


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
