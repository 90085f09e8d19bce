"""The chunked store: a content-keyed folder of numbered chunks, written atomically and
resumed chunk by chunk, split across torchrun processes by rank.

Layout (``<cache>/<kind>/<key>/``), the key a digest of a JSON payload that names everything
the content depends on:

    chunk-000000.npz   one chunk's arrays (e.g. features and source indices)
    ...
    <name>             whole-entry files (e.g. stats.npz), written once all chunks exist
    meta.json          what produced the entry: written last, it marks the entry complete

Every file is written to a temporary name and renamed, so an interrupted run leaves only whole
chunks and the next run computes just the missing ones. Under torchrun, process r owns chunks
r, r + W, r + 2W, ...; all processes share the folder. Feature extraction uses it; anything else
computed item by item (reflow pairs, encoder representations) is meant to.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from genbench import distributed
from genbench.fileio import atomic_path, cache_dir

META_NAME = "meta.json"


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
        return self.chunk_path(index).is_file()

    def write_chunk(self, index: int, **arrays: np.ndarray) -> None:
        with atomic_path(self.chunk_path(index)) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)

    def read_chunk(self, index: int) -> dict[str, np.ndarray]:
        return self._read(self.chunk_path(index))

    def chunk_numbers(self) -> list[int]:
        """Numbers of the chunks present, in order."""
        return sorted(int(p.stem.split("-")[1]) for p in self.root.glob("chunk-*.npz"))

    def iter_field(self, name: str) -> Iterator[np.ndarray]:
        """One array of every present chunk, in chunk order."""
        for index in self.chunk_numbers():
            with np.load(self.chunk_path(index)) as data:
                yield data[name]

    # whole-entry files
    def path(self, name: str) -> Path:
        return self.root / name

    def write_arrays(self, name: str, **arrays: np.ndarray) -> None:
        with atomic_path(self.path(name)) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)

    def read_arrays(self, name: str) -> dict[str, np.ndarray]:
        return self._read(self.path(name))

    @property
    def complete(self) -> bool:
        return self.path(META_NAME).is_file()

    def read_meta(self) -> dict:
        return json.loads(self.path(META_NAME).read_text())

    def write_meta(self, meta: dict) -> None:
        """Mark the entry complete (only the main process writes)."""
        if distributed.current().is_main:
            with atomic_path(self.path(META_NAME)) as tmp:
                tmp.write_text(json.dumps(meta, indent=1))

    @staticmethod
    def _read(path: Path) -> dict[str, np.ndarray]:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
