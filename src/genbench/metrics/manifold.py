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
* ``dtype="mixed"`` (the default) gives the float64 results at low-precision speed. Tiles are
  screened in bfloat16 where matmuls are natively bfloat16 (CUDA; CPUs with AVX512-BF16 or
  AMX), on features centred by a shared mean, otherwise in float32 (full precision, no TF32).
  A rigorous worst-case bound on a tile value's error, t·(||x||² + ||y||²) (see
  ``_screen_tolerance``: measured input rounding, float32 accumulation, bfloat16 output
  rounding), decides which pairs the screen cannot settle: those within the bound of a
  ball's boundary are re-measured exactly in float64 (as Σ (x − y)² of the features as
  given). For the radii each row keeps its k + 1 + extra nearest screened candidates and
  re-measures exactly those that could be among the k + 1 nearest (screened value within 2b
  of the (k+1)-th); a row the candidates kept cannot prove (many duplicates) has them all
  re-measured (k + 1 at distance 0 prove a radius of 0) or else is redone exactly, and when
  most rows are, all radii come from one symmetric exact pass. In the cross pass each ball's
  limits (its bound with the block's largest norm) rule out almost every pair of a tile at
  once; the pairs that may be inside (index pairs when few, boolean tiles when many) get
  their own bound and, if still open, an exact re-measure, unless so many stay open
  (distances concentrated at the radii) that the whole tile is computed exactly as one
  float64 GEMM tile, as the float64 path: no input costs much more than one exact pass. A
  probe tile checked against exact distances guards the arithmetic the bound assumes
  (falling back to float32). Features whose squared norms leave float32's range (beyond
  ~1e37, or nonzero below 1e-30) take the float64 path. Self-distance tiles are computed
  once for both their rows and columns, in every mode. Numbers: bench/prdc_speed.py (one
  run per data family) and the README.
* ``dtype="float64"`` computes every tile in float64 (the reference path). ``dtype="float32"``
  computes the tiles in float32 with no rechecks: samples lying within ~1e-6 relative of a
  ball's boundary can flip, and exact ties between non-duplicate points are not decided
  consistently.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import torch

from genbench.errors import GenbenchError
from genbench.metrics.inputs import as_feature_tensor, resolve_device
from genbench.precision import fast_bfloat16

Comparison = Literal["<", "<="]

DEFAULT_BLOCK_SIZE = 2048

# Pairs with squared distance <= tol·(||x||² + ||y||²) are recomputed as Σ (x − y)²; the
# expanded formula's rounding error is about sqrt(d)·eps·(||x||² + ||y||²).
_RECOMPUTE_TOL = {torch.float64: 1e-7, torch.float32: 1e-2}
# Elements (pairs × d, or rows × d) per chunk of exact pair distances and of screen
# preparation: about 4 MB of float64, in cache (large chunks are memory-bound).
_EXACT_PAIR_ELEMENTS = 1 << 19


@dataclass(frozen=True)
class PrecisionRecall:
    """Improved precision and recall, with the neighbourhood size and comparison used."""

    precision: float
    recall: float
    nearest_k: int
    comparison: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class DensityCoverage:
    """Density (may exceed 1) and coverage, with the neighbourhood size and comparison used."""

    density: float
    coverage: float
    nearest_k: int
    comparison: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PRDC:
    """All four values as ``prdc.compute_prdc`` returns them, for one k and comparison."""

    precision: float
    recall: float
    density: float
    coverage: float
    nearest_k: int
    comparison: str

    def to_dict(self) -> dict[str, float]:
        return {"precision": self.precision, "recall": self.recall,
                "density": self.density, "coverage": self.coverage}


# Tensor dtype each mode reads features in ("mixed" keeps float32/float64 features as given).
_TENSOR_DTYPES = {"mixed": None, "float64": torch.float64, "float32": torch.float32}


def _resolve_dtype(dtype) -> str:
    name = {torch.float64: "float64", torch.float32: "float32"}.get(dtype, dtype)
    if name not in _TENSOR_DTYPES:
        raise GenbenchError(f"dtype must be 'mixed', 'float64' or 'float32', got {dtype!r}")
    return name


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
        d2[rows, cols] = _exact_pair_distances(x, y, rows, cols).to(d2.dtype)
    return d2


def _rounded_distances(d2: torch.Tensor) -> torch.Tensor:
    """Euclidean distances from squared ones, rounded to float32 for comparisons."""
    return torch.sqrt(d2).to(torch.float32)


def _kth_radii(x: torch.Tensor, k: int, block_size: int) -> torch.Tensor:
    """(k+1)-th smallest distance of each row of x to all rows of x (self included), rounded
    to float32."""
    return _kth_radii_exact(x, k, block_size)


