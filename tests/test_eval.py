"""`genbench eval`: every metric from one feature pass, equal to the metric functions."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from genbench.api import evaluate
from genbench.cli import main
from genbench.errors import GenbenchError
from genbench.extractors import EXTRACTORS
from genbench.metrics.kid import kernel_inception_distance
from genbench.metrics.manifold import density_coverage, precision_recall
from genbench.protocols import get_protocol
from genbench.sources import GeneratorSource

OPTS = {"extractor": "tiny-test", "batch_size": 10, "progress": False}


def _features(images):
    ext = EXTRACTORS["tiny-test"]()
    return ext(get_protocol("tf")(torch.from_numpy(images).permute(0, 3, 1, 2))).double().numpy()


def test_metrics_equal_the_functions_on_the_same_features(fresh_cache, image_sets, tmp_path):
    a, b = image_sets
    record = evaluate(a, b, seed=3, out_dir=tmp_path / "out", **OPTS)
    m = record["metrics"]
    assert set(m) == {"fid", "kid", "prd", "pr", "dc"}
    fa, fb = _features(a), _features(b)
    kid = kernel_inception_distance(fa, fb, seed=3)
    assert m["kid"]["mean"] == pytest.approx(kid.mean, rel=1e-5, abs=1e-9)
    pr = precision_recall(fb, fa, nearest_k=3)
    assert (m["pr"]["precision"], m["pr"]["recall"]) == (pr.precision, pr.recall)
    dc = density_coverage(fb, fa, nearest_k=5)
    assert m["dc"]["density"] == pytest.approx(dc.density)
    assert 0 <= m["prd"]["f_8"] <= 1 and m["prd"]["seed"] == 3
    assert record["inputs"]["samples"]["num_images"] == 40
    saved = json.loads((tmp_path / "out" / "result.json").read_text())
    assert saved["metrics"]["fid"]["value"] == m["fid"]["value"]
    with Image.open(tmp_path / "out" / "prd.png") as png:
        assert png.size[0] > 100
    again = evaluate(a, b, seed=3, **OPTS)  # from the cache, same numbers
    assert again["inputs"]["samples"]["extracted"] == 0
    assert again["metrics"]["kid"] == m["kid"] and again["metrics"]["prd"] == m["prd"]


def test_uncached_generator_keeps_features_in_memory(fresh_cache, image_sets):
    a, b = image_sets
    it = iter(np.array_split(a, 4))
    gen = GeneratorSource(lambda n: next(it), num_images=40, batch_size=10)
    record = evaluate(gen, b, metrics="fid,pr", **OPTS)
    direct = evaluate(a, b, metrics="fid,pr", **OPTS)
    assert record["metrics"]["pr"] == direct["metrics"]["pr"]
    assert record["metrics"]["fid"]["value"] == pytest.approx(direct["metrics"]["fid"]["value"],
                                                              rel=1e-9)


def test_unknown_metric(fresh_cache, image_sets):
    with pytest.raises(GenbenchError, match=r"unknown metric.*fidd"):
        evaluate(*image_sets, metrics="fid,fidd", **OPTS)


def test_cli_eval_json(fresh_cache, tmp_path, image_sets, capsys):
    a, b = image_sets
    np.savez(tmp_path / "a.npz", a)
    np.savez(tmp_path / "b.npz", b)
    assert main(["eval", str(tmp_path / "a.npz"), "--ref", str(tmp_path / "b.npz"),
                 "--metrics", "fid,dc", "--extractor", "tiny-test", "--json", "--quiet"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert set(record["metrics"]) == {"fid", "dc"} and record["protocol"] == "tf"


def test_user_features_from_npy(fresh_cache, tmp_path, rng):
    a = rng.standard_normal((300, 16)).astype(np.float32)
    b = (rng.standard_normal((300, 16)) + 0.5).astype(np.float32)
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    record = evaluate(str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), metrics="fid,pr",
                      progress=False)
    pr = precision_recall(b, a, nearest_k=3)
    assert record["metrics"]["pr"]["precision"] == pr.precision
    from genbench.metrics.fid import frechet_distance
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    expected = frechet_distance(a64.mean(0), np.cov(a64, rowvar=False), b64.mean(0),
                                np.cov(b64, rowvar=False))
    assert record["metrics"]["fid"]["value"] == pytest.approx(expected, rel=1e-9)
    assert record["inputs"]["samples"]["num_images"] == 300
    np.save(tmp_path / "i.npy", np.zeros((3, 4), np.int64))
    with pytest.raises(GenbenchError, match=r"i\.npy: a 2-D feature array must be float"):
        evaluate(str(tmp_path / "i.npy"), str(tmp_path / "b.npy"), metrics="fid")


def test_per_class_results_with_labels(fresh_cache, tmp_path, image_sets):
    a, b = image_sets
    labels = np.repeat(np.arange(4), 10)
    keep = labels != 3  # the "model" drops class 3 entirely
    np.savez(tmp_path / "s.npz", a[keep], labels[keep])
    np.savez(tmp_path / "r.npz", b, labels)
    record = evaluate(str(tmp_path / "s.npz"), str(tmp_path / "r.npz"), metrics="fid",
                      per_class=True, **OPTS)
    per_class = record["per_class"]
    assert set(per_class) == {"0", "1", "2", "3"}
    assert per_class["3"] == {"num_samples": 0, "num_reference": 10}
    fa, fb = _features(a[:10]), _features(b[:10])
    from genbench.metrics.fid import frechet_distance
    expected = frechet_distance(fa.mean(0), np.cov(fa, rowvar=False), fb.mean(0),
                                np.cov(fb, rowvar=False))
    assert per_class["0"]["fid"] == pytest.approx(expected, rel=1e-4)
    assert 0 <= per_class["1"]["precision"] <= 1
    # cached second run gives the same labels and numbers
    again = evaluate(str(tmp_path / "s.npz"), str(tmp_path / "r.npz"), metrics="fid",
                     per_class=True, **OPTS)
    assert again["inputs"]["samples"]["extracted"] == 0 and again["per_class"] == per_class
    unlabelled = evaluate(a, b, metrics="fid", per_class=True, **OPTS)
    assert "per_class" not in unlabelled
    assert any("need labels" in n for n in unlabelled["notes"])


def test_per_class_prd(fresh_cache, tmp_path):
    rng = np.random.default_rng(5)
    a = rng.integers(0, 256, (60, 12, 12, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (60, 12, 12, 3), dtype=np.uint8)
    labels = np.repeat([0, 1], 30)
    np.savez(tmp_path / "s.npz", a, labels)
    np.savez(tmp_path / "r.npz", b, labels)
    record = evaluate(str(tmp_path / "s.npz"), str(tmp_path / "r.npz"), metrics="fid,prd",
                      per_class=True, seed=4, **OPTS)
    from genbench.config import ExtractionConfig
    from genbench.evaluation import Pipeline
    from genbench.metrics.prd import prd_from_features
    ev = Pipeline(ExtractionConfig(**OPTS))  # the same cached features as the evaluation
    fa, fb = (np.concatenate(list(ev.statistics(str(tmp_path / f)).iter_features()))
              for f in ("s.npz", "r.npz"))
    expected = prd_from_features(fa[:30], fb[:30], seed=4)
    got = record["per_class"]["0"]
    assert got["prd_f_8"] == pytest.approx(expected.f_beta, abs=1e-6)
    assert got["prd_f_1/8"] == pytest.approx(expected.f_beta_inv, abs=1e-6)
    no_prd = evaluate(str(tmp_path / "s.npz"), str(tmp_path / "r.npz"), metrics="fid",
                      per_class=True, **OPTS)
    assert "prd_f_8" not in no_prd["per_class"]["0"]


def test_cli_several_models_one_prd_plot(fresh_cache, tmp_path, image_sets, capsys):
    a, b = image_sets
    np.savez(tmp_path / "good.npz", a)
    np.savez(tmp_path / "bad.npz", np.clip(a.astype(int) + 90, 0, 255).astype(np.uint8))
    np.savez(tmp_path / "ref.npz", b)
    out = tmp_path / "out"
    assert main(["eval", str(tmp_path / "good.npz"), str(tmp_path / "bad.npz"), "--ref",
                 str(tmp_path / "ref.npz"), "--metrics", "fid,prd", "--out", str(out),
                 "--extractor", "tiny-test", "--json", "--quiet"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert set(record["models"]) == {"good", "bad"}
    good, bad = (record["models"][m]["metrics"]["fid"]["value"] for m in ("good", "bad"))
    assert good < bad
    saved = json.loads((out / "result.json").read_text())
    assert set(saved["prd_curves"]) == {"good", "bad"}
    assert len(saved["prd_curves"]["good"]["precision"]) == 1001
    assert (out / "prd.png").is_file()

    assert main(["plot-prd", str(out / "result.json"), "-o", str(tmp_path / "both.png")]) == 0
    assert "2 curves" in capsys.readouterr().out
    with Image.open(tmp_path / "both.png") as png:
        assert png.size[0] > 100
    (tmp_path / "plain.json").write_text(json.dumps({"metrics": {}}))
    assert main(["plot-prd", str(tmp_path / "plain.json"), "-o", str(tmp_path / "x.png")]) == 2
    assert "holds no PRD curve" in capsys.readouterr().err


def test_user_torch_module_as_extractor(fresh_cache, image_sets):
    """A plain torch module is the feature network (through ModuleExtractor); metrics run on
    its features, cached under its identity."""
    from genbench.extractors import ModuleExtractor

    a, b = image_sets
    net = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten(),
                              torch.nn.Linear(48, 10))
    torch.manual_seed(0)
    ext = ModuleExtractor(net, "my-net", 10, identity="my-net:v1")
    record = evaluate(a, b, metrics="fid,pr", extractor=ext, batch_size=10, progress=False)
    assert record["extractor"] == "my-net:v1"
    with torch.no_grad():
        fa = net(get_protocol("tf")(torch.from_numpy(a).permute(0, 3, 1, 2))).numpy()
        fb = net(get_protocol("tf")(torch.from_numpy(b).permute(0, 3, 1, 2))).numpy()
    pr = precision_recall(fb, fa, nearest_k=3)
    assert record["metrics"]["pr"]["precision"] == pr.precision
    bad = ModuleExtractor(net, "wrong", 12)
    with pytest.raises(GenbenchError, match="returned 10 features per image, not the declared 12"):
        evaluate(a, b, metrics="fid", extractor=bad, progress=False)
