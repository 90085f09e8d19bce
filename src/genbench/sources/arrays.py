"""Images held in arrays: numpy/torch in memory, ``.npy`` files, ADM-style ``.npz`` batches,
and generator callables (a model scored without writing files)."""

from __future__ import annotations

import math
import os
import zipfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from genbench.errors import GenbenchError
from genbench.fileio import file_digest
from genbench.sources.base import (
    ImageSource,
    array_digest,
    class_labels,
    display_path,
    float_to_uint8,
    max_array_bytes,
    to_rgb_hwc,
)


def _channels_last(arr, layout: str, where: str):
    """Return the array as N×H×W×C (a view where possible)."""
    if arr.ndim == 3:  # N×H×W grayscale
        return arr[..., None]
    if arr.ndim != 4:
        raise GenbenchError(f"{where}: expected N×H×W×C or N×C×H×W images, got shape "
                            f"{tuple(arr.shape)}")
    if layout == "auto":
        if arr.shape[-1] in (1, 3, 4):
            layout = "NHWC"
        elif arr.shape[1] in (1, 3, 4):
            layout = "NCHW"
        else:
            raise GenbenchError(f"{where}: cannot tell the channel axis of shape "
                                f"{tuple(arr.shape)}; pass layout='NHWC' or 'NCHW'")
    if layout == "NCHW":
        return arr.permute(0, 2, 3, 1) if isinstance(arr, torch.Tensor) \
            else arr.transpose(0, 2, 3, 1)
    if layout != "NHWC":
        raise GenbenchError(f"layout must be 'auto', 'NHWC' or 'NCHW', got {layout!r}")
    return arr


class ArraySource(ImageSource):
    """A numpy array or torch tensor of images: uint8 as is, floats in [0, 1] or [-1, 1]
    rounded to uint8 (see ``float_to_uint8``). ``layout`` 'auto' takes the axis of size 1, 3 or
    4 as channels (last axis first)."""

    def __init__(self, images: np.ndarray | torch.Tensor, labels=None, *,
                 layout: str = "auto", value_range: str = "auto",
                 name: str = "array") -> None:
        self.name = name
        nhwc = _channels_last(images, layout, name)
        if isinstance(nhwc, torch.Tensor):
            nhwc = nhwc.detach().cpu()
            nhwc = nhwc.numpy() if nhwc.dtype == torch.uint8 else float_to_uint8(nhwc,
                                                                                 value_range)
        elif nhwc.dtype != np.uint8:
            if not np.issubdtype(nhwc.dtype, np.floating):
                raise GenbenchError(f"{name}: images must be uint8 or float, got {nhwc.dtype}")
            nhwc = float_to_uint8(nhwc, value_range)
        if len(nhwc) == 0:
            raise GenbenchError(f"{name}: no images (the array is empty)")
        self.images = nhwc
        if labels is not None:
            labels = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
            if labels.shape != (len(nhwc),):
                raise GenbenchError(f"{name}: labels have shape {labels.shape}, expected "
                                    f"({len(nhwc)},)")
            self.labels = class_labels(labels, name)

    def __len__(self) -> int:
        return len(self.images)

    def load(self, index: int) -> np.ndarray:
        return to_rgb_hwc(np.asarray(self.images[index]), self.location(index))

    def fingerprint(self) -> str:
        return array_digest(np.asarray(self.images))

    def describe(self) -> str:
        return self.name


def _npy_header(f) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) from the ``.npy`` header at ``f``'s position."""
    version = np.lib.format.read_magic(f)
    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                   else np.lib.format.read_array_header_2_0)
    return read_header(f)


def _pickled(path: Path, name: str) -> GenbenchError:
    return GenbenchError(f"{display_path(path)}: {name} holds pickled objects; genbench never "
                         "unpickles data, save plain arrays with np.savez")


def _open_npz_member(path: Path, member: str) -> np.ndarray:
    """Memory-map ``member`` of an uncompressed .npz (np.savez); load it if compressed, after
    checking from its header that it fits ``max_array_bytes()``. Pickled object arrays,
    encrypted members and truncated data are refused (GenbenchError)."""
    name = member[:-len(".npy")]
    where = f"{display_path(path)}: {name}"
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
        if info.flag_bits & 0x1:
            raise GenbenchError(f"{where} is encrypted (password-protected); save the batch "
                                "with np.savez")
        if info.compress_type == zipfile.ZIP_STORED:
            with open(path, "rb") as f:
                f.seek(info.header_offset)
                local = f.read(30)
                name_len = int.from_bytes(local[26:28], "little")
                extra_len = int.from_bytes(local[28:30], "little")
                start = info.header_offset + 30 + name_len + extra_len
                f.seek(start)
                shape, fortran, dtype = _npy_header(f)
                offset = f.tell()
            if dtype.hasobject:
                raise _pickled(path, name)
            if offset - start + math.prod(shape) * dtype.itemsize > info.file_size:
                raise GenbenchError(f"{where}: the array is truncated (its header declares "
                                    f"shape {tuple(shape)} {dtype}, more than the file holds);"
                                    " save the batch again")
            if not shape or math.prod(shape) == 0:
                return np.zeros(shape, dtype=dtype)
            return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape,
                             order="F" if fortran else "C")
        with zf.open(info) as f:
            shape, _, dtype = _npy_header(f)
        if dtype.hasobject:
            raise _pickled(path, name)
        nbytes, limit = math.prod(shape) * dtype.itemsize, max_array_bytes()
        if nbytes > limit:
            raise GenbenchError(
                f"{where} is stored compressed and would take {nbytes:,} bytes in memory "
                f"(shape {tuple(shape)} {dtype}), over the limit of {limit:,} "
                "(GENBENCH_MAX_ARRAY_BYTES); store the batch uncompressed (np.savez, not "
                "np.savez_compressed) so it can be memory-mapped, or raise "
                "GENBENCH_MAX_ARRAY_BYTES if you trust the file")
        with zf.open(info) as f:  # reads exactly the declared shape, in bounded blocks
            return np.lib.format.read_array(f, allow_pickle=False)