def knn_radii(features, nearest_k: int, *, block_size: int = DEFAULT_BLOCK_SIZE,
              device: torch.device | str | None = None, dtype="mixed") -> np.ndarray:
    """Distance from each sample to its k-th nearest neighbour in the same set, not counting
    itself (the (k+1)-th smallest distance including itself, as ``prdc`` and torch-fidelity),
    rounded to float32; float64 numpy array of length N. Blocked: never forms the N × N
    matrix. ``dtype`` as for ``prdc``."""
    k = _check_k(nearest_k)
    block_size = _check_block_size(block_size)
    mode = _resolve_dtype(dtype)
    device = resolve_device(device, features)
    x = as_feature_tensor("features", features, device, _TENSOR_DTYPES[mode])
    _check_size("samples", x.shape[0], k)
    norms = _exact_norms(x, block_size) if mode == "mixed" else None
    if mode == "mixed" and not _screenable(norms):
        mode, x = "float64", x.double()
    if mode == "mixed":
        with _HighestFloat32Matmul():
            screen, _, tol = _screens(x, None, block_size, (norms, None))
            radii = _kth_radii_mixed(screen, k, block_size, tol)
    else:
        radii = _kth_radii(x, k, block_size)
    return radii.to(torch.float64).cpu().numpy()


# ------------------------------------------------------------------------------------------
# "mixed": low-precision tiles, exact float64 decisions where they cannot decide
# ------------------------------------------------------------------------------------------

_UNIT_ROUNDOFF = {torch.float32: 2.0 ** -24, torch.bfloat16: 2.0 ** -8}
# A distance below r·(1 − margin) rounds to a float32 below the float32 radius r, one above
# r·(1 + margin) rounds above it (float32 spacing is at most 2^-23 ≈ 1.2e-7 relative).
_RADIUS_MARGIN = 1e-6
# Candidates kept per row beyond the k + 1 nearest, to prove the screened ranking right.
_EXTRA_CANDIDATES = {torch.float32: 3, torch.bfloat16: 24}
# Beyond this fraction of rows left unproven, all radii are recomputed in one symmetric
# exact pass (half the work of redoing every row against all rows).
_REDO_ALL_ROWS = 0.5


def _screen_tolerance(dtype: torch.dtype, dim: int, eps: float) -> float:
    """t with |d2_tile − d2| ≤ t·(||x||² + ||y||²) (norms of the vectors the tile multiplies)
    for a tile ||x||² + ||y||² − 2·fl(xᵀy), the product of ``dtype`` copies of x and y whose
    relative rounding is at most ``eps`` (measured), accumulated in float32 (dim·2⁻²⁴) and,
    for bfloat16, rounded to bfloat16 on output (2⁻⁸); plus the float32 additions. Worst
    case (by Cauchy–Schwarz, 2|xᵀy| ≤ ||x||² + ||y||²), with 5 % slack; typical errors are far
    smaller."""
    u32 = _UNIT_ROUNDOFF[torch.float32]
    out = _UNIT_ROUNDOFF[torch.bfloat16] if dtype == torch.bfloat16 else 0.0
    u_in = _UNIT_ROUNDOFF[dtype]
    return 1.05 * (2 * eps + (out + dim * u32) * (1 + u_in) ** 2 + 6 * u32)


