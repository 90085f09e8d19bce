"""PRD (Sajjadi et al. 2018): the reference unit-test vectors (prd_score_test.py), the analytic
check of methods.md D.2, seeding, clustering on synthetic features, errors and the plot."""

from __future__ import annotations

import importlib.util
import warnings

import numpy as np
import pytest

from genbench.errors import GenbenchError
from genbench.metrics.prd import (
    PRDResult,
    cluster_histograms,
    compute_prd,
    f_beta,
    prd_from_features,
    prd_to_max_f_beta_pair,
)

METHODS = ["fast", pytest.param("reference", marks=pytest.mark.skipif(
    importlib.util.find_spec("sklearn") is None, reason="needs scikit-learn"))]


@pytest.fixture(autouse=True)
def _one_thread():
    """The problems here are tiny: one thread avoids OpenMP start-up and spinning (which costs
    seconds when other work holds the cores)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        limits = None
    else:
        limits = threadpool_limits(1)
    yield
    if limits is not None:
        limits.restore_original_limits()
    torch.set_num_threads(threads)


# --- unit-test vectors of the reference (prd_score_test.py) -----------------------------------

def test_compute_prd_no_overlap():
    precision, recall = compute_prd([0, 1], [1, 0])
    np.testing.assert_almost_equal(precision, 0)
    np.testing.assert_almost_equal(recall, 0)


def test_compute_prd_perfect_overlap():
    precision, recall = compute_prd([1, 0], [1, 0], num_angles=11)
    np.testing.assert_almost_equal([precision[5], recall[5]], [1, 1])


def test_compute_prd_low_precision_high_recall():
    precision, recall = compute_prd([0.5, 0.5], [1, 0], num_angles=11)
    np.testing.assert_almost_equal(precision[5], 0.5)
    np.testing.assert_almost_equal(recall[5], 0.5)
    np.testing.assert_almost_equal(precision[10], 0.5)
    np.testing.assert_almost_equal(recall[1], 1)


def test_compute_prd_high_precision_low_recall():
    precision, recall = compute_prd([1, 0], [0.5, 0.5], num_angles=11)
    np.testing.assert_almost_equal([precision[5], recall[5]], [0.5, 0.5])
    np.testing.assert_almost_equal(recall[1], 0.5)
    np.testing.assert_almost_equal(precision[10], 1)


@pytest.mark.parametrize("epsilon", [0, 1, -1, 0.1, float("nan")])
def test_compute_prd_bad_epsilon(epsilon):
    with pytest.raises(GenbenchError, match="epsilon"):
        compute_prd([1], [1], epsilon=epsilon)


@pytest.mark.parametrize("num_angles", [0, 1, -1, 2, 1e6 + 1, 1_000_001, 2.5, 11.0, True])
def test_compute_prd_bad_num_angles(num_angles):
    with pytest.raises(GenbenchError, match="num_angles"):
        compute_prd([1], [1], num_angles=num_angles)


def test_compute_prd_bad_histograms():
    with pytest.raises(GenbenchError, match="same length"):
        compute_prd([0.5, 0.5], [1.0, 0.0, 0.0])
    with pytest.raises(GenbenchError, match="eval_dist"):
        compute_prd([-0.5, 1.5], [0.5, 0.5])
    with pytest.raises(GenbenchError, match="ref_dist"):
        compute_prd([0.5, 0.5], [[0.5, 0.5]])
    with pytest.raises(GenbenchError, match=r"1\.001"):  # not probability vectors
        compute_prd([2.0, 0.0], [1.0, 0.0])


def test_compute_prd_clips_rounding_above_one():
    q = np.full(7, 1 / 7) * (1 + 1e-6)  # sums to 1 + 1e-6
    precision, recall = compute_prd(q, np.full(7, 1 / 7))
    assert precision.max() <= 1.0 and recall.max() <= 1.0
    assert precision.dtype == np.float64 and precision.shape == (1001,)


def test_f_beta_vectors():
    precision = np.array([1, 1, 0, 0, 0.5, 1, 0.5])
    recall = np.array([1, 0, 1, 0, 0.5, 0.5, 1])
    np.testing.assert_almost_equal(f_beta(precision, recall, beta=1),
                                   [1, 0, 0, 0, 0.5, 2 / 3, 2 / 3])
    np.testing.assert_almost_equal(f_beta(precision, recall, beta=2),
                                   [1, 0, 0, 0, 0.5, 5 / 9, 5 / 6])
    np.testing.assert_almost_equal(f_beta(precision, recall, beta=1 / 2),
                                   [1, 0, 0, 0, 0.5, 5 / 6, 5 / 9])
    np.testing.assert_almost_equal(f_beta(np.array([]), np.array([]), beta=1), np.array([]))


@pytest.mark.parametrize("beta", [0, -3])
def test_f_beta_bad_beta(beta):
    with pytest.raises(GenbenchError, match="beta"):
        f_beta(np.ones(1), np.ones(1), beta=beta)
    with pytest.raises(GenbenchError, match="beta"):
        prd_to_max_f_beta_pair(np.ones(1), np.ones(1), beta=beta)


def test_f_beta_bad_precision_or_recall():
    with pytest.raises(GenbenchError, match="precision"):
        f_beta(-np.ones(1), np.ones(1), beta=1)
    with pytest.raises(GenbenchError, match="recall"):
        f_beta(np.ones(1), -np.ones(1), beta=1)
    with pytest.raises(GenbenchError, match="recall"):
        prd_to_max_f_beta_pair(np.ones(1), np.full(1, 1.5))


# --- analytic check (methods.md D.2): exact histograms, 10 modes + 1 junk bin ------------------

P_TRUE = np.r_[np.full(10, 0.1), 0.0]
ANALYTIC = {  # Q: (max precision, max recall, F_8, F_1/8)
    "equal": (P_TRUE, (1.0, 1.0, 1.0, 1.0)),
    "drops 5 of 10 modes": (np.r_[np.full(5, 0.2), np.zeros(5), 0.0],
                            (1.0, 0.5, 0.504, 0.985)),
    "half the mass in junk": (np.r_[np.full(10, 0.05), 0.5], (0.5, 1.0, 0.985, 0.504)),
    "both": (np.r_[np.full(5, 0.1), np.zeros(5), 0.5], (0.5, 0.5, 0.500, 0.500)),
}


@pytest.mark.parametrize("case", list(ANALYTIC))
def test_analytic_modes_and_junk(case):
    q, (max_p, max_r, f8, f1_8) = ANALYTIC[case]
    precision, recall = compute_prd(q, P_TRUE, num_angles=1001)
    got = (precision.max(), recall.max(), *prd_to_max_f_beta_pair(precision, recall, beta=8))
    np.testing.assert_allclose(got, (max_p, max_r, f8, f1_8), atol=5e-4)
    # α(1) = 1 − TV(P, Q): the middle angle (λ = 1) sees 0.5 in all three corrupted cases
    tv = 0.5 * np.abs(q - P_TRUE).sum()
    np.testing.assert_allclose(precision[500], 1 - tv, atol=1e-9)
    # swapping P and Q swaps precision and recall
    p_swap, r_swap = compute_prd(P_TRUE, q, num_angles=1001)
    np.testing.assert_allclose(p_swap, recall[::-1], atol=1e-6)
    np.testing.assert_allclose(r_swap, precision[::-1], atol=1e-6)


# --- clustering ---------------------------------------------------------------------------------

def _blobs(rng, n, centers, modes, scale=0.3):
    labels = rng.choice(modes, size=n)
    return centers[labels] + scale * rng.standard_normal((n, centers.shape[1]))


@pytest.fixture(scope="module")
def mixture():
    """10 well-separated Gaussian modes in 8-D; 400 reference samples over all of them."""
    rng = np.random.default_rng(7)
    centers = rng.standard_normal((10, 8)) * 8.0
    ref = _blobs(rng, 400, centers, np.arange(10))
    return rng, centers, ref


@pytest.mark.parametrize("method", METHODS)
def test_cluster_histograms_reference_vector(method):
    # prd_score_test: zeros vs ones into 3 bins -> two histograms of 3 bins, each summing to 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn: fewer distinct points than clusters
        eval_hist, ref_hist = cluster_histograms(np.zeros([5, 4]), np.ones([5, 4]), 3,
                                                 seed=0, method=method)
    assert eval_hist.shape == ref_hist.shape == (3,)
    np.testing.assert_almost_equal([eval_hist.sum(), ref_hist.sum()], [1, 1])
    assert np.abs(eval_hist - ref_hist).sum() == pytest.approx(2.0)  # disjoint clusters


@pytest.mark.parametrize("method", METHODS)
def test_mode_dropping_and_junk(mixture, method):
    rng, centers, ref = mixture
    dropping = _blobs(rng, 400, centers, np.arange(5))
    junk = np.concatenate([_blobs(rng, 200, centers, np.arange(10)),
                           rng.uniform(-40, 40, size=(200, 8))])
    good = _blobs(rng, 400, centers, np.arange(10))
    kw = {"num_runs": 3, "seed": 0, "kmeans": method}
    r_drop = prd_from_features(dropping, ref, **kw)
    r_junk = prd_from_features(junk, ref, **kw)
    r_good = prd_from_features(good, ref, **kw)
    assert r_drop.f_beta_inv > 0.9 and r_drop.f_beta < 0.65  # precise, misses modes
    assert r_junk.f_beta > 0.9 and r_junk.f_beta_inv < 0.75  # covers all, half junk
    assert r_good.f_beta > 0.95 and r_good.f_beta_inv > 0.95
    assert r_drop.recall.max() == pytest.approx(0.5, abs=0.08)
    assert r_drop.precision.max() == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize("method", METHODS)
def test_seed_determinism(mixture, method):
    _, centers, ref = mixture
    ev = _blobs(np.random.default_rng(3), 400, centers, np.arange(7))
    a = prd_from_features(ev, ref, num_runs=2, seed=5, kmeans=method)
    b = prd_from_features(ev, ref, num_runs=2, seed=5, kmeans=method)
    np.testing.assert_array_equal(a.precision, b.precision)
    np.testing.assert_array_equal(a.recall, b.recall)
    np.testing.assert_array_equal(a.eval_histograms, b.eval_histograms)
    assert (a.f_beta, a.f_beta_inv) == (b.f_beta, b.f_beta_inv)
    c = prd_from_features(ev, ref, num_runs=2, seed=6, kmeans=method)  # may differ
    assert c.precision.shape == a.precision.shape and c.seed == 6
    h1 = cluster_histograms(ev, ref, seed=11, method=method)
    h2 = cluster_histograms(ev, ref, seed=11, method=method)
    np.testing.assert_array_equal(h1[0], h2[0])
    np.testing.assert_array_equal(h1[1], h2[1])


def test_result_fields_and_float32_torch_input(mixture):
    import torch

    _, centers, ref = mixture
    ev = _blobs(np.random.default_rng(4), 400, centers, np.arange(10))
    r = prd_from_features(torch.as_tensor(ev, dtype=torch.float32), ref.astype(np.float32),
                          num_runs=2, num_angles=101, num_clusters=12, device="cpu")
    assert isinstance(r, PRDResult)
    assert r.precision.shape == r.recall.shape == (101,)
    assert r.eval_histograms.shape == r.ref_histograms.shape == (2, 12)
    np.testing.assert_allclose(r.eval_histograms.sum(1), 1.0)
    assert (r.kmeans, r.num_runs, r.num_clusters, r.beta) == ("reference", 2, 12, 8.0)
    assert (r.f8, r.f1_8) == (r.f_beta, r.f_beta_inv)
    assert r.to_dict()["num_eval"] == 400 and not r.subsampled


# --- balance ------------------------------------------------------------------------------------

def test_unequal_sizes_raise_by_default():
    with pytest.raises(GenbenchError, match="equal sizes"):
        prd_from_features(np.array([[0.0], [0.0], [1.0]]), np.array([[0.0], [1.0]]),
                          num_clusters=2)


def test_unequal_sizes_subsample_and_off(mixture):
    _, centers, ref = mixture
    ev = _blobs(np.random.default_rng(5), 700, centers, np.arange(10))
    kw = {"num_runs": 2, "seed": 1}
    r = prd_from_features(ev, ref, balance="subsample", **kw)
    assert r.subsampled and r.num_eval == r.num_ref == 400
    assert (r.num_eval_given, r.num_ref_given) == (700, 400)
    assert r.to_dict()["balance"] == "subsample"
    r2 = prd_from_features(ev, ref, balance="subsample", **kw)
    np.testing.assert_array_equal(r.precision, r2.precision)
    r3 = prd_from_features(ref, ev, balance="subsample", **kw)  # the larger side is ref now
    assert (r3.num_eval, r3.num_ref, r3.num_ref_given) == (400, 400, 700)
    off = prd_from_features(np.array([[0.0], [0.0], [1.0]]), np.array([[0.0], [1.0]]),
                            num_clusters=2, balance="off", num_runs=1)
    assert not off.subsampled and (off.num_eval, off.num_ref) == (3, 2)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"balance": "yes"}, "balance"),
    ({"kmeans": "lloyd"}, "kmeans"),
    ({"num_runs": 0}, "num_runs"),
    ({"num_clusters": 0}, "num_clusters"),
    ({"num_clusters": 100}, "num_clusters"),
    ({"num_angles": 2}, "num_angles"),
    ({"seed": -1}, "seed"),
    ({"seed": 2**32}, "seed"),
    ({"seed": 1.5}, "seed"),
    ({"beta": 0}, "beta"),
])
def test_prd_from_features_bad_arguments(kwargs, match):
    x = np.random.default_rng(0).standard_normal((20, 3))
    with pytest.raises(GenbenchError, match=match):
        prd_from_features(x, x + 1, **kwargs)


def test_prd_from_features_bad_features():
    x = np.zeros((10, 3))
    with pytest.raises(GenbenchError, match="feature dimensions"):
        prd_from_features(x, np.zeros((10, 4)))
    with pytest.raises(GenbenchError, match="eval_features"):
        prd_from_features(np.zeros(10), x)
    with pytest.raises(GenbenchError, match="NaN"):
        prd_from_features(x, np.full((10, 3), np.nan))


# --- plot ---------------------------------------------------------------------------------------

def test_plot_prd_curves(tmp_path):
    from PIL import Image

    from genbench.report.prd_plot import plot_prd_curves

    p_true = P_TRUE
    results = {}
    for label in ("drops 5 of 10 modes", "half the mass in junk"):
        precision, recall = compute_prd(ANALYTIC[label][0], p_true)
        fb, fb_inv = prd_to_max_f_beta_pair(precision, recall)
        results[label] = PRDResult(precision, recall, fb, fb_inv)
    results["pair"] = compute_prd(ANALYTIC["both"][0], p_true)  # a (precision, recall) pair
    out = plot_prd_curves(results, tmp_path / "sub" / "prd.png", dpi=60, title="toy")
    assert out.exists() and out.stat().st_size > 0
    with Image.open(out) as img:
        assert img.format == "PNG"
        img.verify()
    assert [p.name for p in out.parent.iterdir()] == ["prd.png"]  # no temporary left behind
    with pytest.raises(GenbenchError, match="results"):
        plot_prd_curves({}, tmp_path / "empty.png")
    with pytest.raises(GenbenchError, match="format"):
        plot_prd_curves(results, tmp_path / "prd.xyz")


@pytest.mark.parametrize("bfloat16", [False, True])
def test_fast_seeding_precision(monkeypatch, mixture, bfloat16):
    """The fast k-means seeds on bfloat16 copies where that is native and on float32
    otherwise; either way the seeded centres are float32 data points and the clustering of
    well-separated modes is the same (dropping half the modes halves the recall)."""
    import torch

    from genbench.metrics import prd

    monkeypatch.setattr(prd, "fast_bfloat16", lambda device: bfloat16)
    rng, centers, ref = mixture
    dropping = _blobs(rng, 400, centers, np.arange(5))
    data = prd._FastKMeansData(dropping, ref)
    assert data.seed_x.dtype == (torch.bfloat16 if bfloat16 else torch.float32)
    gen = torch.Generator().manual_seed(0)
    idx = torch.randint(data.x.shape[0], (3, 200), generator=gen)
    chosen = prd._kmeans_plusplus_lockstep(data.seed_x[idx], data.seed_sq_norms[idx], 10, gen)
    assert chosen.shape == (3, 10)
    picked = torch.gather(idx, 1, chosen)
    assert all(len(set(row.tolist())) == 10 for row in picked)  # k-means++: distinct points
    r = prd_from_features(dropping, ref, num_runs=3, seed=0)
    assert r.f_beta_inv > 0.9 and r.recall.max() == pytest.approx(0.5, abs=0.08)
