"""One pass: source -> protocol -> extractor -> features (cached in chunks) -> float64 moments.

The features of a source live in the chunked store (``genbench.store``) under
``<cache>/features/<key>/``, the key hashing the source's content fingerprint, the number of
images, the protocol (and its size), the extractor with its weights' checksum, the chunk size
and whether undecodable images were skipped:

    chunk-000000.npz   features (float32) and the source indices of CHUNK_SIZE images
    ...
    stats.npz          mean/covariance of all features (written last)
    meta.json          what produced the entry

An interrupted run leaves only whole chunks, and the next run extracts just the missing ones.
Under torchrun, process r takes chunks r, r + W, r + 2W, ... and the float64 moment sums are
all-reduced.
"""

from __future__ import annotations

import itertools
import multiprocessing
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from genbench import distributed
from genbench.errors import BadImageError, GenbenchError
from genbench.extractors import FeatureExtractor, check_outputs
from genbench.protocols import INCEPTION_SIZE, Protocol
from genbench.sources import ImageSource
from genbench.stats import FeatureStatistics, StreamingMoments
from genbench.store import CacheWriteError, ChunkStore, chunk_ranges, my_chunks

CHUNK_SIZE = 500
CACHE_VERSION = 2  # 2: digests beside every file, statistics stored only when N >= dim
STATS_NAME = "stats.npz"


@dataclass
class FeatureRun:
    """What one extraction produced: statistics, counts, and where the features are cached."""

    statistics: FeatureStatistics
    source: str
    num_images: int
    skipped: list[str] = field(default_factory=list)
    extracted: int = 0
    seconds: float = 0.0
    cache_entry: Path | None = None
    features: list[np.ndarray] | None = None  # kept in memory when the source is uncached
    labels: np.ndarray | None = None  # class of each feature row, when the source has labels
    num_chunks: int | None = None     # chunks of the cache entry
    #: statistics of the extractor's other outputs asked for (e.g. "spatial", for sFID)
    extra_statistics: dict[str, FeatureStatistics] = field(default_factory=dict)

    def iter_features(self) -> Iterator[np.ndarray]:
        """Features chunk by chunk (float32), in source order (from the cache or memory;
        cached chunks are checked against their digests as they are read)."""
        if self.features is not None:
            yield from self.features
            return
        if self.cache_entry is None:
            raise GenbenchError("features of an uncached source were not kept; give the "
                                "source a cache key or enable the cache")
        yield from ChunkStore(self.cache_entry).iter_field("features", self.num_chunks)


def cache_payload(source: ImageSource, num_images: int, protocol: Protocol,
                  extractor: FeatureExtractor, chunk_size: int = CHUNK_SIZE,
                  skip_bad: bool = False, outputs: tuple[str, ...] = ()) -> dict | None:
    """What the features of ``source`` depend on (None: the source has no content key)."""
    fingerprint = source.fingerprint()
    if fingerprint is None:
        return None
    payload = {"v": CACHE_VERSION, "source": fingerprint, "n": num_images,
               "protocol": protocol.name, "extractor": extractor.identity, "chunk": chunk_size}
    if protocol.size != INCEPTION_SIZE:
        payload["size"] = protocol.size
    if skip_bad:  # an entry with skipped images must not serve a run that would refuse them
        payload["skip_bad"] = True
    if outputs:  # its chunks hold these outputs too
        payload["outputs"] = list(outputs)
    return payload


def stats_name(output: str) -> str:
    """The file of an entry's statistics of ``output`` ("features": the main ones)."""
    return STATS_NAME if output == "features" else f"stats-{output}.npz"


def _load_batch(source: ImageSource, indices: list[int], skip_bad: bool):
    if not skip_bad:
        return indices, source.load_many(indices), []
    kept, images, skipped = [], [], []
    for i in indices:
        try:
            images.append(source.load(i))
            kept.append(i)
        except BadImageError:
            skipped.append(source.location(i))
    return kept, images, skipped


