"""Hostile and careless inputs: a damaged cache, impossible statistics, bad labels, outputs
that cannot be written. Each gives the right number or one clear error, and the cache is
right afterwards."""

import errno
import json
import os
import stat

import numpy as np
import pytest
import torch

from genbench import ExtractionConfig
from genbench.api import compute_fid, evaluate
from genbench.cli import main
from genbench.errors import BadImageError, GenbenchError
from genbench.extractors import EXTRACTORS
from genbench.features import extract_statistics
from genbench.protocols import get_protocol
from genbench.sources import ArraySource, ImageFolderSource
from genbench.stats import FeatureStatistics, load_statistics

OPTS = {"extractor": "tiny-test", "batch_size": 10, "progress": False}


def _run(source, **kw):
    kw.setdefault("chunk_size", 10)
    return extract_statistics(source, get_protocol("tf"), EXTRACTORS["tiny-test"](),
                              batch_size=10, progress=False, **kw)


def _flip(path, offset=None):
    data = bytearray(path.read_bytes())
    data[len(data) // 2 if offset is None else offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.fixture
def images():
    return np.random.default_rng(7).integers(0, 256, (40, 9, 9, 3), dtype=np.uint8)


# --- the cache ----------------------------------------------------------------------------

def test_damaged_chunk_is_set_aside_and_recomputed(fresh_cache, images):
    clean = _run(ArraySource(images), use_cache=False)
    first = _run(ArraySource(images))
    entry = first.cache_entry
    chunk = entry / "chunk-000001.npz"
    _flip(chunk)
    # statistics alone come from the intact stats.npz; the chunks are checked when read
    assert _run(ArraySource(images)).statistics.sigma.tolist() == \
        first.statistics.sigma.tolist()
    with pytest.warns(UserWarning, match=r"chunk-000001\.npz: does not match its recorded"):
        again = _run(ArraySource(images), keep_features=True)
    assert again.extracted == 10  # only the damaged chunk
    np.testing.assert_allclose(again.statistics.sigma, clean.statistics.sigma, rtol=1e-12)
    assert (entry / "chunk-000001.npz.corrupt").is_file()
    third = _run(ArraySource(images))  # and the repaired entry is used as it is
    assert third.extracted == 0
    np.testing.assert_array_equal(third.statistics.sigma, again.statistics.sigma)


@pytest.mark.parametrize("damage", ["meta.json", "stats.npz", "garbage meta.json"])
def test_damaged_meta_or_statistics_recomputed_without_traceback(fresh_cache, images, damage):
    first = _run(ArraySource(images))  # 40 images >= 32 dimensions: statistics are stored
    entry = first.cache_entry
    if damage.startswith("garbage"):
        (entry / "meta.json").write_text("{not json")
    else:
        _flip(entry / damage, offset=20)
    with pytest.warns(UserWarning, match="does not match its recorded sha256"):
        again = _run(ArraySource(images))
    assert again.extracted == 0  # every chunk was intact: statistics recomputed from them
    np.testing.assert_allclose(again.statistics.mu, first.statistics.mu, rtol=1e-12)
    np.testing.assert_allclose(again.statistics.sigma, first.statistics.sigma, rtol=1e-12)
    assert _run(ArraySource(images)).extracted == 0


def test_statistics_of_few_images_are_not_stored(fresh_cache, images):
    small = _run(ArraySource(images[:12]))  # 12 < 32 dimensions: the features are smaller
    assert not (small.cache_entry / "stats.npz").exists()
    again = _run(ArraySource(images[:12]))
    np.testing.assert_allclose(again.statistics.sigma, small.statistics.sigma, rtol=1e-12)
    assert (_run(ArraySource(images)).cache_entry / "stats.npz").is_file()


def test_unwritable_cache_runs_uncached_with_one_warning(fresh_cache, images, monkeypatch,
                                                         image_sets):
    def full_disk(path, digest=None):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr("genbench.store.write_digest", full_disk)
    clean = _run(ArraySource(images), use_cache=False)
    with pytest.warns(UserWarning, match="cannot write the cache.*continuing without"):
        run = _run(ArraySource(images), keep_features=True)
    assert run.cache_entry is None
    np.testing.assert_allclose(run.statistics.sigma, clean.statistics.sigma, rtol=1e-12)
    assert sum(len(f) for f in run.iter_features()) == 40
    a, b = image_sets
    with pytest.warns(UserWarning, match="cannot write the cache"):
        record = evaluate(a, b, metrics="fid,pr", **OPTS)
    assert 0 <= record["metrics"]["pr"]["precision"] <= 1


def test_skip_bad_entries_do_not_serve_strict_runs(fresh_cache, tmp_path, images):
    from PIL import Image

    for i in range(5):
        Image.fromarray(images[i]).save(tmp_path / f"{i}.png")
    (tmp_path / "2.png").write_bytes(b"\x89PNG broken")
    assert _run(ImageFolderSource(tmp_path), skip_bad=True).num_images == 4
    with pytest.raises(BadImageError, match=r"2\.png"):
        _run(ImageFolderSource(tmp_path))


def test_damaged_cas_result_is_retrained(fresh_cache):
    from genbench.cas import classification_accuracy_score, load_labelled

    data = load_labelled("digits", "digits", progress=False)
    kwargs = {"real_train": data, "real_test": data, "recipe": "small-resnet",
              "recipe_options": {"epochs": 1, "width": 8}, "progress": False}
    first = classification_accuracy_score(data, **kwargs)
    (result,) = (fresh_cache / "cas" / "baseline").glob("*/result.json")
    saved = json.loads(result.read_text())
    saved["accuracy"]["top1"] = 0.09  # a tampered result
    result.write_text(json.dumps(saved))
    with pytest.warns(UserWarning, match=r"result\.json: does not match its recorded"):
        again = classification_accuracy_score(data, **kwargs)
    assert again["real_baseline"]["top1"] == first["real_baseline"]["top1"] != 0.09


# --- statistics ---------------------------------------------------------------------------

def _stats(tmp_path, name, sigma, **meta):
    d = sigma.shape[0]
    path = tmp_path / name
    arrays = {"mu": np.zeros(d), "sigma": sigma, **meta}
    np.savez(path, **arrays)
    return path


def test_impossible_statistics_are_refused(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 6))
    sigma = np.cov(x, rowvar=False)
    cases = {
        "not_psd.npz": (sigma - 10 * np.eye(6), "not positive semi-definite"),
        "asymmetric.npz": (sigma + np.triu(np.ones((6, 6)), 1), "not symmetric"),
        "nan.npz": (np.full((6, 6), np.nan), "NaN or infinite"),
    }
    for name, (matrix, message) in cases.items():
        with pytest.raises(GenbenchError, match=message):
            load_statistics(_stats(tmp_path, name, matrix))
    with pytest.raises(GenbenchError, match="records 0 samples"):
        load_statistics(_stats(tmp_path, "n0.npz", sigma, num_samples=np.array(0)))
    low = load_statistics(_stats(tmp_path, "f32.npz", sigma.astype(np.float32)))
    assert any("float32, not float64" in n for n in low.extra["notes"])
    np.savez(tmp_path / "only_mu.npz", mu=np.zeros(3))
    with pytest.raises(GenbenchError, match="has 'mu' but no 'sigma'"):
        compute_fid(str(tmp_path / "only_mu.npz"), str(tmp_path / "only_mu.npz"))
    np.savez(tmp_path / "other.npz", weights=np.zeros(3))
    with pytest.raises(GenbenchError, match=r"neither images \(arr_0\) nor statistics"):
        compute_fid(str(tmp_path / "other.npz"), str(tmp_path / "other.npz"))


