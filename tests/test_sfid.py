"""sFID (ADM's evaluator): the TF Inception's ``mixed_6/conv`` spatial features from the same
pass as pool3, against the genuine TorchScript's submodule, and the metric end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import linalg

import genbench
from conftest import fid_helper_weights_path, requires_weights
from genbench.cli import main as cli_main
from genbench.errors import GenbenchError
from genbench.extractors import InceptionExtractor
from genbench.extractors import inception_weights as iw
from genbench.extractors.inception_net import SPATIAL_DIM, FIDInceptionV3
from genbench.protocols import get_protocol
from genbench.sources import open_source

pytestmark = [requires_weights, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

# the TorchScript's layers before mixed_6 (NVlabs names = the TF graph's scopes)
_BEFORE_MIXED_6 = ("conv", "conv_1", "conv_2", "pool0", "conv_3", "conv_4", "pool1", "mixed",
                   "mixed_1", "mixed_2", "mixed_3", "mixed_4", "mixed_5")


def _digits(first: int, n: int) -> np.ndarray:
    digits = open_source("digits")
    return np.stack([digits.load(i) for i in range(first, first + n)])


def _adm_fd(a: np.ndarray, b_mu: np.ndarray, b_sigma: np.ndarray) -> float:
    """ADM evaluator's FIDStatistics: np.mean, np.cov, scipy sqrtm (TTUR's formula)."""
    mu, sigma = a.mean(0), np.cov(a, rowvar=False)
    covmean = linalg.sqrtm(sigma.dot(b_sigma), disp=False)[0].real
    diff = mu - b_mu
    return float(diff.dot(diff) + np.trace(sigma) + np.trace(b_sigma) - 2 * np.trace(covmean))


@pytest.mark.parametrize("fold", [False, True])
def test_spatial_features_are_the_torchscript_mixed_6_conv(fold):
    weights = iw.load_inception_weights()
    net = FIDInceptionV3()
    net.load_state_dict(weights.state_dict)
    net.eval()
    if fold:
        net.fold_batch_norm()
    reference = torch.jit.load(str(fid_helper_weights_path()), map_location="cpu").eval()
    layers = reference.net.layers
    images = torch.from_numpy(np.concatenate([_digits(0, 2), _digits(500, 1)])).permute(0, 3, 1, 2)
    fmnist = open_source("fashion-mnist:test")
    extra = torch.from_numpy(np.stack([fmnist.load(i) for i in range(2)])).permute(0, 3, 1, 2)
    x = torch.cat([get_protocol("tf")(images), get_protocol("tf")(extra)])
    with torch.no_grad():
        pool3, spatial = net.forward_spatial(x)
        h = x
        for name in _BEFORE_MIXED_6:
            h = getattr(layers, name)(h)
        tf_tensor = layers.mixed_6.conv(h)  # mixed_6/conv:0, NCHW here
        ref_pool3 = reference(x)
    assert tf_tensor.shape == (5, 192, 17, 17) and spatial.shape == (5, SPATIAL_DIM)
    expected = tf_tensor[:, :7].permute(0, 2, 3, 1).reshape(5, -1)  # ADM: NHWC [..., :7]
    assert (spatial - expected).abs().max() / expected.abs().max() < 1e-5
    assert (pool3 - ref_pool3).abs().max() / ref_pool3.abs().max() < 1e-5
    # a flattening in NCHW order would be another vector: the order is tested, not assumed
    assert (spatial - tf_tensor[:, :7].reshape(5, -1)).abs().max() > 0.1 * expected.abs().max()
    with torch.no_grad():
        assert torch.equal(net(x), pool3)


def test_extractor_gives_spatial_from_the_same_pass_in_slices():
    extractor = InceptionExtractor(compile=False)
    x = torch.rand(11, 3, 299, 299, generator=torch.Generator().manual_seed(3)) * 2 - 1
    out = extractor.extract(x, ("spatial",))  # slices of 8 and 3
    with torch.no_grad():
        _, spatial = extractor.net.forward_spatial(x.contiguous(
            memory_format=torch.channels_last))
    assert set(out) == {"features", "spatial"} and out["spatial"].shape == (11, SPATIAL_DIM)
    assert (out["spatial"] - spatial).abs().max() <= 1e-6 * spatial.abs().max()
    assert torch.equal(out["features"], extractor(x))
    with pytest.raises(GenbenchError, match="gives no logits features"):
        extractor.extract(x, ("logits",))


def test_sfid_end_to_end_equals_the_adm_definition(fresh_cache, tmp_path):
    samples, reference = _digits(0, 24), _digits(600, 24)
    record = genbench.evaluate(samples, reference, metrics="fid,sfid", progress=False)
    extractor = InceptionExtractor(compile=False)
    tf = get_protocol("tf")

    def spatial(images):
        return extractor.extract(tf(torch.from_numpy(images).permute(0, 3, 1, 2)),
                                 ("spatial",))["spatial"].numpy().astype(np.float64)

    s, r = spatial(samples), spatial(reference)
    expected = _adm_fd(s, r.mean(0), np.cov(r, rowvar=False))
    assert record["metrics"]["sfid"]["value"] == pytest.approx(expected, rel=1e-6)
    assert record["metrics"]["sfid"]["value"] != pytest.approx(
        record["metrics"]["fid"]["value"], rel=1e-3)
    # the cache serves the second run (nothing extracted), with the same number
    again = genbench.evaluate(samples, reference, metrics="sfid", progress=False)
    assert again["inputs"]["samples"]["extracted"] == 0
    assert again["metrics"]["sfid"]["value"] == record["metrics"]["sfid"]["value"]
    # an ADM reference batch's stored mu_s/sigma_s serve sFID, as ADM's evaluator does
    shifted = r + 0.25
    np.savez(tmp_path / "VIRTUAL_ref.npz", arr_0=reference, mu=np.zeros(2048),
             sigma=np.eye(2048), mu_s=shifted.mean(0), sigma_s=np.cov(shifted, rowvar=False))
    stored = genbench.evaluate(samples, tmp_path / "VIRTUAL_ref.npz", metrics="sfid",
                               progress=False)
    assert stored["metrics"]["sfid"]["value"] == pytest.approx(
        _adm_fd(s, shifted.mean(0), np.cov(shifted, rowvar=False)), rel=1e-6)


def test_sfid_is_asked_for_by_name_and_refused_where_it_cannot_be(fresh_cache, tmp_path,
                                                                  capsys):
    from genbench.metrics.registry import parse_metrics

    assert "sfid" not in parse_metrics(None) and "fid" in parse_metrics(None)
    np.save(tmp_path / "feats.npy", np.random.default_rng(0).normal(size=(30, 2048))
            .astype(np.float32))
    with pytest.raises(GenbenchError, match=r"feats.npy: metric.*sfid need spatial statistics"):
        genbench.evaluate(tmp_path / "feats.npy", "digits", metrics="sfid", num_images=30)
    np.savez(tmp_path / "stats.npz", mu=np.zeros(2048), sigma=np.eye(2048))
    with pytest.raises(GenbenchError, match=r"stats.npz: metric.*sfid need spatial"):
        genbench.evaluate("digits", tmp_path / "stats.npz", metrics="fid,sfid", num_images=30)
    code = cli_main(["eval", "digits", "--ref", "digits", "--metrics", "sfid",
                     "--extractor", "rcg-encoder", "--num-images", "30"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "need the spatial features" in err


def test_cli_eval_prints_sfid(fresh_cache, tmp_path, capsys):
    np.save(tmp_path / "a.npy", _digits(100, 12))
    assert cli_main(["eval", str(tmp_path / "a.npy"), "--ref", "digits", "--num-images", "12",
                     "--metrics", "fid,sfid", "--json", "--quiet"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["metrics"]["sfid"]["value"] > 1.0  # other digits than the reference's
