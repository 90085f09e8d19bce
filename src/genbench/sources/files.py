"""Image files: a folder (recursive) or a zip archive.

Hostile input is refused with one line naming the file (a ``BadImageError`` where
``--skip-bad`` can skip it): an image over ``GENBENCH_MAX_PIXELS`` pixels is refused from its
header, before any pixel is decoded; a zip member over ``GENBENCH_MAX_MEMBER_BYTES`` (declared
uncompressed size) before it is read, and it is read with a bounded read (see
``genbench.sources.base`` for the limits). Encrypted zip members and unsupported compression
methods are refused per member.

16-bit greyscale (Pillow modes ``I;16``, ``I;16B``, ``I;16L``, ``I;16N``, and ``I`` for a PNG,
which older Pillows use for its 16-bit grey) is converted properly: v -> round(v * 255 /
65535), half to even (``np.rint``), then repeated to three channels. 16-bit-per-channel colour
(RGB, RGBA, grey+alpha PNGs, 16-bit RGB TIFFs, SGI ...) is *refused*: Pillow decodes it only to
8 bits by keeping the high byte (a truncation, not a rounding), and genbench does not decode
PNG itself. Such files are recognised before decoding by their Pillow raw mode (``RGB;16B``,
``LA;16B``, ``RGBA;16B``, ``RGB;16L`` ...: a ``;16`` plus byte order in ``img.tile``); packed
16-bit pixels with 8-bit channels (``BGR;16``, 5-6-5 BMPs) are fine. Float images (mode ``F``)
are refused too, and so are 32-bit integer images (mode ``I`` outside PNG: no fixed range to
rescale from).

When a limit exceeds Pillow's own check (``PIL.Image.MAX_IMAGE_PIXELS``, 89 Mi pixels by
default), only an explicitly set ``GENBENCH_MAX_PIXELS`` raises Pillow's limit to match
(never lowers it). With the default limit, Pillow may print its ``DecompressionBombWarning``
for an image of 89 to 179 Mi pixels before genbench refuses it (silencing it would need a
process-wide warnings filter, which is not thread-safe, and images are decoded in a
background thread); as an error (``-W error``) it is turned into the refusal, as is Pillow's
``DecompressionBombError``.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import struct
import zipfile
import zlib
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, UnidentifiedImageError

from genbench.errors import BadImageError, GenbenchError
from genbench.sources.base import (
    ImageSource,
    ImageTooLargeError,
    display_path,
    max_member_bytes,
    max_pixels,
)

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"})

#: Pillow raw modes of 16 bits per channel that Pillow reduces to 8 bits (its high byte).
_WIDE_RAWMODE = re.compile(r";16[BLN]$")
_DECODE_ERRORS: tuple[type[Exception], ...] = (
    UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError,
    TypeError, ZeroDivisionError, struct.error, zlib.error)
_ZIP_METHODS = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2,
                          zipfile.ZIP_LZMA})
_ZIP_READ_ERRORS: tuple[type[Exception], ...] = (
    zipfile.BadZipFile, OSError, EOFError, ValueError, zlib.error, NotImplementedError,
    RuntimeError)
try:
    from lzma import LZMAError
    _ZIP_READ_ERRORS += (LZMAError,)
except ImportError:  # pragma: no cover - Python built without lzma
    pass


def is_junk(name: str) -> bool:
    """Hidden files and folders (``.git``, ``.DS_Store``, macOS ``._*`` AppleDouble files) and
    macOS ``__MACOSX`` folders: not images of the set."""
    return name.startswith(".") or name == "__MACOSX"


def _allow_pillow(limit: int) -> None:
    """Raise Pillow's own bomb check to an explicitly raised GENBENCH_MAX_PIXELS."""
    pil_limit = Image.MAX_IMAGE_PIXELS
    if pil_limit is not None and pil_limit < limit and os.environ.get("GENBENCH_MAX_PIXELS"):
        Image.MAX_IMAGE_PIXELS = limit


def _reason(exc: Exception) -> str:
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"cannot read the file: {exc.strerror}"  # the message names the file already
    return display_path(str(exc) or type(exc).__name__)


def _refuse_wide_colour(img: Image.Image, location: str) -> None:
    """16 bits per colour channel, which Pillow would silently reduce to the high byte."""
    if img.mode.startswith("I"):
        return
    for tile in img.tile:
        args = tile[3]
        rawmode = args if isinstance(args, str) else (
            args[0] if isinstance(args, tuple) and args and isinstance(args[0], str) else "")
        if _WIDE_RAWMODE.search(rawmode):
            raise BadImageError(
                location, f"16 bits per channel colour ({img.format} {rawmode}) is not "
                          "supported: Pillow keeps only the high byte; convert the file to "
                          "8 bits per channel (or to 16-bit greyscale)")


