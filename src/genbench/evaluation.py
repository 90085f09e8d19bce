"""The evaluation session: one extractor and one reference, kept across calls.

``Pipeline`` is the extraction half (protocol, extractor created on first use, cache);
``Evaluation`` holds a reference's statistics and features and scores any number of models
against it, each from one feature pass, so a training loop can call ``score`` every N steps
without rebuilding the network or re-reading the reference::

    ev = genbench.Evaluation("fashion-mnist:test", metrics="fid,pr")
    result = ev.score(generator, num_images=2000)   # image i from seed i
    result.to_dict()["metrics"]["fid"]["value"]

``genbench.evaluate``, ``evaluate_models``, ``compute_fid`` and ``compute_statistics`` are thin
calls of these, and so are the ``fid``, ``eval`` and ``stats`` commands.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from genbench import __version__, distributed
from genbench.config import ExtractionConfig
from genbench.devices import resolve_device
from genbench.errors import GenbenchError
from genbench.extractors import EXTRACTORS, FeatureExtractor, InceptionExtractor
from genbench.features import FeatureRun, extract_statistics
from genbench.metrics.fid import FewSamplesWarning
from genbench.precision import fast_bfloat16
from genbench.protocols import Protocol, get_protocol
from genbench.references import recorded_protocol
from genbench.resolve import InputLike, ResolvedInput, ResolveOptions, resolve_input
from genbench.stats import FeatureStatistics, StreamingMoments


@dataclass
class SideSummary:
    """One input of a comparison: what it was and how many images it contributed."""

    source: str
    num_images: int | None
    from_statistics_file: bool = False
    skipped: list[str] = field(default_factory=list)
    extracted: int = 0
    seconds: float = 0.0
    kind: str = "images"
    #: where FID's mean and covariance came from: "features" (of this pass) or "stored"
    fid_statistics: str = "features"


class Pipeline:
    """Images to features under one configuration: the protocol, the extractor (built on
    first use, so statistics-only work loads no weights), the device and the cache."""

    def __init__(self, config: ExtractionConfig | None = None) -> None:
        self.config = config or ExtractionConfig()
        self.device = resolve_device(self.config.device)
        distributed.init_distributed(self.device.type)
        self._extractor: FeatureExtractor | None = None
        if isinstance(self.config.extractor, FeatureExtractor):
            self._extractor = self.config.extractor
            self.extractor_name = self._extractor.name
            default_protocol, size = (self._extractor.default_protocol,
                                      self._extractor.input_size)
        else:
            entry = EXTRACTORS.lookup(self.config.extractor)
            self.extractor_name = self.config.extractor
            default_protocol, size = entry.default_protocol, entry.input_size
        self.protocol: Protocol = get_protocol(self.config.protocol or default_protocol) \
            .at_size(size)
        self._check_precision()
        takes = (self._extractor.input_range if self._extractor is not None
                 else entry.input_range) or get_protocol(default_protocol).output
        if self.protocol.output != takes:  # the network would see other numbers
            raise GenbenchError(f"protocol {self.protocol.name!r} gives {self.protocol.output} "
                                f"values, but extractor {self.extractor_name!r} takes {takes}; "
                                f"use its protocol ({default_protocol!r}) or another giving "
                                f"{takes}")

    def _check_precision(self) -> None:
        """A reduced precision only where the extractor offers it and the device runs it
        natively (elsewhere it would be slower than float32, and less exact): one line,
        before any work."""
        precision = self.config.precision
        if precision == "float32":
            return
        offered = self._extractor.precisions if self._extractor is not None \
            else getattr(EXTRACTORS[self.extractor_name].factory, "precisions", ("float32",))
        if precision not in offered:
            raise GenbenchError(f"--precision {precision}: extractor {self.extractor_name!r} "
                                "runs in float32 only; drop --precision")
        if self._extractor is not None and self._extractor.precision != precision:
            raise GenbenchError(f"--precision {precision}: the extractor instance given runs "
                                f"in {self._extractor.precision}; build it with "
                                f"precision={precision!r}")
        if not fast_bfloat16(self.device):
            raise GenbenchError(f"--precision {precision}: {self.device.type} here has no "
                                "native bfloat16 matmuls (AVX512-BF16 / AMX CPUs, GPUs), so it "
                                "would be slower than float32; drop --precision")

    @property
    def extractor(self) -> FeatureExtractor:
        if self._extractor is None:
            c = self.config  # a factory gets only the options it takes (ExtractorEntry)
            self._extractor = EXTRACTORS.lookup(self.extractor_name)(
                weights=c.weights, device=self.device, compile=c.compile,
                batch_size=c.batch_size, use_cache=c.use_cache, trust_pickle=c.trust_pickle,
                precision=c.precision)
        return self._extractor

    @property
    def precision(self) -> str:
        """The network's arithmetic: a given extractor instance's own, else the config's."""
        return self._extractor.precision if self._extractor is not None \
            else self.config.precision

    @property
    def extra_outputs(self) -> dict[str, int]:
        """The extractor's other outputs (name -> dimension), known without building it."""
        if self._extractor is not None:
            return self._extractor.extra_outputs
        return getattr(EXTRACTORS[self.extractor_name].factory, "extra_outputs", {})

    @property
    def extractor_built(self) -> bool:
        return self._extractor is not None

    @property
    def is_inception(self) -> bool:
        """The TF-FID Inception (whose pool3 statistics ADM and pytorch-fid files hold)."""
        if self._extractor is not None:
            return isinstance(self._extractor, InceptionExtractor)
        return EXTRACTORS[self.extractor_name].factory is InceptionExtractor

    @property
    def uses_adm_statistics(self) -> bool:
        """Whether an ADM reference batch's stored mu/sigma serve FID here: they are TF
        Inception pool3 statistics (float32) of images resized as the ``tf`` protocol does."""
        return self.is_inception and self.protocol.name == "tf" and self.precision == "float32"

    def resolve(self, spec: InputLike, num_images: int | None = None, *,
                with_labels: bool = False) -> ResolvedInput:
        """What ``spec`` is, checked against this pipeline before any extraction: stored
        statistics of another protocol are refused, too few images and a generator without
        a number of images are errors, and what an ADM batch's statistics serve is noted."""
        resolved = resolve_input(spec, ResolveOptions(num_images, self.config.batch_size,
                                                      with_labels))
        if resolved.checked:
            return resolved
        if resolved.kind == "generator" and resolved.source is None:
            raise GenbenchError(f"{resolved.label}: a generator needs the number of images to "
                                "draw (--num-images N, num_images=N)")
        if resolved.source is not None and len(resolved.source) < 2:
            raise GenbenchError(f"{resolved.source.describe()}: need at least 2 images, found "
                                f"{len(resolved.source)}")
        if resolved.source is not None and num_images is not None \
                and num_images > len(resolved.source):
            raise GenbenchError(f"{resolved.source.describe()}: --num-images {num_images} but "
                                f"the source has only {len(resolved.source)} images")
        if resolved.kind == "statistics":
            self.check_statistics(resolved.statistics, resolved.notes, resolved.label)
        elif resolved.kind == "adm-batch" and self.uses_adm_statistics:
            self.check_statistics(resolved.statistics, resolved.notes, resolved.label)
            resolved.notes.append(f"{resolved.label}: ADM reference batch: FID from its stored "
                                  "mu/sigma, the feature metrics from its arr_0 images (as "
                                  "ADM's evaluator)" + (
                                      f"; --num-images {num_images} applies to arr_0 only"
                                      if num_images is not None else ""))
        elif resolved.kind == "adm-batch":
            resolved.notes.append(
                f"{resolved.label}: ADM reference batch: its stored mu/sigma are TF Inception "
                f"statistics (tf protocol), so with extractor {self.extractor_name!r} and "
                f"protocol {self.protocol.name!r} every metric uses features of its arr_0 "
                "images")
        resolved.checked = True
        return resolved

    def feature_space(self, resolved: ResolvedInput) -> tuple[int, str | None]:
        """(dimension, network identity or None) of what FID will compare for this input;
        builds the extractor for inputs it will extract."""
        if resolved.kind == "statistics" or (resolved.kind == "adm-batch"
                                             and self.uses_adm_statistics):
            return resolved.statistics.dim, resolved.statistics.extractor
        if resolved.kind == "features":
            return resolved.features.shape[1], None
        return self.extractor.feature_dim, self.extractor.identity

    def extract(self, resolved: ResolvedInput, num_images: int | None = None,
                desc: str | None = None, keep_features: bool = False,
                outputs: tuple[str, ...] = ()) -> FeatureRun:
        """Features of the input's images (resumed from and filling the cache), with the
        statistics of the extractor's other ``outputs``."""
        if resolved.source is None:
            raise GenbenchError(f"{resolved.label}: holds {resolved.kind}, not images")
        c = self.config
        return extract_statistics(resolved.source, self.protocol, self.extractor,
                                  num_images=num_images, batch_size=c.batch_size,
                                  use_cache=c.use_cache, skip_bad=c.skip_bad,
                                  progress=c.progress, desc=desc, chunk_size=c.chunk_size,
                                  keep_features=keep_features, outputs=outputs,
                                  workers=c.workers)

    def statistics(self, spec: InputLike, num_images: int | None = None,
                   desc: str | None = None) -> FeatureRun:
        """Features of ``spec``'s images (cached), or the rows of a feature array, reduced to
        float64 mean/covariance."""
        resolved = self.resolve(spec, num_images)
        if resolved.kind == "features":
            return FeatureRun(features_statistics(resolved.features, resolved.label),
                              resolved.label, len(resolved.features),
                              features=[resolved.features])
        return self.extract(resolved, num_images, desc)

    def check_statistics(self, stats: FeatureStatistics, notes: list[str], where: str) -> None:
        """Refuse statistics made with another protocol; say what was assumed for files
        that record no protocol or no network (their network is compared with the
        extractor's in ``Evaluation.resolve``)."""
        made_of = f" (of {stats.label})" if stats.label and stats.label != where else ""
        if stats.protocol is None:
            notes.append(f"{where}: statistics file does not record its protocol "
                         f"(pytorch-fid/TTUR/ADM file?); assumed {self.protocol.name!r}")
        elif stats.protocol != self.protocol.name:
            raise GenbenchError(f"{where}: statistics{made_of} were computed with protocol "
                                f"{stats.protocol!r}, not {self.protocol.name!r}; pass "
                                f"--protocol {stats.protocol} or recompute them")
        if stats.extractor is None:
            notes.append(f"{where}: statistics file does not record its network; assumed "
                         f"{self.extractor_name!r} ({self.protocol.name} protocol)")


