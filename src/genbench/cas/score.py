"""Classification Accuracy Score (Ravuri & Vinyals 2019): train a classifier only on
class-conditional samples, test it on real held-out data, and compare with the same recipe
trained on the real training set (the baseline, cached once per real data set, recipe and
seed)."""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from genbench import __version__, distributed
from genbench.cas.data import LabelledImages, load_labelled, matched_labels
from genbench.cas.recipes import Recipe, recipe_for
from genbench.cas.train import Accuracy, evaluate_classifier, train_classifier
from genbench.devices import resolve_device
from genbench.errors import GenbenchError
from genbench.fileio import cache_dir, verified, write_digest
from genbench.generators import Generator, SeededSource, as_generator
from genbench.report.outputs import check_out_dir, try_plot, write_json
from genbench.resolve import ResolveOptions, resolve_input
from genbench.sources import ImageSource

CAS_CACHE_VERSION = 2
WORST_CLASSES = 5


def _key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _train_and_test(train: LabelledImages, test: LabelledImages, recipe: Recipe,
                    num_classes: int, seed: int, device, run_dir: Path | None, progress: bool,
                    desc: str, on_epoch_end=None) -> tuple[Accuracy, float]:
    """(accuracy on ``test``, training seconds); reuses ``run_dir``'s finished result."""
    result = run_dir / "result.json" if run_dir is not None else None
    if result is not None and verified(result):  # a damaged one is set aside
        saved = json.loads(result.read_text())
        return Accuracy(**saved["accuracy"]), saved["train_seconds"]
    start = time.perf_counter()
    net = train_classifier(train, recipe, num_classes, seed=seed, device=device,
                           checkpoint_dir=run_dir, progress=progress, desc=desc,
                           on_epoch_end=on_epoch_end)
    seconds = time.perf_counter() - start
    accuracy = evaluate_classifier(net, test, recipe, num_classes, device)
    if result is not None and distributed.current().is_main:
        try:
            write_json(result, {"accuracy": accuracy.to_dict(), "train_seconds": seconds})
            write_digest(result)
        except OSError as exc:
            warnings.warn(f"{result}: cannot cache the result ({exc.strerror or exc}); it "
                          "will be trained again next time", stacklevel=2)
    return accuracy, seconds


def _real_classes(train: LabelledImages, test: LabelledImages) -> int:
    """The number of classes of the real data, checked before any training: the training
    set's labels must be 0..K-1 with every class present (K = len(class names) when the data
    name its classes), and the test set's must be among them."""
    labels = train.labels.numpy()
    if labels.min() < 0:
        raise GenbenchError(f"real train {train.name}: negative label(s) "
                            f"{', '.join(map(str, np.unique(labels[labels < 0])[:10]))}; "
                            "classes are numbered 0..K-1")
    k = len(train.class_names) if train.class_names else int(labels.max()) + 1
    counts = np.bincount(labels, minlength=k)
    if len(counts) > k:
        raise GenbenchError(f"real train {train.name}: label(s) "
                            f"{', '.join(map(str, np.unique(labels[labels >= k])[:10]))} "
                            f"beyond its {k} named classes")
    absent = np.flatnonzero(counts == 0)
    if len(absent):
        shown = ", ".join(map(str, absent[:10])) + (" ..." if len(absent) > 10 else "")
        raise GenbenchError(f"real train {train.name}: no examples of class(es) {shown} among "
                            f"labels 0..{k - 1}; a stray label? classes must be numbered "
                            "0..K-1, every one present in the training set")
    test_labels = test.labels.numpy()
    stray = np.unique(test_labels[(test_labels < 0) | (test_labels >= k)])
    if len(stray):
        raise GenbenchError(f"real test {test.name}: label(s) {', '.join(map(str, stray[:10]))}"
                            f" are not classes of the real training set (0..{k - 1})")
    return k


def _check_labels(samples: LabelledImages, num_classes: int, class_names) -> list[str]:
    labels = samples.labels.numpy()
    bad = np.unique(labels[(labels < 0) | (labels >= num_classes)])
    if len(bad):
        raise GenbenchError(f"{samples.name}: label(s) {', '.join(map(str, bad[:10]))} are not "
                            f"classes of the real data (0..{num_classes - 1})")
    missing = [int(c) for c in np.flatnonzero(samples.counts(num_classes) == 0)]
    if not missing:
        return []
    names = [class_names[c] if class_names else str(c) for c in missing]
    return [f"{samples.name}: no samples of class(es) {', '.join(names)}; the classifier never "
            "saw them (their CAS accuracy is expected to be 0 %)"]