def _to_rgb(img: Image.Image, location: str) -> np.ndarray:
    mode = img.mode
    # mode "I" is 32-bit (or signed 16-bit) except for PNG, whose 16-bit grey older Pillows
    # open as "I": only unsigned 16-bit grey is rescaled, anything else is refused
    if (mode.startswith("I;16") and not mode.endswith("S")) or (mode == "I"
                                                              and img.format == "PNG"):
        values = np.asarray(img)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise BadImageError(location, f"integer pixels outside 0..65535 (found "
                                          f"{values.min()}..{values.max()}); convert to 8-bit")
        grey = np.rint(values.astype(np.float64) * 255.0 / 65535.0).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode == "F" or mode.startswith("I"):
        raise BadImageError(location, f"{mode} (float or unusual integer) images are not "
                                      "supported; convert to 8-bit")
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def decode_image(data: bytes | Path, location: str) -> np.ndarray:
    """Decode fully (truncated files fail here, not later) and convert to RGB uint8. The size
    is checked against ``max_pixels()`` from the header, before any pixel is decoded."""
    limit = max_pixels()
    _allow_pillow(limit)
    try:
        with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as img:
            width, height = img.size
            if width * height > limit:
                raise ImageTooLargeError(location, f"image of {width}x{height} = "
                                                   f"{width * height:,} pixels",
                                         limit, "GENBENCH_MAX_PIXELS")
            _refuse_wide_colour(img, location)
            img.load()
            return _to_rgb(img, location)
    except BadImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        found = re.search(r"\((\d+) pixels\)", str(exc))
        pixels = int(found.group(1)) if found else None
        what = f"image of {pixels:,} pixels" if pixels else "image too large"
        pil_limit = Image.MAX_IMAGE_PIXELS
        if pixels is not None and pixels <= limit and pil_limit is not None:
            # the user's own, lower Pillow limit (genbench raises it only when asked to)
            if isinstance(exc, Image.DecompressionBombError):
                pil_limit *= 2
            raise ImageTooLargeError(location, what, pil_limit, "PIL.Image.MAX_IMAGE_PIXELS",
                                     "Pillow's") from None
        raise ImageTooLargeError(location, what, limit, "GENBENCH_MAX_PIXELS") from None
    except _DECODE_ERRORS as exc:
        raise BadImageError(location, _reason(exc)) from None


def _list_images(root: Path) -> list[tuple[str, Path]]:
    """(relative POSIX path, path) of the image files below ``root``, unsorted. Junk
    (``is_junk``) is skipped; symbolic links to folders are not followed (links to files
    are read); a folder that cannot be listed is an error, never skipped."""
    found: list[tuple[str, Path]] = []
    pending: list[tuple[Path, str]] = [(root, "")]
    while pending:
        folder, prefix = pending.pop()
        try:
            with os.scandir(folder) as entries:
                listed = list(entries)
        except OSError as exc:
            raise GenbenchError(
                f"{display_path(folder)}: cannot list this folder ({exc.strerror or exc}); "
                f"make it readable or move it out of {display_path(root)}") from None
        for entry in listed:
            if is_junk(entry.name):
                continue
            rel = prefix + entry.name
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                is_dir = False
            if is_dir:
                pending.append((Path(entry.path), rel + "/"))
            elif os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS:
                try:
                    keep = entry.is_file()
                except OSError:  # e.g. a link loop: kept, so that loading it names it
                    keep = True
                if keep:
                    found.append((rel, Path(entry.path)))
    return found


class ImageFolderSource(ImageSource):
    """All image files below ``root`` (recursive, sorted by relative path), by extension:
    png, jpg, jpeg, bmp, webp, tif, tiff (case-insensitive). Hidden files and folders (name
    starting with ``.``, e.g. ``.git/``, ``.DS_Store``, macOS ``._*`` AppleDouble files) and
    ``__MACOSX`` folders are skipped: they are not images of the set. Symbolic links to
    folders are not followed; a sub-folder that cannot be listed is an error. A folder whose
    sub-folders are class names gives labels (sorted sub-folder names -> 0..K-1) when
    ``with_labels``. File names that are not valid UTF-8 are read as they are and shown
    escaped (``caf\\xe9.png``) in messages."""

    def __init__(self, root: str | os.PathLike, with_labels: bool = False) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise GenbenchError(f"{display_path(self.root)}: not a folder")
        listed = sorted(_list_images(self.root), key=lambda item: item[0])
        self._relpaths = [rel for rel, _ in listed]
        self.files = [path for _, path in listed]
        if not self.files:
            raise GenbenchError(f"{display_path(self.root)}: no image files found (looked "
                                f"recursively for {', '.join(sorted(IMAGE_EXTENSIONS))}; "
                                "hidden files and __MACOSX are skipped)")
        if with_labels:
            parts = [rel.split("/") for rel in self._relpaths]
            classes = sorted({p[0] for p in parts if len(p) > 1})
            if any(len(p) == 1 for p in parts):
                raise GenbenchError(f"{display_path(self.root)}: images directly in the "
                                    "folder have no class; put each class in its own "
                                    "sub-folder")
            index = {name: i for i, name in enumerate(classes)}
            self.labels = np.array([index[p[0]] for p in parts], dtype=np.int64)
            self.class_names = classes

    def __len__(self) -> int:
        return len(self.files)

    def load(self, index: int) -> np.ndarray:
        return decode_image(self.files[index], self.location(index))

    def location(self, index: int) -> str:
        return display_path(self.files[index])

    def fingerprint(self) -> str:
        """sha256 over each file's relative path (its bytes on disk) and content. A file that
        cannot be read is hashed as such (loading it then raises a BadImageError naming it,
        which ``--skip-bad`` skips), so the fingerprint itself never fails on one."""
        h = hashlib.sha256(b"folder")
        for rel, path in zip(self._relpaths, self.files, strict=True):
            h.update(os.fsencode(rel) + b"\0")
            try:
                with open(path, "rb") as f:
                    for block in iter(lambda f=f: f.read(1 << 20), b""):
                        h.update(block)
            except OSError as exc:
                h.update(f"\0unreadable:{exc.errno}\0".encode())
        return h.hexdigest()

    def describe(self) -> str:
        return display_path(self.root)


