"""Fréchet distance between Gaussians, in float64, without ``scipy.linalg.sqrtm``.

    d² = |μ₁ − μ₂|² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁ Σ₂)^{1/2}

tr (Σ₁Σ₂)^{1/2} is the sum of the square roots of the eigenvalues of Σ₁Σ₂. With the Cholesky
factor Σ₁ = L Lᵀ, Σ₁Σ₂ is similar to the symmetric positive semi-definite Lᵀ Σ₂ L, so LAPACK's
generalized symmetric-definite solver (dsygv: Cholesky, dsygst, eigenvalues only) gives them in
float64 without eigenvectors or complex arithmetic. When Σ₁ is singular (fewer samples than
dimensions, constant features) both covariances are factored by a pivoted Cholesky of their
numerical rank, F Fᵀ = Σ, and the eigenvalues are those of (F₁ᵀF₂)(F₁ᵀF₂)ᵀ: exact, and
rank-sized. Tiny negative eigenvalues from rounding are clipped to zero, so the result is never
complex.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg
import scipy.linalg.lapack

from genbench.errors import GenbenchError
from genbench.stats import FeatureStatistics


class FewSamplesWarning(UserWarning):
    """The statistics came from no more samples than feature dimensions."""


def _as_float64(name: str, value, ndim: int) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim != ndim:
        raise GenbenchError(f"{name} must have {ndim} dimension(s), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise GenbenchError(f"{name} contains NaN or infinite values")
    return arr


def _psd_factor(sigma: np.ndarray) -> np.ndarray:
    """F with F Fᵀ = Σ: the Cholesky factor, or, when Σ is singular, the d × rank factor of a
    pivoted Cholesky (LAPACK dpstrf)."""
    try:
        return scipy.linalg.cholesky(sigma, lower=True, check_finite=False)
    except np.linalg.LinAlgError:
        c, piv, rank, info = scipy.linalg.lapack.dpstrf(sigma, lower=1)
        if info < 0:
            raise GenbenchError(f"pivoted Cholesky failed (LAPACK info {info})") from None
        factor = np.empty((sigma.shape[0], rank))
        factor[piv - 1] = np.tril(c)[:, :rank]
        return factor


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr (Σ₁ Σ₂)^{1/2} for symmetric PSD Σ₁, Σ₂ (float64)."""
    try:
        # Eigenvalues of the pencil Σ₂ Σ₁ x = λ x: LAPACK dsygv (Cholesky of Σ₁, dsygst forms
        # Lᵀ Σ₂ L, then eigenvalues only).
        eigenvalues = scipy.linalg.eigh(sigma2, sigma1, type=2, eigvals_only=True,
                                        driver="gv", check_finite=False)
    except np.linalg.LinAlgError:  # Σ₁ singular: rank-sized factors instead
        factor1, factor2 = _psd_factor(sigma1), _psd_factor(sigma2)
        cross = factor1.T @ factor2
        eigenvalues = scipy.linalg.eigvalsh(cross @ cross.T, check_finite=False,
                                            overwrite_a=True, driver="evd")
    return float(np.sqrt(np.clip(eigenvalues, 0.0, None)).sum())


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), computed in float64.

    Agrees with the ``scipy.linalg.sqrtm`` formula used by pytorch-fid/TTUR to ~1e-9 relative on
    well-conditioned inputs and stays real on singular ones.
    """
    mu1 = _as_float64("mu1", mu1, 1)
    mu2 = _as_float64("mu2", mu2, 1)
    sigma1 = _as_float64("sigma1", sigma1, 2)
    sigma2 = _as_float64("sigma2", sigma2, 2)
    d = mu1.shape[0]
    if mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise GenbenchError(f"shape mismatch: mu1 {mu1.shape}, sigma1 {sigma1.shape}, "
                            f"mu2 {mu2.shape}, sigma2 {sigma2.shape}; both sides must come "
                            "from the same feature extractor")
    diff = mu1 - mu2
    traces = np.trace(sigma1) + np.trace(sigma2)
    value = float(diff @ diff + traces - 2.0 * trace_sqrt_product(sigma1, sigma2))
    if value < 0.0:  # rounding below an exact 0 (e.g. FID of a set with itself)
        if value < -1e-6 * max(1.0, float(traces)):
            raise GenbenchError(f"the Fréchet distance came out negative ({value:.6g}): a "
                                "covariance is not positive semi-definite")
        value = 0.0
    return value


def fid_from_statistics(stats1: FeatureStatistics, stats2: FeatureStatistics) -> float:
    """FID between two sets of statistics; warns when either side has N <= feature dimension
    (the covariance is then rank deficient and FID is strongly biased: compare only numbers
    computed with the same N, and prefer N >= 10,000)."""
    for stats in (stats1, stats2):
        if stats.num_samples is not None and stats.num_samples <= stats.dim:
            warnings.warn(
                f"{stats.label or 'a statistics set'} has N = {stats.num_samples} samples <= "
                f"feature dimension {stats.dim}: its covariance is singular and the FID "
                "estimate is unreliable (strongly biased upward); papers use 50,000 samples",
                FewSamplesWarning, stacklevel=2)
    return frechet_distance(stats1.mu, stats1.sigma, stats2.mu, stats2.sigma)
