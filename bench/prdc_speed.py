"""Precision/recall/density/coverage: genbench's blocked k-NN vs ``prdc.compute_prdc``.

Each method runs in its own subprocess on the same features of one data family (``--family``,
see ``make_features``: spread-out low-dimensional, concentrated high-dimensional, heavy
duplicates, or two .npy files such as real Inception features; N per side, d dims, seeded),
so peak memory (max RSS above the process's baseline after the features are built) and time
are measured separately. Values are compared. prdc needs only numpy and scikit-learn:

    python3 -m venv /work/peers-venv && /work/peers-venv/bin/pip install prdc scikit-learn
    /work/peers-venv/bin/python bench/prdc_speed.py --n 20000 --dim 2048 --family spread \
        --json out.json

Each method runs ``--repeats`` times (alternating); the median time and the largest peak
memory are reported (times on this shared 2-core machine vary by up to 25 % between runs).

genbench runs with the project's own interpreter (.venv: CPU torch 2.13 with MKL), prdc with
the peers' (scikit-learn); genbench under the peers' torch 2.14.1 is slower (its CPU matmuls
are): pass --genbench-python to choose.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def make_features(n: int, dim: int, seed: int = 0, family: str = "spread",
                  files: tuple[str, str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Real and fake float32 features of one family (seeded):

    * ``spread``: ReLU of a random 64-d mixing (low intrinsic dimension, overlapping sets:
      distances spread out, as real features);
    * ``concentrated``: independent N(0, 1) coordinates, fakes N(0, 1.5²): distances
      concentrate (P = 0, R = 1, as a badly failing model);
    * ``duplicates``: ``spread`` reals; fakes are 400 distinct ``spread`` fakes repeated
      (mode collapse: every fake has n / 400 exact copies);
    * ``files``: the first n rows of two .npy files (e.g. real Inception features).
    """
    rng = np.random.default_rng(seed)
    if family == "files":
        assert files is not None
        return tuple(np.load(f, mmap_mode="r")[:n].astype(np.float32) for f in files)
    if family == "concentrated":
        return (rng.standard_normal((n, dim), dtype=np.float32),
                1.5 * rng.standard_normal((n, dim), dtype=np.float32))
    mixing = (rng.standard_normal((64, dim)) / 8).astype(np.float32)
    real = np.maximum(rng.standard_normal((n, 64)).astype(np.float32) @ mixing, 0)
    fake = np.maximum((rng.standard_normal((n, 64)).astype(np.float32) + 0.1) @ mixing, 0)
    if family == "duplicates":
        fake = np.ascontiguousarray(fake[rng.integers(0, 400, n)])
    return real, fake


FAMILIES = ("spread", "concentrated", "duplicates", "files")


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(method: str, n: int, dim: int, k: int, block_size: int, family: str,
            files: tuple[str, str] | None) -> dict:
    """One method on the features; its imports happen before the baseline (time and memory
    measure the computation, not loading torch or scikit-learn)."""
    if method == "prdc":
        from prdc import compute_prdc

        def compute(real, fake):
            return compute_prdc(real_features=real, fake_features=fake, nearest_k=k)
    else:
        from genbench.metrics.manifold import prdc

        def compute(real, fake):
            return prdc(real, fake, nearest_k=k, block_size=block_size).to_dict()
    real, fake = make_features(n, dim, family=family, files=files)
    baseline = _max_rss_mb()
    start = time.perf_counter()
    values = compute(real, fake)
    seconds = time.perf_counter() - start
    return {"method": method, "seconds": seconds, "peak_rss_above_baseline_mb":
            _max_rss_mb() - baseline, "values": {k_: float(v) for k_, v in values.items()}}


def _machine() -> dict:
    """What decides the genbench screen's speed: native bfloat16 matmuls (AVX512-BF16 / AMX)
    or float32, and the CPU."""
    import torch

    from genbench.precision import fast_bfloat16

    flags = Path("/proc/cpuinfo").read_text().split() if Path("/proc/cpuinfo").exists() else []
    return {"cpus": os.cpu_count(), "torch": torch.__version__,
            "screen": "bfloat16" if fast_bfloat16(torch.device("cpu")) else "float32",
            "cpu_flags": sorted({f for f in flags if f in ("avx2", "avx512f", "avx512_bf16",
                                                            "amx_bf16")})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--block-size", type=int, default=2048)
    parser.add_argument("--worker", choices=["prdc", "genbench"], help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs of each method (alternating); the median time is reported")
    parser.add_argument("--family", choices=FAMILIES, default="spread",
                        help="data family (see make_features)")
    parser.add_argument("--files", nargs=2, metavar=("REAL.npy", "FAKE.npy"),
                        help="features of --family files")
    parser.add_argument("--json")
    parser.add_argument("--genbench-python", default=None,
                        help="interpreter for the genbench run (default: the project's .venv "
                             "if present, else this one); prdc runs in this one")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run_one(args.worker, args.n, args.dim, args.k, args.block_size,
                                 args.family, args.files)))
        return
    project_venv = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "python"
    pythons = {"prdc": sys.executable,
               "genbench": args.genbench_python or (str(project_venv) if project_venv.exists()
                                                    else sys.executable)}
    runs: dict[str, list[dict]] = {"genbench": [], "prdc": []}
    for _ in range(args.repeats):  # alternating, so background load hits both
        for method in runs:
            out = subprocess.run([pythons[method], __file__, "--worker", method,
                                  "--n", str(args.n), "--dim", str(args.dim), "--k", str(args.k),
                                  "--block-size", str(args.block_size),
                                  "--family", args.family,
                                  *(["--files", *args.files] if args.files else [])],
                                 capture_output=True, text=True, check=True)
            runs[method].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(method, runs[method][-1], flush=True)
    results = {}
    for method, rs in runs.items():
        if any(r["values"] != rs[0]["values"] for r in rs):
            raise RuntimeError(f"{method} gave different values in different runs")
        results[method] = {"seconds": statistics.median(r["seconds"] for r in rs),
                           "seconds_all": [r["seconds"] for r in rs],
                           "peak_rss_above_baseline_mb":
                               max(r["peak_rss_above_baseline_mb"] for r in rs),
                           "values": rs[0]["values"], "python": pythons[method]}
    g, p = results["genbench"], results["prdc"]
    record = {"family": args.family, "files": args.files, "machine": _machine(),
              "n": args.n, "dim": args.dim, "k": args.k, "block_size": args.block_size,
              "repeats": args.repeats, "seconds": "median over the repeats",
              "peak_rss": "largest over the repeats",
              "results": results,
              "speedup": p["seconds"] / g["seconds"],
              "memory_ratio": g["peak_rss_above_baseline_mb"]
              / max(p["peak_rss_above_baseline_mb"], 1e-9),
              "max_abs_value_difference": max(abs(g["values"][m] - p["values"][m])
                                              for m in p["values"])}
    print(json.dumps(record, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(record, f, indent=2)


if __name__ == "__main__":
    main()
