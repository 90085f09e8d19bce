"""Feature-extraction throughput: genbench vs pytorch-fid on the same images, side by side.

Both run in one process on the same PNG files (the first N Fashion-MNIST test images, 28×28),
with the same TF-FID weights, and genbench uses the ``pytorch-fid`` protocol so the features
must agree (reported as max |Δ| / max |feature|). Timings are end to end: decoding, resizing,
the network, and for genbench the weights load and (when on) torch.compile.

pytorch-fid needs torchvision, which does not import beside the project's CPU torch, so this
runs in the peers' venv (see ../shared/reference/offline-assets.md) with genbench installed
there without dependencies:

    /work/peers-venv/bin/pip install --no-deps -e .
    /work/peers-venv/bin/python bench/extract_throughput.py --images 1000 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def write_pngs(folder: Path, count: int) -> list[str]:
    from genbench.sources import fashion_mnist

    source = fashion_mnist("test")
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(count):
        path = folder / f"{i:05d}.png"
        Image.fromarray(source.images[i, :, :, 0]).save(path)
        files.append(str(path))
    return files


def install_weights_for_pytorch_fid(torch_home: Path) -> None:
    """Give pytorch-fid the registry weights in its layout (its code loads them unchanged) and
    point genbench at the original registry file."""
    from genbench.extractors.inception_weights import (
        PYTORCH_FID_FILENAME,
        _fid_helper_file,
        load_inception_weights,
    )

    os.environ["GENBENCH_INCEPTION_WEIGHTS"] = str(_fid_helper_file())
    target = torch_home / "hub" / "checkpoints" / PYTORCH_FID_FILENAME
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(load_inception_weights().state_dict, target)
    os.environ["TORCH_HOME"] = str(torch_home)


def run_pytorch_fid(files: list[str], batch_size: int, workers: int) -> tuple[np.ndarray, float]:
    from pytorch_fid.fid_score import get_activations
    from pytorch_fid.inception import InceptionV3

    start = time.perf_counter()
    model = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()
    acts = get_activations(files, model, batch_size=batch_size, dims=2048, device="cpu",
                           num_workers=workers)
    return acts, time.perf_counter() - start


def run_genbench(folder: Path, batch_size: int, compile_flag: bool, cache: Path,
                 precision: str = "float32") -> tuple[np.ndarray, float]:
    from genbench.config import ExtractionConfig
    from genbench.evaluation import Pipeline

    os.environ["GENBENCH_CACHE"] = str(cache)
    start = time.perf_counter()
    evaluator = Pipeline(ExtractionConfig(protocol="pytorch-fid", batch_size=batch_size,
                                          compile=compile_flag, progress=False,
                                          precision=precision))
    run = evaluator.statistics(str(folder))
    seconds = time.perf_counter() - start
    return np.concatenate(list(run.iter_features())), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=50,
                        help="pytorch-fid's batch (its CLI default) and the compiled rows'")
    parser.add_argument("--workers", type=int, default=min(len(os.sched_getaffinity(0)), 8),
                        help="pytorch-fid DataLoader workers (its CLI default: min(cpus, 8))")
    parser.add_argument("--genbench-batches", default="50",
                        help="genbench's eager rows, one per batch size (comma-separated)")
    parser.add_argument("--compile", action="store_true",
                        help="also the torch.compile rows (cold and warm compiler cache)")
    parser.add_argument("--bfloat16", action="store_true",
                        help="also a --precision bfloat16 row (other features: its FID error "
                             "is bench/extract_precision.py's)")
    parser.add_argument("--json")
    args = parser.parse_args()
    batches = [int(b) for b in args.genbench_batches.split(",")]
    if args.bfloat16:
        from genbench.precision import fast_bfloat16

        if not fast_bfloat16(torch.device("cpu")):
            parser.error("--bfloat16: this CPU has no native bfloat16 matmuls")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["GENBENCH_CACHE"] = str(tmp / "warmup-cache")
        install_weights_for_pytorch_fid(tmp / "torch_home")
        files = write_pngs(tmp / "images", args.images)
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(tmp / "inductor")  # start cold

        ref, t_ref = run_pytorch_fid(files, args.batch_size, args.workers)
        results = {"pytorch-fid": {"seconds": t_ref, "images_per_s": args.images / t_ref}}
        rows = [(f"genbench eager (BN folded, channels-last), batch {b}", b, False, "float32")
                for b in batches]
        if args.compile:
            rows += [(f"genbench compiled, {state} compiler cache, batch {args.batch_size}",
                      args.batch_size, True, "float32") for state in ("cold", "warm")]
        if args.bfloat16:
            rows.append((f"genbench eager --precision bfloat16, batch {batches[0]}",
                         batches[0], False, "bfloat16"))
        for label, batch, flag, precision in rows:
            feats, seconds = run_genbench(tmp / "images", batch, flag,
                                          tmp / f"cache-{len(results)}", precision)
            rel = float(np.abs(feats - ref).max() / np.abs(ref).max())
            results[label] = {"seconds": seconds, "images_per_s": args.images / seconds,
                              "speedup_vs_pytorch_fid": t_ref / seconds,
                              "feature_max_rel_diff": rel}
            print(label, json.dumps(results[label]), flush=True)
    record = {"images": args.images, "pytorch_fid_batch_size": args.batch_size,
              "load_average_after": os.getloadavg(),
              "pytorch_fid_workers": args.workers, "torch": torch.__version__,
              "threads": torch.get_num_threads(), "cpu": platform.processor() or "unknown",
              "results": results}
    print(json.dumps(record, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
