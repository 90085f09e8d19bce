"""Python API, mirroring the CLI: ``compute_fid``, ``compute_statistics`` and ``evaluate``."""

from __future__ import annotations

import json
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from genbench import __version__
from genbench.errors import GenbenchError
from genbench.extractors import DEFAULT_EXTRACTOR, FeatureExtractor, create_extractor
from genbench.features import CHUNK_SIZE, FeatureRun, extract_statistics
from genbench.metrics.fid import FewSamplesWarning, fid_from_statistics
from genbench.protocols import DEFAULT_PROTOCOL, get_protocol
from genbench.sources import SourceLike, open_source
from genbench.stats import (
    FeatureStatistics,
    StreamingMoments,
    is_statistics_file,
    load_statistics,
)


@dataclass
class SideSummary:
    """One input of a comparison: what it was and how many images it contributed."""

    source: str
    num_images: int | None
    from_statistics_file: bool = False
    skipped: list[str] = field(default_factory=list)
    extracted: int = 0
    seconds: float = 0.0


@dataclass
class FIDResult:
    """An FID value with everything needed to reproduce or compare it."""

    fid: float
    protocol: str
    protocol_description: str
    extractor: str
    weights_sha256: str | None
    inputs: list[SideSummary]
    seconds: float
    notes: list[str] = field(default_factory=list)
    genbench_version: str = __version__

    def to_dict(self) -> dict:
        record = {"metric": "fid", "value": self.fid, **asdict(self)}
        record["num_images"] = [side.num_images for side in self.inputs]
        del record["fid"]
        return record


class Evaluator:
    """Holds one extractor (created on first use) and the options shared by every input."""

    def __init__(self, *, protocol: str = DEFAULT_PROTOCOL, extractor: str = DEFAULT_EXTRACTOR,
                 weights: str | os.PathLike | None = None, device: str = "cpu",
                 batch_size: int = 50, compile: str | bool = "auto", use_cache: bool = True,
                 skip_bad: bool = False, progress: bool = True,
                 chunk_size: int = CHUNK_SIZE) -> None:
        if batch_size < 1:
            raise GenbenchError(f"--batch-size must be >= 1, got {batch_size}")
        self.protocol = get_protocol(protocol)
        self.extractor_name = extractor
        self.extractor_options = {"weights": weights, "device": device, "compile": compile,
                                  "batch_size": batch_size}
        self.batch_size = batch_size
        self.use_cache = use_cache
        self.skip_bad = skip_bad
        self.progress = progress
        self.chunk_size = chunk_size
        self._extractor: FeatureExtractor | None = None

    @property
    def extractor(self) -> FeatureExtractor:
        if self._extractor is None:
            self._extractor = create_extractor(self.extractor_name, **self.extractor_options)
        return self._extractor

    def statistics(self, source: SourceLike, num_images: int | None = None,
                   desc: str | None = None, keep_features: bool = False) -> FeatureRun:
        src = open_source(source, num_images=num_images, batch_size=self.batch_size)
        return extract_statistics(src, self.protocol, self.extractor, num_images=num_images,
                                  batch_size=self.batch_size, use_cache=self.use_cache,
                                  skip_bad=self.skip_bad, progress=self.progress, desc=desc,
                                  chunk_size=self.chunk_size, keep_features=keep_features)

    def side(self, source: SourceLike | FeatureStatistics, num_images: int | None,
             desc: str) -> tuple[FeatureStatistics, SideSummary, list[str]]:
        """Statistics for one input: a FeatureStatistics, a statistics .npz, or images."""
        notes: list[str] = []
        if isinstance(source, FeatureStatistics) or (
                isinstance(source, str | os.PathLike) and is_statistics_file(source)):
            stats = source if isinstance(source, FeatureStatistics) else load_statistics(source)
            if stats.protocol is None:
                notes.append(f"{stats.label}: statistics file does not record its protocol "
                             f"(pytorch-fid/TTUR/ADM file?); assumed {self.protocol.name!r}")
            elif stats.protocol != self.protocol.name:
                raise GenbenchError(f"{stats.label}: statistics were computed with protocol "
                                    f"{stats.protocol!r}, not {self.protocol.name!r}; pass "
                                    f"--protocol {stats.protocol} or recompute them")
            return stats, SideSummary(str(stats.label), stats.num_samples, True), notes
        run = self.statistics(source, num_images, desc)
        if run.skipped:
            notes.append(f"{run.source}: skipped {len(run.skipped)} unreadable image(s), "
                         f"first: {run.skipped[0]}")
        return run.statistics, SideSummary(run.source, run.num_images, False, run.skipped,
                                           run.extracted, run.seconds), notes


def compute_statistics(source: SourceLike, *, num_images: int | None = None,
                       **options) -> FeatureRun:
    """Features of ``source`` reduced to float64 mean/covariance (cached); ``options`` are
    those of ``Evaluator`` (protocol, weights, device, batch_size, compile, use_cache,
    skip_bad, progress). ``.statistics.save(path)`` writes a pytorch-fid-compatible .npz."""
    return Evaluator(**options).statistics(source, num_images)


