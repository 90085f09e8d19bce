"""Python API, mirroring the CLI: ``compute_fid``, ``compute_statistics``, ``evaluate`` and
``evaluate_models``, each a thin call of ``genbench.evaluation`` (the ``Evaluation`` session
and the extraction ``Pipeline``). Options are those of ``ExtractionConfig``: pass
``config=ExtractionConfig(...)``, or its fields by keyword (checked by name)."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from genbench import __version__, distributed
from genbench.config import ExtractionConfig
from genbench.errors import GenbenchError
from genbench.evaluation import EvalResult, Evaluation, Pipeline, SideSummary
from genbench.features import FeatureRun
from genbench.report.outputs import check_out_dir, try_plot, write_json
from genbench.resolve import InputLike

__all__ = ["FIDResult", "SideSummary", "compute_fid", "compute_statistics",
           "evaluate", "evaluate_models"]


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
    device: str = "cpu"
    genbench_version: str = __version__

    def to_dict(self) -> dict:
        record = {"metric": "fid", "value": self.fid, **asdict(self)}
        record["num_images"] = [side.num_images for side in self.inputs]
        del record["fid"]
        return record


def compute_statistics(source: InputLike, *, num_images: int | None = None,
                       config: ExtractionConfig | None = None, **options) -> FeatureRun:
    """Features of ``source`` reduced to float64 mean/covariance (cached).
    ``.statistics.save(path)`` writes a pytorch-fid-compatible .npz."""
    return Pipeline(ExtractionConfig.build(config, **options)).statistics(source, num_images)


def compute_fid(samples: InputLike, reference: InputLike, *, num_images: int | None = None,
                config: ExtractionConfig | None = None, **options) -> FIDResult:
    """FID between two inputs, each anything the resolver accepts (images, features, a
    statistics file or object, an ADM batch, a Generator)."""
    start = time.perf_counter()
    session = Evaluation(reference, metrics=["fid"], num_images=num_images,
                         config=ExtractionConfig.build(config, **options), desc="B")
    result = session.score(session.resolve(samples), desc="A")
    sides = [result.inputs["samples"], result.inputs["reference"]]
    extractor = result.extractor or session.reference.extractor_id or (
        f"{session.pipeline.extractor_name} (assumed; the statistics files do not say)")
    return FIDResult(result.metrics["fid"]["value"], result.protocol,
                     result.protocol_description, extractor, result.weights_sha256, sides,
                     time.perf_counter() - start, result.notes, result.device)


def _write_outputs(out_dir: str | os.PathLike, results: Mapping[str, EvalResult],
                   record: dict) -> None:
    """result.json (with the PRD curves) first, then, when PRD ran and matplotlib is there,
    prd.png with every model (rewriting result.json to list it)."""
    if not distributed.current().is_main:
        return
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prd = {label: r.artifacts["prd"] for label, r in results.items() if "prd" in r.artifacts}
    curves = {label: {"precision": r.precision.tolist(), "recall": r.recall.tolist()}
              for label, r in prd.items()}
    saved = {**record, "prd_curves": curves} if curves else record
    write_json(out / "result.json", saved)
    if prd:
        from genbench.report.prd_plot import plot_prd_curves

        try_plot(lambda path: plot_prd_curves(prd, path), out / "prd.png", record)
        write_json(out / "result.json", {**record, "prd_curves": curves})


def evaluate(samples: InputLike, reference: InputLike, *,
             metrics: str | list[str] | None = None, seed: int = 0,
             num_images: int | None = None, per_class: bool = False,
             out_dir: str | os.PathLike | None = None, config: ExtractionConfig | None = None,
             **options) -> dict:
    """Every requested metric (default: all registered that the inputs can feed; IS is
    skipped, with a note, when the weights have no classifier) from ONE feature pass per
    input.

    Returns one JSON-ready record (values, parameters, seed, protocol, counts, time); with
    ``out_dir`` also writes ``result.json`` (with the PRD curve) and, when PRD is computed
    and matplotlib is installed, ``prd.png``. ``per_class`` adds per-class values when both
    inputs carry labels.
    """
    check_out_dir(out_dir)
    session = Evaluation(reference, metrics=metrics, seed=seed, num_images=num_images,
                         per_class=per_class, config=ExtractionConfig.build(config, **options))
    result = session.score(samples)  # resolved (and checked) before the reference is read
    record = result.to_dict()
    if out_dir is not None:
        _write_outputs(out_dir, {result.inputs["samples"].source: result}, record)
    return record


def evaluate_models(models: Mapping[str, InputLike], reference: InputLike, *,
                    metrics: str | list[str] | None = None, seed: int = 0,
                    num_images: int | None = None, per_class: bool = False,
                    out_dir: str | os.PathLike | None = None,
                    config: ExtractionConfig | None = None, **options) -> dict:
    """``evaluate`` for several models against one reference (prepared once): returns
    ``{"models": {name: record}, ...}``; with ``out_dir`` one ``prd.png`` holds every
    model's PRD curve, for comparison."""
    if not models:
        raise GenbenchError("evaluate_models needs at least one model")
    start = time.perf_counter()
    check_out_dir(out_dir)
    session = Evaluation(reference, metrics=metrics, seed=seed, num_images=num_images,
                         per_class=per_class, config=ExtractionConfig.build(config, **options))
    resolved = {name: session.resolve(source) for name, source in models.items()}
    results = {name: session.score(source, desc=name) for name, source in resolved.items()}
    record = {"models": {name: r.to_dict() for name, r in results.items()}, "seed": seed,
              "protocol": session.protocol.name, "device": str(session.pipeline.device),
              "seconds": time.perf_counter() - start, "genbench_version": __version__}
    if out_dir is not None:
        _write_outputs(out_dir, results, record)
    return record
