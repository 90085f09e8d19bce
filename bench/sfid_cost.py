"""What sFID adds to FID's feature pass: the same images extracted end to end (decode,
protocol, network, moments; no cache) with pool3 only and with pool3 + the spatial features,
in alternating rounds so that both see the same machine.

    python bench/sfid_cost.py --images 200 --rounds 3 --json bench/results/sfid_cost.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from genbench.extractors import InceptionExtractor
from genbench.features import extract_statistics
from genbench.protocols import get_protocol
from genbench.sources import open_source


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--source", default="fashion-mnist:test")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    source = open_source(args.source)
    extractor = InceptionExtractor(compile=False)
    protocol = get_protocol("tf")

    def run(outputs: tuple[str, ...]) -> float:
        start = time.perf_counter()
        extract_statistics(source, protocol, extractor, num_images=args.images,
                           use_cache=False, progress=False, outputs=outputs)
        return time.perf_counter() - start

    run(("spatial",))  # warm-up: weights, allocator
    times: dict[str, list[float]] = {"fid": [], "fid+sfid": []}
    for _ in range(args.rounds):
        times["fid"].append(run(()))
        times["fid+sfid"].append(run(("spatial",)))
    med = {k: statistics.median(v) for k, v in times.items()}
    record = {"images": args.images, "source": args.source, "rounds": args.rounds,
              "threads": torch.get_num_threads(), "seconds": times,
              "median_seconds": med,
              "extra_fraction": med["fid+sfid"] / med["fid"] - 1}
    print(json.dumps(record, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1)


if __name__ == "__main__":
    main()
