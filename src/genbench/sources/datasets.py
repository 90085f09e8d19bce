"""Built-in data sets by name: ``fashion-mnist:train``, ``fashion-mnist:test``, ``digits``.

Fashion-MNIST is read from Debian's ``dataset-fashion-mnist`` package when installed
(/usr/share/datasets/fashion-mnist), else from genbench's cache, else downloaded from Zalando's
official URLs. Every copy is checked against the sha256 of the decompressed idx files.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import numpy as np

from genbench.errors import GenbenchError
from genbench.fileio import cache_dir, download
from genbench.registry import Registry
from genbench.sources.arrays import ArraySource
from genbench.sources.base import array_digest

FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FASHION_MNIST_DIRS = (Path("/usr/share/datasets/fashion-mnist"),)
# sha256 of the *decompressed* idx files (Debian re-compresses, so .gz bytes differ).
FASHION_MNIST_FILES = {
    "train-images-idx3-ubyte.gz":
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte.gz":
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte.gz":
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte.gz":
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot")


def parse_idx(data: bytes, where: str) -> np.ndarray:
    """Decode the idx format (zero bytes, dtype code 0x08 = uint8, ndim, big-endian dims)."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise GenbenchError(f"{where}: not a uint8 idx file")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise GenbenchError(f"{where}: truncated idx file ({body.size} of {np.prod(dims)} "
                            "bytes)")
    return body.reshape(dims)


def _fashion_mnist_file(name: str) -> tuple[bytes, str]:
    import hashlib

    expected = FASHION_MNIST_FILES[name]
    candidates = [d / name for d in FASHION_MNIST_DIRS]
    candidates.append(cache_dir() / "datasets" / "fashion-mnist" / name)
    for path in candidates:
        if path.is_file():
            data = gzip.decompress(path.read_bytes())
            if hashlib.sha256(data).hexdigest() != expected:
                raise GenbenchError(f"{path}: content does not match Fashion-MNIST's sha256 "
                                    f"{expected[:16]}...; delete or reinstall it")
            return data, expected
    dest = candidates[-1]
    download(FASHION_MNIST_URL + name, dest)
    data = gzip.decompress(dest.read_bytes())
    if hashlib.sha256(data).hexdigest() != expected:
        dest.unlink()
        raise GenbenchError(f"{FASHION_MNIST_URL + name}: downloaded content does not match "
                            "Fashion-MNIST's sha256")
    return data, expected


class DatasetSource(ArraySource):
    """An in-memory data set whose fingerprint is a constant (its files' checksums)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, name: str, digest: str,
                 class_names: tuple[str, ...]) -> None:
        super().__init__(images, labels, layout="NHWC", name=name)
        self._digest = digest
        self.class_names = class_names

    def fingerprint(self) -> str:
        return f"{self.name}:{self._digest}"


def fashion_mnist(split: str) -> DatasetSource:
    """Fashion-MNIST ``train`` (60,000) or ``test`` (10,000): 28×28 grayscale, 10 classes."""
    prefix = {"train": "train", "test": "t10k"}.get(split)
    if prefix is None:
        raise GenbenchError(f"fashion-mnist split must be 'train' or 'test', got {split!r}")
    img_bytes, img_sha = _fashion_mnist_file(f"{prefix}-images-idx3-ubyte.gz")
    lab_bytes, lab_sha = _fashion_mnist_file(f"{prefix}-labels-idx1-ubyte.gz")
    images = parse_idx(img_bytes, f"fashion-mnist {prefix} images")
    labels = parse_idx(lab_bytes, f"fashion-mnist {prefix} labels")
    return DatasetSource(images[..., None], labels, f"fashion-mnist:{split}",
                         f"{img_sha[:16]}-{lab_sha[:16]}", FASHION_MNIST_CLASSES)


def digits() -> DatasetSource:
    """scikit-learn's 1,797 8×8 digits; values 0..16 scaled to uint8 as round(v·255/16)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise GenbenchError("the 'digits' data set needs scikit-learn: "
                            "pip install scikit-learn") from None
    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    return DatasetSource(images[..., None], bunch.target, "digits",
                         array_digest(images, bunch.target)[:32],
                         tuple(str(i) for i in range(10)))


DATASETS: Registry[Callable[[], DatasetSource]] = Registry("data set")


def register_dataset(name: str, factory: Callable[[], DatasetSource]) -> None:
    DATASETS.register(name, factory)


register_dataset("fashion-mnist:train", lambda: fashion_mnist("train"))
register_dataset("fashion-mnist:test", lambda: fashion_mnist("test"))
register_dataset("digits", digits)

