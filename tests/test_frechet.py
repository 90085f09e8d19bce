import warnings

import numpy as np
import pytest
import scipy.linalg

import genbench
from genbench.errors import GenbenchError
from genbench.metrics.fid import FewSamplesWarning, fid_from_statistics, frechet_distance
from genbench.stats import FeatureStatistics


def _features(rng, n, d, shift):
    mixing = rng.standard_normal((d, d)) / np.sqrt(d)
    return np.maximum(rng.standard_normal((n, d)) @ mixing + shift, 0.0)


def _sqrtm_reference(mu1, s1, mu2, s2):
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean).real)


def test_public_api_is_exported():
    assert genbench.frechet_distance is frechet_distance


def test_matches_scipy_sqrtm_to_1e6_relative(rng):
    a, b = _features(rng, 2000, 128, 0.0), _features(rng, 2000, 128, 0.2)
    args = (a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    ours, ref = frechet_distance(*args), _sqrtm_reference(*args)
    assert ref > 1.0
    assert abs(ours - ref) / ref < 1e-6


def test_analytic_value_for_diagonal_gaussians():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    v1, v2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    expected = 1 + 0 + 4 + ((np.sqrt(v1) - np.sqrt(v2)) ** 2).sum()  # = 5 + 1 + 1 + 4
    assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected,
                                                                                  rel=1e-12)


def test_identical_gaussians_give_zero(rng):
    x = _features(rng, 500, 32, 0.1)
    mu, sigma = x.mean(0), np.cov(x, rowvar=False)
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-9


def test_singular_covariances_stay_real_and_correct(rng):
    # N = 40 < d = 100: both covariances have rank 39.
    a, b = _features(rng, 40, 100, 0.0), _features(rng, 40, 100, 0.3)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(s1)
    root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh(root @ s2 @ root), 0, None)).sum()
    diff = a.mean(0) - b.mean(0)
    expected = diff @ diff + np.trace(s1) + np.trace(s2) - 2 * trace_sqrt
    value = frechet_distance(a.mean(0), s1, b.mean(0), s2)
    assert isinstance(value, float)
    assert value == pytest.approx(expected, rel=1e-6)


def test_few_samples_warns(rng):
    x = _features(rng, 20, 30, 0.0)
    stats = FeatureStatistics(x.mean(0), np.cov(x, rowvar=False), num_samples=20, label="tiny")
    with pytest.warns(FewSamplesWarning, match="N = 20 samples <= feature dimension 30"):
        fid_from_statistics(stats, stats)
    big = FeatureStatistics(stats.mu, stats.sigma, num_samples=31)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fid_from_statistics(big, big)


def test_shape_mismatch_and_nan_are_clear_errors():
    with pytest.raises(GenbenchError, match="shape mismatch"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(GenbenchError, match="NaN"):
        frechet_distance(np.array([np.nan]), np.eye(1), np.zeros(1), np.eye(1))
