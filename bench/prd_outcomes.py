"""PRD agreement where k-means is bimodal: the distribution of single-run outcomes.

On the "junk" and "both" models of bench/prd_speed.py, one k-means run lands in one of a few
local optima (whether the junk gets clusters of its own), so F_1/8 of one run takes a few
discrete levels, and the 10-run average of a PRD still varies by about ±0.04 from seed to seed.
Comparing means of a handful of PRDs cannot resolve a 0.01 difference; this compares the
distributions themselves: ``--seeds`` single-run PRDs (``num_runs=1``, seeds 0..S-1) per
method, with the mean, its standard error and how often each level occurs.
"fast-float32" is the fast k-means with its seeding forced to float32 (the default seeds in
bfloat16 where that is native).

    .venv/bin/python bench/prd_outcomes.py --models junk,both --seeds 60 \
        --json bench/results/prd_outcomes_10k.json
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from prd_speed import Generator, models  # bench/ is the script's directory

from genbench.metrics import prd
from genbench.metrics.prd import prd_from_features


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="samples per side")
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--models", default="junk,both")
    parser.add_argument("--methods", default="fast,fast-float32,reference")
    parser.add_argument("--seeds", type=int, default=60)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    ref, evals = models(Generator(args.dim), args.n, 0)
    native = prd.fast_bfloat16
    record = {"n": args.n, "dim": args.dim, "seeds": args.seeds, "num_runs": 1, "models": {}}
    for name in args.models.split(","):
        record["models"][name] = {}
        for method in args.methods.split(","):
            prd.fast_bfloat16 = (lambda device: False) if method == "fast-float32" else native
            start = time.perf_counter()
            f = {"f8": [], "f1_8": []}
            for seed in range(args.seeds):
                r = prd_from_features(evals[name], ref, num_runs=1, seed=seed,
                                      kmeans="reference" if method == "reference" else "fast")
                f["f8"].append(r.f_beta)
                f["f1_8"].append(r.f_beta_inv)
            row = {"seconds": time.perf_counter() - start}
            for key, values in f.items():
                v = np.asarray(values)
                levels, counts = np.unique(np.round(v, 2), return_counts=True)
                row[key] = {"values": values, "mean": float(v.mean()),
                            "standard_error": float(v.std(ddof=1) / np.sqrt(len(v))),
                            "levels": {f"{lv:.2f}": int(c)
                                       for lv, c in zip(levels, counts, strict=True)}}
            record["models"][name][method] = row
            print(f"{name:5s} {method:13s} F8 {row['f8']['mean']:.4f} "
                  f"±{row['f8']['standard_error']:.4f}  F1/8 {row['f1_8']['mean']:.4f} "
                  f"±{row['f1_8']['standard_error']:.4f}"
                  f"  levels F1/8 {row['f1_8']['levels']}", flush=True)
    prd.fast_bfloat16 = native
    if args.json:
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1)


if __name__ == "__main__":
    main()