def _resolved(spec, role: str) -> LabelledImages | ImageSource | Generator:
    """A CAS input as the resolver reads it (folders labelled by sub-folder): labelled
    images, an image source, or a (class-conditional) generator."""
    if isinstance(spec, LabelledImages):
        return spec
    if callable(spec) and not isinstance(spec, Generator):
        as_generator(spec, f"CAS {role}")  # a plain function: say how to wrap it
    resolved = resolve_input(spec, ResolveOptions(with_labels=True))
    if resolved.generator is not None:
        return resolved.generator
    if resolved.source is None:
        raise GenbenchError(f"{role} {resolved.label}: holds {resolved.kind}, not labelled "
                            "images")
    return resolved.source


def _relative(value: float, baseline: float) -> float | None:
    return (value - baseline) / baseline if baseline else None


def classification_accuracy_score(
        samples: str | os.PathLike | LabelledImages | Generator, *,
        real_train: str | os.PathLike | LabelledImages,
        real_test: str | os.PathLike | LabelledImages,
        recipe: str = "auto", recipe_options: dict | None = None, seed: int = 0,
        per_class: int | None = None, nas: tuple[int, ...] = (), device: str = "auto",
        out_dir: str | os.PathLike | None = None, use_cache: bool = True,
        progress: bool = True, on_epoch_end=None) -> dict:
    """CAS of ``samples``: labelled images (a class-folder tree, an ADM .npz with labels, a
    LabelledImages) or a class-conditional ``Generator`` (or a ``python:module:name`` spec
    of one), asked for image i with seed i and label i of the real training set's labels
    (per-class counts matched, shuffled with ``seed``), or of ``per_class`` per class.
    Returns the JSON record: top-1/top-5 on ``real_test`` of the recipe trained on the
    samples and on ``real_train`` (baseline), the gap, per-class accuracies, the classes that
    fail worst, and with ``nas`` the Naive Augmentation Score (real + p % synthetic per
    class). With ``out_dir``: ``cas.json`` first, then ``cas_per_class.png`` when matplotlib
    is installed."""
    start = time.perf_counter()
    notes: list[str] = []
    device = resolve_device(device)
    check_out_dir(out_dir)
    # every input is resolved before any is loaded: a bad one stops the run at once
    samples_in = _resolved(samples, "samples")
    train_in, test_in = _resolved(real_train, "real train"), _resolved(real_test, "real test")
    for role, given in (("real train", train_in), ("real test", test_in)):
        if isinstance(given, Generator):
            raise GenbenchError(f"{role}: a generator cannot be the real data")
    train = train_in if isinstance(train_in, LabelledImages) else \
        load_labelled(train_in, "real train", progress)
    test = test_in if isinstance(test_in, LabelledImages) else \
        load_labelled(test_in, "real test", progress)
    class_names = train.class_names
    num_classes = _real_classes(train, test)
    if test.size != train.size:
        test = test.resized(train.size)
    recipe_obj = recipe_for(recipe, min(train.size)).with_options(**(recipe_options or {}))
    if isinstance(samples_in, Generator):
        labels = matched_labels(train, per_class, num_classes, seed)
        synth = load_labelled(SeededSource(samples_in, len(labels), labels=labels,
                                           batch_size=256), "samples", progress)
        notes.append(f"drew {len(labels)} samples (image i from seed i): " + (
            f"{per_class} per class" if per_class else
            "the real training set's per-class counts"))
    elif isinstance(samples_in, LabelledImages):
        synth = samples_in
    else:
        synth = load_labelled(samples_in, "samples", progress,
                              class_names or tuple(str(c) for c in range(num_classes)))
    if synth.size != train.size:
        synth = synth.resized(train.size)
    notes += synth.notes + test.notes
    notes += _check_labels(synth, num_classes, class_names)

    base = cache_dir() / "cas" if use_cache else None
    common = (CAS_CACHE_VERSION, recipe_obj.to_dict(), seed, num_classes, train.size,
              test.fingerprint)

    def run_dir(kind: str, fingerprint: str | None) -> Path | None:
        # without a content key there is nothing to tell this run's inputs from another's:
        # no result or checkpoint is reused (give a generator an identity to cache it)
        if base is None or fingerprint is None or test.fingerprint is None:
            return None
        return base / kind / _key(*common, fingerprint)

    real_acc, real_seconds = _train_and_test(
        train, test, recipe_obj, num_classes, seed, device,
        run_dir("baseline", train.fingerprint), progress, "real", on_epoch_end)
    if synth.fingerprint is not None and synth.fingerprint == train.fingerprint:
        cas_acc, cas_seconds = real_acc, real_seconds  # the samples are the real train set
        notes.append("the samples are the real training set: CAS is the baseline")
    else:
        cas_acc, cas_seconds = _train_and_test(
            synth, test, recipe_obj, num_classes, seed, device,
            run_dir("samples", synth.fingerprint), progress, "samples", on_epoch_end)

    nas_results = {}
    for pct in nas:
        mixed = _augmented(train, synth, pct, num_classes, seed)
        acc, _ = _train_and_test(mixed, test, recipe_obj, num_classes, seed, device,
                                 run_dir("nas", mixed.fingerprint), progress, f"nas {pct}%")
        nas_results[str(pct)] = {"top1": acc.top1, "top5": acc.top5}

    per_class_rows = []
    synth_counts, train_counts = synth.counts(num_classes), train.counts(num_classes)
    for c in range(num_classes):
        cas_c, real_c = cas_acc.per_class[c], real_acc.per_class[c]
        per_class_rows.append({
            "class": c, "name": class_names[c] if class_names else str(c),
            "train_samples": int(synth_counts[c]),
            "real_train": int(train_counts[c]), "test": real_acc.counts[c],
            "cas": cas_c, "real": real_c,
            "gap": None if cas_c is None or real_c is None else cas_c - real_c})
    ranked = sorted((r for r in per_class_rows if r["gap"] is not None),
                    key=lambda r: (r["gap"], r["cas"]))
    record = {
        "metric": "cas", "samples": synth.name, "real_train": train.name,
        "real_test": test.name, "num_samples": len(synth), "num_classes": num_classes,
        "cas": {"top1": cas_acc.top1, "top5": cas_acc.top5, "top5_k": cas_acc.top5_k},
        "real_baseline": {"top1": real_acc.top1, "top5": real_acc.top5,
                          "train_seconds": real_seconds},
        "gap": {"top1_points": 100 * (cas_acc.top1 - real_acc.top1),
                "top1_relative": _relative(cas_acc.top1, real_acc.top1),
                "top5_points": 100 * (cas_acc.top5 - real_acc.top5),
                "top5_relative": _relative(cas_acc.top5, real_acc.top5)},
        "per_class": per_class_rows,
        "worst_classes": [r["name"] for r in ranked[:WORST_CLASSES]],
        "recipe": recipe_obj.to_dict(), "seed": seed, "device": str(device),
        "samples_train_seconds": cas_seconds, "seconds": time.perf_counter() - start,
        "notes": notes, "genbench_version": __version__,
    }
    if nas_results:
        record["nas"] = nas_results
    if out_dir is not None and distributed.current().is_main:
        out = Path(out_dir)
        write_json(out / "cas.json", record)  # the result first; the plot is an extra
        from genbench.report.cas_plot import plot_cas_per_class

        try_plot(lambda path: plot_cas_per_class(record, path), out / "cas_per_class.png",
                 record)
        write_json(out / "cas.json", record)  # now with the plot or the note of its absence
    return record


def _augmented(train: LabelledImages, synth: LabelledImages, pct: int, num_classes: int,
               seed: int) -> LabelledImages:
    """Real training set plus ``pct`` % extra synthetic examples per class (NAS)."""
    if pct <= 0:
        raise GenbenchError(f"NAS percentages must be positive, got {pct}")
    rng = np.random.default_rng(seed)
    labels = synth.labels.numpy()
    picks = []
    for c, n_real in enumerate(train.counts(num_classes)):
        pool = np.flatnonzero(labels == c)
        want = round(n_real * pct / 100)
        if len(pool) and want:
            picks.append(rng.choice(pool, want, replace=want > len(pool)))
    idx = torch.from_numpy(np.concatenate(picks)) if picks else torch.zeros(0, dtype=torch.long)
    fp = _key(train.fingerprint, synth.fingerprint, pct, seed) \
        if train.fingerprint and synth.fingerprint else None
    return LabelledImages(torch.cat([train.images, synth.images[idx]]),
                          torch.cat([train.labels, synth.labels[idx]]),
                          f"{train.name} + {pct}% {synth.name}", fp)
