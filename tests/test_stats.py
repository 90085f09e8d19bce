import numpy as np
import pytest
import torch

from genbench.errors import GenbenchError
from genbench.resolve import resolve_input
from genbench.stats import (
    FeatureStatistics,
    StreamingMoments,
    load_statistics,
)


def test_streaming_moments_equal_numpy_in_float64(rng):
    x = rng.standard_normal((1003, 16)) * 3 + 5
    moments = StreamingMoments(16)
    for start in range(0, 1003, 100):
        moments.update(torch.from_numpy(x[start:start + 100]).float())
    x32 = x.astype(np.float32).astype(np.float64)
    stats = moments.statistics()
    assert stats.num_samples == 1003
    np.testing.assert_allclose(stats.mu, x32.mean(0), rtol=1e-12)
    np.testing.assert_allclose(stats.sigma, np.cov(x32, rowvar=False), rtol=1e-10, atol=1e-12)
    assert stats.mu.dtype == np.float64 and stats.sigma.dtype == np.float64


def test_merged_shards_equal_one_pass(rng):
    x = rng.standard_normal((300, 8))
    whole, a, b = StreamingMoments(8), StreamingMoments(8), StreamingMoments(8)
    whole.update(x)
    a.update(x[:123])
    b.update(x[123:])
    a.merge(b)
    np.testing.assert_allclose(a.statistics().sigma, whole.statistics().sigma, rtol=1e-12)


def test_roundtrip_keeps_metadata_and_is_pytorch_fid_compatible(tmp_path, rng):
    stats = FeatureStatistics(rng.standard_normal(4), np.eye(4), num_samples=10,
                              protocol="tf", extractor="x", weights_sha256="abc")
    path = stats.save(tmp_path / "s.npz")
    with np.load(path) as data:  # what pytorch-fid reads
        np.testing.assert_array_equal(data["mu"], stats.mu)
        np.testing.assert_array_equal(data["sigma"], stats.sigma)
    back = load_statistics(path)
    assert (back.num_samples, back.protocol, back.weights_sha256) == (10, "tf", "abc")
    assert not list(tmp_path.glob("*.tmp"))


def test_foreign_files_load(tmp_path, rng):
    np.savez(tmp_path / "pfid.npz", mu=np.zeros(3), sigma=np.eye(3))
    adm = tmp_path / "adm_ref.npz"
    np.savez(adm, arr_0=np.zeros((2, 4, 4, 3), np.uint8), mu=np.ones(3), sigma=np.eye(3),
             mu_s=np.ones(2), sigma_s=np.eye(2))
    assert resolve_input(adm).kind == "adm-batch"
    assert load_statistics(tmp_path / "pfid.npz").protocol is None
    np.testing.assert_array_equal(load_statistics(adm).mu, np.ones(3))


def test_bad_statistics_files(tmp_path):
    np.savez(tmp_path / "obj.npz", mu=np.array([{"a": 1}], dtype=object), sigma=np.eye(1))
    with pytest.raises(GenbenchError, match="unpickling"):
        load_statistics(tmp_path / "obj.npz")
    np.savez(tmp_path / "shape.npz", mu=np.zeros(3), sigma=np.eye(2))
    with pytest.raises(GenbenchError, match=r"shape.npz: mu has shape"):
        load_statistics(tmp_path / "shape.npz")
