"""PRD speed and agreement: kmeans="fast" (genbench's torch k-means) vs kmeans="reference"
(scikit-learn MiniBatchKMeans(n_clusters=20, n_init=10), as prd_score.py), both with
``--runs`` clusterings averaged, on the same features.

Features are synthetic and Inception-like (non-negative ReLU activations of a random linear map
of a 64-d latent Gaussian mixture: ``--classes`` classes, unit noise, class means
``--separation`` × N(0, I)). The reference set is the mixture; the models are: "same" (fresh
samples of it), "drop" (half of the classes), "junk" (30% of the samples from a broad Gaussian
in the latent space), "blur" (latents shrunk halfway to their class mean plus broader noise: a
mild shift) and "both" (drop + junk). The default (20 classes, separation 2.5) gives F values
between 0.5 and 1; 100 classes with separation 1.2 is a harder, overlapping case where all F
values lie above 0.95. For each model and
method, PRD is computed with ``--seeds`` different seeds; reported: seconds per PRD (all runs),
F_8 and F_1/8 (mean and spread over the seeds), and the largest |F(fast) − F(reference)|.

    .venv/bin/python bench/prd_speed.py --n 2000 --dim 256 [--json bench/results/prd_speed.json]

The defaults (N = 10,000 per side, d = 2048) are the size of the README figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np
import torch

from genbench.metrics import prd
from genbench.metrics.prd import prd_from_features
from genbench.precision import fast_bfloat16

LATENT = 64


class Generator:
    """An Inception-like feature distribution: relu(z W + b), z from a Gaussian mixture."""

    def __init__(self, dim: int, classes: int = 20, separation: float = 2.5,
                 seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.classes = classes
        self.means = rng.standard_normal((classes, LATENT)) * separation
        self.mixing = rng.standard_normal((LATENT, dim)) / np.sqrt(LATENT)
        self.bias = rng.standard_normal(dim) * 0.2

    def sample(self, rng, n: int, *, classes=None, junk: float = 0.0,
               pull: float = 0.0) -> np.ndarray:
        labels = rng.choice(self.classes if classes is None else classes, size=n)
        z = self.means[labels] + rng.standard_normal((n, LATENT))
        if pull:
            z = self.means[labels] + (1 - pull) * (z - self.means[labels]) \
                + pull * rng.standard_normal((n, LATENT)) * 1.5
        bad = rng.random(n) < junk
        z[bad] = rng.standard_normal((int(bad.sum()), LATENT)) * 2.5
        return np.maximum(z @ self.mixing + self.bias, 0.0).astype(np.float32)


def models(gen: Generator, n: int, seed: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed + 1)
    ref = gen.sample(rng, n)
    half = np.arange(gen.classes // 2)
    return ref, {
        "same": gen.sample(rng, n),
        "drop": gen.sample(rng, n, classes=half),
        "junk": gen.sample(rng, n, junk=0.3),
        "blur": gen.sample(rng, n, pull=0.5),
        "both": gen.sample(rng, n, classes=half, junk=0.3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="samples per side")
    parser.add_argument("--dim", type=int, default=2048, help="feature dimension")
    parser.add_argument("--classes", type=int, default=20, help="classes of the mixture")
    parser.add_argument("--separation", type=float, default=2.5,
                        help="scale of the class means (noise has scale 1)")
    parser.add_argument("--runs", type=int, default=10, help="clusterings averaged per PRD")
    parser.add_argument("--seeds", type=int, default=3, help="PRDs per model and method")
    parser.add_argument("--models", default="same,drop,junk,blur,both")
    parser.add_argument("--methods", default="reference,fast")
    parser.add_argument("--threads", type=int, default=None,
                        help="limit torch, BLAS and OpenMP (scikit-learn) to this many threads")
    parser.add_argument("--fast-n-init", type=int, default=prd.FAST_N_INIT,
                        help="seedings per run of the fast k-means")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args()
    if args.threads:
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(args.threads)
        threadpool_limits(args.threads)
    prd.FAST_N_INIT = args.fast_n_init

    gen = Generator(args.dim, args.classes, args.separation)
    ref, evals = models(gen, args.n, 0)
    methods = args.methods.split(",")
    load_before = os.getloadavg()
    rows = []
    for name in args.models.split(","):
        ev = evals[name]
        stats = {m: {"model": name, "method": m, "seconds": [], "cpu_seconds": [], "f8": [],
                     "f1_8": []} for m in methods}
        for seed in range(args.seeds):  # methods alternate, so background load hits both
            for method in methods:
                row = stats[method]
                t0, c0 = time.perf_counter(), time.process_time()
                r = prd_from_features(ev, ref, num_runs=args.runs, seed=seed, kmeans=method)
                row["seconds"].append(time.perf_counter() - t0)
                row["cpu_seconds"].append(time.process_time() - c0)
                row["f8"].append(r.f_beta)
                row["f1_8"].append(r.f_beta_inv)
        for method in methods:
            row = stats[method]
            rows.append(row)
            print(f"{name:5s} {method:9s} {statistics.median(row['seconds']):7.2f} s/PRD "
                  f"(CPU {statistics.median(row['cpu_seconds']):7.2f} s)   "
                  f"F8 {np.mean(row['f8']):.4f} ±{np.ptp(row['f8']) / 2:.4f}   "
                  f"F1/8 {np.mean(row['f1_8']):.4f} ±{np.ptp(row['f1_8']) / 2:.4f}", flush=True)

    summary = {}
    if {"reference", "fast"} <= set(methods):
        by = {(r["model"], r["method"]): r for r in rows}
        names = sorted({r["model"] for r in rows})

        def total(method: str, key: str) -> float:
            return sum(statistics.median(by[m, method][key]) for m in names)

        speedup = total("reference", "seconds") / total("fast", "seconds")
        cpu_speedup = total("reference", "cpu_seconds") / total("fast", "cpu_seconds")
        mean_diff = max(abs(np.mean(by[m, "fast"][k]) - np.mean(by[m, "reference"][k]))
                        for m in names for k in ("f8", "f1_8"))
        worst = max(abs(f - np.mean(by[m, "reference"][k]))
                    for m in names for k in ("f8", "f1_8") for f in by[m, "fast"][k])
        self_worst = max(abs(f - np.mean(by[m, "reference"][k])) for m in names
                         for k in ("f8", "f1_8") for f in by[m, "reference"][k])
        summary = {"speedup_wall": speedup, "speedup_cpu": cpu_speedup,
                   "max_abs_diff_of_means": mean_diff,
                   "max_abs_diff_single_fast_vs_reference_mean": worst,
                   "max_abs_diff_single_reference_vs_reference_mean": self_worst}
        print(f"speedup {speedup:.2f}x wall, {cpu_speedup:.2f}x CPU (sums of medians over the "
              f"models); max |mean F(fast) - mean F(reference)| {mean_diff:.4f}; largest "
              f"distance of one PRD from the reference mean: fast {worst:.4f}, reference "
              f"{self_worst:.4f}")
    print(f"load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}")
    if args.json:
        import sklearn

        with open(args.json, "w") as f:
            json.dump({"n": args.n, "dim": args.dim, "classes": args.classes,
                       "separation": args.separation, "runs": args.runs, "seeds": args.seeds,
                       "fast_n_init": prd.FAST_N_INIT,
                       "fast_seeding_dtype": "bfloat16" if fast_bfloat16(torch.device("cpu"))
                       else "float32", "threads": args.threads,
                       "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(),
                       "sklearn": sklearn.__version__, "torch": torch.__version__,
                       "machine": platform.processor() or platform.machine(),
                       "load_average_before": load_before,
                       "load_average_after": os.getloadavg(), "rows": rows, **summary},
                      f, indent=1)


if __name__ == "__main__":
    main()