@dataclass
class Side:
    """One prepared input: the statistics FID uses, its features (loaded on demand), labels,
    provenance and notes."""

    label: str
    kind: str
    statistics: FeatureStatistics
    summary: SideSummary
    extractor_id: str | None          # network identity of the features/statistics
    load_features: Callable[[], np.ndarray] | None = None  # None: statistics only
    labels: np.ndarray | None = None
    from_pipeline: bool = False       # features made by the pipeline's extractor
    notes: list[str] = field(default_factory=list)
    #: statistics of the extractor's other outputs (e.g. "spatial", for sFID), by name
    extra_statistics: dict[str, FeatureStatistics] = field(default_factory=dict)
    _features: np.ndarray | None = None

    @property
    def has_features(self) -> bool:
        return self.load_features is not None

    def features(self) -> np.ndarray:
        if self._features is None:
            if self.load_features is None:
                raise GenbenchError(f"{self.label}: holds statistics only, no features")
            self._features = self.load_features()
        return self._features


def features_statistics(features: np.ndarray, label: str) -> FeatureStatistics:
    """float64 mean and covariance of N × D user features (of an unnamed network)."""
    moments = StreamingMoments(features.shape[1])
    moments.update(features.astype(np.float64))
    return moments.statistics(label=label)


def _run_features(run: FeatureRun) -> Callable[[], np.ndarray]:
    return lambda: np.concatenate(list(run.iter_features()))


