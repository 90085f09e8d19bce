"""Python API, mirroring the CLI: ``compute_fid``, ``compute_statistics`` and ``evaluate``."""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Mapping
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

    def __init__(self, *, protocol: str = DEFAULT_PROTOCOL,
                 extractor: str | FeatureExtractor = DEFAULT_EXTRACTOR,
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
        if isinstance(extractor, FeatureExtractor):  # an instance, e.g. ModuleExtractor(net)
            self._extractor, self.extractor_name = extractor, extractor.name

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
               labels_r: np.ndarray, metrics: list[str], seed: int) -> dict[str, dict]:
    """Within each class present in the reference: FID, improved precision/recall (k = 3)
    and, when PRD is among ``metrics``, PRD's F_8 and F_1/8 (the class's sets subsampled to
    equal size with ``seed``). A class missing from the samples is reported with 0 samples
    (and no values); values needing more samples than a class has are left out."""
    from genbench.metrics.fid import frechet_distance
    from genbench.metrics.manifold import precision_recall
    from genbench.metrics.prd import DEFAULT_NUM_CLUSTERS, prd_from_features

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
        if "prd" in metrics and min(len(s), len(r)) >= DEFAULT_NUM_CLUSTERS:
            prd = prd_from_features(s, r, seed=seed, balance="subsample")
            entry.update({"prd_f_8": prd.f_beta, "prd_f_1/8": prd.f_beta_inv})
        out[str(int(cls))] = entry
    return out


class _Evaluation:
    """One reference and the metrics to run against it; models are scored one at a time, each
    from one feature pass, the reference's features loaded once."""

    def __init__(self, reference: SourceLike, metrics, seed: int, num_images: int | None,
                 per_class: bool, options: dict):
        from genbench.metrics.registry import METRICS, parse_metrics

        self.names = parse_metrics(metrics)
        self.need_features = any(METRICS[n].needs_features for n in self.names)
        self.evaluator = Evaluator(**options)
        self.seed, self.num_images, self.per_class = seed, num_images, per_class
        self._extracted: set[int] = set()  # ids of the runs the evaluator's extractor made
        self.reference = self._run(reference, "reference")
        self._reference_features: np.ndarray | None = None

    def _run(self, source: SourceLike, desc: str) -> FeatureRun:
        run = _user_features(source, self.num_images)
        if run is None:
            run = self.evaluator.statistics(source, self.num_images, desc,
                                            keep_features=self.need_features)
            self._extracted.add(id(run))
        return run

    def reference_features(self) -> np.ndarray:
        if self._reference_features is None:
            self._reference_features = np.concatenate(list(self.reference.iter_features()))
        return self._reference_features

    def classifier(self, run: FeatureRun):
        """The extractor's classifier weight, if the features came from that extractor (not
        from a .npy file)."""
        return self.evaluator.extractor.classifier_weight if id(run) in self._extracted \
            else None

    def score(self, samples: SourceLike, desc: str = "samples") -> tuple[dict, dict]:
        """(JSON record, artifacts such as the PRD result) for one model."""
        from genbench.metrics.inception_score import NoClassifierError
        from genbench.metrics.registry import METRICS, MetricInputs

        start = time.perf_counter()
        run = self._run(samples, desc)
        runs = {"samples": run, "reference": self.reference}
        inputs = MetricInputs(run.statistics, self.reference.statistics,
                              lambda: np.concatenate(list(run.iter_features())),
                              self.reference_features, seed=self.seed,
                              load_classifier=lambda: self.classifier(run))
        results, timings, skipped = {}, {}, {}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", FewSamplesWarning)
            for name in self.names:
                t0 = time.perf_counter()
                try:
                    results[name] = METRICS[name].compute(inputs)
                except NoClassifierError as exc:
                    skipped[name] = str(exc)
                    continue
                timings[name] = time.perf_counter() - t0
        notes = [str(w.message) for w in caught]
        notes += [f"{name} skipped: {why}" for name, why in skipped.items()]
        record = {
            "metrics": results, "seed": self.seed, "protocol": self.evaluator.protocol.name,
            "protocol_description": self.evaluator.protocol.description,
            "extractor": run.statistics.extractor,
            "weights_sha256": run.statistics.weights_sha256,
            "inputs": {side: asdict(SideSummary(r.source, r.num_images, False, r.skipped,
                                                r.extracted, r.seconds))
                       for side, r in runs.items()},
            "metric_seconds": timings, "seconds": time.perf_counter() - start,
            "notes": notes, "genbench_version": __version__,
        }
        if skipped:
            record["skipped_metrics"] = skipped
        if self.per_class:
            labels_s, labels_r = run.labels, self.reference.labels
            if labels_s is None or labels_r is None:
                notes.append("per-class results need labels on both inputs (ADM .npz arr_1, "
                             "a data set, or arrays with labels); skipped")
            else:
                record["per_class"] = _per_class(inputs.samples, labels_s, inputs.reference,
                                                 labels_r, self.names, self.seed)
        return record, inputs.artifacts


