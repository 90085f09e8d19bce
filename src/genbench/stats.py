"""Streaming feature moments in float64 and statistics files.

Statistics files are ``.npz`` with ``mu`` (d,) and ``sigma`` (d, d) as pytorch-fid and TTUR
write them, plus genbench's metadata as plain string/int arrays (never pickled objects):
``num_samples``, ``protocol``, ``extractor``, ``weights_sha256``. Files from pytorch-fid, TTUR,
NVlabs edm (``mu``/``sigma``) and ADM reference batches (``mu``/``sigma`` beside ``arr_0``) load
too; their protocol is then unknown and said so.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from genbench.errors import GenbenchError
from genbench.fileio import atomic_path

_META_KEYS = ("protocol", "extractor", "weights_sha256", "label")


@dataclass
class FeatureStatistics:
    """Mean and covariance (unbiased, N − 1) of features, with what produced them."""

    mu: np.ndarray
    sigma: np.ndarray
    num_samples: int | None = None
    protocol: str | None = None
    extractor: str | None = None
    weights_sha256: str | None = None
    label: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.mu.shape[0])

    def arrays(self) -> dict[str, np.ndarray]:
        """``mu``, ``sigma`` and the metadata as plain arrays (what ``save`` writes)."""
        arrays: dict[str, np.ndarray] = {"mu": self.mu, "sigma": self.sigma}
        if self.num_samples is not None:
            arrays["num_samples"] = np.array(self.num_samples, dtype=np.int64)
        for key in _META_KEYS:
            value = getattr(self, key)
            if value is not None:
                arrays[key] = np.array(str(value))
        return arrays

    def save(self, path: str | os.PathLike) -> Path:
        """Write an ``.npz`` readable by pytorch-fid/TTUR (atomic)."""
        path = Path(path)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, **self.arrays())
        return path


def load_statistics(path: str | os.PathLike) -> FeatureStatistics:
    """Read a statistics ``.npz`` (genbench, pytorch-fid, TTUR, NVlabs, ADM reference batch)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            if "mu" not in data or "sigma" not in data:
                raise GenbenchError(f"{path}: no 'mu' and 'sigma' arrays; not a statistics file")
            stored_dtypes = {str(data["mu"].dtype), str(data["sigma"].dtype)}
            mu = np.asarray(data["mu"], dtype=np.float64)
            sigma = np.asarray(data["sigma"], dtype=np.float64)
            meta = {k: str(data[k]) for k in _META_KEYS if k in data}
            n = int(data["num_samples"]) if "num_samples" in data else None
            # ADM's reference batches: sFID's spatial statistics beside the pool3 ones
            spatial = (np.asarray(data["mu_s"], np.float64),
                       np.asarray(data["sigma_s"], np.float64)) \
                if "mu_s" in data and "sigma_s" in data else None
    except ValueError as exc:  # pickled object arrays
        raise GenbenchError(f"{path}: cannot read statistics without unpickling ({exc}); "
                            "genbench never loads pickled arrays") from None
    except (OSError, EOFError, TypeError, zipfile.BadZipFile, zlib.error) as exc:
        raise GenbenchError(f"{path}: not a readable statistics .npz ({exc})") from None
    meta.setdefault("label", str(path))
    stats = FeatureStatistics(mu, sigma, num_samples=n, **meta)
    notes = validate_statistics(stats, str(path))
    lower = sorted(d for d in stored_dtypes if d != "float64")
    if lower:
        notes.append(f"{path}: statistics stored as {', '.join(lower)}, not float64: FID may "
                     "differ from one computed in float64 in its last digits")
    stats.extra["notes"] = notes
    if spatial is not None:
        stats.extra["spatial"] = FeatureStatistics(*spatial, num_samples=n,
                                                   protocol=stats.protocol,
                                                   label=f"{stats.label} (mu_s, sigma_s)")
        notes += validate_statistics(stats.extra["spatial"], f"{path} (mu_s, sigma_s)")
    return stats


def validate_statistics(stats: FeatureStatistics, where: str) -> list[str]:
    """Refuse statistics no data set can have (a GenbenchError naming ``where``): shapes that
    do not fit, values that are not finite, N < 2, a covariance that is not symmetric or not
    positive semi-definite (eigenvalues below −1e-6 of the largest variance). Returns notes."""
    mu, sigma = stats.mu, stats.sigma
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]) or mu.shape[0] < 1:
        raise GenbenchError(f"{where}: mu has shape {mu.shape} and sigma {sigma.shape}; "
                            "expected (d,) and (d, d)")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise GenbenchError(f"{where}: mu or sigma contain NaN or infinite values")
    if stats.num_samples is not None and stats.num_samples < 2:
        raise GenbenchError(f"{where}: records {stats.num_samples} samples; a covariance "
                            "needs at least 2")
    scale = max(float(np.abs(np.diag(sigma)).max()), np.finfo(np.float64).tiny)
    asymmetry = float(np.abs(sigma - sigma.T).max())
    if asymmetry > 1e-6 * scale:
        raise GenbenchError(f"{where}: sigma is not symmetric (largest |sigma - sigma.T| "
                            f"{asymmetry:.3g}); not a covariance matrix")
    try:
        np.linalg.cholesky(0.5 * (sigma + sigma.T) + 1e-6 * scale * np.eye(len(sigma)))
    except np.linalg.LinAlgError:
        low = float(np.linalg.eigvalsh(0.5 * (sigma + sigma.T))[0])
        raise GenbenchError(f"{where}: sigma is not positive semi-definite (smallest "
                            f"eigenvalue {low:.3g}); not a covariance matrix") from None
    return []


class StreamingMoments:
    """Running Σx and Σxxᵀ in float64; features are never all held in memory.

    ``merge`` (or an all-reduce of ``sums``) combines shards exactly as one pass would, up to
    float64 summation order.
    """

    def __init__(self, dim: int, device: torch.device | str = "cpu") -> None:
        self.dim = dim
        self.count = 0
        self.sum = torch.zeros(dim, dtype=torch.float64, device=device)
        self.outer = torch.zeros(dim, dim, dtype=torch.float64, device=device)

    def update(self, features: torch.Tensor | np.ndarray) -> None:
        x = torch.as_tensor(features).to(device=self.sum.device, dtype=torch.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise GenbenchError(f"features must be N x {self.dim}, got {tuple(x.shape)}")
        self.count += x.shape[0]
        self.sum += x.sum(0)
        self.outer.addmm_(x.T, x)

    def merge(self, other: StreamingMoments) -> None:
        self.count += other.count
        self.sum += other.sum.to(self.sum.device)
        self.outer += other.outer.to(self.outer.device)

    def statistics(self, **meta) -> FeatureStatistics:
        if self.count < 2:
            raise GenbenchError(f"need at least 2 images for a covariance, got {self.count}")
        n = self.count
        mu = self.sum / n
        sigma = (self.outer - n * torch.outer(mu, mu)) / (n - 1)
        sigma = 0.5 * (sigma + sigma.T)
        return FeatureStatistics(mu.cpu().numpy(), sigma.cpu().numpy(), num_samples=n, **meta)
