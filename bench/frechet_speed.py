"""Fréchet distance at d = 2048: genbench vs scipy.linalg.sqrtm as pytorch-fid calls it.

Covariances come from 10,000 synthetic ReLU features per side (a random mixing matrix, so the
covariance is dense and full rank, as Inception pool3 covariances are). Both methods run on the
same matrices in one process, each timed over ``--repeats`` runs (best and median reported).

    .venv/bin/python bench/frechet_speed.py [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
import warnings

import numpy as np
import scipy
import scipy.linalg

from genbench.metrics.fid import frechet_distance


def pytorch_fid_frechet(mu1, sigma1, mu2, sigma2, eps=1e-6) -> float:
    """pytorch-fid 0.3.0's calculate_frechet_distance, as it calls scipy (rewritten here)."""
    diff = mu1 - mu2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SciPy >= 1.16 deprecates disp=
        covmean, _ = scipy.linalg.sqrtm(sigma1.dot(sigma2), disp=False)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError("Imaginary component")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def synthetic_statistics(rng: np.random.Generator, n: int, d: int, shift: float):
    mixing = rng.standard_normal((d, d)) / np.sqrt(d)
    feats = np.maximum(rng.standard_normal((n, d)) @ mixing + shift, 0.0)
    return feats.mean(0), np.cov(feats, rowvar=False)


def timed(fn, repeats: int) -> tuple[float, list[float]]:
    times, value = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t0)
    return value, times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    mu1, s1 = synthetic_statistics(rng, args.samples, args.dim, 0.0)
    mu2, s2 = synthetic_statistics(rng, args.samples, args.dim, 0.1)
    fast, t_fast = timed(lambda: frechet_distance(mu1, s1, mu2, s2), args.repeats)
    slow, t_slow = timed(lambda: pytorch_fid_frechet(mu1, s1, mu2, s2), args.repeats)
    result = {
        "dim": args.dim, "samples": args.samples, "repeats": args.repeats,
        "genbench_s": {"best": min(t_fast), "median": statistics.median(t_fast)},
        "scipy_sqrtm_s": {"best": min(t_slow), "median": statistics.median(t_slow)},
        "speedup_median": statistics.median(t_slow) / statistics.median(t_fast),
        "fd_genbench": fast, "fd_scipy_sqrtm": slow,
        "relative_difference": abs(fast - slow) / abs(slow),
        "numpy": np.__version__, "scipy": scipy.__version__, "machine": platform.processor(),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
