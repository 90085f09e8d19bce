"""CMMD (Jayasumana et al. 2024, "Rethinking FID"): the maximum mean discrepancy between two
sets of CLIP image embeddings, as google-research/cmmd's ``distance.mmd`` defines it: the
embeddings normalised to unit length, a Gaussian RBF kernel exp(−‖x − y‖² / (2σ²)) with
σ = 10, the minimum-variance (biased) estimator of Gretton et al.'s Eq. 5 — every pair,
the diagonal included — mean k(x, x') + mean k(y, y') − 2 mean k(x, y), times 1000.

Computed in float64 blocks of rows (O(block × N) memory, not N²); the official code runs in
float32 on the whole matrices.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

SIGMA = 10.0
SCALE = 1000.0


@dataclass(frozen=True)
class CMMDResult:
    value: float
    num_samples: int
    num_reference: int
    sigma: float = SIGMA
    scale: float = SCALE
    estimator: str = "biased (every pair, the diagonal included), as the official code"

    def to_dict(self) -> dict:
        return asdict(self)


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _mean_kernel(a: np.ndarray, b: np.ndarray, gamma: float, block: int) -> float:
    """mean over all (i, j) of exp(−γ‖a_i − b_j‖²), in blocks of rows of a."""
    b_sq = (b * b).sum(1)
    total = 0.0
    for start in range(0, len(a), block):
        part = a[start:start + block]
        d2 = (part * part).sum(1)[:, None] + b_sq[None, :] - 2.0 * part @ b.T
        total += float(np.exp(-gamma * np.maximum(d2, 0.0)).sum())
    return total / (len(a) * len(b))


def cmmd(*, samples: np.ndarray, reference: np.ndarray, sigma: float = SIGMA,
         scale: float = SCALE, block: int = 2048) -> CMMDResult:
    """CMMD of the ``samples``' embeddings against the ``reference``'s (N × D each)."""
    x, y = _unit(samples), _unit(reference)
    gamma = 1.0 / (2.0 * sigma ** 2)
    value = scale * (_mean_kernel(x, x, gamma, block) + _mean_kernel(y, y, gamma, block)
                     - 2.0 * _mean_kernel(x, y, gamma, block))
    return CMMDResult(value, len(x), len(y), sigma, scale)
