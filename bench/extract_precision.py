"""What ``--precision bfloat16`` costs in FID: the same image sets scored against the same
reference with float32 and with bfloat16 features of the TF-FID Inception (``tf`` protocol),
and the features' largest relative difference. Needs a CPU with native bfloat16 matmuls
(AVX512-BF16 / AMX) or a GPU; the float32 rows of sets the benchmarks scored are cache hits.

    .venv/bin/python bench/extract_precision.py -n 2000 --json bench/results/extract_precision.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

SAMPLES = ("ckpt:fmnist-rcg", "ckpt:fmnist-1rf", "ckpt:fmnist-1rf-cond")
REFERENCE = "fashion-mnist:test"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--num-images", type=int, default=2000)
    parser.add_argument("--samples", nargs="+", default=list(SAMPLES))
    parser.add_argument("--json")
    args = parser.parse_args()

    from genbench.config import ExtractionConfig
    from genbench.evaluation import Evaluation

    rows: dict[str, dict] = {s: {} for s in args.samples}
    features: dict[tuple[str, str], np.ndarray] = {}
    for precision in ("float32", "bfloat16"):
        config = ExtractionConfig(precision=precision, progress=False)
        start = time.perf_counter()
        evaluation = Evaluation(REFERENCE, metrics="fid,pr", config=config,
                                num_images=args.num_images)
        features[REFERENCE, precision] = evaluation.reference.features()
        for spec in args.samples:
            side = evaluation.prepare(spec, num_images=args.num_images)
            result = evaluation.score_side(side)
            features[spec, precision] = side.features()
            rows[spec][precision] = {
                "fid": result.metrics["fid"]["value"],
                "precision": result.metrics["pr"]["precision"],
                "recall": result.metrics["pr"]["recall"], "extractor": result.extractor}
            print(precision, spec, json.dumps(rows[spec][precision]), flush=True)
        print(f"{precision}: {time.perf_counter() - start:.0f} s (float32 sets may be cached)")
    def max_rel_diff(spec: str) -> float:
        a, b = features[spec, "float32"], features[spec, "bfloat16"]
        return float(np.abs(a - b).max() / np.abs(a).max())

    reference_diff = max_rel_diff(REFERENCE)
    for spec, r in rows.items():
        r["fid_difference"] = r["bfloat16"]["fid"] - r["float32"]["fid"]
        r["fid_relative_difference"] = r["fid_difference"] / r["float32"]["fid"]
        r["feature_max_rel_diff"] = max_rel_diff(spec)
    record = {"num_images": args.num_images, "reference": REFERENCE, "protocol": "tf",
              "reference_feature_max_rel_diff": reference_diff, "rows": rows,
              "largest_fid_difference": max(abs(r["fid_difference"]) for r in rows.values()),
              "largest_fid_relative_difference": max(abs(r["fid_relative_difference"])
                                                     for r in rows.values())}
    print(json.dumps(record, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
