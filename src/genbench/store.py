"""The chunked store: a content-keyed folder of numbered chunks, written atomically and
resumed chunk by chunk, split across torchrun processes by rank.

Layout (``<cache>/<kind>/<key>/``), the key a digest of a JSON payload that names everything
the content depends on:

    chunk-000000.npz   one chunk's arrays (e.g. features and source indices)
    ...
    <name>             whole-entry files (e.g. stats.npz), written once all chunks exist
    meta.json          what produced the entry: written last, it marks the entry complete

Every file is written to a temporary name and renamed, with its sha256 beside it
(``<name>.sha256``, written after it), so an interrupted run leaves only whole chunks and the
next run computes just the missing ones. Every read checks the digest: a file without one is
missing (a write that did not finish), a file that does not match it is damaged and is set
aside (renamed ``*.corrupt``, with a warning naming it) and recomputed, never used. A write
that fails (read-only folder, full disk) raises ``CacheWriteError``, one line naming the file.
Under torchrun, process r owns chunks r, r + W, r + 2W, ...; all processes share the folder.
Feature extraction uses it; anything else computed item by item (reflow pairs, encoder
representations) is meant to.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from genbench import distributed
from genbench.errors import GenbenchError
from genbench.fileio import atomic_path, cache_dir, file_digest, verified, write_digest

META_NAME = "meta.json"


class CacheWriteError(GenbenchError):
    """The store could not be written (read-only folder, full disk, ...)."""


def _write_failed(path: Path, exc: OSError) -> CacheWriteError:
    return CacheWriteError(f"{path}: cannot write the cache ({exc.strerror or exc}); free some "
                           "space, set GENBENCH_CACHE to a writable folder, or pass --no-cache")


def content_key(payload: dict) -> str:
    """40 hex digits of sha256 over the payload's canonical JSON."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:40]


def chunk_ranges(total: int, chunk_size: int) -> list[range]:
    """Item ranges of the chunks of ``total`` items, ``chunk_size`` each (the last shorter)."""
    return [range(s, min(s + chunk_size, total)) for s in range(0, total, chunk_size)]


def my_chunks(total: int, chunk_size: int) -> list[tuple[int, range]]:
    """(chunk number, item range) of the chunks this process owns (every world-th)."""
    ctx = distributed.current()
    return [(c, r) for c, r in enumerate(chunk_ranges(total, chunk_size))
            if c % ctx.world_size == ctx.rank]


class ChunkStore:
    """One entry of the store (a folder); nothing is created until something is written."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @classmethod
    def keyed(cls, kind: str, payload: dict) -> ChunkStore:
        """The entry of ``payload`` under ``<cache>/<kind>/``."""
        return cls(cache_dir() / kind / content_key(payload))

    # chunks
    def chunk_path(self, index: int) -> Path:
        return self.root / f"chunk-{index:06d}.npz"

    def has_chunk(self, index: int) -> bool:
        """Whether chunk ``index`` is present and intact (a damaged one is set aside)."""
        return verified(self.chunk_path(index))

    def write_chunk(self, index: int, **arrays: np.ndarray) -> None:
        self._write_npz(self.chunk_path(index), arrays)

    def read_chunk(self, index: int) -> dict[str, np.ndarray]:
        """Chunk ``index``, which ``has_chunk`` has verified."""
        return self._read(self.chunk_path(index))

    def chunk_numbers(self) -> list[int]:
        """Numbers of the chunks present, in order."""
        return sorted(int(p.stem.split("-")[1]) for p in self.root.glob("chunk-*.npz"))

    def all_verified(self) -> bool:
        """Whether every present chunk is intact (damaged ones are set aside)."""
        return all([self.has_chunk(i) for i in self.chunk_numbers()])

    def iter_field(self, name: str, expected: int | None = None) -> Iterator[np.ndarray]:
        """One array of every chunk, in chunk order, each checked against its digest as it
        is read; with ``expected``, chunks 0..expected-1 must all be there. A damaged or
        missing chunk is an error asking for a rerun (a damaged one is set aside first, so
        the rerun recomputes it)."""
        numbers = self.chunk_numbers()
        if expected is not None and numbers != list(range(expected)):
            raise GenbenchError(f"{self.root}: the cache entry lost chunks since it was "
                                "complete; run again to recompute them")
        for index in numbers:
            path = self.chunk_path(index)
            if not verified(path):
                raise GenbenchError(f"{path}: changed or damaged since it was written; run "
                                    "again to recompute it")
            with np.load(path, allow_pickle=False) as data:
                yield data[name]

    # whole-entry files
    def path(self, name: str) -> Path:
        return self.root / name

    def write_arrays(self, name: str, **arrays: np.ndarray) -> None:
        self._write_npz(self.path(name), arrays)

    def read_arrays(self, name: str) -> dict[str, np.ndarray] | None:
        """The arrays of ``name``, or None when it is missing or was damaged (set aside)."""
        path = self.path(name)
        return self._read(path) if verified(path) else None

    @property
    def complete(self) -> bool:
        """Whether the entry's meta.json is present and intact."""
        return verified(self.path(META_NAME))

    def read_meta(self) -> dict | None:
        """meta.json, or None when it is missing or was damaged (set aside)."""
        path = self.path(META_NAME)
        if not verified(path):
            return None
        return json.loads(path.read_text())

    def write_meta(self, meta: dict) -> None:
        """Mark the entry complete (only the main process writes)."""
        if distributed.current().is_main:
            path = self.path(META_NAME)
            try:
                with atomic_path(path) as tmp:
                    tmp.write_text(json.dumps(meta, indent=1))
                write_digest(path)
            except OSError as exc:
                raise _write_failed(path, exc) from None

    @staticmethod
    def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
        try:
            with atomic_path(path) as tmp:
                with open(tmp, "wb") as f:
                    np.savez(f, **arrays)
                digest = file_digest(tmp)  # of what is renamed into place, not re-read
            write_digest(path, digest)
        except OSError as exc:
            raise _write_failed(path, exc) from None

    @staticmethod
    def _read(path: Path) -> dict[str, np.ndarray]:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
