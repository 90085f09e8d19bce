"""Inception Score: torch-fidelity's numbers, analytic cases, seeding, and how eval handles
extractors with and without a classifier."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TinyExtractor
from genbench.api import evaluate
from genbench.errors import GenbenchError
from genbench.extractors import EXTRACTORS, register_extractor
from genbench.metrics.inception_score import inception_score, logits_from_features

REFERENCE = json.loads((Path(__file__).parent / "data" / "isc_reference.json").read_text())


def logits_case(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)  # as bench/isc_reference.py
    return (rng.standard_normal((n, 1008)) * 3).astype(np.float32)


@pytest.mark.parametrize("name", sorted(REFERENCE["cases"]))
def test_equals_torch_fidelity(name):
    case = REFERENCE["cases"][name]
    r = inception_score(logits_case(case["n"], case["data_seed"]), seed=case["rng_seed"])
    assert r.mean == pytest.approx(case["mean"], rel=1e-12)
    assert r.std == pytest.approx(case["std"], rel=1e-9)
    assert (r.splits, r.num_samples) == (10, case["n"])


def test_analytic_values():
    classes, per_split = 10, 30
    one_hot = np.tile(np.eye(classes) * 60.0, (per_split, 1))  # each split: every class 3×
    confident = inception_score(one_hot, shuffle=False)
    assert confident.mean == pytest.approx(classes, rel=1e-9)
    assert confident.std == pytest.approx(0.0, abs=1e-9)
    assert inception_score(np.zeros((100, 1008)), shuffle=False).mean == pytest.approx(1.0)
    # one class only: confident but no diversity
    assert inception_score(np.tile(one_hot[:1], (100, 1))).mean == pytest.approx(1.0)


def test_seeded():
    logits = logits_case(300, 1)
    assert inception_score(logits, seed=5) == inception_score(logits, seed=5)
    assert inception_score(logits, seed=5).mean != inception_score(logits, seed=6).mean


def test_logits_from_features():
    rng = np.random.default_rng(0)
    feats, w = rng.random((7, 16)).astype(np.float32), rng.standard_normal((5, 16))
    np.testing.assert_allclose(logits_from_features(feats, w).numpy(), feats @ w.T, rtol=1e-5)
    with pytest.raises(GenbenchError, match=r"classifier weight is \(5, 16\)"):
        logits_from_features(rng.random((7, 8)), w)


@pytest.mark.parametrize("kwargs, message", [
    ({"splits": 0}, "splits must be a positive integer"),
    ({"splits": 20}, "needs at least 20 samples, got 10"),
])
def test_errors(kwargs, message):
    with pytest.raises(GenbenchError, match=message):
        inception_score(np.zeros((10, 5)), **kwargs)


class TinyClassifierExtractor(TinyExtractor):
    """The tiny test network with a 12-way linear classifier on its features (a head the test
    builds; real Inception logits weights are not available offline)."""

    name = "tiny-classifier-test"

    def __init__(self, **options) -> None:
        super().__init__(**options)
        g = torch.Generator().manual_seed(99)
        self.weight = torch.randn(12, self.feature_dim, generator=g) * 3

    @property
    def identity(self) -> str:
        return "tiny-classifier-test:v1"

    @property
    def classifier_weight(self) -> torch.Tensor:
        return self.weight


if "tiny-classifier-test" not in EXTRACTORS:
    register_extractor("tiny-classifier-test", TinyClassifierExtractor)


def _images(seed: int, n: int = 40) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 16, 16, 3), dtype=np.uint8)


def test_eval_computes_is_from_cached_features(fresh_cache):
    samples, reference = _images(1), _images(2)
    record = evaluate(samples, reference, metrics="fid,is", seed=3,
                      extractor="tiny-classifier-test", progress=False)
    ext = TinyClassifierExtractor()
    from genbench.features import extract_statistics
    from genbench.protocols import get_protocol
    from genbench.sources import open_source

    run = extract_statistics(open_source(samples), get_protocol("tf"), ext, progress=False)
    feats = np.concatenate(list(run.iter_features()))
    expected = inception_score(logits_from_features(feats, ext.weight), seed=3)
    assert record["metrics"]["is"]["mean"] == pytest.approx(expected.mean, rel=1e-12)
    assert record["metrics"]["is"]["std"] == pytest.approx(expected.std, rel=1e-9)
    assert record["metrics"]["is"]["mean"] > 1.0
    assert "skipped_metrics" not in record


def test_eval_skips_is_without_classifier(fresh_cache):
    record = evaluate(_images(1), _images(2), metrics="fid,is", extractor="tiny-test",
                      progress=False)
    assert "is" not in record["metrics"] and "fid" in record["metrics"]
    assert "no classifier" in record["skipped_metrics"]["is"]
    assert any(n.startswith("is skipped:") for n in record["notes"])
