"""CAS: deterministic, resumable training; the score against a cached real baseline; inputs
with missing, foreign or absent labels; the CLI. Small data (sklearn digits, 8×8) and a
narrow network, so each training takes seconds."""

import json

import numpy as np
import pytest
import torch

from genbench.cas import LabelledImages, classification_accuracy_score, load_labelled
from genbench.cas.networks import ResNet50
from genbench.cas.recipes import RECIPES, recipe_for
from genbench.cas.train import evaluate_classifier, train_classifier
from genbench.cli import main
from genbench.errors import GenbenchError

TINY = {"epochs": 3, "width": 8, "batch_size": 64, "lr": 0.2, "crop_padding": 1,
        "flip": False}


@pytest.fixture(scope="module")
def digits():
    data = load_labelled("digits", "digits", progress=False)
    order = torch.from_numpy(np.random.default_rng(0).permutation(len(data)))
    train_idx, test_idx = order[:1300], order[1300:]

    def part(idx, name):
        return LabelledImages(data.images[idx], data.labels[idx], name,
                              f"{data.fingerprint}:{name}", class_names=data.class_names)
    return part(train_idx, "digits-train"), part(test_idx, "digits-test")


def _subset(data: LabelledImages, keep: np.ndarray, name: str) -> LabelledImages:
    idx = torch.from_numpy(np.flatnonzero(keep))
    return LabelledImages(data.images[idx], data.labels[idx], name, f"{data.fingerprint}:{name}")


def test_training_is_deterministic_and_resumes_exactly(digits, tmp_path):
    train, test = digits
    recipe = RECIPES["small-resnet"].with_options(**TINY)
    a = train_classifier(train, recipe, 10, seed=1, progress=False)
    b = train_classifier(train, recipe, 10, seed=1, progress=False)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name

    class Crash(Exception):
        pass

    def crash_after_first(epoch):
        if epoch == 1:
            raise Crash

    with pytest.raises(Crash):
        train_classifier(train, recipe, 10, seed=1, progress=False,
                         checkpoint_dir=tmp_path, on_epoch_end=crash_after_first)
    epochs_run = []
    resumed = train_classifier(train, recipe, 10, seed=1, progress=False,
                               checkpoint_dir=tmp_path, on_epoch_end=epochs_run.append)
    assert epochs_run == [2, 3]  # epoch 1 came from the checkpoint
    for (name, pa), pr in zip(a.state_dict().items(), resumed.state_dict().values(),
                              strict=True):
        assert torch.equal(pa, pr), name
    acc = evaluate_classifier(a, test, recipe, 10)
    assert acc.top1 > 0.8 and acc.top5 >= acc.top1 and sum(acc.counts) == len(test)


def test_cas_with_dropped_classes(digits, fresh_cache, tmp_path):
    train, test = digits
    keep = ~np.isin(train.labels.numpy(), [2, 5, 7])
    samples = _subset(train, keep, "drop-3")
    record = classification_accuracy_score(
        samples, real_train=train, real_test=test, recipe="small-resnet",
        recipe_options=TINY, seed=0, out_dir=tmp_path / "out", progress=False)
    per_class = {r["class"]: r for r in record["per_class"]}
    for c in (2, 5, 7):
        assert per_class[c]["train_samples"] == 0
        assert per_class[c]["cas"] <= 0.02
        assert per_class[c]["real"] > 0.6
    assert set(record["worst_classes"][:3]) == {"2", "5", "7"}
    assert record["real_baseline"]["top1"] > 0.8
    expected_gap = 100 * (record["cas"]["top1"] - record["real_baseline"]["top1"])
    assert record["gap"]["top1_points"] == pytest.approx(expected_gap)
    assert record["gap"]["top1_points"] < -20  # three of ten classes lost
    assert any("no samples of class(es) 2, 5, 7" in n for n in record["notes"])
    saved = json.loads((tmp_path / "out" / "cas.json").read_text())
    assert saved["cas"] == record["cas"]
    assert (tmp_path / "out" / "cas_per_class.png").stat().st_size > 1000

    # the real baseline is cached once per real data, recipe and seed
    baselines = list((fresh_cache / "cas" / "baseline").glob("*/result.json"))
    assert len(baselines) == 1
    again = classification_accuracy_score(
        train, real_train=train, real_test=test, recipe="small-resnet", recipe_options=TINY,
        seed=0, progress=False)
    assert again["real_baseline"] == record["real_baseline"]
    # samples identical to the real training set: same classifier, no gap
    assert again["gap"]["top1_points"] == pytest.approx(0.0)


