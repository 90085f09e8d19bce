"""Write the Inception features (tf protocol, float32, N × 2048) of one input to a .npy file,
through genbench's feature cache (so a set the benchmarks already scored costs nothing):

    .venv/bin/python bench/export_features.py fashion-mnist:test -n 10000 -o /tmp/real.npy
    .venv/bin/python bench/export_features.py \\
        ckpt:bench/results/rf_fashion_mnist_full/2rf-D/model.pt --nfe 1 -n 10000 -o /tmp/fake.npy

``ckpt:`` inputs are drawn as every genbench command draws them: image i from seed i. Used to
give bench/prdc_speed.py (``--family files``) real features.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", help="any genbench input, or ckpt:RUN_DIR_OR_MODEL")
    parser.add_argument("-n", "--num-images", type=int, required=True)
    parser.add_argument("--solver", default="euler")
    parser.add_argument("--nfe", type=int, default=1)
    parser.add_argument("-o", "--out", required=True)
    args = parser.parse_args()

    from genbench.config import ExtractionConfig
    from genbench.evaluation import Pipeline

    source = args.input
    if source.startswith("ckpt:"):  # as bench/rf_fashion_mnist.py scores its rows
        from genbench.generators.rectified_flow.model import SamplerConfig
        from genbench.generators.zoo import open_model

        source = open_model(Path(source[5:])).generator(SamplerConfig(args.solver, args.nfe))
    run = Pipeline(ExtractionConfig()).statistics(source, num_images=args.num_images)
    features = np.concatenate(list(run.iter_features())).astype(np.float32)
    if len(features) != args.num_images:
        raise SystemExit(f"{args.input}: {len(features)} features, not {args.num_images}")
    np.save(args.out, features)
    print(f"{args.out}: {features.shape} from {args.input}")


if __name__ == "__main__":
    main()
