"""KID against torch-fidelity 0.4.0 (frozen by bench/prdc_kid_reference.py in
tests/data/prdc_kid_reference.json), plus seeding, estimators and bad input."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from genbench.errors import GenbenchError
from genbench.metrics.kid import kernel_inception_distance, mmd2, polynomial_kernel

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = json.loads((ROOT / "tests" / "data" / "prdc_kid_reference.json").read_text())
KID = REFERENCE["kid"]
_spec = importlib.util.spec_from_file_location("prdc_kid_reference",
                                               ROOT / "bench" / "prdc_kid_reference.py")
recipes = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(recipes)  # make_case only; the peers are imported in its main()


@pytest.fixture(scope="module")
def features():
    real, fake = recipes.make_case(KID["case"])
    case = REFERENCE["cases"][KID["case"]]
    assert recipes.sha256(real) == case["sha256"]["real"], "features changed"
    assert recipes.sha256(fake) == case["sha256"]["fake"], "features changed"
    return real, fake


@pytest.mark.parametrize("run", KID["runs"],
                         ids=lambda r: f"{r['dtype']}-{r['subsets']}x{r['subset_size']}")
def test_equals_torch_fidelity(features, run):
    """Same subsets (torch-fidelity's RandomState draws, seed 2020): equal to torch-fidelity
    run in float64 up to summation order, and within 1e-6 of its float32 run."""
    real, fake = features
    ours = kernel_inception_distance(real, fake, num_subsets=run["subsets"],
                                     subset_size=run["subset_size"], seed=KID["rng_seed"],
                                     sampling="torch-fidelity")
    tol = 1e-12 if run["dtype"] == "float64" else 1e-6
    assert abs(ours.mean - run["mean"]) <= tol
    assert abs(ours.std - run["std"]) <= tol
    assert (ours.num_subsets, ours.subset_size) == (run["subsets"], run["subset_size"])


@pytest.mark.parametrize("estimator", ["unbiased", "u-statistic", "biased"])
def test_estimators_equal_torch_fidelity_mmd2(features, estimator):
    real, fake = features
    x, y = (torch.from_numpy(f).double() for f in (real[:500], fake))
    ours = mmd2(polynomial_kernel(x, x), polynomial_kernel(x, y), polynomial_kernel(y, y),
                estimator)
    assert ours == pytest.approx(KID["full_set_mmd2_float64"][estimator], abs=1e-12)
    if estimator != "u-statistic":  # the others do not depend on how X and Y are paired
        full = kernel_inception_distance(real[:500], fake, num_subsets=1, subset_size=500,
                                         estimator=estimator)
        assert full.mean == pytest.approx(ours, abs=1e-12) and full.std == 0.0


def test_seed_determinism(features):
    real, fake = features
    kwargs = {"num_subsets": 5, "subset_size": 100}
    a = kernel_inception_distance(real, fake, seed=7, **kwargs)
    b = kernel_inception_distance(real, fake, seed=7, **kwargs)
    c = kernel_inception_distance(real, fake, seed=8, **kwargs)
    legacy = kernel_inception_distance(real, fake, seed=7, sampling="torch-fidelity", **kwargs)
    assert (a.mean, a.std) == (b.mean, b.std)
    np.testing.assert_array_equal(a.values, b.values)
    assert a.mean != c.mean and a.mean != legacy.mean
    assert a.seed == 7 and a.sampling == "generator" and legacy.sampling == "torch-fidelity"


def test_subset_draws_are_documented_generator_calls(features):
    """The subsets are numpy default_rng(seed).choice(n, m, replace=False), A then B."""
    real, fake = features
    ours = kernel_inception_distance(real, fake, num_subsets=3, subset_size=50, seed=11)
    rng = np.random.default_rng(11)
    expected = []
    for _ in range(3):
        x = torch.from_numpy(real[rng.choice(len(real), 50, replace=False)]).double()
        y = torch.from_numpy(fake[rng.choice(len(fake), 50, replace=False)]).double()
        expected.append(mmd2(polynomial_kernel(x, x), polynomial_kernel(x, y),
                             polynomial_kernel(y, y)))
    np.testing.assert_allclose(ours.values, expected, rtol=0, atol=1e-13)
    assert ours.std == pytest.approx(np.std(expected), abs=1e-13)  # population std


def test_kid_of_independent_samples_is_near_zero(features):
    real, fake = features
    other = kernel_inception_distance(real[:300], fake, num_subsets=10, subset_size=200)
    same = kernel_inception_distance(real[:300], real[300:], num_subsets=10, subset_size=200)
    assert other.mean > 0.1
    assert abs(same.mean) < 0.02 * other.mean


def test_kid_of_a_set_with_itself_is_slightly_negative(features):
    """Subsets of one set share samples, and the X–Y sum keeps k(x, x) (it drops no diagonal),
    so KID(A, A) is negative: on the full set exactly −2 (mean k(x, x) − mean k(x, x')) / m."""
    real, _ = features
    x = torch.from_numpy(real).double()
    k = polynomial_kernel(x, x)
    m = len(real)
    diag_mean = k.diagonal().mean().item()
    off_mean = ((k.sum() - k.diagonal().sum()) / (m * (m - 1))).item()
    full = kernel_inception_distance(real, real.copy(), num_subsets=1, subset_size=m)
    assert full.mean == pytest.approx(-2 * (diag_mean - off_mean) / m, rel=1e-10)
    assert full.mean < 0
    subsets = kernel_inception_distance(real, real.copy(), num_subsets=5, subset_size=200)
    assert subsets.mean < 0
    # the biased (V-statistic) estimator on the full set is 0 up to rounding
    biased = kernel_inception_distance(real, real, num_subsets=1, subset_size=m,
                                       estimator="biased")
    assert abs(biased.mean) < 1e-12


def test_subset_size_capped_at_smaller_set(features):
    real, fake = features
    result = kernel_inception_distance(real, fake, num_subsets=2)  # default size 1000
    assert result.subset_size == len(fake) == 500
    assert len(result.values) == 2


def test_polynomial_kernel_default():
    x = torch.tensor([[1.0, 2.0], [0.0, -1.0]], dtype=torch.float64)
    y = torch.tensor([[3.0, 1.0]], dtype=torch.float64)
    expected = ((x @ y.T) / 2 + 1) ** 3
    torch.testing.assert_close(polynomial_kernel(x, y), expected, rtol=0, atol=0)


def test_torch_input(features):
    real, fake = features
    a = kernel_inception_distance(torch.from_numpy(real), torch.from_numpy(fake),
                                  num_subsets=3, subset_size=100)
    b = kernel_inception_distance(real, fake, num_subsets=3, subset_size=100)
    assert a.mean == pytest.approx(b.mean, abs=1e-14)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_equals_cpu(features):
    real, fake = features
    cpu = kernel_inception_distance(real, fake, num_subsets=5, subset_size=300)
    gpu = kernel_inception_distance(real, fake, num_subsets=5, subset_size=300, device="cuda")
    assert gpu.mean == pytest.approx(cpu.mean, abs=1e-12)
    assert gpu.std == pytest.approx(cpu.std, abs=1e-12)


@pytest.mark.parametrize("a_shape, b_shape, kwargs, message", [
    ((20, 4), (20, 5), {}, "features_a have dimension 4 but features_b have 5"),
    ((0, 4), (20, 4), {}, "features_a is empty"),
    ((20, 4), (20, 0), {}, "features_b is empty"),
    ((20,), (20, 4), {}, "must be a 2-D"),
    ((1, 4), (20, 4), {}, "at least 2 samples in each set"),
    ((20, 4), (20, 4), {"subset_size": 1}, "subset_size must be an integer >= 2"),
    ((20, 4), (20, 4), {"num_subsets": 0}, "num_subsets must be an integer >= 1"),
    ((20, 4), (20, 4), {"estimator": "mmd"}, "estimator must be"),
    ((20, 4), (20, 4), {"sampling": "torch"}, "sampling must be"),
    ((20, 4), (20, 4), {"seed": -1}, "seed must be a non-negative integer"),
    ((20, 4), (20, 4), {"seed": 1.5}, "seed must be a non-negative integer"),
])
def test_errors(a_shape, b_shape, kwargs, message):
    rng = np.random.default_rng(0)
    with pytest.raises(GenbenchError, match=message):
        kernel_inception_distance(rng.standard_normal(a_shape), rng.standard_normal(b_shape),
                                  **kwargs)


def test_non_finite_features_rejected():
    x = np.ones((10, 3))
    x[0, 0] = np.inf
    with pytest.raises(GenbenchError, match="features_b contains NaN or infinite"):
        kernel_inception_distance(np.zeros((10, 3)), x)
