"""The house the generators live in: one input resolver, seeded generator sources, the
Evaluation session, the registries, the extractor contract, and the defects a new user hit
(missing matplotlib, silent overwrites, the device default)."""

import json
import sys

import numpy as np
import pytest
import torch

from genbench import Evaluation, ExtractionConfig, FunctionGenerator, SeededSource
from genbench.api import compute_fid, evaluate
from genbench.cli import main
from genbench.errors import GenbenchError
from genbench.extractors import EXTRACTORS, ModuleExtractor
from genbench.metrics.fid import frechet_distance
from genbench.metrics.manifold import precision_recall
from genbench.protocols import get_protocol
from genbench.registry import Registry
from genbench.resolve import ResolveOptions, resolve_input
from genbench.stats import FeatureStatistics

OPTS = {"extractor": "tiny-test", "batch_size": 10, "progress": False}


def _features(images):
    ext = EXTRACTORS["tiny-test"]()
    return ext(get_protocol("tf")(torch.from_numpy(images).permute(0, 3, 1, 2))).double().numpy()


def _fid(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0),
                            np.cov(b, rowvar=False))


def noise_images(seeds, labels=None, size=12):
    """Image i from seed i alone: what a generator must guarantee."""
    out = np.stack([np.random.default_rng(int(s)).integers(0, 256, (3, size, size),
                                                            dtype=np.uint8) for s in seeds])
    if labels is not None:
        out[:, 0] = (np.asarray(labels)[:, None, None] * 25).astype(np.uint8)
    return out


# --- the resolver -----------------------------------------------------------------------

def test_resolver_names_every_kind(tmp_path, rng):
    images = rng.integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
    from PIL import Image
    (tmp_path / "pngs").mkdir()
    Image.fromarray(images[0]).save(tmp_path / "pngs" / "0.png")
    np.save(tmp_path / "feats.npy", rng.standard_normal((5, 4)).astype(np.float32))
    np.save(tmp_path / "imgs.npy", images)
    np.savez(tmp_path / "batch.npz", images)
    np.savez(tmp_path / "stats.npz", mu=np.zeros(4), sigma=np.eye(4))
    np.savez(tmp_path / "adm.npz", images, mu=np.zeros(4), sigma=np.eye(4))
    gen = FunctionGenerator(noise_images)
    kinds = {name: resolve_input(spec).kind for name, spec in {
        "feats": str(tmp_path / "feats.npy"), "imgs": str(tmp_path / "imgs.npy"),
        "batch": tmp_path / "batch.npz", "stats": tmp_path / "stats.npz",
        "adm": tmp_path / "adm.npz", "folder": tmp_path / "pngs", "dataset": "digits",
        "array": images, "feature-array": rng.standard_normal((5, 4)),
        "statistics-object": FeatureStatistics(np.zeros(2), np.eye(2)), "gen": gen,
    }.items()}
    assert kinds == {"feats": "features", "imgs": "images", "batch": "images",
                     "stats": "statistics", "adm": "adm-batch", "folder": "images",
                     "dataset": "images", "array": "images", "feature-array": "features",
                     "statistics-object": "statistics", "gen": "generator"}
    adm = resolve_input(tmp_path / "adm.npz")
    assert adm.statistics.dim == 4 and len(adm.source) == 6
    assert resolve_input(gen).source is None  # a generator needs a number of images
    assert len(resolve_input(gen, ResolveOptions(num_images=7)).source) == 7
    for bad, message in ((0, "positive"), (-3, "positive"), (9, "only 5 rows")):
        with pytest.raises(GenbenchError, match=message):
            resolve_input(str(tmp_path / "feats.npy"), ResolveOptions(num_images=bad))
    note = resolve_input(tmp_path / "stats.npz", ResolveOptions(num_images=3)).notes
    assert "does not apply to a statistics file" in note[0]
    with pytest.raises(GenbenchError, match=r"python:nosuchmodule:x: cannot import"):
        resolve_input("python:nosuchmodule:x")
    with pytest.raises(GenbenchError, match="is a int, not a genbench Generator"):
        resolve_input("python:genbench.features:CHUNK_SIZE")