def _check_member_name(archive: Path, name: str) -> None:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or "\\" in name or (
            len(name) > 1 and name[1] == ":"):
        raise GenbenchError(f"{display_path(archive)}: member {name!r} points outside the "
                            "archive; refusing to read an unsafe zip (rebuild it with "
                            "relative paths)")


class ZipSource(ImageSource):
    """Image files inside a zip archive (read in place, never extracted), by extension as
    ``ImageFolderSource``, sorted by member name. Hidden members (any path part starting with
    ``.``, e.g. ``.git/``, macOS ``._*`` AppleDouble files) and ``__MACOSX/`` folders are
    skipped: they are not images of the set. Encrypted members, unsupported compression
    methods and members over ``GENBENCH_MAX_MEMBER_BYTES`` raise a BadImageError naming the
    member when loaded (``--skip-bad`` skips them)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        try:
            self._zip = zipfile.ZipFile(self.path)
            infos = self._zip.infolist()
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            raise GenbenchError(f"{display_path(self.path)}: not a readable zip archive "
                                f"({display_path(str(exc))})") from None
        members = {}
        for info in infos:
            _check_member_name(self.path, info.filename)
            parts = PurePosixPath(info.filename).parts
            if not info.is_dir() and not any(is_junk(p) for p in parts) and \
                    PurePosixPath(info.filename).suffix.lower() in IMAGE_EXTENSIONS:
                members[info.filename] = info  # a repeated name: the last one, as zipfile
        self.names = sorted(members)
        self._infos = [members[name] for name in self.names]
        if not self.names:
            raise GenbenchError(f"{display_path(self.path)}: no image files in the archive "
                                "(hidden members and __MACOSX are skipped)")

    def __len__(self) -> int:
        return len(self.names)

    def for_worker(self) -> ZipSource:
        """A copy with its own handle: a forked worker would share the file offset."""
        import copy

        twin = copy.copy(self)
        twin._zip = zipfile.ZipFile(self.path)
        return twin

    def load(self, index: int) -> np.ndarray:
        info, where = self._infos[index], self.location(index)
        if info.flag_bits & 0x1:
            raise BadImageError(where, "the member is encrypted (password-protected); "
                                       "re-create the zip without a password")
        if info.compress_type not in _ZIP_METHODS:
            raise BadImageError(where, f"unsupported zip compression method "
                                       f"{info.compress_type}; re-create the zip with deflate "
                                       "or no compression")
        limit = max_member_bytes()
        if info.file_size > limit:
            raise ImageTooLargeError(where, f"member of {info.file_size:,} bytes uncompressed",
                                     limit, "GENBENCH_MAX_MEMBER_BYTES")
        try:
            with self._zip.open(info) as f:
                data = f.read(info.file_size + 1)  # bounded, whatever the member holds
        except _ZIP_READ_ERRORS as exc:
            raise BadImageError(where, f"cannot read from archive: "
                                       f"{display_path(str(exc) or type(exc).__name__)}") \
                from None
        if len(data) > info.file_size:
            raise BadImageError(where, f"the member decompresses to more than the "
                                       f"{info.file_size:,} bytes it declares")
        return decode_image(data, where)

    def location(self, index: int) -> str:
        return f"{display_path(self.path)}:{display_path(self.names[index])}"

    def fingerprint(self) -> str:
        h = hashlib.sha256(b"zip")
        try:
            with open(self.path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
        except OSError as exc:
            raise GenbenchError(f"{display_path(self.path)}: cannot read the archive "
                                f"({exc.strerror or exc})") from None
        return h.hexdigest()

    def describe(self) -> str:
        return display_path(self.path)
