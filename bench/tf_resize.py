"""The TF1 bilinear resize of the ``tf`` protocol: genbench's row-first, in-place version
against the four-corner gather it replaced (kept here as the reference), the same numbers
bit for bit, on one thread (as in a decoding worker) and on all.

    python bench/tf_resize.py --json bench/results/tf_resize.json
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from genbench.protocols import _tf1_axis_weights, resize_bilinear_tf1


def four_corner_gather(x: torch.Tensor, size: int) -> torch.Tensor:
    """The previous implementation: rows then columns gathered at full output size."""
    h, w = x.shape[-2:]
    y0, y1, fy = _tf1_axis_weights(h, size, x.device)
    x0, x1, fx = _tf1_axis_weights(w, size, x.device)
    top, bottom = x[:, :, y0, :], x[:, :, y1, :]
    fx = fx.view(1, 1, 1, -1)
    top = top[..., x0] + (top[..., x1] - top[..., x0]) * fx
    bottom = bottom[..., x0] + (bottom[..., x1] - bottom[..., x0]) * fx
    return top + (bottom - top) * fy.view(1, 1, -1, 1)


def best(fn, x, rounds):
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn(x, 299)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    rows = []
    for threads in (1, torch.get_num_threads()):
        torch.set_num_threads(threads)
        for side in (28, 64, 256, 512):
            x = torch.randint(0, 256, (args.batch, 3, side, side),
                              generator=torch.Generator().manual_seed(side)).float()
            same = torch.equal(resize_bilinear_tf1(x, 299), four_corner_gather(x, 299))
            old, new = best(four_corner_gather, x, args.rounds), best(resize_bilinear_tf1, x,
                                                                       args.rounds)
            rows.append({"threads": threads, "side": side, "batch": args.batch,
                         "gather_ms_per_image": round(1000 * old / args.batch, 3),
                         "genbench_ms_per_image": round(1000 * new / args.batch, 3),
                         "speedup": round(old / new, 2), "bit_identical": same})
            print(json.dumps(rows[-1]), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