def prepare_side(pipeline: Pipeline, spec: InputLike, *, num_images: int | None,
                 need_features: bool, desc: str, outputs: tuple[str, ...] = ()) -> Side:
    """Resolve ``spec`` and compute what the metrics need from it: statistics always,
    features when ``need_features`` (and the input has any), the statistics of the
    extractor's other ``outputs`` (stored ones for statistics files and ADM batches)."""
    resolved = pipeline.resolve(spec, num_images)
    notes = list(resolved.notes)
    if resolved.kind == "statistics":
        stats = resolved.statistics
        return Side(resolved.label, resolved.kind, stats,
                    SideSummary(resolved.label, stats.num_samples, True, kind="statistics",
                                fid_statistics="stored"),
                    stats.extractor, notes=notes, extra_statistics=_stored_extra(stats))
    if resolved.kind == "features":
        features = resolved.features
        stats = features_statistics(features, resolved.label)
        return Side(resolved.label, resolved.kind, stats,
                    SideSummary(resolved.label, len(features), kind="features"),
                    None, load_features=lambda: features, notes=notes)
    if resolved.kind == "adm-batch" and pipeline.uses_adm_statistics:
        stored = resolved.statistics
        summary = SideSummary(resolved.label, stored.num_samples, True, kind="adm-batch",
                              fid_statistics="stored")
        side = Side(resolved.label, resolved.kind, stored, summary, stored.extractor,
                    notes=notes, extra_statistics=_stored_extra(stored))
        if need_features:
            run = pipeline.extract(resolved, num_images, desc, keep_features=True)
            _note_skipped(run, notes)
            summary.num_images, summary.skipped = run.num_images, run.skipped
            summary.extracted, summary.seconds = run.extracted, run.seconds
            summary.from_statistics_file = False
            side.load_features, side.labels = _run_features(run), run.labels
            side.from_pipeline = True
        return side
    run = pipeline.extract(resolved, num_images, desc, keep_features=need_features,
                           outputs=outputs)
    _note_skipped(run, notes)
    summary = SideSummary(run.source, run.num_images, False, run.skipped, run.extracted,
                          run.seconds, kind=resolved.kind)
    return Side(resolved.label, resolved.kind, run.statistics, summary,
                run.statistics.extractor, load_features=_run_features(run),
                labels=run.labels, from_pipeline=True, notes=notes,
                extra_statistics=run.extra_statistics)