class NpzSource(ArraySource):
    """ADM-style batch: ``arr_0`` N×H×W×C uint8 (C = 1 or 3), ``arr_1`` labels when present.
    Uncompressed files (np.savez) are memory-mapped, so a 50k-image batch is not read into
    memory; compressed ones (np.savez_compressed) are loaded, after checking the size their
    ``.npy`` header declares against ``GENBENCH_MAX_ARRAY_BYTES`` (default 4 GiB)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        try:
            with zipfile.ZipFile(self.path) as zf:
                names = set(zf.namelist())
            if "arr_0.npy" not in names:
                raise GenbenchError(f"{self.path}: no 'arr_0' image array (found "
                                    f"{', '.join(sorted(n[:-4] for n in names)) or 'nothing'}"
                                    "); an ADM-style batch stores images as arr_0")
            images = _open_npz_member(self.path, "arr_0.npy")
            labels = _open_npz_member(self.path, "arr_1.npy") if "arr_1.npy" in names else None
        except (zipfile.BadZipFile, OSError, KeyError, ValueError, EOFError, zlib.error,
                NotImplementedError, RuntimeError) as exc:
            raise GenbenchError(f"{display_path(self.path)}: not a readable .npz file "
                                f"({display_path(str(exc) or type(exc).__name__)})") from None
        _check_uint8_nhwc(images, self.path)
        super().__init__(images, labels, layout="NHWC", name=str(self.path))

    def fingerprint(self) -> str:
        return file_digest(self.path)


class NpySource(ArraySource):
    """A ``.npy`` file of N×H×W×C uint8 images (memory-mapped)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        try:
            images = np.load(self.path, mmap_mode="r", allow_pickle=False)
        except ValueError as exc:
            if "pickle" not in str(exc):  # e.g. truncated: the header asks for more data
                raise GenbenchError(f"{display_path(self.path)}: not a readable .npy file "
                                    f"({exc})") from None
            raise GenbenchError(f"{display_path(self.path)}: holds pickled objects ({exc}); "
                                "genbench never unpickles data") from None
        except OSError as exc:
            raise GenbenchError(f"{display_path(self.path)}: not a readable .npy file "
                                f"({exc})") from None
        _check_uint8_nhwc(images, self.path)
        super().__init__(images, layout="NHWC", name=str(self.path))

    def fingerprint(self) -> str:
        return file_digest(self.path)


def _check_uint8_nhwc(images: np.ndarray, path: Path) -> None:
    if images.dtype != np.uint8:
        raise GenbenchError(f"{path}: images must be uint8, got {images.dtype}; save "
                            "np.clip(np.rint(x), 0, 255).astype(np.uint8)")
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise GenbenchError(f"{path}: images must be N×H×W×C with C = 1 or 3, got shape "
                            f"{images.shape}")


class GeneratorSource(ImageSource):
    """A convenience for quick checks: images drawn from ``generate(batch_size) -> images``
    (uint8 or float tensors/arrays, NCHW or NHWC), ``num_images`` in all, in calls of at most
    ``batch_size``.

    Not reproducible in the way a metric wants: every ``load_many`` call draws fresh images
    (the indices only count them), so the result depends on the world size under torchrun,
    on the batch size and on where a run resumed, and nothing is cached unless
    ``cache_key`` is given. For a model, implement ``genbench.Generator.sample(seeds,
    labels)`` instead: image i is then made from seed i (``SeededSource``), identical with 1
    or N processes and cacheable.
    """

    parallel_load = False  # a callable drawing images: run in this process

    def __init__(self, generate: Callable[[int], np.ndarray | torch.Tensor], num_images: int,
                 *, batch_size: int = 64, cache_key: str | None = None,
                 value_range: str = "auto", name: str = "generator") -> None:
        if num_images is None or num_images < 1:
            raise GenbenchError("a generator source needs num_images >= 1 (--num-images)")
        self.generate = generate
        self.num_images = int(num_images)
        self.batch_size = batch_size
        self.cache_key = cache_key
        self.value_range = value_range
        self.name = name

    def __len__(self) -> int:
        return self.num_images

    def load(self, index: int) -> np.ndarray:
        return self.load_many([index])[0]

    def load_many(self, indices: Sequence[int]) -> list[np.ndarray]:
        images: list[np.ndarray] = []
        while len(images) < len(indices):
            count = min(self.batch_size, len(indices) - len(images))
            batch = ArraySource(self.generate(count), value_range=self.value_range,
                                name=f"{self.name} output")
            if len(batch) != count:
                raise GenbenchError(f"{self.name}: asked for {count} images, got {len(batch)}")
            images += [batch.load(i) for i in range(count)]
        return images

    def fingerprint(self) -> str | None:
        return None if self.cache_key is None else f"generator:{self.cache_key}"

    def describe(self) -> str:
        return self.name
