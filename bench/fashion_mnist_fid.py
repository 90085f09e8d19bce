"""FID of Fashion-MNIST train vs test with the ``tf`` protocol, timed from a cold feature cache.

    .venv/bin/python bench/fashion_mnist_fid.py --num-images 2000 [--json out.json]

The first N images of each split (the official files' order) are used. Prints the genbench
JSON record plus the wall time, the device and the number of threads.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-images", type=int, default=2000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compile", default="auto", choices=["auto", "yes", "no"])
    parser.add_argument("--json")
    args = parser.parse_args()

    from genbench.api import compute_fid

    compile_flag = {"auto": "auto", "yes": True, "no": False}[args.compile]
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["GENBENCH_CACHE"] = str(Path(tmp) / "cache")  # cold: every image extracted
        start = time.perf_counter()
        result = compute_fid("fashion-mnist:train", "fashion-mnist:test",
                             num_images=args.num_images, device=args.device,
                             compile=compile_flag)
        wall = time.perf_counter() - start
    record = {**result.to_dict(), "wall_seconds": wall, "device": args.device,
              "threads": torch.get_num_threads(), "cpu": platform.processor() or "unknown",
              "compile": args.compile}
    print(json.dumps(record, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