def compute_fid(a: SourceLike | FeatureStatistics, b: SourceLike | FeatureStatistics, *,
                num_images: int | None = None, **options) -> FIDResult:
    """FID between two inputs, each images (any source) or statistics (file or object)."""
    start = time.perf_counter()
    evaluator = Evaluator(**options)
    sides, notes = [], []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FewSamplesWarning)
        for source, desc in ((a, "A"), (b, "B")):
            stats, summary, side_notes = evaluator.side(source, num_images, desc)
            sides.append((stats, summary))
            notes += side_notes
        value = fid_from_statistics(sides[0][0], sides[1][0])
    notes += [str(w.message) for w in caught]
    weights = next((s.weights_sha256 for s, _ in sides if s.weights_sha256), None)
    if evaluator._extractor is not None:
        weights = getattr(evaluator.extractor, "weights", None)
        weights = weights.source_sha256 if weights is not None else None
    extractor_id = next((s.extractor for s, _ in sides if s.extractor), None) or (
        f"{evaluator.extractor_name} (assumed; the statistics files do not say)")
    return FIDResult(value, evaluator.protocol.name, evaluator.protocol.description,
                     extractor_id, weights, [summary for _, summary in sides],
                     time.perf_counter() - start, notes)


def _user_features(source, num_images: int | None) -> FeatureRun | None:
    """A ``.npy`` file holding a 2-D float array is taken as precomputed features (N × D),
    from any extractor; metrics then run on them directly."""
    if not isinstance(source, str | os.PathLike) or Path(source).suffix.lower() != ".npy":
        return None
    try:
        array = np.load(source, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise GenbenchError(f"{source}: not a readable .npy file ({exc})") from None
    if array.ndim != 2:
        return None  # images: handled by the image sources
    if not np.issubdtype(array.dtype, np.floating):
        raise GenbenchError(f"{source}: a 2-D feature array must be float, got {array.dtype}")
    if num_images is not None:
        array = array[:num_images]
    features = np.asarray(array, dtype=np.float32)
    moments = StreamingMoments(features.shape[1])
    moments.update(features.astype(np.float64))
    stats = moments.statistics(extractor=f"features from {source}", label=str(source))
    return FeatureRun(stats, str(source), len(features), features=[features])


def _per_class(samples: np.ndarray, labels_s: np.ndarray, reference: np.ndarray,
               labels_r: np.ndarray) -> dict[str, dict]:
    """FID and improved precision/recall (k = 3) within each class present on both sides;
    a class missing from the samples is reported with 0 samples (and no values)."""
    from genbench.metrics.fid import frechet_distance
    from genbench.metrics.manifold import precision_recall

    out: dict[str, dict] = {}
    for cls in np.unique(labels_r):
        s, r = samples[labels_s == cls].astype(np.float64), reference[labels_r == cls]
        entry: dict = {"num_samples": len(s), "num_reference": len(r)}
        if len(s) >= 2 and len(r) >= 2:
            r64 = r.astype(np.float64)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                entry["fid"] = frechet_distance(s.mean(0), np.cov(s, rowvar=False),
                                                r64.mean(0), np.cov(r64, rowvar=False))
        if len(s) > 3 and len(r) > 3:
            pr = precision_recall(r, s, nearest_k=3)
            entry.update(precision=pr.precision, recall=pr.recall)
        out[str(int(cls))] = entry
    return out


def evaluate(samples: SourceLike, reference: SourceLike, *, metrics: str | list[str] | None = None,
             seed: int = 0, num_images: int | None = None, per_class: bool = False,
             out_dir: str | os.PathLike | None = None, **options) -> dict:
    """Every requested metric (default: all registered) from ONE feature pass per input.

    Returns one JSON-ready record (values, parameters, seed, protocol, counts, time); with
    ``out_dir`` also writes ``result.json`` and, when PRD is computed, ``prd.png``.
    ``per_class`` adds FID and precision/recall per class when both inputs carry labels.
    """
    from genbench.fileio import atomic_path
    from genbench.metrics.registry import METRICS, MetricInputs, parse_metrics

    start = time.perf_counter()
    names = parse_metrics(metrics)
    need_features = any(METRICS[n].needs_features for n in names)
    evaluator = Evaluator(**options)
    runs = {side: _user_features(src, num_images) or evaluator.statistics(
                src, num_images, side, keep_features=need_features)
            for side, src in (("samples", samples), ("reference", reference))}

    def loader(run: FeatureRun):
        return lambda: np.concatenate(list(run.iter_features()))

    inputs = MetricInputs(runs["samples"].statistics, runs["reference"].statistics,
                          loader(runs["samples"]), loader(runs["reference"]), seed=seed)
    results, timings = {}, {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FewSamplesWarning)
        for name in names:
            t0 = time.perf_counter()
            results[name] = METRICS[name].compute(inputs)
            timings[name] = time.perf_counter() - t0
    notes = [str(w.message) for w in caught]
    per_class_results = None
    if per_class:
        labels_s, labels_r = runs["samples"].labels, runs["reference"].labels
        if labels_s is None or labels_r is None:
            notes.append("per-class results need labels on both inputs (ADM .npz arr_1, "
                         "a data set, or arrays with labels); skipped")
        else:
            per_class_results = _per_class(inputs.samples, labels_s, inputs.reference, labels_r)
    record = {
        "metrics": results, "seed": seed, "protocol": evaluator.protocol.name,
        "protocol_description": evaluator.protocol.description,
        "extractor": runs["samples"].statistics.extractor,
        "weights_sha256": runs["samples"].statistics.weights_sha256,
        "inputs": {side: asdict(SideSummary(run.source, run.num_images, False, run.skipped,
                                            run.extracted, run.seconds))
                   for side, run in runs.items()},
        "metric_seconds": timings, "seconds": time.perf_counter() - start,
        "notes": notes, "genbench_version": __version__,
    }
    if per_class_results is not None:
        record["per_class"] = per_class_results
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        if "prd" in inputs.artifacts:
            from genbench.report.prd_plot import plot_prd_curves
            plot_prd_curves({runs["samples"].source: inputs.artifacts["prd"]}, out / "prd.png")
            record["plots"] = [str(out / "prd.png")]
        with atomic_path(out / "result.json") as tmp:
            tmp.write_text(json.dumps(record, indent=1))
    return record