def _thread_stream(source: ImageSource, groups: list[list[int]], skip_bad: bool):
    """(kept indices, images, skipped locations) per group, decoding the next group in a
    background thread while the current one runs through the network."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(_load_batch, source, groups[0], skip_bad) if groups else None
        for k in range(len(groups)):
            result = pending.result()
            if k + 1 < len(groups):
                pending = pool.submit(_load_batch, source, groups[k + 1], skip_bad)
            yield result


class _Groups(torch.utils.data.Dataset):
    """Groups of source indices, decoded (and, with ``protocol``, preprocessed) in a worker
    process each (``--workers``); a GenbenchError comes back as its message, to be raised
    here as one line."""

    def __init__(self, source: ImageSource, groups: list[list[int]], skip_bad: bool,
                 protocol: Protocol | None) -> None:
        self.source, self.groups, self.skip_bad = source, groups, skip_bad
        self.protocol = protocol

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, k: int):
        try:
            kept, images, skipped = _load_batch(self.source, self.groups[k], self.skip_bad)
            if self.protocol is not None and images:
                images = self.protocol(_to_uint8_batch(images, torch.device("cpu")))
            return kept, images, skipped
        except GenbenchError as exc:
            return str(exc)
        except Exception as exc:  # anything else: one line too, naming the images
            first = self.source.location(self.groups[k][0])
            return f"decoding the images from {first} failed ({type(exc).__name__}: {exc})"


def _worker_init(_: int) -> None:
    dataset = torch.utils.data.get_worker_info().dataset
    dataset.source = dataset.source.for_worker()


def _as_is(item):
    return item


def _worker_stream(source: ImageSource, groups: list[list[int]], skip_bad: bool,
                   workers: int, protocol: Protocol | None):
    # forked workers share the source as it is (no pickling, arrays copy-on-write)
    loader = torch.utils.data.DataLoader(
        _Groups(source, groups, skip_bad, protocol), batch_size=None, shuffle=False,
        num_workers=workers, worker_init_fn=_worker_init, collate_fn=_as_is,
        prefetch_factor=2, multiprocessing_context="fork")
    for item in loader:  # in order, whatever worker decoded it
        if isinstance(item, str):
            raise GenbenchError(item)
        yield item


_CAN_FORK = "fork" in multiprocessing.get_all_start_methods()


def load_stream(source: ImageSource, groups: list[list[int]], skip_bad: bool,
                workers: int = 0, protocol: Protocol | None = None):
    """Decoded groups of images in order, as (kept indices, images, skipped locations):
    with ``workers`` > 0 in that many forked processes, which also apply ``protocol`` when given
    (then "images" is the protocol's float batch), else in one background thread (images
    only; a source that must stay in this process, e.g. a generator, is decoded there).
    The images are the same either way."""
    if workers > 0 and source.parallel_load and len(groups) > 1 and _CAN_FORK:
        return _worker_stream(source, groups, skip_bad, workers, protocol)
    if workers > 0 and not _CAN_FORK:
        warnings.warn("--workers needs processes started by fork, which this platform lacks; "
                      "decoding in one background thread instead", stacklevel=3)
    return _thread_stream(source, groups, skip_bad)


def _to_uint8_batch(images: list[np.ndarray], device: torch.device) -> torch.Tensor | list:
    """One N×3×H×W uint8 tensor on the extractor's device when all images share a size (the
    protocol then resizes there, e.g. on the GPU), else a list of 3×H×W tensors."""
    if all(img.shape == images[0].shape for img in images):
        batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)
        if device.type == "cuda":  # pinned: the copy overlaps with the GPU's work
            return batch.pin_memory().to(device, non_blocking=True)
        return batch.to(device) if device.type != "cpu" else batch
    # copies: a decoded image may be a read-only view, which torch warns about
    return [torch.from_numpy(np.array(img, copy=True)).permute(2, 0, 1) for img in images]


def _groups(indices: list[int], batch_size: int) -> list[list[int]]:
    return [indices[i:i + batch_size] for i in range(0, len(indices), batch_size)]


def _extract_chunk(batches, protocol: Protocol, extractor: FeatureExtractor, bar: tqdm,
                   outputs: tuple[str, ...] = ()
                   ) -> tuple[dict[str, np.ndarray], np.ndarray, list[str]]:
    """The outputs of a chunk's decoded ``batches`` ({"features": N x D, and each of
    ``outputs``}, float32), the source indices of its rows and the locations of skipped
    images."""
    dims = {"features": extractor.feature_dim,
            **{o: extractor.extra_outputs[o] for o in outputs}}
    parts: dict[str, list[np.ndarray]] = {name: [] for name in dims}
    kept_all, skipped_all = [], []
    for kept, images, skipped in batches:
        skipped_all += skipped
        if len(images):  # a list of decoded images, or the protocol's batch (workers)
            batch = images if isinstance(images, torch.Tensor) else protocol(
                _to_uint8_batch(images, extractor.device))
            out = extractor.extract(batch, outputs)
            for name in dims:
                parts[name].append(out[name].numpy())
            kept_all += kept
        bar.update(len(kept) + len(skipped))
    arrays = {name: (np.concatenate(p) if p else np.zeros((0, dims[name]), np.float32))
              .astype(np.float32, copy=False) for name, p in parts.items()}
    return arrays, np.asarray(kept_all, np.int64), skipped_all


def extract_statistics(source: ImageSource, protocol: Protocol, extractor: FeatureExtractor, *,
                       num_images: int | None = None, batch_size: int = 50,
                       use_cache: bool = True, skip_bad: bool = False,
                       progress: bool = True, desc: str | None = None,
                       chunk_size: int = CHUNK_SIZE, keep_features: bool = False,
                       outputs: tuple[str, ...] = (), workers: int = 0) -> FeatureRun:
    """Features of the first ``num_images`` images of ``source`` (all when None), reduced to
    float64 mean and covariance; resumes from and fills the cache. ``keep_features`` keeps
    the features of an uncached source in memory (gathered from every process), for metrics
    that need them. ``outputs`` names other outputs of the extractor's pass (e.g.
    ``("spatial",)``) whose statistics come too (``FeatureRun.extra_statistics``).
    ``workers`` > 0 decodes in that many processes (the same features)."""
    start_time = time.perf_counter()
    total = len(source)
    if num_images is not None:
        if num_images > total:
            raise GenbenchError(f"{source.describe()}: --num-images {num_images} but the "
                                f"source has only {total} images")
        total = num_images
    if total < 2:
        raise GenbenchError(f"{source.describe()}: need at least 2 images, found {total}")
    ctx = distributed.current()
    if chunk_size < 1:
        raise GenbenchError(f"chunk size must be >= 1, got {chunk_size}")
    check_outputs(extractor, outputs)
    dims = {"features": extractor.feature_dim,
            **{o: extractor.extra_outputs[o] for o in outputs}}
    payload = cache_payload(source, total, protocol, extractor, chunk_size, skip_bad,
                            outputs) if use_cache else None
    store = ChunkStore.keyed("features", payload) if payload is not None else None
    meta = {"protocol": protocol.name, "extractor": extractor.identity,
            "weights_sha256": extractor.weights_sha256, "label": source.describe()}

    num_chunks = len(chunk_ranges(total, chunk_size))
    cached = _cached_run(store, source, meta, num_chunks, dims,
                         keep_features) if store is not None else None
    if distributed.all_true(cached is not None):
        cached.seconds = time.perf_counter() - start_time
        return cached

    had_store = store is not None
    reader = store  # cached chunks are read from it even after a write fails (store = None)
    mine = my_chunks(total, chunk_size)
    present = {c for c, _ in mine if store is not None and store.has_chunk(c)}  # verified once
    extractor.plan(sum(len(idx) for c, idx in mine if c not in present))
    moments = {name: StreamingMoments(dim) for name, dim in dims.items()}
    skipped: list[str] = []
    # features kept in memory when asked for and nothing is cached
    kept_features: list[tuple[int, np.ndarray, np.ndarray]] | None = [] if (
        keep_features and store is None) else None
    done: list[int] = []  # chunks of this process written to the store
    extracted = 0
    bar = tqdm(total=sum(len(idx) for _, idx in mine), unit="img", dynamic_ncols=True,
               desc=desc or source.describe(), disable=not (progress and ctx.is_main))
    # one stream over every chunk to extract: decoding runs ahead across chunk boundaries
    todo = [_groups(list(idx), batch_size) for c, idx in mine if c not in present]
    # on a CPU the workers preprocess too; a GPU resizes there, from the uint8 batch
    stream = load_stream(source, [g for groups in todo for g in groups], skip_bad, workers,
                         protocol if extractor.device.type == "cpu" else None)
    with bar:
        for c, indices in mine:
            if c in present:  # not in the decode stream: read whatever happened since
                data = reader.read_chunk(c)
                arrays, kept = {name: data[name] for name in dims}, data["indices"]
                chunk_skipped = [str(s) for s in data["skipped"]]
                bar.update(len(indices))
            else:
                batches = itertools.islice(stream, -(-len(indices) // batch_size))
                arrays, kept, chunk_skipped = _extract_chunk(batches, protocol, extractor,
                                                             bar, outputs)
                extracted += len(kept)
                if store is not None:
                    try:
                        store.write_chunk(c, **arrays, indices=kept,
                                          skipped=np.array(chunk_skipped, dtype=str))
                    except CacheWriteError as exc:
                        warnings.warn(f"{exc}; continuing without the cache", stacklevel=2)
                        kept_features = _reload(store, done) if keep_features else None
                        store = None
            features = arrays["features"]
            for name, array in arrays.items():
                moments[name].update(torch.from_numpy(np.ascontiguousarray(array)))
            skipped += chunk_skipped
            if store is not None:
                done.append(c)
            elif kept_features is not None:
                kept_features.append((c, features, kept))
    if had_store and not distributed.all_true(store is not None):
        # a process could not write: every process goes on without the cache
        if store is not None and keep_features:
            kept_features = _reload(store, done)
        store = None

    counts = torch.tensor([float(moments["features"].count), float(extracted)],
                          dtype=torch.float64)
    for m in moments.values():
        distributed.all_reduce_sum(m.sum)
        distributed.all_reduce_sum(m.outer)
    distributed.all_reduce_sum(counts)
    for m in moments.values():
        m.count = int(counts[0])
    extracted = int(counts[1])
    skipped = sorted(s for part in distributed.all_gather_objects(skipped) for s in part)
    if moments["features"].count < 2:
        raise GenbenchError(f"{source.describe()}: fewer than 2 readable images "
                            f"({len(skipped)} skipped)")
    all_stats = {name: m.statistics(**_output_meta(meta, name)) for name, m in moments.items()}
    stats = all_stats.pop("features")
    if had_store:
        _finish_entry(store, {"features": stats, **all_stats}, skipped, total, num_chunks,
                      meta)
    distributed.barrier()
    in_memory, indices = None, None
    if kept_features is not None and store is None:
        gathered = sorted((item for part in distributed.all_gather_objects(kept_features)
                           for item in part), key=lambda item: item[0])
        in_memory = [features for _, features, _ in gathered]
        indices = np.concatenate([idx for _, _, idx in gathered])
    row_indices = (lambda: indices) if store is None else (lambda: _cached_indices(store))
    return FeatureRun(stats, source.describe(), stats.num_samples, skipped, extracted,
                      time.perf_counter() - start_time, store.root if store else None,
                      in_memory, _labels(source, row_indices), num_chunks, all_stats)


def _output_meta(meta: dict, output: str) -> dict:
    """Statistics metadata of one output: an extra output's network is named with it."""
    if output == "features":
        return meta
    return {**meta, "extractor": f"{meta['extractor']}/{output}"}