def test_conditional_generator_draws_matched_counts(digits, fresh_cache):
    """A class-conditional Generator (the one generator contract): image i comes from seed i
    and label i, so the draw is reproducible and, with an identity, cached."""
    from genbench.generators import FunctionGenerator

    train, test = digits
    pools = {c: train.images[train.labels == c] for c in range(10)}
    calls = []

    def sample(seeds, labels):
        calls.append(len(seeds))
        return torch.stack([pools[int(c)][np.random.default_rng(int(s)).integers(
            len(pools[int(c)]))] for s, c in zip(seeds, labels, strict=True)])

    gen = FunctionGenerator(sample, num_classes=10, identity="pool-picker-v1")
    record = classification_accuracy_score(
        gen, real_train=train, real_test=test, recipe="small-resnet",
        recipe_options=TINY, progress=False)
    assert record["num_samples"] == len(train)
    for row in record["per_class"]:
        assert row["train_samples"] == row["real_train"]
    assert record["cas"]["top1"] > 0.6
    assert any("image i from seed i" in n for n in record["notes"])
    drawn = sum(calls)
    again = classification_accuracy_score(
        gen, real_train=train, real_test=test, recipe="small-resnet",
        recipe_options=TINY, progress=False)
    assert again["cas"] == record["cas"]  # same seeds, same images: the cached run
    assert again["samples_train_seconds"] == record["samples_train_seconds"]
    assert sum(calls) == 2 * drawn
    per = classification_accuracy_score(
        gen, real_train=train, real_test=test, recipe="small-resnet",
        recipe_options={**TINY, "epochs": 1}, per_class=7, progress=False)
    assert per["num_samples"] == 70
    with pytest.raises(GenbenchError, match=r"CAS samples: expected a genbench Generator.*"
                                            "FunctionGenerator"):
        classification_accuracy_score(sample, real_train=train, real_test=test,
                                      recipe="small-resnet", progress=False)


def test_bad_inputs(digits, fresh_cache, tmp_path):
    train, test = digits
    kwargs = {"real_train": train, "real_test": test, "recipe": "small-resnet",
              "recipe_options": {**TINY, "epochs": 1}, "progress": False}
    np.savez(tmp_path / "nolabels.npz", np.zeros((10, 8, 8, 3), np.uint8))
    with pytest.raises(GenbenchError, match=r"nolabels\.npz.*has no labels"):
        classification_accuracy_score(str(tmp_path / "nolabels.npz"), **kwargs)
    np.savez(tmp_path / "foreign.npz", np.zeros((10, 8, 8, 3), np.uint8),
             np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 12]))
    with pytest.raises(GenbenchError, match=r"label\(s\) 12 are not classes"):
        classification_accuracy_score(str(tmp_path / "foreign.npz"), **kwargs)
    folder = tmp_path / "classes"
    for name in ("3", "bogus"):
        (folder / name).mkdir(parents=True)
        from PIL import Image
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / name / "a.png")
    with pytest.raises(GenbenchError, match="sub-folder 'bogus' is neither"):
        classification_accuracy_score(str(folder), **kwargs)
    with pytest.raises(GenbenchError, match="unknown CAS recipe 'big'"):
        classification_accuracy_score(train, **{**kwargs, "recipe": "big"})


def test_size_mismatch_is_resized_and_said(digits, fresh_cache, tmp_path):
    train, test = digits
    big = LabelledImages(torch.nn.functional.interpolate(train.images[:200].float(), size=16)
                         .round().to(torch.uint8), train.labels[:200], "big", "big-v1")
    record = classification_accuracy_score(
        big, real_train=train, real_test=test, recipe="small-resnet",
        recipe_options={**TINY, "epochs": 1}, progress=False)
    assert any("16×16, resized to 8×8" in n for n in record["notes"])


def test_cli_cas(digits, fresh_cache, tmp_path, capsys):
    train, test = digits
    for data, name in ((train, "train"), (test, "test")):
        np.savez(tmp_path / f"{name}.npz", data.images.permute(0, 2, 3, 1).numpy(),
                 data.labels.numpy())
    assert main(["cas", str(tmp_path / "train.npz"), "--real-train", str(tmp_path / "train.npz"),
                 "--real-test", str(tmp_path / "test.npz"), "--recipe", "small-resnet",
                 "--epochs", "1", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "CAS   top-1" in out and "worst classes:" in out
    assert main(["cas", str(tmp_path / "train.npz"), "--real-train", str(tmp_path / "train.npz"),
                 "--real-test", str(tmp_path / "test.npz"), "--nas", "x"]) == 2
    assert "--nas must be comma-separated" in capsys.readouterr().err


def test_recipes():
    assert recipe_for("auto", 28).name == "small-resnet"
    assert recipe_for("auto", 224).name == "resnet50"
    with pytest.raises(GenbenchError, match="unknown recipe option"):
        RECIPES["small-resnet"].with_options(depth=3)
    net = ResNet50(1000)
    assert sum(p.numel() for p in net.parameters()) == 25_557_032  # as torchvision's
    assert net(torch.zeros(2, 3, 64, 64)).shape == (2, 1000)


def test_naive_augmentation_score(digits, fresh_cache):
    """NAS trains on the real set plus p % extra synthetic examples of every class."""
    from genbench.cas.score import _augmented

    train, test = digits
    keep = ~np.isin(train.labels.numpy(), [2, 5, 7])
    samples = _subset(train, keep, "drop-3")
    mixed = _augmented(train, samples, 50, 10, seed=0)
    counts = train.counts(10)
    extra = mixed.counts(10) - counts
    for c in range(10):
        assert extra[c] == (0 if c in (2, 5, 7) else round(counts[c] * 0.5)), c
    record = classification_accuracy_score(
        samples, real_train=train, real_test=test, recipe="small-resnet",
        recipe_options=TINY, nas=(50,), progress=False)
    assert 0.6 < record["nas"]["50"]["top1"] <= 1.0
    with pytest.raises(GenbenchError, match="NAS percentages must be positive"):
        _augmented(train, samples, 0, 10, seed=0)
