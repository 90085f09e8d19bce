"""CAS vs FID on Fashion-MNIST with real data standing in for generators.

Classifier: the ``small-resnet`` recipe (or ``--epochs``), seed 0, trained on CPU; tested on the
10,000 real test images. "Models" (each a labelled training set, all from the 60,000 real
training images, so no generator is trained):

* ``real``: the training set itself: CAS equals the real baseline by construction;
* ``drop-3``: classes 0 (T-shirt/top), 4 (coat) and 8 (bag) removed;
* ``shuffle-20``: 20 % of the labels replaced by uniformly random other classes (seeded);
* ``blur``: every image Gaussian-blurred (PIL radius ``--blur``), as the low-quality models
  of bench/fashion_mnist_prd_demo.py.

FID (``tf`` protocol, real TF-FID Inception) of each model's images against the first
``--fid-n`` test images, on ``--fid-n`` images drawn with the PRD demo's seeded permutation (so
the blurred and clean sets' features are shared with that demo's cache).

    .venv/bin/python bench/cas_fashion_mnist.py --json bench/results/cas_fashion_mnist.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from genbench.api import compute_fid
from genbench.cas import LabelledImages, classification_accuracy_score, load_labelled
from genbench.sources import ArraySource

DROPPED = (0, 4, 8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--blur", type=float, default=1.0)
    parser.add_argument("--fid-n", type=int, default=1000)
    parser.add_argument("--models", default="real,drop-3,shuffle-20,blur")
    parser.add_argument("--train-subset", type=int, default=None,
                        help="use this many training images (seeded) for every model")
    parser.add_argument("--json")
    parser.add_argument("--out", default=None, help="per-model plots under this folder")
    args = parser.parse_args()
    import sys
    sys.path.insert(0, str(Path(__file__).parent))
    from fashion_mnist_prd_demo import degrade

    train = load_labelled("fashion-mnist:train", "real train")
    test = load_labelled("fashion-mnist:test", "real test")
    rng = np.random.default_rng(0)
    order = rng.permutation(len(train))  # as fashion_mnist_prd_demo.py with seed 0
    if args.train_subset:  # the first images of that order: FID sets stay the demo's
        sub = torch.from_numpy(np.sort(order[:args.train_subset]))
        train = LabelledImages(train.images[sub], train.labels[sub],
                               f"fashion-mnist:train[{args.train_subset} seeded]",
                               f"{train.fingerprint}:subset{args.train_subset}",
                               class_names=train.class_names)
        position = {int(i): k for k, i in enumerate(sub.tolist())}
        order = np.array([position[int(i)] for i in order[:args.train_subset]])
    gray = train.images[:, 0].numpy()
    labels = train.labels.numpy()

    def labelled(images: np.ndarray, lab: np.ndarray, name: str) -> LabelledImages:
        x = torch.from_numpy(np.repeat(images[:, None], 3, axis=1))
        return LabelledImages(x, torch.from_numpy(lab), name, f"fmnist-bench:{name}:v1",
                              class_names=train.class_names)

    shuffled = labels.copy()
    flip = np.random.default_rng(1).random(len(labels)) < 0.2
    shuffled[flip] = (labels[flip] + np.random.default_rng(2).integers(1, 10, flip.sum())) % 10
    keep = ~np.isin(labels, DROPPED)
    kept_order = order[keep[order]]
    models = {  # (training set, images for FID)
        "real": (lambda: train, lambda n: gray[order[:n]]),
        "drop-3": (lambda: labelled(gray[keep], labels[keep], "drop-3"),
                   lambda n: gray[kept_order[:n]]),
        "shuffle-20": (lambda: labelled(gray, shuffled, "shuffle-20"),
                       lambda n: gray[order[:n]]),
        "blur": (lambda: labelled(degrade(gray, args.blur, 0), labels, f"blur-{args.blur:g}"),
                 lambda n: degrade(gray[order[:n]], args.blur, 0)),
    }
    results = {}
    for name in args.models.split(","):
        make, fid_images = models[name]
        data = make()
        t0 = time.perf_counter()
        record = classification_accuracy_score(
            data, real_train=train, real_test=test, recipe="small-resnet",
            recipe_options={"epochs": args.epochs}, seed=0,
            out_dir=Path(args.out) / name if args.out else None)
        cas_seconds = time.perf_counter() - t0
        fid = compute_fid(ArraySource(fid_images(args.fid_n), name=name), "fashion-mnist:test",
                          num_images=args.fid_n)
        results[name] = {
            "cas_top1": record["cas"]["top1"], "cas_top5": record["cas"]["top5"],
            "real_top1": record["real_baseline"]["top1"],
            "gap_top1_points": record["gap"]["top1_points"],
            "gap_top1_relative": record["gap"]["top1_relative"],
            "real_baseline_train_seconds": record["real_baseline"]["train_seconds"],
            "samples_train_seconds": record["samples_train_seconds"],
            "cas_seconds_total": cas_seconds,
            "per_class_cas": {r["name"]: r["cas"] for r in record["per_class"]},
            "per_class_real": {r["name"]: r["real"] for r in record["per_class"]},
            "worst_classes": record["worst_classes"], "fid": fid.fid,
            "fid_images": args.fid_n, "recipe": record["recipe"], "notes": record["notes"]}
        r = results[name]
        print(f"{name:11s} CAS top-1 {100 * r['cas_top1']:6.2f} %  real {100 * r['real_top1']:6.2f}"
              f" %  gap {r['gap_top1_points']:+6.2f} pts  FID {r['fid']:7.2f}  "
              f"worst {', '.join(r['worst_classes'][:3])}", flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