def _reload(store: ChunkStore, chunks: list[int]) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """This process's chunks already in the store, back in memory (the cache failed later)."""
    out = []
    for c in chunks:
        data = store.read_chunk(c)
        out.append((c, data["features"], data["indices"]))
    return out


def _cached_run(store: ChunkStore, source: ImageSource, meta: dict, num_chunks: int,
                dims: dict[str, int], features_needed: bool) -> FeatureRun | None:
    """The complete, intact entry of this run, or None (missing, or damaged parts set
    aside: the run then recomputes what is missing). Stored statistics are checked here,
    and the chunks too when the features will be read (a run that needs only the statistics
    does not hash every chunk). Statistics of fewer images than feature dimensions are not
    stored (the features are smaller); they are recomputed. ``dims``: the outputs of the
    entry ("features" and the extra ones) with their dimensions."""
    info = store.read_meta()
    if info is None or info.get("chunks") != num_chunks \
            or store.chunk_numbers() != list(range(num_chunks)):
        return None
    stored = set(info.get("stats_stored_for", ["features"] if info.get("stats_stored")
                          else []))
    arrays = {name: store.read_arrays(stats_name(name)) for name in dims if name in stored}
    if any(a is None for a in arrays.values()):
        return None
    if (len(arrays) < len(dims) or features_needed) and not store.all_verified():
        return None
    all_stats = {}
    for name, dim in dims.items():
        if name in arrays:
            all_stats[name] = FeatureStatistics(arrays[name]["mu"], arrays[name]["sigma"],
                                                **_output_meta(meta, name),
                                                num_samples=info["num_samples"])
            continue
        moments = StreamingMoments(dim)
        for part in store.iter_field(name, num_chunks):
            moments.update(torch.from_numpy(np.ascontiguousarray(part)))
        all_stats[name] = moments.statistics(**_output_meta(meta, name))
    stats = all_stats.pop("features")
    return FeatureRun(stats, source.describe(), info["num_samples"], info["skipped"], 0,
                      0.0, store.root, labels=_labels(source, lambda: _cached_indices(store)),
                      num_chunks=num_chunks, extra_statistics=all_stats)


