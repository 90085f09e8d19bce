"""Image files: a folder (recursive) or a zip archive."""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, UnidentifiedImageError

from genbench.errors import BadImageError, GenbenchError
from genbench.sources.base import ImageSource

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"})


def decode_image(data: bytes | Path, location: str) -> np.ndarray:
    """Decode fully (truncated files fail here, not later) and convert to RGB uint8."""
    try:
        with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as img:
            img.load()
            if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                raise BadImageError(location, f"{img.mode} (16-bit/float) images are not "
                                              "supported; convert to 8-bit")
            if img.mode == "P" and "transparency" in img.info:
                img = img.convert("RGBA")
            return np.asarray(img.convert("RGB"), dtype=np.uint8)
    except BadImageError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise BadImageError(location, str(exc) or type(exc).__name__) from None


class ImageFolderSource(ImageSource):
    """All image files below ``root`` (recursive, sorted by relative path), by extension:
    png, jpg, jpeg, bmp, webp, tif, tiff (case-insensitive). A folder whose sub-folders are
    class names gives labels (sorted sub-folder names -> 0..K-1) when ``with_labels``."""

    def __init__(self, root: str | os.PathLike, with_labels: bool = False) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise GenbenchError(f"{self.root}: not a folder")
        self.files = sorted(
            (p for p in self.root.rglob("*")
             if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()),
            key=lambda p: p.relative_to(self.root).as_posix())
        if not self.files:
            raise GenbenchError(f"{self.root}: no image files found (looked recursively for "
                                f"{', '.join(sorted(IMAGE_EXTENSIONS))})")
        if with_labels:
            classes = sorted({p.relative_to(self.root).parts[0] for p in self.files
                              if len(p.relative_to(self.root).parts) > 1})
            index = {name: i for i, name in enumerate(classes)}
            try:
                self.labels = np.array([index[p.relative_to(self.root).parts[0]]
                                        for p in self.files], dtype=np.int64)
            except KeyError:
                raise GenbenchError(f"{self.root}: images directly in the folder have no "
                                    "class; put each class in its own sub-folder") from None
            self.class_names = classes

    def __len__(self) -> int:
        return len(self.files)

    def load(self, index: int) -> np.ndarray:
        return decode_image(self.files[index], str(self.files[index]))

    def location(self, index: int) -> str:
        return str(self.files[index])

    def fingerprint(self) -> str:
        h = hashlib.sha256(b"folder")
        for path in self.files:
            h.update(path.relative_to(self.root).as_posix().encode() + b"\0")
            with open(path, "rb") as f:
                for block in iter(lambda f=f: f.read(1 << 20), b""):
                    h.update(block)
        return h.hexdigest()

    def describe(self) -> str:
        return str(self.root)


def _check_member_name(archive: Path, name: str) -> None:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or "\\" in name or (
            len(name) > 1 and name[1] == ":"):
        raise GenbenchError(f"{archive}: member {name!r} points outside the archive; refusing "
                            "to read an unsafe zip (rebuild it with relative paths)")


class ZipSource(ImageSource):
    """Image files inside a zip archive (read in place, never extracted)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        try:
            self._zip = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise GenbenchError(f"{self.path}: not a readable zip archive ({exc})") from None
        names = []
        for info in self._zip.infolist():
            _check_member_name(self.path, info.filename)
            if not info.is_dir() and PurePosixPath(info.filename).suffix.lower() \
                    in IMAGE_EXTENSIONS:
                names.append(info.filename)
        self.names = sorted(names)
        if not self.names:
            raise GenbenchError(f"{self.path}: no image files in the archive")

    def __len__(self) -> int:
        return len(self.names)

    def load(self, index: int) -> np.ndarray:
        name = self.names[index]
        try:
            data = self._zip.read(name)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise BadImageError(self.location(index), f"cannot read from archive: {exc}") \
                from None
        return decode_image(data, self.location(index))

    def location(self, index: int) -> str:
        return f"{self.path}:{self.names[index]}"

    def fingerprint(self) -> str:
        h = hashlib.sha256(b"zip")
        with open(self.path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()

    def describe(self) -> str:
        return str(self.path)