def _exact_pair_distances(x: torch.Tensor, y: torch.Tensor, rows: torch.Tensor,
                          cols: torch.Tensor) -> torch.Tensor:
    """Σ (x[rows] − y[cols])² in float64 for index pairs, in chunks small enough to stay in
    cache (gathers and differences of large chunks are memory-bound: 6× slower on CPU),
    through buffers allocated once per call (a fresh multi-MB tensor per chunk costs page
    faults: 2–10 µs a pair at d = 2048 on these 2 cores against 1.6 µs with the buffers)."""
    out = torch.empty(rows.numel(), dtype=torch.float64, device=x.device)
    if not rows.numel():
        return out
    chunk = min(rows.numel(), max(1, _EXACT_PAIR_ELEMENTS // x.shape[1]))
    a = torch.empty((chunk, x.shape[1]), dtype=x.dtype, device=x.device)
    b = torch.empty((chunk, y.shape[1]), dtype=y.dtype, device=x.device)
    diff = torch.empty((chunk, x.shape[1]), dtype=torch.float64, device=x.device)
    for start in range(0, rows.numel(), chunk):
        r, c = rows[start:start + chunk], cols[start:start + chunk]
        m = r.numel()
        torch.index_select(x, 0, r, out=a[:m])
        torch.index_select(y, 0, c, out=b[:m])
        d = diff[:m]
        d.copy_(a[:m])
        d.sub_(b[:m])  # float32 inputs: exact in float64
        torch.linalg.vecdot(d, d, out=out[start:start + m])
    return out


class _Screen:
    """One feature set for screening: its exact values (float32 or float64, as given), a
    low-precision copy for the tiles (float32: the features themselves; bfloat16: the
    features minus ``center``, which is shared by both sets, so that rounding errors scale
    with the spread of the data and not with its offset), the squared norms of what the
    tiles multiply (float64 and float32), and the largest relative rounding of a row;
    ``exact_norms`` are the float64 squared norms of ``exact`` itself (computed once by the
    caller, used for exact tiles and rows redone)."""

    def __init__(self, exact: torch.Tensor, dtype: torch.dtype, exact_norms: torch.Tensor,
                 center: torch.Tensor | None = None):
        self.exact, self.dtype, self.n = exact, dtype, exact.shape[0]
        self.exact_norms = exact_norms
        if dtype == exact.dtype and center is None:  # float32 features: no copy, no rounding
            self.low, self.norms, self.eps = exact, exact_norms, 0.0
            self.norms32 = exact_norms.to(torch.float32)
            return
        self.low = torch.empty(exact.shape, dtype=dtype, device=exact.device)
        norms, eps = [], []
        chunk = max(1, _EXACT_PAIR_ELEMENTS // exact.shape[1])
        for start in range(0, self.n, chunk):
            x = exact[start:start + chunk].to(torch.float64, copy=True)
            if center is not None:
                x -= center
            rounded = x.to(dtype)
            self.low[start:start + chunk] = rounded
            norms.append(_squared_norms(x))
            err = _squared_norms(x - rounded.double()).sqrt()
            eps.append(err / norms[-1].sqrt().clamp_min(1e-300))
        self.norms = torch.cat(norms)
        self.norms32 = self.norms.to(torch.float32)
        self.eps = float(torch.cat(eps).max())

    def tile(self, rows: slice, other: _Screen, cols: slice) -> torch.Tensor:
        """float32 squared distances ||x||² + ||y||² − 2 xᵀy of rows × other's cols."""
        d2 = self.norms32[rows, None] + other.norms32[None, cols]
        if self.dtype == torch.float32:
            return d2.addmm_(self.low[rows], other.low[cols].T, alpha=-2.0)
        # bfloat16 product (float32 accumulation, bfloat16 output), float32 sum
        return d2.sub_(self.low[rows] @ other.low[cols].T, alpha=2.0)


# Squared norms the low-precision screens handle: below the largest, 4·||x||² (a tile value's
# magnitude) stays finite in float32 and bfloat16; above the smallest nonzero one, products
# that underflow (absolute errors below d·2⁻¹⁴⁹) stay far inside the relative error bound.
_SCREEN_NORMS = (1e-30, 1e37)


def _screenable(*set_norms: torch.Tensor) -> bool:
    """Whether every nonzero squared norm (float64, of each set) lies in ``_SCREEN_NORMS``:
    elsewhere (features scaled beyond float32's range, or nearly all zeros) the screens'
    bounds do not hold, and the float64 path is taken."""
    low, high = _SCREEN_NORMS
    for norms in set_norms:
        nonzero = norms[norms > 0]
        if float(norms.max()) > high or (nonzero.numel() and float(nonzero.min()) < low):
            return False
    return True


def _screens(x_real: torch.Tensor, x_fake: torch.Tensor | None, block_size: int,
             norms: tuple[torch.Tensor, torch.Tensor | None]
             ) -> tuple[_Screen, _Screen | None, float]:
    """Screens of both sets (``norms``: their exact squared norms) and the tolerance of their
    tiles: bfloat16 where it is native and its observed errors on a probe stay within the
    bound, float32 otherwise."""
    dim = x_real.shape[1]
    if fast_bfloat16(x_real.device):
        both = x_real[:4096] if x_fake is None else torch.cat([x_real[:2048], x_fake[:2048]])
        center = both.double().mean(dim=0)
        real = _Screen(x_real, torch.bfloat16, norms[0], center)
        fake = _Screen(x_fake, torch.bfloat16, norms[1], center) if x_fake is not None else None
        tol = _screen_tolerance(torch.bfloat16, dim, max(real.eps, fake.eps if fake else 0.0))
        if _probe_within_bound(real, fake or real, tol, min(128, block_size)):
            return real, fake, tol
    real = _Screen(x_real, torch.float32, norms[0])
    fake = _Screen(x_fake, torch.float32, norms[1]) if x_fake is not None else None
    return real, fake, _screen_tolerance(torch.float32, dim, max(real.eps, fake.eps if fake
                                                                 else 0.0))


def _probe_within_bound(a: _Screen, b: _Screen, tol: float, size: int) -> bool:
    """Check the arithmetic the bound assumes (float32 accumulation of bfloat16 products) on
    a size × size tile against exact distances; a matmul that accumulates in lower precision
    would break the bound by orders of magnitude."""
    rows, cols = slice(0, min(size, a.n)), slice(0, min(size, b.n))
    d2 = a.tile(rows, b, cols).double()
    r, c = torch.meshgrid(torch.arange(d2.shape[0], device=d2.device),
                          torch.arange(d2.shape[1], device=d2.device), indexing="ij")
    exact = _exact_pair_distances(a.exact, b.exact, r.reshape(-1), c.reshape(-1))
    bound = tol * (a.norms[rows, None] + b.norms[None, cols])
    return bool(((d2 - exact.view_as(d2)).abs() <= bound).all())


def _merge_smallest(vals: torch.Tensor, idx: torch.Tensor, rows: slice, tile: torch.Tensor,
                    col_offset: int, dim: int = 1) -> None:
    """Keep the ``vals.shape[1]`` smallest values per row (and their column indices) of the
    running candidates and a new tile whose first column is ``col_offset``; ``dim=0`` merges
    the tile's columns instead (its transpose)."""
    keep = vals.shape[1]
    if dim == 0:  # topk along rows of the transposed copy: 1.5× faster than along columns
        tile = tile.T.contiguous()
    top = torch.topk(tile, min(keep, tile.shape[1]), dim=1, largest=False)
    new_vals, new_idx = top.values, top.indices
    all_vals = torch.cat([vals[rows], new_vals], dim=1)
    all_idx = torch.cat([idx[rows], new_idx + col_offset], dim=1)
    top = torch.topk(all_vals, keep, dim=1, largest=False)
    vals[rows] = top.values
    idx[rows] = torch.gather(all_idx, 1, top.indices)


def _kth_radii_mixed(s: _Screen, k: int, block_size: int, tol: float) -> torch.Tensor:
    """As ``_kth_radii`` (exact), from screened tiles. Each row keeps its k + 1 + extra
    nearest screened candidates (each tile is computed once, for its rows and, transposed,
    for its columns). With v ± b a kept value and its error bound, and U the (k+1)-th
    smallest v + b of the row, only the candidates with v − b ≤ U can be among the k + 1
    nearest kept: those are re-measured exactly and the (k+1)-th, D, taken. D is the radius
    if the last kept value lies beyond D by more than any dropped candidate's bound (then no
    dropped candidate can be nearer). Rows without that proof (e.g. more than k + extra
    duplicates) are redone exactly against all rows."""
    n, device = s.n, s.exact.device
    keep = min(n, k + 1 + _EXTRA_CANDIDATES[s.dtype])
    vals = torch.full((n, keep), float("inf"), dtype=torch.float32, device=device)
    idx = torch.zeros((n, keep), dtype=torch.int64, device=device)
    for i in range(0, n, block_size):
        bi = slice(i, i + block_size)
        for j in range(i, n, block_size):
            bj = slice(j, j + block_size)
            d2 = s.tile(bi, s, bj)
            _merge_smallest(vals, idx, bi, d2, j)
            if j != i:
                _merge_smallest(vals, idx, bj, d2, i, dim=0)

    v = vals.double()
    bound = tol * (s.norms[:, None] + s.norms[idx])  # error bound of each kept value
    # at least k + 1 kept candidates are truly within `upper`: only those whose lower
    # bound is within it can be among the k + 1 nearest; they are re-measured exactly
    upper = (v + bound).kthvalue(k + 1, dim=1).values
    exact = torch.full((n, keep), float("inf"), dtype=torch.float64, device=device)

    def remeasure(mask: torch.Tensor) -> torch.Tensor:
        rows, cols = mask.nonzero(as_tuple=True)
        exact[rows, cols] = _exact_pair_distances(s.exact, s.exact, rows, idx[rows, cols])
        return exact.kthvalue(k + 1, dim=1).values

    kth = remeasure(v - bound <= upper[:, None])
    # no dropped candidate can be nearer than the (k+1)-th of those if the last kept value
    # lies beyond it by the largest bound a dropped candidate can have
    proven = torch.ones(n, dtype=torch.bool, device=device) if keep == n else \
        (v[:, keep - 1] - tol * (s.norms + s.norms.max()) > kth) & v[:, keep - 1].isfinite()
    if not bool(proven.all()):
        # rows without that proof have all their kept candidates re-measured: k + 1 of them
        # at distance exactly 0 (duplicates) prove a radius of 0, nothing being nearer
        kth = remeasure(~proven[:, None] & exact.isinf())
    radii = _rounded_distances(kth)
    redo = (~proven & (kth > 0)).nonzero(as_tuple=True)[0]
    if redo.numel() > _REDO_ALL_ROWS * n:  # one symmetric exact pass (each tile once)
        radii = _kth_radii_exact(s.exact, k, block_size, torch.float64)
    elif redo.numel():
        radii[redo] = _kth_radii_of_rows(s.exact, redo, k, block_size, torch.float64,
                                         norms=s.exact_norms)
    return radii


def _kth_radii_exact(x: torch.Tensor, k: int, block_size: int,
                     dtype: torch.dtype | None = None) -> torch.Tensor:
    """(k+1)-th smallest distance of every row of x to all of x in ``dtype`` (default x's),
    rounded to float32: each tile of the upper triangle is computed once, for its rows and,
    transposed, for its columns."""
    dtype = dtype or x.dtype
    n = x.shape[0]
    xx = torch.cat([_squared_norms(part.to(dtype)) for part in x.split(block_size)])
    keep = min(n, k + 1)
    best = torch.full((n, keep), float("inf"), dtype=dtype, device=x.device)

    def merge(rows: slice, tile: torch.Tensor) -> None:
        both = torch.cat([best[rows], tile], dim=1)
        best[rows] = torch.topk(both, keep, dim=1, largest=False).values

    for i in range(0, n, block_size):
        bi = slice(i, i + block_size)
        xi = x[bi].to(dtype)
        for j in range(i, n, block_size):
            bj = slice(j, j + block_size)
            tile = _squared_distance_tile(xi, xx[bi], x[bj].to(dtype), xx[bj])
            merge(bi, tile)
            if j != i:
                merge(bj, tile.T)
    return _rounded_distances(best.max(dim=1).values)


def _kth_radii_of_rows(x: torch.Tensor, rows: torch.Tensor, k: int, block_size: int,
                       dtype: torch.dtype | None = None,
                       norms: torch.Tensor | None = None) -> torch.Tensor:
    """(k+1)-th smallest distance of the given rows of x to all of x, computed in ``dtype``
    (default x's), which x is converted to a block at a time (no full copy); ``norms``: the
    squared norms of x in ``dtype``, if known."""
    dtype = dtype or x.dtype
    xx = norms if norms is not None else \
        torch.cat([_squared_norms(part.to(dtype)) for part in x.split(block_size)])
    out = torch.empty(rows.numel(), dtype=torch.float32, device=x.device)
    for i in range(0, rows.numel(), block_size):
        r = rows[i:i + block_size]
        xr = x[r].to(dtype)
        best = None
        for j in range(0, x.shape[0], block_size):
            tile = _squared_distance_tile(xr, xx[r], x[j:j + block_size].to(dtype),
                                          xx[j:j + block_size])
            if best is not None:
                tile = torch.cat([best, tile], dim=1)
            best = torch.topk(tile, min(k + 1, tile.shape[1]), dim=1, largest=False).values
        out[i:i + block_size] = _rounded_distances(best.max(dim=1).values)
    return out


def _ball_limits(radius: torch.Tensor, bound: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 limits on screened squared distances for balls of float32 ``radius``, given a
    bound on the screened values' error: below ``sure_in`` the rounded distance is surely
    below the radius, above ``sure_out`` surely above it; in between it is measured exactly."""
    r64 = radius.double()
    return (r64 * (1.0 - _RADIUS_MARGIN)) ** 2 - bound, (r64 * (1.0 + _RADIUS_MARGIN)) ** 2 + bound


def _float32_outward(value: torch.Tensor, up: bool) -> torch.Tensor:
    """float64 ``value`` as the nearest float32 at or above it (``up``) or at or below it, so
    that comparing float32 tile values with it is as safe as comparing with ``value``."""
    v32 = value.to(torch.float32)
    toward = torch.full_like(v32, float("inf") if up else float("-inf"))
    off = v32.double() < value if up else v32.double() > value
    return torch.where(off, torch.nextafter(v32, toward), v32)


# A tile's pairs that its balls' limits leave open are settled one by one (a per-pair error
# bound, then an exact re-measure of the few still open) unless they are many: beyond these
# fractions of the tile, computing the whole tile exactly as one float64 GEMM is cheaper
# (measured on these 2 cores: a per-pair bound costs about as much as 40 GEMM elements of
# d = 2048, an exact pair about 16× its share of a GEMM tile).
_OPEN_PAIRS_EXACT_TILE = 1 / 4
# Up to this fraction of a tile's pairs possibly inside a ball, they are handled as index
# pairs (the usual case: a ball holds about k points); beyond it, as boolean tiles.
_SPARSE_PAIRS = 1 / 64
_UNDECIDED_PAIRS_EXACT_TILE = 1 / 16


class _Balls:
    """The balls of one set (float32 radii) for the cross pass against another set."""

    def __init__(self, radius: torch.Tensor, screen: _Screen, other: _Screen, tol: float):
        self.radius, self.norms, self.other_norms, self.tol = radius, screen.norms, other.norms, tol

    def tile_hits(self, d2: torch.Tensor, balls: slice, others: slice, per_row: bool,
                  inside, exact_tile) -> _TileHits:
        """Which pairs of a float32 screened tile have their rounded distance ``inside`` the
        ball, the balls being the tile's rows (``per_row``) or its columns. Each ball's limits
        (its error bound with the block's largest other norm) rule out almost every pair at
        once. Few left (a ball holds about k points): each gets its own bound
        tol·(||x||² + ||y||²) and those still open are measured exactly; the hits come back as
        index pairs. Many left (concentrated distances, balls holding most of the other set):
        the sure hits are taken densely, and the open pairs as before, or, when too many are
        open, the whole tile from ``exact_tile()`` (float32-rounded exact distances)."""
        other_max = self.other_norms[others].max()
        sure_in, sure_out = _ball_limits(self.radius[balls],
                                         self.tol * (self.norms[balls] + other_max))
        lo, hi = _float32_outward(sure_in, up=False), _float32_outward(sure_out, up=True)
        lo, hi = (lo[:, None], hi[:, None]) if per_row else (lo[None, :], hi[None, :])
        maybe = d2 <= hi
        radius = self.radius[balls][:, None] if per_row else self.radius[balls][None, :]

        def exact_hits() -> _TileHits:
            return _TileHits(dense=inside(exact_tile(), radius))

        if int(torch.count_nonzero(maybe)) <= _SPARSE_PAIRS * d2.numel():
            rows, cols = maybe.nonzero(as_tuple=True)
            found = self._settle(d2, rows, cols, balls, others, per_row, inside, exact_tile)
            return exact_hits() if found is None else _TileHits(rows=rows[found],
                                                                  cols=cols[found])
        hit = d2 < lo
        open_ = maybe & ~hit
        n_open = int(torch.count_nonzero(open_))
        if n_open > _OPEN_PAIRS_EXACT_TILE * d2.numel():
            return exact_hits()
        if n_open:
            rows, cols = open_.nonzero(as_tuple=True)
            found = self._settle(d2, rows, cols, balls, others, per_row, inside, exact_tile)
            if found is None:
                return exact_hits()
            hit[rows[found], cols[found]] = True
        return _TileHits(dense=hit)

    def _settle(self, d2, rows, cols, balls: slice, others: slice, per_row: bool, inside,
                exact_tile) -> torch.Tensor | None:
        """Which of the tile's pairs (rows, cols) are inside, from each pair's own bound and
        exact distances for those it leaves open; None when so many are open that the
        exact tile is cheaper."""
        ball, other = (rows, cols) if per_row else (cols, rows)
        bound = self.tol * (self.norms[ball + balls.start] + self.other_norms[other + others.start])
        ball_radius = self.radius[ball + balls.start]
        sure_in, sure_out = _ball_limits(ball_radius, bound)
        value = d2[rows, cols].double()
        found = value < sure_in
        undecided = ((value <= sure_out) & ~found).nonzero(as_tuple=True)[0]
        if undecided.numel() > _UNDECIDED_PAIRS_EXACT_TILE * d2.numel():
            return None
        if undecided.numel():
            dist = exact_tile(rows[undecided], cols[undecided])
            found[undecided] = inside(dist, ball_radius[undecided])
        return found


@dataclass
class _TileHits:
    """The "inside" pairs of one fake × real tile: a boolean tile, or their tile indices."""
    dense: torch.Tensor | None = None
    rows: torch.Tensor | None = None
    cols: torch.Tensor | None = None


class _Counts:
    """What the cross pass accumulates from fake × real tiles of "inside" flags: precision
    (fakes in a real ball), density (real balls per fake), coverage (reals whose ball holds
    a fake) and recall (reals in a fake ball)."""

    def __init__(self, n_real: int, n_fake: int, device: torch.device):
        self.in_real_ball = torch.zeros(n_fake, dtype=torch.bool, device=device)
        self.real_ball_count = torch.zeros(n_fake, dtype=torch.int64, device=device)
        self.covered = torch.zeros(n_real, dtype=torch.bool, device=device)
        self.in_fake_ball = torch.zeros(n_real, dtype=torch.bool, device=device)

    def add_real_balls(self, hits: _TileHits, fi: slice, rj: slice) -> None:
        if hits.dense is not None:
            self.in_real_ball[fi] |= hits.dense.any(dim=1)
            self.real_ball_count[fi] += torch.count_nonzero(hits.dense, dim=1)
            self.covered[rj] |= hits.dense.any(dim=0)
        else:
            self.in_real_ball[hits.rows + fi.start] = True
            tile_rows = self.real_ball_count[fi].numel()
            self.real_ball_count[fi] += torch.bincount(hits.rows, minlength=tile_rows)
            self.covered[hits.cols + rj.start] = True

    def add_fake_balls(self, hits: _TileHits, rj: slice) -> None:
        if hits.dense is not None:
            self.in_fake_ball[rj] |= hits.dense.any(dim=0)
        else:
            self.in_fake_ball[hits.cols + rj.start] = True

    def summary(self, k: int, need_recall: bool) -> dict[str, float]:
        return {
            "precision": self.in_real_ball.double().mean().item(),
            "recall": self.in_fake_ball.double().mean().item() if need_recall
            else float("nan"),
            "density": self.real_ball_count.sum().item() / (k * self.in_real_ball.numel()),
            "coverage": self.covered.double().mean().item(),
        }


class _ExactTile:
    """Exact float32-rounded distances of one fake × real tile, computed on first use as a
    float64 GEMM tile (``_squared_distance_tile``, as the float64 path), or of index pairs
    of it when called with (rows, cols) before that."""

    def __init__(self, x_fake, ff, x_real, rr, fi: slice, rj: slice):
        self.args, self.fi, self.rj, self.dist = (x_fake, ff, x_real, rr), fi, rj, None

    def __call__(self, rows: torch.Tensor | None = None,
                 cols: torch.Tensor | None = None) -> torch.Tensor:
        x_fake, ff, x_real, rr = self.args
        if rows is not None and self.dist is None:
            return _rounded_distances(_exact_pair_distances(
                x_fake, x_real, rows + self.fi.start, cols + self.rj.start))
        if self.dist is None:
            fi, rj = self.fi, self.rj
            self.dist = _rounded_distances(_squared_distance_tile(
                x_fake[fi].double(), ff[fi], x_real[rj].double(), rr[rj]))
        return self.dist if rows is None else self.dist[rows, cols]


def _exact_norms(x: torch.Tensor, block_size: int) -> torch.Tensor:
    """float64 squared norms of the rows of x, a block at a time (no float64 copy of x)."""
    return torch.cat([_squared_norms(part.double()) for part in x.split(block_size)])


def _manifold_mixed(x_real: torch.Tensor, x_fake: torch.Tensor, k: int, inside,
                    block_size: int, need_recall: bool) -> dict[str, float]:
    rr, ff = _exact_norms(x_real, block_size), _exact_norms(x_fake, block_size)
    if not _screenable(rr, ff):
        return _manifold_exact(x_real.double(), x_fake.double(), k, inside, block_size,
                               need_recall)
    real, fake, tol = _screens(x_real, x_fake, block_size, (rr, ff))
    r_real = _kth_radii_mixed(real, k, block_size, tol)
    real_balls = _Balls(r_real, real, fake, tol)
    if need_recall:
        fake_balls = _Balls(_kth_radii_mixed(fake, k, block_size, tol), fake, real, tol)
    counts = _Counts(real.n, fake.n, x_real.device)
    for i in range(0, fake.n, block_size):
        fi = slice(i, i + block_size)
        for j in range(0, real.n, block_size):
            rj = slice(j, j + block_size)
            d2 = fake.tile(fi, real, rj)  # fake × real
            exact = _ExactTile(x_fake, ff, x_real, rr, fi, rj)
            counts.add_real_balls(real_balls.tile_hits(d2, rj, fi, False, inside, exact), fi, rj)
            if need_recall:
                counts.add_fake_balls(fake_balls.tile_hits(d2, fi, rj, True, inside, exact), rj)
    return counts.summary(k, need_recall)


class _HighestFloat32Matmul:
    """Full-precision float32 matmuls (no TF32 / bf16 passes) and float32 accumulation of
    bfloat16 matmuls inside the block, so the screening error bounds hold on GPUs too."""

    def __enter__(self):
        self._saved = (torch.get_float32_matmul_precision(),
                       torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction)
        torch.set_float32_matmul_precision("highest")
        torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False

    def __exit__(self, *exc):
        torch.set_float32_matmul_precision(self._saved[0])
        torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = self._saved[1]


def _manifold(real, fake, k: int, comparison: str, block_size: int, device, dtype,
              need_recall: bool) -> dict[str, float]:
    k = _check_k(k)
    comparison = _check_comparison(comparison)
    block_size = _check_block_size(block_size)
    mode = _resolve_dtype(dtype)
    device = resolve_device(device, real, fake)
    x_real = as_feature_tensor("real features", real, device, _TENSOR_DTYPES[mode])
    x_fake = as_feature_tensor("fake features", fake, device, _TENSOR_DTYPES[mode])
    if x_real.shape[1] != x_fake.shape[1]:
        raise GenbenchError(f"real features have dimension {x_real.shape[1]} but fake features "
                            f"have {x_fake.shape[1]}; both must come from the same extractor")
    n_real, n_fake = x_real.shape[0], x_fake.shape[0]
    _check_size("real samples", n_real, k)
    if need_recall:
        _check_size("fake samples", n_fake, k)

    inside = torch.lt if comparison == "<" else torch.le
    if mode == "mixed":
        with _HighestFloat32Matmul():
            return _manifold_mixed(x_real, x_fake, k, inside, block_size, need_recall)
    return _manifold_exact(x_real, x_fake, k, inside, block_size, need_recall)


def _manifold_exact(x_real: torch.Tensor, x_fake: torch.Tensor, k: int, inside,
                    block_size: int, need_recall: bool) -> dict[str, float]:
    """Every tile in the features' own precision (float64 or float32): the reference path."""
    r_real = _kth_radii(x_real, k, block_size)
    r_fake = _kth_radii(x_fake, k, block_size) if need_recall else None
    rr, ff = _squared_norms(x_real), _squared_norms(x_fake)

    counts = _Counts(x_real.shape[0], x_fake.shape[0], x_real.device)
    for i in range(0, x_fake.shape[0], block_size):
        fi = slice(i, i + block_size)
        for j in range(0, x_real.shape[0], block_size):
            rj = slice(j, j + block_size)
            dist = _rounded_distances(
                _squared_distance_tile(x_fake[fi], ff[fi], x_real[rj], rr[rj]))  # fake × real
            counts.add_real_balls(_TileHits(dense=inside(dist, r_real[None, rj])), fi, rj)
            if need_recall:
                counts.add_fake_balls(_TileHits(dense=inside(dist, r_fake[fi, None])), rj)
    return counts.summary(k, need_recall)


_COMMON_DOC = """
    ``real`` and ``fake`` are (N, d) and (M, d) arrays or tensors (numpy or torch, any real
    dtype). ``comparison`` is ``"<"`` (strict, as ``prdc``) or ``"<="`` (as the reference
    improved-P/R code and torch-fidelity); it matters only on exact ties (duplicates, identical
    sets, quantized features). Distances are computed on ``device`` (default: the device of a
    tensor argument, else CPU) in ``block_size`` × ``block_size`` tiles with ``dtype``:
    ``"mixed"`` (default: bfloat16 or float32 tiles, every pair they cannot settle re-measured in
    float64, same results as ``"float64"``), ``"float64"``, or ``"float32"`` (fastest, may
    flip samples within ~1e-6 relative of a ball's boundary; see the module docstring). With
    "mixed" and "float64" the result does not depend on ``block_size`` or ``device``. Memory
    is O(block_size² + (N + M)·(d + k)).
"""


def prdc(real, fake, nearest_k: int = 5, *, comparison: Comparison = "<",
         block_size: int = DEFAULT_BLOCK_SIZE, device: torch.device | str | None = None,
         dtype="mixed") -> PRDC:
    """Precision, recall, density and coverage as ``prdc.compute_prdc(real, fake, nearest_k)``
    (same definitions and, with the default ``comparison="<"``, the same values).
    """
    values = _manifold(real, fake, nearest_k, comparison, block_size, device, dtype,
                       need_recall=True)
    return PRDC(**values, nearest_k=int(nearest_k), comparison=comparison)


def precision_recall(real, fake, nearest_k: int = 3, *, comparison: Comparison = "<=",
                     block_size: int = DEFAULT_BLOCK_SIZE,
                     device: torch.device | str | None = None,
                     dtype="mixed") -> PrecisionRecall:
    """Improved precision and recall (Kynkäänniemi et al. 2019). Defaults are the paper's:
    k = 3 and ``comparison="<="`` as its reference code (``prdc`` uses ``"<"``).
    """
    values = _manifold(real, fake, nearest_k, comparison, block_size, device, dtype,
                       need_recall=True)
    return PrecisionRecall(values["precision"], values["recall"], int(nearest_k), comparison)


def density_coverage(real, fake, nearest_k: int = 5, *, comparison: Comparison = "<",
                     block_size: int = DEFAULT_BLOCK_SIZE,
                     device: torch.device | str | None = None,
                     dtype="mixed") -> DensityCoverage:
    """Density and coverage (Naeem et al. 2020). Defaults are the paper's: k = 5 and
    ``comparison="<"`` as ``prdc``. Only the real set's radii are needed, so the fake set may
    have k or fewer samples.
    """
    values = _manifold(real, fake, nearest_k, comparison, block_size, device, dtype,
                       need_recall=False)
    return DensityCoverage(values["density"], values["coverage"], int(nearest_k), comparison)


for _fn in (prdc, precision_recall, density_coverage):
    _fn.__doc__ = (_fn.__doc__ or "").rstrip() + "\n" + _COMMON_DOC