def _finish_entry(store: ChunkStore | None, stats: dict[str, FeatureStatistics],
                  skipped: list[str], total: int, num_chunks: int, meta: dict) -> None:
    """Write the statistics of each output (when they are smaller than the features) and
    meta.json (process 0); on a failed write warn: the entry stays incomplete (its chunks,
    all written, still serve this run's features) and the next run completes it."""
    keep = [name for name, st in stats.items() if st.num_samples >= st.dim]
    if store is not None and distributed.current().is_main:
        try:
            for name in keep:
                store.write_arrays(stats_name(name), **stats[name].arrays())
            store.write_meta({"num_samples": stats["features"].num_samples,
                              "skipped": skipped, "requested": total, "chunks": num_chunks,
                              "stats_stored": "features" in keep, "stats_stored_for": keep,
                              **meta})
        except CacheWriteError as exc:
            warnings.warn(f"{exc}; the result is computed, but not cached", stacklevel=3)


def _cached_indices(store: ChunkStore) -> np.ndarray:
    """Source indices of the cached feature rows, in row order."""
    parts = list(store.iter_field("indices"))
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def _labels(source: ImageSource,
            row_indices: Callable[[], np.ndarray | None]) -> np.ndarray | None:
    """Labels of the feature rows; the row indices are read only for labelled sources."""
    if source.labels is None:
        return None
    indices = row_indices()
    return None if indices is None else np.asarray(source.labels)[indices]