def test_fid_and_eval_agree_on_feature_arrays(fresh_cache, tmp_path, rng, capsys):
    """The same .npy features mean the same thing to every command."""
    a = rng.standard_normal((200, 8)).astype(np.float32)
    b = (rng.standard_normal((200, 8)) * 1.3 + 0.2).astype(np.float32)
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    expected = _fid(a, b)
    assert main(["fid", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), "--json",
                 "--quiet"]) == 0
    fid = json.loads(capsys.readouterr().out)
    assert main(["eval", str(tmp_path / "a.npy"), "--ref", str(tmp_path / "b.npy"),
                 "--metrics", "fid", "--json", "--quiet"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert fid["value"] == ev["metrics"]["fid"]["value"]
    assert fid["value"] == pytest.approx(expected, rel=1e-9)
    assert [s["kind"] for s in fid["inputs"]] == ["features", "features"]
    assert fid["device"] == "cpu" == ev["device"]


def _adm_batch(tmp_path, images, stats_images, labels=None):
    feats = _features(stats_images)
    arrays = {"mu": feats.mean(0), "sigma": np.cov(feats, rowvar=False)}
    args = (images,) if labels is None else (images, labels)
    np.savez(tmp_path / "ref_batch.npz", *args, **arrays)
    return tmp_path / "ref_batch.npz", feats


def test_adm_batch_fid_from_stored_statistics_features_from_arr0(fresh_cache, tmp_path,
                                                                 monkeypatch):
    """As ADM's evaluator: FID against the stored mu/sigma (full-data statistics), the
    feature metrics against the batch's arr_0 images. The stored statistics are Inception
    statistics, so the test lets the tiny test network stand in for the Inception."""
    import genbench.evaluation as evaluation

    rng = np.random.default_rng(3)
    samples = rng.integers(0, 256, (40, 12, 12, 3), dtype=np.uint8)
    arr0 = rng.integers(0, 200, (30, 12, 12, 3), dtype=np.uint8)
    full = rng.integers(50, 256, (60, 12, 12, 3), dtype=np.uint8)  # "the whole data set"
    batch, full_feats = _adm_batch(tmp_path, arr0, full)
    monkeypatch.setattr(evaluation.Pipeline, "is_inception", property(lambda self: True))
    record = evaluate(samples, str(batch), metrics="fid,pr", **OPTS)
    fs, fa = _features(samples), _features(arr0)
    stored = _fid(fs, full_feats)
    assert record["metrics"]["fid"]["value"] == pytest.approx(stored, rel=1e-6)
    assert abs(stored - _fid(fs, fa)) > 0.05  # the two readings really differ
    pr = precision_recall(fa.astype(np.float32), fs.astype(np.float32), nearest_k=3)
    assert record["metrics"]["pr"]["precision"] == pytest.approx(pr.precision)
    assert record["metrics"]["pr"]["recall"] == pytest.approx(pr.recall)
    ref = record["inputs"]["reference"]
    assert ref["kind"] == "adm-batch" and ref["fid_statistics"] == "stored"
    assert ref["num_images"] == 30  # arr_0, extracted for the feature metrics
    assert any("FID from its stored mu/sigma" in n for n in record["notes"])
    fid_only = compute_fid(samples, str(batch), config=ExtractionConfig(**OPTS))
    assert fid_only.fid == pytest.approx(stored, rel=1e-6)
    assert fid_only.inputs[1].extracted == 0  # FID alone never reads arr_0

    first_n = evaluate(samples, str(batch), metrics="fid,pr", num_images=20, **OPTS)
    assert first_n["metrics"]["fid"]["value"] == pytest.approx(_fid(fs[:20], full_feats),
                                                               rel=1e-6)
    assert any("--num-images 20 applies to arr_0 only" in n for n in first_n["notes"])
    # the stored statistics are tf-protocol statistics: another protocol reads arr_0
    clean = evaluate(samples, str(batch), metrics="fid", protocol="clean", **OPTS)
    assert clean["inputs"]["reference"]["fid_statistics"] == "features"
    assert any("every metric uses features of its arr_0" in n for n in clean["notes"])

    monkeypatch.undo()  # a network that is not the Inception: everything from arr_0
    other = evaluate(samples, str(batch), metrics="fid", **OPTS)
    assert other["metrics"]["fid"]["value"] == pytest.approx(_fid(fs, fa), rel=1e-6)
    assert any("every metric uses features of its arr_0" in n for n in other["notes"])


def test_statistics_reference_runs_what_it_can(fresh_cache, tmp_path, image_sets):
    a, b = image_sets
    fb = _features(b)
    FeatureStatistics(fb.mean(0), np.cov(fb, rowvar=False), len(fb), "tf",
                      "tiny-test:v1").save(tmp_path / "ref.npz")
    record = evaluate(a, str(tmp_path / "ref.npz"), **OPTS)
    assert set(record["metrics"]) == {"fid"}
    assert "statistics only" in record["skipped_metrics"]["pr"]
    # IS reads only the samples: skipped here for the missing classifier, not the reference
    assert "classifier" in record["skipped_metrics"]["is"]
    with pytest.raises(GenbenchError, match=r"metric\(s\) pr need features"):
        evaluate(a, str(tmp_path / "ref.npz"), metrics="fid,pr", **OPTS)
    FeatureStatistics(fb.mean(0), np.cov(fb, rowvar=False), len(fb), "tf",
                      "other-net:v2").save(tmp_path / "other.npz")
    with pytest.raises(GenbenchError, match=r"with extractor 'tiny-test:v1'.*'other-net:v2'"):
        evaluate(a, str(tmp_path / "other.npz"), metrics="fid", **OPTS)


# --- generators by seed -----------------------------------------------------------------

def test_seeded_source_is_independent_of_batching_and_order():
    gen = FunctionGenerator(noise_images, identity="noise-v1")
    whole = SeededSource(gen, 10, batch_size=10).load_many(range(10))
    pieces = SeededSource(gen, 10, batch_size=3)
    assert all(np.array_equal(x, y) for x, y in zip(whole, pieces.load_many(range(10)),
                                                    strict=True))
    assert np.array_equal(pieces.load(7), whole[7])
    assert SeededSource(gen, 10).fingerprint() == SeededSource(gen, 10).fingerprint()
    assert SeededSource(gen, 10, seed=5).fingerprint() != SeededSource(gen, 10).fingerprint()
    assert SeededSource(FunctionGenerator(noise_images), 10).fingerprint() is None
    cond = FunctionGenerator(noise_images, num_classes=4, identity="noise-v1")
    assert list(SeededSource(cond, 6).labels) == [0, 1, 2, 3, 0, 1]
    with pytest.raises(GenbenchError, match=r"labels must lie in 0\.\.3"):
        SeededSource(cond, 2, labels=[0, 4])
    bad = FunctionGenerator(lambda s, lab: np.zeros((len(s), 8, 8, 3), np.float32))
    with pytest.raises(GenbenchError, match="must return uint8 N×3×H×W"):
        SeededSource(bad, 2).load_many([0, 1])


def test_evaluation_scores_a_generator_every_n_steps(fresh_cache, image_sets):
    """A training loop's evaluator: the reference is read and the extractor built once;
    each score draws the same seeds, so a changed model is the only thing that changes."""
    _, b = image_sets
    ev = Evaluation(b, metrics="fid,pr", config=ExtractionConfig(**OPTS))
    extractor = ev.pipeline.extractor
    state = {"shift": 0}

    def model(seeds, labels):
        return np.clip(noise_images(seeds).astype(int) + state["shift"], 0, 255) \
            .astype(np.uint8)

    gen = FunctionGenerator(model)  # weights change during training: no identity
    first = ev.score(gen, num_images=30)  # reads the reference (4 batches), then the model
    calls = extractor.calls
    again = ev.score(gen, num_images=30)
    assert extractor.calls - calls == 3  # 30 samples in batches of 10; no reference pass
    assert again.metrics == first.metrics
    state["shift"] = 60
    moved = ev.score(gen, num_images=30)
    assert moved.metrics["fid"]["value"] != first.metrics["fid"]["value"]
    assert first.to_dict()["inputs"]["samples"]["kind"] == "generator"
    direct = evaluate(noise_images(range(30)).transpose(0, 2, 3, 1), b, metrics="fid,pr",
                      **OPTS)
    assert first.metrics["pr"] == direct["metrics"]["pr"]
    assert first.metrics["fid"]["value"] == pytest.approx(direct["metrics"]["fid"]["value"],
                                                          rel=1e-9)
    with pytest.raises(GenbenchError, match="needs the number of images"):
        ev.score(gen)
    # the metric seed never changes which images a generator is asked for
    seeded = Evaluation(b, metrics="fid", seed=5, config=ExtractionConfig(**OPTS))
    state["shift"] = 0
    assert seeded.score(gen, num_images=30).metrics["fid"] == first.metrics["fid"]


GENERATOR_MODULE = '''
import os
import numpy as np
from genbench import FunctionGenerator

def _sample(seeds, labels):
    if os.environ.get("CRASH_AT") and int(os.environ["CRASH_AT"]) in set(map(int, seeds)):
        raise RuntimeError("simulated crash")
    return np.stack([np.random.default_rng(int(s)).integers(0, 256, (3, 16, 16),
                                                            dtype=np.uint8) for s in seeds])

GEN = FunctionGenerator(_sample, identity="noise16-v1", name="noise16")
'''


@pytest.mark.slow
def test_seeded_generator_same_with_one_and_two_processes_and_after_a_crash(tmp_path):
    """Image i from seed i: statistics of a generator are the same with 1 and 2 torchrun
    processes and after a crash and resume (the resumed run extracts only what is
    missing)."""
    import os
    import subprocess

    from conftest import fid_helper_weights_path
    from genbench.stats import load_statistics

    if fid_helper_weights_path() is None:
        pytest.skip("needs the TF-FID weights")
    (tmp_path / "mygen.py").write_text(GENERATOR_MODULE)
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    common = ["stats", "python:mygen:GEN", "--num-images", "18", "--chunk-size", "5",
              "--batch-size", "4", "--compile", "no", "--quiet", "--device", "cpu"]
    single = [sys.executable, "-m", "genbench"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                "--master_port=29536", "-m", "genbench"]

    def run(launcher, cache, out, **extra):
        proc = subprocess.run([*launcher, *common, "-o", str(tmp_path / out)],
                              env={**env, "GENBENCH_CACHE": str(tmp_path / cache), **extra},
                              capture_output=True, text=True, timeout=600)
        return proc

    one = run(single, "c1", "one.npz")
    assert one.returncode == 0, one.stderr[-2000:]
    two = run(torchrun, "c2", "two.npz")
    assert two.returncode == 0, two.stderr[-2000:]
    crashed = run(single, "c3", "crashed.npz", CRASH_AT="12")
    assert crashed.returncode != 0 and "simulated crash" in crashed.stderr
    assert not (tmp_path / "crashed.npz").exists()
    chunks = sorted(p.name for p in (tmp_path / "c3").rglob("chunk-*.npz"))
    assert chunks == ["chunk-000000.npz", "chunk-000001.npz"]
    resumed = run(single, "c3", "resumed.npz")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    stats = {name: load_statistics(tmp_path / f"{name}.npz")
             for name in ("one", "two", "resumed")}
    assert stats["one"].num_samples == stats["two"].num_samples == 18
    for name in ("two", "resumed"):
        np.testing.assert_allclose(stats[name].mu, stats["one"].mu, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(stats[name].sigma, stats["one"].sigma, rtol=1e-9,
                                   atol=1e-12)


# --- configuration, registries, extractor contract ---------------------------------------

def test_registry_refuses_twice_and_lists_choices():
    reg: Registry[int] = Registry("widget")
    reg.register("a", 1)
    with pytest.raises(ValueError, match="widget 'a' is already registered"):
        reg.register("a", 2)
    with pytest.raises(GenbenchError, match="unknown widget 'b'; choose from a"):
        reg.lookup("b")
    assert list(reg) == ["a"] and reg["a"] == 1 and "a" in reg
    with pytest.raises(TypeError, match=r"unknown option.*devcie"):
        ExtractionConfig.build(devcie="cpu")
    with pytest.raises(GenbenchError, match="--batch-size must be >= 1"):
        ExtractionConfig(batch_size=0)


def test_protocol_size_follows_the_extractor(fresh_cache, image_sets):
    """A network that takes 64-px images gets 64-px images from every protocol."""
    a, b = image_sets
    seen = []

    class Probe(torch.nn.Module):
        def forward(self, x):
            seen.append(tuple(x.shape[1:]))
            return x.mean(dim=(2, 3))

    ext = ModuleExtractor(Probe(), "probe", 3, identity="probe:v1", input_size=64)
    record = evaluate(a, b, metrics="fid", extractor=ext, progress=False)
    assert set(seen) == {(3, 64, 64)}
    assert "to 64" in record["protocol_description"]
    assert get_protocol("pytorch-fid").at_size(32)(
        torch.zeros(2, 3, 8, 8, dtype=torch.uint8)).shape == (2, 3, 32, 32)


def test_device_defaults_to_auto_and_is_recorded(fresh_cache, image_sets, capsys):
    a, b = image_sets
    record = evaluate(a, b, metrics="fid", **OPTS)
    assert record["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        assert main(["fid", "digits", "digits", "--device", "cuda"]) == 2
        assert "this machine has no CUDA device" in capsys.readouterr().err
    assert main(["fid", "digits", "digits", "--device", "gpu7"]) == 2
    assert "--device 'gpu7' is not a device" in capsys.readouterr().err


def test_stats_refuses_to_overwrite_without_force(fresh_cache, tmp_path, image_sets, capsys):
    a, _ = image_sets
    np.savez(tmp_path / "a.npz", a)
    out = tmp_path / "out.npz"
    out.write_bytes(b"precious")
    argv = ["stats", str(tmp_path / "a.npz"), "-o", str(out), "--extractor", "tiny-test",
            "--quiet"]
    assert main(argv) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert out.read_bytes() == b"precious"
    assert main([*argv, "--force"]) == 0
    with np.load(out) as data:
        assert data["mu"].shape == (32,)


# --- plots are an extra -------------------------------------------------------------------

@pytest.fixture
def no_matplotlib(monkeypatch):
    for name in list(sys.modules):
        if name == "matplotlib" or name.startswith("matplotlib."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError


def test_eval_without_matplotlib_writes_results_and_says_so(fresh_cache, tmp_path,
                                                            image_sets, no_matplotlib):
    a, b = image_sets
    out = tmp_path / "out"
    record = evaluate(a, b, metrics="fid,prd", out_dir=out, **OPTS)
    saved = json.loads((out / "result.json").read_text())
    assert saved["metrics"]["fid"]["value"] == record["metrics"]["fid"]["value"]
    assert len(saved["prd_curves"]["array"]["precision"]) == 1001
    assert not (out / "prd.png").exists() and "plots" not in saved
    assert any("genbench[plot]" in n for n in saved["notes"])


def test_cas_without_matplotlib_writes_cas_json(fresh_cache, tmp_path, no_matplotlib):
    from genbench.cas import classification_accuracy_score, load_labelled

    data = load_labelled("digits", "digits", progress=False)
    record = classification_accuracy_score(
        data, real_train=data, real_test=data, recipe="small-resnet",
        recipe_options={"epochs": 1, "width": 8}, out_dir=tmp_path / "cas", progress=False)
    saved = json.loads((tmp_path / "cas" / "cas.json").read_text())
    assert saved["cas"] == record["cas"] and saved["device"] == record["device"]
    assert not (tmp_path / "cas" / "cas_per_class.png").exists()
    assert any("genbench[plot]" in n for n in saved["notes"])


def test_stats_of_a_feature_array(fresh_cache, tmp_path, rng, capsys):
    feats = rng.standard_normal((50, 6)).astype(np.float32)
    np.save(tmp_path / "f.npy", feats)
    assert main(["stats", str(tmp_path / "f.npy"), "-o", str(tmp_path / "s.npz"),
                 "--quiet"]) == 0
    with np.load(tmp_path / "s.npz") as data:
        np.testing.assert_allclose(data["mu"], feats.astype(np.float64).mean(0), rtol=1e-12)
        np.testing.assert_allclose(data["sigma"], np.cov(feats.astype(np.float64),
                                                         rowvar=False), rtol=1e-9)
    assert main(["stats", str(tmp_path / "s.npz"), "-o", str(tmp_path / "t.npz")]) == 2
    assert "holds statistics, not images" in capsys.readouterr().err


def test_every_input_is_checked_before_any_extraction(fresh_cache, tmp_path, image_sets):
    """A bad argument stops the run at once, not after minutes of extracting the others."""
    from genbench.api import evaluate_models

    a, b = image_sets
    tiny = EXTRACTORS["tiny-test"]()
    config = ExtractionConfig(extractor=tiny, progress=False)
    with pytest.raises(GenbenchError, match="no such file or folder"):
        evaluate_models({"good": a, "bad": str(tmp_path / "missing")}, b, config=config)
    with pytest.raises(GenbenchError, match="no such file or folder"):
        compute_fid(str(tmp_path / "missing"), b, config=config)
    FeatureStatistics(np.zeros(32), np.eye(32), 10, "clean").save(tmp_path / "clean.npz")
    with pytest.raises(GenbenchError, match="protocol 'clean', not 'tf'"):
        compute_fid(str(tmp_path / "clean.npz"), b, config=config)
    FeatureStatistics(np.zeros(7), np.eye(7), 10, "tf").save(tmp_path / "seven.npz")
    with pytest.raises(GenbenchError, match="has 7-d features but array 32-d"):
        compute_fid(str(tmp_path / "seven.npz"), b, config=config)
    with pytest.raises(GenbenchError, match="needs the number of images"):
        compute_fid(FunctionGenerator(noise_images), b, config=config)
    with pytest.raises(GenbenchError, match="--num-images 41 but the source has only 40"):
        evaluate_models({"a": a}, b, num_images=41, config=config)
    with pytest.raises(GenbenchError, match=r"metric\(s\) kid need features"):
        evaluate(str(tmp_path / "seven.npz"), np.zeros((5, 7), np.float32) + np.eye(5, 7),
                 metrics="fid,kid", config=config)
    assert tiny.calls == 0
