"""PRD separates mode dropping from low quality on real data (Fashion-MNIST); FID alone does not.

The reference is the first N images of Fashion-MNIST test. The "models" are real training
images (disjoint from the reference), so nothing here is a trained generator:

* ``good``: N training images of all ten classes;
* ``drop-5``: N training images of five classes only (T-shirt/top, trouser, pullover, dress,
  coat; sandals, shirts, sneakers, bags and ankle boots never appear): mode dropping;
* ``blur-r``: N training images of all classes, Gaussian-blurred with PIL radius r and with
  optional additive Gaussian noise (NOISE_SIGMA, 0 by default), for several r: low quality.

The blur strength whose FID is closest to ``drop-5``'s is the "matched" low-quality model:
at (nearly) equal FID, PRD tells the two failures apart (mode dropping: precision stays high,
recall falls, F_1/8 > F_8; low quality: the reverse). One feature pass per set (``tf``
protocol, real TF-FID Inception weights), metrics fid, prd, pr. Writes the JSON record and
the README figure.

    .venv/bin/python bench/fashion_mnist_prd_demo.py --n 1000 \
        --json bench/results/fashion_mnist_prd_demo.json --figure docs/img/fashion_mnist_prd.png
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from genbench.api import evaluate_models
from genbench.sources import ArraySource
from genbench.sources.datasets import fashion_mnist

KEPT_CLASSES = (0, 1, 2, 3, 4)
NOISE_SIGMA = 0.0  # grey levels of added Gaussian noise (0: blur only)


def degrade(images: np.ndarray, radius: float, seed: int) -> np.ndarray:
    """Gaussian blur (PIL radius) then additive Gaussian noise, rounded back to uint8."""
    rng = np.random.default_rng(seed)
    out = np.stack([np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(radius)))
                    for img in images]).astype(np.float64)
    out += rng.normal(0.0, NOISE_SIGMA, out.shape)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="images per set")
    parser.add_argument("--radii", default="0.5,0.7,1.0", help="blur radii to try")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json")
    parser.add_argument("--figure")
    args = parser.parse_args()

    train = fashion_mnist("train")
    images, labels = train.images[..., 0], np.asarray(train.labels)
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(images))
    everything = order[:args.n]
    kept = order[np.isin(labels[order], KEPT_CLASSES)][:args.n]
    models = {"good": ArraySource(images[everything], labels[everything], name="good"),
              "drop-5": ArraySource(images[kept], labels[kept], name="drop-5")}
    for radius in (float(r) for r in args.radii.split(",")):
        name = f"blur-{radius:g}"
        models[name] = ArraySource(degrade(images[everything], radius, args.seed),
                                   labels[everything], name=name)

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        record = evaluate_models(models, "fashion-mnist:test", metrics="fid,prd,pr",
                                 num_images=args.n, seed=args.seed, per_class=True,
                                 out_dir=out)
        curves = json.loads((Path(out) / "result.json").read_text())["prd_curves"]
    record.pop("plots", None)
    record["wall_seconds"] = time.perf_counter() - start
    fid = {m: r["metrics"]["fid"]["value"] for m, r in record["models"].items()}
    blurs = [m for m in fid if m.startswith("blur-")]
    matched = min(blurs, key=lambda m: abs(fid[m] - fid["drop-5"]))
    record["matched_low_quality_model"] = matched
    summary = {m: {"fid": fid[m], "prd_f_8": r["metrics"]["prd"]["f_8"],
                   "prd_f_1/8": r["metrics"]["prd"]["f_1/8"],
                   "precision": r["metrics"]["pr"]["precision"],
                   "recall": r["metrics"]["pr"]["recall"]}
               for m, r in record["models"].items()}
    record["summary"] = summary
    for m, v in summary.items():
        print(f"{m:10s} FID {v['fid']:7.2f}  F8 {v['prd_f_8']:.3f}  F1/8 {v['prd_f_1/8']:.3f}  "
              f"P {v['precision']:.3f}  R {v['recall']:.3f}")
    print(f"matched low-quality model: {matched}")
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=1))
    if args.figure:
        _figure(curves, fid, ("good", "drop-5", matched), args.figure)


def _figure(curves: dict, fid: dict, shown: tuple[str, ...], path: str) -> None:
    from genbench.report.prd_plot import plot_prd_curves

    plot_prd_curves({f"{m}, FID {fid[m]:.1f}": (curves[m]["precision"], curves[m]["recall"])
                     for m in shown}, path,
                    title="Fashion-MNIST: similar FID, different failure")


if __name__ == "__main__":
    main()
