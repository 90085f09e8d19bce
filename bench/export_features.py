"""Write the Inception features (tf protocol, float32, N × 2048) of one input to a .npy file,
through genbench's feature cache (so a set the benchmarks already scored costs nothing):

    .venv/bin/python bench/export_features.py fashion-mnist:test -n 10000 -o /tmp/real.npy
    .venv/bin/python bench/export_features.py ckpt:fmnist-2rfpp,nfe=1 -n 10000 -o /tmp/fake.npy

``ckpt:`` inputs are drawn as every genbench command draws them: image i from seed i, with the
model's recorded default sampler unless a setting overrides it (the RCG bench's τ = 0 rows are
``ckpt:fmnist-rcg``). Used to give bench/prdc_speed.py (``--family files``) real features.
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", help="any genbench input (ckpt:MODEL[,settings] included)")
    parser.add_argument("-n", "--num-images", type=int, required=True)
    parser.add_argument("-o", "--out", required=True)
    args = parser.parse_args()

    from genbench.config import ExtractionConfig
    from genbench.evaluation import Pipeline

    run = Pipeline(ExtractionConfig()).statistics(args.input, num_images=args.num_images)
    features = np.concatenate(list(run.iter_features())).astype(np.float32)
    if len(features) != args.num_images:
        raise SystemExit(f"{args.input}: {len(features)} features, not {args.num_images}")
    np.save(args.out, features)
    print(f"{args.out}: {features.shape} from {args.input}")


if __name__ == "__main__":
    main()
