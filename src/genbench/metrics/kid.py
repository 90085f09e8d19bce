"""Kernel Inception Distance (Bińkowski et al. 2018): squared MMD with a polynomial kernel,
averaged over random subsets, in float64.

    k(x, y) = (γ xᵀy + c)^p,  by default γ = 1/d, c = 1, p = 3, i.e. (xᵀy/d + 1)³

For each subset, m samples are drawn without replacement from each set (X from A, Y from B) and
the unbiased estimator of MMD² (the default, as torch-fidelity and the MMD-GAN code) is

    MMD² = Σ_{i≠j} k(xᵢ, xⱼ) / (m(m−1)) + Σ_{i≠j} k(yᵢ, yⱼ) / (m(m−1)) − 2 Σ_{i,j} k(xᵢ, yⱼ) / m²

(diagonals dropped for the X–X and Y–Y terms, kept for X–Y). ``"u-statistic"`` also drops the
X–Y diagonal; ``"biased"`` keeps every diagonal and divides by m². KID is the mean over subsets;
its spread is reported as the population standard deviation (``np.std``, as torch-fidelity). KID
can be slightly negative when the two distributions are close. KID of a set with itself is
negative, about −2 (mean k(x, x) − mean k(x, x′)) / m: subsets drawn from the same samples
share points and the X–Y sum keeps their k(x, x); compare independent samples instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from genbench.errors import GenbenchError
from genbench.metrics.inputs import as_feature_tensor, resolve_device

Estimator = Literal["unbiased", "u-statistic", "biased"]
Sampling = Literal["generator", "torch-fidelity"]

DEFAULT_SEED = 2020  # torch-fidelity's default rng_seed


@dataclass(frozen=True)
class KIDResult:
    """KID mean and population std over ``num_subsets`` subsets of ``subset_size`` samples per
    set (after capping at the smaller set), with the seed, sampling and estimator used;
    ``values`` holds the per-subset MMD² estimates."""

    mean: float
    std: float
    num_subsets: int
    subset_size: int
    seed: int | None
    sampling: str = "generator"
    estimator: str = "unbiased"
    values: np.ndarray = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        """The scalars and settings, JSON-ready (not the per-subset values)."""
        return {"mean": self.mean, "std": self.std, "num_subsets": self.num_subsets,
                "subset_size": self.subset_size, "seed": self.seed,
                "sampling": self.sampling, "estimator": self.estimator}


def _positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise GenbenchError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def polynomial_kernel(x: torch.Tensor, y: torch.Tensor, *, degree: float = 3,
                      gamma: float | None = None, coef0: float = 1.0) -> torch.Tensor:
    """(γ xᵀy + c)^p for all row pairs; γ defaults to 1/d."""
    if gamma is None:
        gamma = 1.0 / x.shape[1]
    return (x @ y.T * gamma + coef0) ** degree


def mmd2(k_xx: torch.Tensor, k_xy: torch.Tensor, k_yy: torch.Tensor,
         estimator: Estimator = "unbiased") -> float:
    """Squared MMD from the three m × m kernel matrices (see the module docstring)."""
    m = k_xx.shape[0]
    sum_xx, sum_yy, sum_xy = k_xx.sum(), k_yy.sum(), k_xy.sum()
    if estimator == "biased":
        value = (sum_xx + sum_yy - 2.0 * sum_xy) / (m * m)
    else:
        value = (sum_xx - k_xx.diagonal().sum() + sum_yy - k_yy.diagonal().sum()) / (m * (m - 1))
        if estimator == "unbiased":
            value = value - 2.0 * sum_xy / (m * m)
        elif estimator == "u-statistic":
            value = value - 2.0 * (sum_xy - k_xy.diagonal().sum()) / (m * (m - 1))
        else:
            raise GenbenchError(f"estimator must be 'unbiased', 'u-statistic' or 'biased', "
                                f"got {estimator!r}")
    return float(value)


def kernel_inception_distance(features_a, features_b, *, num_subsets: int = 100,
                              subset_size: int = 1000, seed: int | None = DEFAULT_SEED,
                              sampling: Sampling = "generator",
                              estimator: Estimator = "unbiased", degree: float = 3,
                              gamma: float | None = None, coef0: float = 1.0,
                              device: torch.device | str | None = None) -> KIDResult:
    """KID between feature sets A (N × d) and B (M × d), numpy arrays or torch tensors.

    Subsets: ``subset_size`` is capped at min(N, M) (the result records the size used). For each
    of the ``num_subsets`` subsets, indices into A and then into B are drawn without replacement
    from one random stream seeded once with ``seed``:

    * ``sampling="generator"`` (default): ``numpy.random.default_rng(seed).choice(n, m,
      replace=False)``.
    * ``sampling="torch-fidelity"``: ``numpy.random.RandomState(seed).choice(n, m,
      replace=False)``, torch-fidelity's own draws; with A = its input1 and the default seed
      2020, the subsets, hence mean and std, are torch-fidelity's (which computes in the
      features' dtype, float32 normally; genbench always uses float64).

    The same seed gives the same value; ``seed=None`` draws fresh entropy. Kernels and sums are
    computed in float64 with torch on ``device`` (default: a tensor argument's, else CPU).
    """
    num_subsets = _positive_int("num_subsets", num_subsets)
    subset_size = _positive_int("subset_size", subset_size, minimum=2)
    if estimator not in ("unbiased", "u-statistic", "biased"):
        raise GenbenchError(f"estimator must be 'unbiased', 'u-statistic' or 'biased', "
                            f"got {estimator!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int | np.integer)
                             or seed < 0):
        raise GenbenchError(f"seed must be a non-negative integer or None, got {seed!r}")
    device = resolve_device(device, features_a, features_b)
    a = as_feature_tensor("features_a", features_a, device)
    b = as_feature_tensor("features_b", features_b, device)
    if a.shape[1] != b.shape[1]:
        raise GenbenchError(f"features_a have dimension {a.shape[1]} but features_b have "
                            f"{b.shape[1]}; both must come from the same extractor")
    n_a, n_b = a.shape[0], b.shape[0]
    m = min(subset_size, n_a, n_b)
    if m < 2:
        raise GenbenchError(f"KID needs at least 2 samples in each set, got {n_a} and {n_b}")

    if sampling == "generator":
        rng = np.random.default_rng(seed)
    elif sampling == "torch-fidelity":
        rng = np.random.RandomState(seed)
    else:
        raise GenbenchError(f"sampling must be 'generator' or 'torch-fidelity', got {sampling!r}")

    kernel = {"degree": degree, "gamma": gamma, "coef0": coef0}
    values = np.empty(num_subsets, dtype=np.float64)
    for s in range(num_subsets):
        idx_a = torch.as_tensor(rng.choice(n_a, m, replace=False), device=device)
        idx_b = torch.as_tensor(rng.choice(n_b, m, replace=False), device=device)
        x, y = a[idx_a], b[idx_b]
        values[s] = mmd2(polynomial_kernel(x, x, **kernel), polynomial_kernel(x, y, **kernel),
                         polynomial_kernel(y, y, **kernel), estimator)
    return KIDResult(mean=float(values.mean()), std=float(values.std()),
                     num_subsets=num_subsets, subset_size=m,
                     seed=None if seed is None else int(seed), sampling=sampling,
                     estimator=estimator, values=values)