def test_fid_of_a_set_with_itself_is_zero_and_notes_say_what_was_assumed(tmp_path, capsys):
    x = np.random.default_rng(1).standard_normal((400, 5))
    path = _stats(tmp_path, "s.npz", np.cov(x, rowvar=False))
    assert main(["fid", str(path), str(path), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert 0.0 <= record["value"] < 1e-9
    assert any("does not record its network; assumed 'inception'" in n
               for n in record["notes"])
    assert main(["fid", str(path), str(path)]) == 0
    assert "FID 0.0000" in capsys.readouterr().out


def test_protocol_and_network_mismatches_name_the_file(fresh_cache, tmp_path, image_sets):
    a, _ = image_sets
    FeatureStatistics(np.zeros(32), np.eye(32), 40, "clean", "tiny-test:v1",
                      label="fashion-mnist:test").save(tmp_path / "ref.npz")
    with pytest.raises(GenbenchError, match=r"ref\.npz: statistics \(of fashion-mnist:test\) "
                                            "were computed with protocol 'clean'"):
        compute_fid(a, str(tmp_path / "ref.npz"), config=ExtractionConfig(**OPTS))
    FeatureStatistics(np.zeros(32), np.eye(32), 40, "tf", "inception-v3:other",
                      "0" * 64).save(tmp_path / "net.npz")
    with pytest.raises(GenbenchError, match=r"with extractor 'tiny-test:v1' but .*"
                                            r"'inception-v3:other'"):
        compute_fid(a, str(tmp_path / "net.npz"), config=ExtractionConfig(**OPTS))


# --- labels -------------------------------------------------------------------------------

def test_real_labels_are_checked_before_training(fresh_cache):
    from genbench.cas import LabelledImages, classification_accuracy_score, load_labelled

    data = load_labelled("digits", "digits", progress=False)
    kwargs = {"recipe": "small-resnet", "recipe_options": {"epochs": 1, "width": 8},
              "progress": False}
    stray = data.labels.clone()
    stray[5] = 1000
    bad_train = LabelledImages(data.images, stray, "stray")
    with pytest.raises(GenbenchError, match=r"real train stray: no examples of class\(es\) "
                                            r"10, 11, .* a stray label"):
        classification_accuracy_score(data, real_train=bad_train, real_test=data, **kwargs)
    negative = data.labels.clone()
    negative[0] = -1
    with pytest.raises(GenbenchError, match=r"negative label\(s\) -1"):
        classification_accuracy_score(data, real_train=LabelledImages(
            data.images, negative, "neg"), real_test=data, **kwargs)
    with pytest.raises(GenbenchError, match=r"real test neg: label\(s\) -1 are not classes"):
        classification_accuracy_score(data, real_train=data, real_test=LabelledImages(
            data.images, negative, "neg"), **kwargs)
    assert not (fresh_cache / "cas").exists()  # nothing was trained


# --- outputs ------------------------------------------------------------------------------

def test_outputs_are_checked_before_the_work(fresh_cache, tmp_path, image_sets, capsys):
    a, b = image_sets
    tiny = EXTRACTORS["tiny-test"]()
    (tmp_path / "taken").write_text("a file")
    with pytest.raises(GenbenchError, match="taken is a file, not a folder"):
        evaluate(a, b, out_dir=tmp_path / "taken", config=ExtractionConfig(extractor=tiny))
    with pytest.raises(GenbenchError, match="is a file, not a folder"):
        evaluate(a, b, out_dir=tmp_path / "taken" / "sub",
                 config=ExtractionConfig(extractor=tiny))
    assert tiny.calls == 0
    np.savez(tmp_path / "a.npz", a)
    (tmp_path / "folder.npz").mkdir()
    assert main(["stats", str(tmp_path / "a.npz"), "-o", str(tmp_path / "folder.npz"),
                 "--extractor", "tiny-test", "--force"]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_written_files_respect_the_umask(fresh_cache, tmp_path, image_sets):
    a, b = image_sets
    old = os.umask(0o022)
    try:
        evaluate(a, b, metrics="fid", out_dir=tmp_path / "out", **OPTS)
        FeatureStatistics(np.zeros(2), np.eye(2), 5).save(tmp_path / "s.npz")
    finally:
        os.umask(old)
    for path in (tmp_path / "out" / "result.json", tmp_path / "s.npz"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


def test_feature_arrays_give_no_torch_warnings(fresh_cache, tmp_path):
    rng = np.random.default_rng(2)
    np.save(tmp_path / "a.npy", rng.standard_normal((60, 4)).astype(np.float32))
    np.save(tmp_path / "b.npy", rng.standard_normal((60, 4)).astype(np.float32))
    record = evaluate(str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), metrics="fid,pr,kid",
                      progress=False)
    assert not [n for n in record["notes"] if "writable" in n]
    assert torch.isfinite(torch.tensor(record["metrics"]["fid"]["value"]))


def test_labels_must_be_class_indices(fresh_cache, tmp_path, image_sets):
    a, b = image_sets
    np.savez(tmp_path / "r.npz", b, np.repeat(np.arange(4), 10))
    np.savez(tmp_path / "half.npz", a, np.repeat(np.arange(4), 10) + 0.5)
    with pytest.raises(GenbenchError, match=r"half\.npz: labels must be whole numbers.*0\.5"):
        evaluate(str(tmp_path / "half.npz"), str(tmp_path / "r.npz"), per_class=True, **OPTS)
    np.savez(tmp_path / "neg.npz", a, np.repeat(np.arange(4), 10) - 1)
    with pytest.raises(GenbenchError, match=r"neg\.npz: negative label\(s\) -1"):
        evaluate(str(tmp_path / "neg.npz"), str(tmp_path / "r.npz"), per_class=True, **OPTS)
    np.savez(tmp_path / "whole.npz", a, np.repeat(np.arange(4), 10).astype(np.float32))
    record = evaluate(str(tmp_path / "whole.npz"), str(tmp_path / "r.npz"), metrics="fid",
                      per_class=True, **OPTS)
    assert set(record["per_class"]) == {"0", "1", "2", "3"}


def test_extractor_factories_get_the_options_they_take(fresh_cache, image_sets):
    """A factory written for the first documented options still works."""
    from genbench.extractors import register_extractor

    seen = {}

    def old_style(weights=None, device="cpu", compile="auto", batch_size=50):
        seen.update(weights=weights, batch_size=batch_size)
        return EXTRACTORS["tiny-test"]()

    register_extractor("old-style-test", old_style)
    a, b = image_sets
    record = evaluate(a, b, metrics="fid", extractor="old-style-test", batch_size=7,
                      progress=False)
    assert seen == {"weights": None, "batch_size": 7} and record["metrics"]["fid"]["value"] > 0


def test_cas_without_a_content_key_reuses_nothing(fresh_cache, tmp_path):
    """Two different unidentified generators with the same --out: the second is trained,
    not served the first one's result."""
    from genbench import FunctionGenerator
    from genbench.cas import classification_accuracy_score, load_labelled

    data = load_labelled("digits", "digits", progress=False)
    pools = {c: data.images[data.labels == c] for c in range(10)}

    def good(seeds, labels):
        return torch.stack([pools[int(c)][int(s) % len(pools[int(c)])]
                            for s, c in zip(seeds, labels, strict=True)])

    def wrong(seeds, labels):  # images of the next class: a useless model
        return good(seeds, (np.asarray(labels) + 1) % 10)

    kwargs = {"real_train": data, "real_test": data, "recipe": "small-resnet",
              "recipe_options": {"epochs": 2, "width": 8}, "progress": False,
              "out_dir": tmp_path / "out"}
    first = classification_accuracy_score(FunctionGenerator(good, num_classes=10), **kwargs)
    second = classification_accuracy_score(FunctionGenerator(wrong, num_classes=10), **kwargs)
    assert second["cas"]["top1"] < 0.2 < first["cas"]["top1"]


def test_fid_of_singular_high_dimensional_statistics_with_themselves():
    from genbench.metrics.fid import frechet_distance

    x = np.random.default_rng(3).standard_normal((100, 2048)) * 3.0  # N < d: singular
    mu, sigma = x.mean(0), np.cov(x, rowvar=False)
    value = frechet_distance(mu, sigma, mu, sigma)
    assert 0.0 <= value < 1e-6 * np.trace(sigma)
