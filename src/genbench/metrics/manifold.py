"""k-nearest-neighbour manifold metrics: improved precision/recall and density/coverage.

* Improved precision and recall (Kynkäänniemi et al. 2019, k = 3): each sample of a set gets a
  ball whose radius is the distance to its k-th nearest neighbour in the same set. Precision is
  the fraction of fake samples inside at least one real ball; recall is the fraction of real
  samples inside at least one fake ball.
* Density and coverage (Naeem et al. 2020, k = 5; the ``prdc`` package): with the real balls
  only, density = (1 / (k·M)) Σ_fake Σ_real [fake inside the real ball] (it can exceed 1) and
  coverage is the fraction of real samples whose ball holds at least one fake sample.

Conventions, all as ``prdc.compute_prdc`` and torch-fidelity:

* Distances are Euclidean. The radius of sample i is the (k+1)-th smallest distance from i to
  its own set *including itself*, i.e. the k-th nearest neighbour other than i (a duplicate of
  i counts as a neighbour at distance 0, so a point with k duplicates has radius 0).
* "Inside" is a parameter, ``comparison``: ``"<"`` (strict; ``prdc``) or ``"<="`` (the
  reference improved-P/R code of Kynkäänniemi et al., StyleGAN2/3, ADM, torch-fidelity). The two
  differ only on exact ties: duplicated points, identical sets and quantized features. With
  ``"<"`` a sample whose radius is 0 (k or more duplicates) contains nothing, not even its
  copies.
* Nothing of size N × M is ever held: distances are computed in ``block_size`` × ``block_size``
  tiles, the k+1 smallest per row are merged across tiles with ``torch.topk``, and the cross
  pass reduces each tile to per-sample flags and counts at once. Memory is
  O(block_size² + (N + M)·(d + k)).
* Tiles are ||x||² + ||y||² − 2 xᵀy in ``dtype`` (float64 by default) clamped at 0, and pairs
  closer than a small fraction of ||x||² + ||y||² (near-duplicates, where that formula cancels)
  are recomputed as Σ (x − y)², so identical points are at distance exactly 0.
* Distances and radii are compared after rounding to float32, as ``prdc`` does (scikit-learn
  computes float32 features' distances in float64 and returns float32): distances equal to
  float32 precision (~6e-8 relative) are ties, decided by ``comparison``. With the float64
  default this makes tie decisions independent of summation order (block size, device, BLAS),
  so identical sets give exactly the same counts as ``prdc`` (density 1 with ``"<"``,
  (k+1)/k with ``"<="``), and all counts equal ``prdc``'s unless a distance lies within
  ~1e-15 relative of a float32 rounding boundary (never seen in our tests).
* ``dtype="float32"`` computes the tiles in float32 (about 2× faster on CPU; GPUs other than
  data-centre ones run float64 far slower). Its squared distances are off by up to ~3e-7
  relative (1e-5 for features far from the origin; much more if TF32 matmuls are enabled in
  torch) instead of ~1e-16, so pairs lying that close to a ball's boundary can flip (none did
  at N = M = 4000, d = 128), and exact ties between non-duplicate points (identical sets) are
  not decided consistently: use float64 to reproduce ``prdc`` exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from genbench.errors import GenbenchError
from genbench.metrics.inputs import as_feature_tensor, resolve_device

Comparison = Literal["<", "<="]

DEFAULT_BLOCK_SIZE = 1024

# Pairs with squared distance <= tol·(||x||² + ||y||²) are recomputed as Σ (x − y)²; the
# expanded formula's rounding error is about sqrt(d)·eps·(||x||² + ||y||²).
_RECOMPUTE_TOL = {torch.float64: 1e-7, torch.float32: 1e-2}
# Pairs per chunk when recomputing (bounds the (pairs × d) difference tensor).
_RECOMPUTE_ELEMENTS = 1 << 22


@dataclass(frozen=True)
class PrecisionRecall:
    """Improved precision and recall, with the neighbourhood size and comparison used."""

    precision: float
    recall: float
    nearest_k: int
    comparison: str


@dataclass(frozen=True)
class DensityCoverage:
    """Density (may exceed 1) and coverage, with the neighbourhood size and comparison used."""

    density: float
    coverage: float
    nearest_k: int
    comparison: str


@dataclass(frozen=True)
class PRDC:
    """All four values as ``prdc.compute_prdc`` returns them, for one k and comparison."""

    precision: float
    recall: float
    density: float
    coverage: float
    nearest_k: int
    comparison: str

    def as_dict(self) -> dict[str, float]:
        return {"precision": self.precision, "recall": self.recall,
                "density": self.density, "coverage": self.coverage}


def _resolve_dtype(dtype) -> torch.dtype:
    if dtype in (torch.float64, "float64"):
        return torch.float64
    if dtype in (torch.float32, "float32"):
        return torch.float32
    raise GenbenchError(f"dtype must be 'float64' or 'float32', got {dtype!r}")


def _check_k(k, name: str = "nearest_k") -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise GenbenchError(f"{name} must be a positive integer, got {k!r}")
    return int(k)


def _check_size(label: str, n: int, k: int) -> None:
    if n <= k:
        raise GenbenchError(f"nearest_k = {k} needs more than {k} {label} (k neighbours besides "
                            f"each sample itself), got {n}; lower nearest_k or add samples")


def _check_block_size(block_size) -> int:
    if isinstance(block_size, bool) or not isinstance(block_size, int | np.integer) \
            or block_size < 1:
        raise GenbenchError(f"block_size must be a positive integer, got {block_size!r}")
    return int(block_size)


def _check_comparison(comparison) -> str:
    if comparison not in ("<", "<="):
        raise GenbenchError(f"comparison must be '<' (prdc) or '<=' (reference P/R code), "
                            f"got {comparison!r}")
    return comparison


def _squared_norms(x: torch.Tensor) -> torch.Tensor:
    return (x * x).sum(dim=1)


def _squared_distance_tile(x: torch.Tensor, xx: torch.Tensor,
                           y: torch.Tensor, yy: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances between rows of x and rows of y (a tile), ≥ 0, with
    near-duplicate pairs recomputed directly so identical rows give exactly 0."""
    norm_sum = xx[:, None] + yy[None, :]
    d2 = norm_sum - 2.0 * (x @ y.T)
    d2.clamp_(min=0.0)
    near = d2 <= _RECOMPUTE_TOL[x.dtype] * norm_sum
    rows, cols = near.nonzero(as_tuple=True)
    if rows.numel():
        chunk = max(1, _RECOMPUTE_ELEMENTS // x.shape[1])
        for start in range(0, rows.numel(), chunk):
            r, c = rows[start:start + chunk], cols[start:start + chunk]
            diff = x[r] - y[c]
            d2[r, c] = (diff * diff).sum(dim=1)
    return d2


def _rounded_distances(d2: torch.Tensor) -> torch.Tensor:
    """Euclidean distances from squared ones, rounded to float32 for comparisons."""
    return torch.sqrt(d2).to(torch.float32)


def _kth_radii(x: torch.Tensor, k: int, block_size: int) -> torch.Tensor:
    """(k+1)-th smallest distance of each row of x to all rows of x (self included), rounded
    to float32."""
    n = x.shape[0]
    xx = _squared_norms(x)
    keep = k + 1
    radii = torch.empty(n, dtype=torch.float32, device=x.device)
    for i in range(0, n, block_size):
        xi, xxi = x[i:i + block_size], xx[i:i + block_size]
        best = None
        for j in range(0, n, block_size):
            tile = _squared_distance_tile(xi, xxi, x[j:j + block_size], xx[j:j + block_size])
            if best is not None:
                tile = torch.cat([best, tile], dim=1)
            best = torch.topk(tile, min(keep, tile.shape[1]), dim=1, largest=False).values
        radii[i:i + block_size] = _rounded_distances(best.max(dim=1).values)
    return radii


def knn_radii(features, nearest_k: int, *, block_size: int = DEFAULT_BLOCK_SIZE,
              device: torch.device | str | None = None, dtype="float64") -> np.ndarray:
    """Distance from each sample to its k-th nearest neighbour in the same set, not counting
    itself (the (k+1)-th smallest distance including itself, as ``prdc`` and torch-fidelity);
    float64 numpy array of length N. Blocked: never forms the N × N matrix."""
    k = _check_k(nearest_k)
    block_size = _check_block_size(block_size)
    dtype = _resolve_dtype(dtype)
    device = resolve_device(device, features)
    x = as_feature_tensor("features", features, device, dtype)
    _check_size("samples", x.shape[0], k)
    radii = _kth_radii(x, k, block_size)
    return radii.to(torch.float64).cpu().numpy()


def _manifold(real, fake, k: int, comparison: str, block_size: int, device, dtype,
              need_recall: bool) -> dict[str, float]:
    k = _check_k(k)
    comparison = _check_comparison(comparison)
    block_size = _check_block_size(block_size)
    dtype = _resolve_dtype(dtype)
    device = resolve_device(device, real, fake)
    x_real = as_feature_tensor("real features", real, device, dtype)
    x_fake = as_feature_tensor("fake features", fake, device, dtype)
    if x_real.shape[1] != x_fake.shape[1]:
        raise GenbenchError(f"real features have dimension {x_real.shape[1]} but fake features "
                            f"have {x_fake.shape[1]}; both must come from the same extractor")
    n_real, n_fake = x_real.shape[0], x_fake.shape[0]
    _check_size("real samples", n_real, k)
    if need_recall:
        _check_size("fake samples", n_fake, k)

    inside = torch.lt if comparison == "<" else torch.le
    r_real = _kth_radii(x_real, k, block_size)
    r_fake = _kth_radii(x_fake, k, block_size) if need_recall else None
    rr, ff = _squared_norms(x_real), _squared_norms(x_fake)

    in_real_ball = torch.zeros(n_fake, dtype=torch.bool, device=device)     # precision
    real_ball_count = torch.zeros(n_fake, dtype=torch.int64, device=device)  # density
    covered = torch.zeros(n_real, dtype=torch.bool, device=device)          # coverage
    in_fake_ball = torch.zeros(n_real, dtype=torch.bool, device=device)     # recall
    for i in range(0, n_fake, block_size):
        fi = slice(i, i + block_size)
        for j in range(0, n_real, block_size):
            rj = slice(j, j + block_size)
            dist = _rounded_distances(
                _squared_distance_tile(x_fake[fi], ff[fi], x_real[rj], rr[rj]))  # fake × real
            hit = inside(dist, r_real[None, rj])
            in_real_ball[fi] |= hit.any(dim=1)
            real_ball_count[fi] += hit.sum(dim=1)
            covered[rj] |= hit.any(dim=0)
            if need_recall:
                in_fake_ball[rj] |= inside(dist, r_fake[fi, None]).any(dim=0)

    return {
        "precision": in_real_ball.double().mean().item(),
        "recall": in_fake_ball.double().mean().item() if need_recall else float("nan"),
        "density": real_ball_count.sum().item() / (k * n_fake),
        "coverage": covered.double().mean().item(),
    }


_COMMON_DOC = """
    ``real`` and ``fake`` are (N, d) and (M, d) arrays or tensors (numpy or torch, any real
    dtype). ``comparison`` is ``"<"`` (strict, as ``prdc``) or ``"<="`` (as the reference
    improved-P/R code and torch-fidelity); it matters only on exact ties (duplicates, identical
    sets, quantized features). Distances are computed on ``device`` (default: the device of a
    tensor argument, else CPU) in ``dtype`` (``"float64"`` by default; ``"float32"`` is faster
    but can flip samples lying within ~1e-6 relative of a ball's boundary, see the module
    docstring), in ``block_size`` × ``block_size`` tiles; with float64 the result does not
    depend on ``block_size`` or ``device``. Memory is O(block_size² + (N + M)·(d + k)).
"""


def prdc(real, fake, nearest_k: int = 5, *, comparison: Comparison = "<",
         block_size: int = DEFAULT_BLOCK_SIZE, device: torch.device | str | None = None,
         dtype="float64") -> PRDC:
    """Precision, recall, density and coverage as ``prdc.compute_prdc(real, fake, nearest_k)``
    (same definitions and, with the default ``comparison="<"``, the same values).
    """
    values = _manifold(real, fake, nearest_k, comparison, block_size, device, dtype,
                       need_recall=True)
    return PRDC(**values, nearest_k=int(nearest_k), comparison=comparison)


def precision_recall(real, fake, nearest_k: int = 3, *, comparison: Comparison = "<=",
                     block_size: int = DEFAULT_BLOCK_SIZE,
                     device: torch.device | str | None = None,
                     dtype="float64") -> PrecisionRecall:
    """Improved precision and recall (Kynkäänniemi et al. 2019). Defaults are the paper's:
    k = 3 and ``comparison="<="`` as its reference code (``prdc`` uses ``"<"``).
    """
    values = _manifold(real, fake, nearest_k, comparison, block_size, device, dtype,
                       need_recall=True)
    return PrecisionRecall(values["precision"], values["recall"], int(nearest_k), comparison)


def density_coverage(real, fake, nearest_k: int = 5, *, comparison: Comparison = "<",
                     block_size: int = DEFAULT_BLOCK_SIZE,
                     device: torch.device | str | None = None,
                     dtype="float64") -> DensityCoverage:
    """Density and coverage (Naeem et al. 2020). Defaults are the paper's: k = 5 and
    ``comparison="<"`` as ``prdc``. Only the real set's radii are needed, so the fake set may
    have k or fewer samples.
    """
    values = _manifold(real, fake, nearest_k, comparison, block_size, device, dtype,
                       need_recall=False)
    return DensityCoverage(values["density"], values["coverage"], int(nearest_k), comparison)


for _fn in (prdc, precision_recall, density_coverage):
    _fn.__doc__ = (_fn.__doc__ or "").rstrip() + "\n" + _COMMON_DOC