def _stored_extra(stats: FeatureStatistics) -> dict[str, FeatureStatistics]:
    """Other outputs' statistics a file holds (ADM's mu_s/sigma_s: "spatial")."""
    return {"spatial": stats.extra["spatial"]} if "spatial" in stats.extra else {}


def _note_skipped(run: FeatureRun, notes: list[str]) -> None:
    if run.skipped:
        notes.append(f"{run.source}: skipped {len(run.skipped)} unreadable image(s), "
                     f"first: {run.skipped[0]}")


def _check_spaces(a: tuple[str, int, str | None], b: tuple[str, int, str | None]) -> None:
    """(label, dimension, network identity) of two inputs: they compare only in the same
    feature space, the same dimension and, where both record it, the same network."""
    (label_a, dim_a, id_a), (label_b, dim_b, id_b) = a, b
    if dim_a != dim_b:
        raise GenbenchError(f"{label_a} has {dim_a}-d features but {label_b} {dim_b}-d; they "
                            "come from different networks")
    if id_a and id_b and id_a != id_b:
        raise GenbenchError(f"{label_a} was computed with extractor {id_a!r} but {label_b} "
                            f"with {id_b!r}; recompute one of them")


def check_comparable(a: Side, b: Side) -> None:
    """Two prepared sides compare only in the same feature space."""
    _check_spaces((a.label, a.statistics.dim, a.extractor_id),
                  (b.label, b.statistics.dim, b.extractor_id))