def _write_outputs(out_dir, artifacts: dict[str, dict], record: dict) -> None:
    """result.json (with the PRD curves) and, when PRD ran, prd.png with every model."""
    from genbench.fileio import atomic_path

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prd = {label: art["prd"] for label, art in artifacts.items() if "prd" in art}
    if prd:
        from genbench.report.prd_plot import plot_prd_curves

        plot_prd_curves(prd, out / "prd.png")
        record["plots"] = [str(out / "prd.png")]
    curves = {label: {"precision": r.precision.tolist(), "recall": r.recall.tolist()}
              for label, r in prd.items()}
    with atomic_path(out / "result.json") as tmp:
        tmp.write_text(json.dumps({**record, "prd_curves": curves} if curves else record,
                                  indent=1))


def evaluate(samples: SourceLike, reference: SourceLike, *, metrics: str | list[str] | None = None,
             seed: int = 0, num_images: int | None = None, per_class: bool = False,
             out_dir: str | os.PathLike | None = None, **options) -> dict:
    """Every requested metric (default: all registered; IS is skipped, with a note, when the
    weights have no classifier) from ONE feature pass per input.

    Returns one JSON-ready record (values, parameters, seed, protocol, counts, time); with
    ``out_dir`` also writes ``result.json`` (with the PRD curve) and, when PRD is computed,
    ``prd.png``. ``per_class`` adds FID, PRD and precision/recall per class when both inputs
    carry labels.
    """
    session = _Evaluation(reference, metrics, seed, num_images, per_class, options)
    record, artifacts = session.score(samples)
    if out_dir is not None:
        _write_outputs(out_dir, {record["inputs"]["samples"]["source"]: artifacts}, record)
    return record


def evaluate_models(models: Mapping[str, SourceLike], reference: SourceLike, *,
                    metrics: str | list[str] | None = None, seed: int = 0,
                    num_images: int | None = None, per_class: bool = False,
                    out_dir: str | os.PathLike | None = None, **options) -> dict:
    """``evaluate`` for several models against one reference (extracted once): returns
    ``{"models": {name: record}, ...}``; with ``out_dir`` one ``prd.png`` holds every
    model's PRD curve, for comparison."""
    if not models:
        raise GenbenchError("evaluate_models needs at least one model")
    start = time.perf_counter()
    session = _Evaluation(reference, metrics, seed, num_images, per_class, options)
    records, artifacts = {}, {}
    for name, source in models.items():
        records[name], artifacts[name] = session.score(source, desc=name)
    record = {"models": records, "seed": seed, "protocol": session.evaluator.protocol.name,
              "seconds": time.perf_counter() - start, "genbench_version": __version__}
    if out_dir is not None:
        _write_outputs(out_dir, artifacts, record)
    return record