@dataclass
class EvalResult:
    """Every metric of one model against the reference, with what is needed to reproduce
    it. ``artifacts`` (e.g. the PRD curve object, for plots) is not part of ``to_dict``."""

    metrics: dict[str, dict]
    seed: int
    protocol: str
    protocol_description: str
    extractor: str | None
    weights_sha256: str | None
    inputs: dict[str, SideSummary]
    metric_seconds: dict[str, float]
    seconds: float
    notes: list[str]
    device: str
    skipped_metrics: dict[str, str] = field(default_factory=dict)
    per_class: dict[str, dict] | None = None
    artifacts: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        record = {
            "metrics": self.metrics, "seed": self.seed, "protocol": self.protocol,
            "protocol_description": self.protocol_description, "extractor": self.extractor,
            "weights_sha256": self.weights_sha256,
            "inputs": {side: asdict(s) for side, s in self.inputs.items()},
            "metric_seconds": self.metric_seconds, "seconds": self.seconds,
            "notes": self.notes, "device": self.device, "genbench_version": __version__,
        }
        if self.skipped_metrics:
            record["skipped_metrics"] = self.skipped_metrics
        if self.per_class is not None:
            record["per_class"] = self.per_class
        return record


class Evaluation:
    """One reference and the metrics to run against it. The reference is resolved and its
    statistics (and, when a metric needs them, features) computed once; ``score`` then takes
    any input (images, features, statistics, a Generator drawn by seed) and returns an
    ``EvalResult``. ``seed`` seeds the metrics' random choices; a generator is always asked
    for seeds 0..n-1, whatever the metric seed, so every command draws the same images."""

    def __init__(self, reference: InputLike, *, metrics: str | list[str] | None = None,
                 seed: int = 0, num_images: int | None = None, per_class: bool = False,
                 config: ExtractionConfig | None = None, desc: str = "reference") -> None:
        from genbench.metrics.registry import METRICS, parse_metrics

        self.names = parse_metrics(metrics)
        self.explicit_metrics = metrics is not None and metrics != ""
        self.need_features = per_class or any(METRICS[n].needs_features
                                              for n in self.names)
        self.outputs = tuple(sorted({METRICS[n].output for n in self.names
                                     if METRICS[n].output}))
        config = config or ExtractionConfig()
        extractor = config.extractor if isinstance(config.extractor, str) \
            else config.extractor.name
        recorded = recorded_protocol(reference, extractor)
        if config.protocol is None and recorded is not None:  # ref:NAME says how it was made
            config = replace(config, protocol=recorded)
        self.pipeline = Pipeline(config)
        self.seed, self.num_images, self.per_class = seed, num_images, per_class
        self._reference_desc = desc  # the reference's progress-bar label
        lacking = [o for o in self.outputs if o not in self.pipeline.extra_outputs]
        if lacking:
            raise GenbenchError(f"metric(s) {', '.join(self._needing(lacking))} need the "
                                f"{', '.join(lacking)} features of the TF-FID Inception; "
                                f"extractor {self.pipeline.extractor_name!r} has none")
        self._reference_input = self.pipeline.resolve(reference, num_images)
        self._check_outputs(self._reference_input)
        self._reference: Side | None = None

    @property
    def reference(self) -> Side:
        """The reference side, prepared (extracted) on first use."""
        if self._reference is None:
            self._reference = prepare_side(self.pipeline, self._reference_input,
                                           num_images=self.num_images,
                                           need_features=self.need_features,
                                           desc=self._reference_desc, outputs=self.outputs)
        return self._reference

    def resolve(self, samples: InputLike, *, num_images: int | None = None) -> ResolvedInput:
        """What ``samples`` is, checked against the reference before anything is extracted
        (feature spaces, metrics the inputs can feed): resolve every input first, so a bad
        one stops the run before any work."""
        resolved = self.pipeline.resolve(samples, self._count(num_images))
        ref = self._reference_input
        if {resolved.kind, ref.kind} & {"statistics", "features", "adm-batch"}:
            (dim_s, id_s), (dim_r, id_r) = (self.pipeline.feature_space(r)
                                            for r in (resolved, ref))
            _check_spaces((resolved.label, dim_s, id_s), (ref.label, dim_r, id_r))
            precision = self.pipeline.precision
            if precision != "float32" and (id_s is None) != (id_r is None):
                unknown = resolved.label if id_s is None else ref.label
                raise GenbenchError(f"{unknown}: records no network, so it cannot be checked "
                                    f"against --precision {precision} features (it was most "
                                    "likely made in float32); drop --precision, or give images")
        self._runnable(resolved.kind != "statistics", ref.kind != "statistics",
                       resolved.label, ref.label)
        self._check_outputs(resolved)
        return resolved

    def _needing(self, outputs: list[str]) -> list[str]:
        from genbench.metrics.registry import METRICS

        return [n for n in self.names if METRICS[n].output in outputs]

    def _check_outputs(self, resolved: ResolvedInput) -> None:
        """An input that cannot give the other outputs a metric compares (features of
        another network; a statistics file without them) stops the run before any work."""
        stored = resolved.statistics.extra if resolved.statistics is not None else {}
        stored_only = resolved.kind == "statistics" or (
            resolved.kind == "adm-batch" and self.pipeline.uses_adm_statistics)
        for output in self.outputs:
            if resolved.kind == "features" or (stored_only and output not in stored):
                raise GenbenchError(
                    f"{resolved.label}: metric(s) {', '.join(self._needing([output]))} need "
                    f"{output} statistics, which {resolved.kind} cannot give; give images "
                    "(or an ADM reference batch with mu_s/sigma_s)")

    def _count(self, num_images: int | None) -> int | None:
        return num_images if num_images is not None else self.num_images

    @property
    def protocol(self) -> Protocol:
        return self.pipeline.protocol

    def prepare(self, samples: InputLike, *, num_images: int | None = None,
                desc: str = "samples") -> Side:
        resolved = self.resolve(samples, num_images=num_images)
        _ = self.reference  # the reference is extracted before the samples
        return prepare_side(self.pipeline, resolved, num_images=self._count(num_images),
                            need_features=self.need_features, desc=desc,
                            outputs=self.outputs)

    def score(self, samples: InputLike, *, num_images: int | None = None,
              desc: str = "samples") -> EvalResult:
        """Every metric of ``samples`` against the reference, from one feature pass (a
        Generator is asked for ``num_images`` images, image i from seed i)."""
        start = time.perf_counter()
        side = self.prepare(samples, num_images=num_images, desc=desc)
        return self.score_side(side, start)

    def score_side(self, side: Side, start: float | None = None) -> EvalResult:
        from genbench.metrics.inception_score import NoClassifierError
        from genbench.metrics.registry import METRICS, MetricInputs

        start = time.perf_counter() if start is None else start
        ref = self.reference
        check_comparable(side, ref)
        names, skipped = self._runnable(side.has_features, ref.has_features, side.label,
                                        ref.label)
        for name in names:
            output = METRICS[name].output
            lacking = [s.label for s in (side, ref)
                       if output and output not in s.extra_statistics]
            if lacking:  # e.g. an ADM batch without mu_s/sigma_s
                raise GenbenchError(f"metric {name}: {' and '.join(lacking)} hold(s) no "
                                    f"{output} statistics")
        inputs = MetricInputs(side.statistics, ref.statistics, side.features, ref.features,
                              seed=self.seed, samples_extra=side.extra_statistics,
                              reference_extra=ref.extra_statistics,
                              load_classifier=lambda: self.pipeline.extractor.classifier_weight
                              if side.from_pipeline else None)
        results, timings = {}, {}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", FewSamplesWarning)
            for name in names:
                t0 = time.perf_counter()
                try:
                    results[name] = METRICS[name].compute(inputs)
                except NoClassifierError as exc:
                    skipped[name] = str(exc)
                    continue
                timings[name] = time.perf_counter() - t0
        notes = [*ref.notes, *side.notes, *(str(w.message) for w in caught)]
        notes += [f"{name} skipped: {why}" for name, why in skipped.items()]
        per_class = None
        if self.per_class:
            if side.labels is None or ref.labels is None:
                notes.append("per-class results need labels on both inputs (ADM .npz arr_1, "
                             "a data set, or arrays with labels); skipped")
            else:
                per_class = per_class_results(inputs.samples, side.labels, inputs.reference,
                                              ref.labels, self.names, self.seed)
        p = self.pipeline
        weights = p.extractor.weights_sha256 if p.extractor_built else next(
            (s.statistics.weights_sha256 for s in (side, ref) if s.statistics.weights_sha256),
            None)
        extractor = side.extractor_id or (f"features from {side.label}"
                                          if side.kind == "features" else None)
        return EvalResult(results, self.seed, p.protocol.name, p.protocol.description,
                          extractor, weights, {"samples": side.summary,
                                               "reference": ref.summary},
                          timings, time.perf_counter() - start, notes, str(p.device),
                          skipped, per_class, inputs.artifacts)

    def _runnable(self, samples_have: bool, reference_has: bool, samples_label: str,
                  reference_label: str) -> tuple[list[str], dict[str, str]]:
        """The requested metrics the two sides can feed (a side "has" features unless it is
        statistics only); the others are an error when asked for by name, skipped with a
        reason by default."""
        from genbench.metrics.registry import METRICS

        runnable, skipped = [], {}
        for name in self.names:
            spec = METRICS[name]
            lacking = [label for label, has, needs in (
                (samples_label, samples_have, spec.needs_features),
                (reference_label, reference_has,
                 spec.needs_features and spec.needs_reference_features)) if needs and not has]
            if not lacking:
                runnable.append(name)
                continue
            skipped[name] = (f"{' and '.join(lacking)} hold(s) statistics only (mu/sigma), "
                             "no features; give images or features")
        if skipped and self.explicit_metrics:
            why = next(iter(skipped.values()))
            raise GenbenchError(f"metric(s) {', '.join(skipped)} need features: {why}")
        return runnable, skipped


def per_class_results(samples: np.ndarray, labels_s: np.ndarray, reference: np.ndarray,
                      labels_r: np.ndarray, metrics: list[str], seed: int) -> dict[str, dict]:
    """Within each class present in the reference, every metric with a per-class rule (see
    ``metrics.registry.PerClass``): those marked ``always`` (FID, precision/recall) and the
    requested others (PRD), when both sides have enough images of the class. A class missing
    from the samples is reported with 0 samples (and no values)."""
    from genbench.metrics.registry import METRICS, MetricInputs

    specs = [spec for spec in METRICS.values() if spec.per_class is not None
             and (spec.per_class.always or spec.name in metrics)]
    out: dict[str, dict] = {}
    for cls in np.unique(labels_r):
        s, r = samples[labels_s == cls].astype(np.float64), reference[labels_r == cls]
        entry: dict = {"num_samples": len(s), "num_reference": len(r)}
        inputs = MetricInputs(None, None, lambda s=s: s, lambda r=r: r, seed=seed)
        for spec in specs:
            if min(len(s), len(r)) > spec.per_class.min_size:
                entry.update(spec.per_class.compute(inputs))
        out[str(int(cls))] = entry
    return out
