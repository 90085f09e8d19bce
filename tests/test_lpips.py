"""LPIPS (VGG16, lin v0.1): the module against an independent step-by-step computation, with a
random backbone the tests build (the real torchvision VGG16 file is not available offline) and
the real lpips heads file; the loaders' checks and errors."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from genbench.errors import GenbenchError
from genbench.perceptual import VGG16Features, load_lpips, read_heads
from genbench.perceptual import lpips as lp

HAS_LPIPS = importlib.util.find_spec("lpips") is not None
requires_lpips = pytest.mark.skipif(
    not HAS_LPIPS, reason="lpips package not installed (`pip install --no-deps lpips==0.1.4`); "
                          "its weights/v0.1/vgg.pth heads file is needed")

# torchvision's vgg16().features, written out independently of the module: (kind, arg)
CONV_CHANNELS = [(3, 64), (64, 64), "P", (64, 128), (128, 128), "P",
                 (128, 256), (256, 256), (256, 256), "P",
                 (256, 512), (512, 512), (512, 512), "P",
                 (512, 512), (512, 512), (512, 512)]


def _random_backbone_state() -> dict[str, torch.Tensor]:
    """Seeded He-initialised conv weights in torchvision's key layout (features.N.*), so
    activations keep their scale through 13 layers."""
    g = torch.Generator().manual_seed(0)
    state: dict[str, torch.Tensor] = {}
    index = 0
    for item in CONV_CHANNELS:
        if item == "P":
            index += 1
            continue
        cin, cout = item
        state[f"features.{index}.weight"] = torch.randn(cout, cin, 3, 3, generator=g) * (
            2.0 / (cin * 9)) ** 0.5
        state[f"features.{index}.bias"] = torch.randn(cout, generator=g) * 0.05
        index += 2  # conv, relu
    return state


@pytest.fixture(scope="module")
def backbone_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("vgg") / "vgg16-random.pth"
    state = _random_backbone_state()
    state["classifier.6.bias"] = torch.zeros(10)  # torchvision files carry a classifier too
    # torchvision's vgg16-397923af.pth predates torch's zip format: save it the same way
    torch.save(state, path, _use_new_zipfile_serialization=False)
    return path


@pytest.fixture(scope="module")
def heads_file(tmp_path_factory) -> Path:
    """The real lpips heads when installed, else seeded non-negative ones in its layout."""
    if HAS_LPIPS:
        return lp.default_heads_path()
    g = torch.Generator().manual_seed(1)
    path = tmp_path_factory.mktemp("heads") / "vgg.pth"
    torch.save({k: torch.rand(1, c, 1, 1, generator=g)
                for k, c in zip(lp.HEADS_KEYS, lp.TAP_CHANNELS, strict=True)}, path)
    return path


@pytest.fixture(scope="module")
def model(backbone_file, heads_file):
    return load_lpips(backbone=backbone_file, heads=heads_file, pooling="avg", resize=None)


def _images(n=2, c=3, size=32, seed=3):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, size, size, generator=g) * 2 - 1


# --- 1. basic properties -----------------------------------------------------------------------

def test_loads_and_is_a_distance(model):
    x, y = _images(seed=3), _images(seed=4)
    assert not any(p.requires_grad for p in model.parameters())
    assert not model.training
    same = model(x, x)
    assert same.shape == (2,)
    assert torch.equal(same, torch.zeros(2))  # exactly zero, not merely small
    d_xy, d_yx = model(x, y), model(y, x)
    assert d_xy.shape == (2,)
    assert (d_xy > 0).all()
    torch.testing.assert_close(d_xy, d_yx, rtol=1e-6, atol=0)
    # per-sample: each distance depends on its own pair only
    torch.testing.assert_close(model(x[1:], y[1:]), d_xy[1:], rtol=1e-5, atol=0)


def test_gradients_flow_to_the_input(model):
    x = _images(seed=5).requires_grad_(True)
    y = _images(seed=6)
    model(x, y).sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())


def test_resize_is_bilinear_before_the_network(backbone_file, heads_file, model):
    resized = load_lpips(backbone=backbone_file, heads=heads_file, resize=48)
    x, y = _images(n=1, size=20, seed=7), _images(n=1, size=20, seed=8)
    up = lambda t: F.interpolate(t, size=(48, 48), mode="bilinear", align_corners=False)  # noqa: E731
    torch.testing.assert_close(resized(x, y), model(up(x), up(y)), rtol=1e-5, atol=0)
    assert lp.LPIPS().resize == 224 and load_lpips.__kwdefaults__["resize"] == 224


# --- 2. an independent computation -------------------------------------------------------------

def _reference_lpips(x, y, state, heads, pooling):
    """LPIPS by hand: the VGG16 forward with F.conv2d on the state dict, every step explicit."""
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
    pool = F.avg_pool2d if pooling == "avg" else F.max_pool2d

    def taps(img):
        h = (img - shift) / scale
        out = []
        index = 0
        convs_in_block = 0
        block_sizes = [2, 2, 3, 3, 3]  # convs per VGG16 block; a tap after each block's last
        block = 0
        for item in CONV_CHANNELS:
            if item == "P":
                h = pool(h, kernel_size=2, stride=2)
                index += 1
                continue
            h = F.relu(F.conv2d(h, state[f"features.{index}.weight"],
                                state[f"features.{index}.bias"], padding=1))
            index += 2
            convs_in_block += 1
            if convs_in_block == block_sizes[block]:
                out.append(h)
                block, convs_in_block = block + 1, 0
        return out

    terms = []
    for k, (fx, fy) in enumerate(zip(taps(x), taps(y), strict=True)):
        nx = fx / (fx.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
        ny = fy / (fy.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
        w = heads[f"lin{k}.model.1.weight"].view(-1)
        weighted = torch.einsum("nchw,c->nhw", (nx - ny) ** 2, w)
        terms.append(weighted.mean(dim=(1, 2)))
    return torch.stack(terms, dim=1)  # N×5; LPIPS is the sum over taps


@requires_lpips
@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_matches_a_hand_computation(backbone_file, heads_file, pooling):
    net = load_lpips(backbone=backbone_file, heads=heads_file, pooling=pooling, resize=None)
    state = torch.load(backbone_file, map_location="cpu", weights_only=True)
    heads = torch.load(heads_file, map_location="cpu", weights_only=True)
    x, y = _images(n=2, size=32, seed=11), _images(n=2, size=32, seed=12)
    expected = _reference_lpips(x, y, state, heads, pooling)
    assert (expected > 0).all()
    # tap by tap (the deep taps' terms are small with a random backbone, so a total alone
    # would hardly see an error there), then the distance itself
    torch.testing.assert_close(net.per_tap(x, y), expected, rtol=1e-5, atol=0)
    torch.testing.assert_close(net(x, y), expected.sum(dim=1), rtol=1e-5, atol=0)


def test_taps_are_torchvision_indices(backbone_file):
    """The module's taps are the outputs of layers 3, 8, 15, 22, 29, with the channel counts
    and spatial sizes LPIPS expects (checked on the first two against F.conv2d)."""
    feats = VGG16Features("max")
    feats.load_state_dict({k: v for k, v in torch.load(
        backbone_file, map_location="cpu", weights_only=True).items()
        if k.startswith("features.")})
    assert len(feats.features) == 31
    assert isinstance(feats.features[30], torch.nn.MaxPool2d)
    x = _images(n=1, size=32, seed=13)
    taps = feats(x)
    assert [t.shape[1] for t in taps] == [64, 128, 256, 512, 512]
    assert [t.shape[-1] for t in taps] == [32, 16, 8, 4, 2]
    s = feats.state_dict()
    h = F.relu(F.conv2d(x, s["features.0.weight"], s["features.0.bias"], padding=1))
    h = F.relu(F.conv2d(h, s["features.2.weight"], s["features.2.bias"], padding=1))
    torch.testing.assert_close(taps[0], h, rtol=1e-5, atol=1e-6)
    h = F.max_pool2d(h, 2)
    h = F.relu(F.conv2d(h, s["features.5.weight"], s["features.5.bias"], padding=1))
    h = F.relu(F.conv2d(h, s["features.7.weight"], s["features.7.bias"], padding=1))
    torch.testing.assert_close(taps[1], h, rtol=1e-5, atol=1e-6)


# --- 3. pooling and grayscale ------------------------------------------------------------------

def test_max_and_avg_pooling_differ(backbone_file, heads_file, model):
    max_net = load_lpips(backbone=backbone_file, heads=heads_file, pooling="max", resize=None)
    assert model.pooling == "avg" and max_net.pooling == "max"
    x, y = _images(seed=21), _images(seed=22)
    a, m = model(x, y), max_net(x, y)
    assert (a - m).abs().min() > 1e-4 * a.abs().max()


def test_grayscale_equals_repeated_rgb(model):
    x, y = _images(c=1, seed=31), _images(c=1, seed=32)
    torch.testing.assert_close(model(x, y), model(x.repeat(1, 3, 1, 1), y.repeat(1, 3, 1, 1)),
                               rtol=0, atol=0)


def test_bad_inputs(model):
    with pytest.raises(GenbenchError, match="C = 1 or 3"):
        model(torch.zeros(1, 2, 32, 32), torch.zeros(1, 2, 32, 32))
    with pytest.raises(GenbenchError, match="differ in shape"):
        model(torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 16, 16))
    with pytest.raises(GenbenchError, match="too small"):
        model(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))


# --- 4. the real heads file --------------------------------------------------------------------

@requires_lpips
def test_real_heads_file():
    path = lp.default_heads_path()
    assert path.parts[-3:] == ("weights", "v0.1", "vgg.pth")
    heads = read_heads(path)
    assert list(heads) == [f"lin{k}.model.1.weight" for k in range(5)]
    assert [tuple(w.shape) for w in heads.values()] == [
        (1, 64, 1, 1), (1, 128, 1, 1), (1, 256, 1, 1), (1, 512, 1, 1), (1, 512, 1, 1)]
    for w in heads.values():
        assert (w >= 0).all()  # lpips clamps its heads to be non-negative while training
        assert w.sum() > 0


def test_missing_lpips_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(lp.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(GenbenchError, match=r"pip install --no-deps lpips"):
        lp.default_heads_path()


# --- 5. loader errors --------------------------------------------------------------------------

def test_backbone_with_wrong_keys_is_refused(tmp_path, heads_file):
    bad = tmp_path / "not-vgg.pth"
    torch.save({"conv.weight": torch.zeros(3, 3)}, bad)
    with pytest.raises(GenbenchError, match=re.escape(str(bad))) as info:
        load_lpips(backbone=bad, heads=heads_file)
    assert "\n" not in str(info.value)
    state = _random_backbone_state()
    state["features.0.weight"] = torch.zeros(64, 1, 3, 3)
    wrong_shape = tmp_path / "wrong-shape.pth"
    torch.save(state, wrong_shape)
    with pytest.raises(GenbenchError,
                       match=re.escape(str(wrong_shape)) + r".*features\.0\.weight"):
        load_lpips(backbone=wrong_shape, heads=heads_file)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(GenbenchError, match=re.escape(str(garbage))):
        load_lpips(backbone=garbage, heads=heads_file)


def test_heads_with_wrong_keys_are_refused(tmp_path, backbone_file):
    bad = tmp_path / "bad-heads.pth"
    torch.save({"lin0.model.1.weight": torch.zeros(1, 64, 1, 1)}, bad)
    with pytest.raises(GenbenchError, match=re.escape(str(bad))):
        load_lpips(backbone=backbone_file, heads=bad)


def test_cached_backbone_with_wrong_sha256_is_refused(tmp_path, monkeypatch, backbone_file,
                                                      heads_file):
    monkeypatch.setenv("GENBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    dest = lp.default_backbone_path()
    assert dest == tmp_path / "cache" / "weights" / "vgg16-397923af.pth"
    dest.parent.mkdir(parents=True)
    dest.write_bytes(backbone_file.read_bytes())  # loadable, but not torchvision's file
    with pytest.raises(GenbenchError, match=r"sha256 .* does not start with 397923af") as info:
        load_lpips(heads=heads_file)
    assert str(dest) in str(info.value) and "\n" not in str(info.value)


def test_offline_without_backbone_names_url_and_path(tmp_path, monkeypatch, heads_file):
    monkeypatch.setenv("GENBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    calls = []

    def offline(url, dest, **kwargs):
        calls.append((url, dest, kwargs))
        raise GenbenchError(f"could not download {url}: <urlopen error no network>")

    monkeypatch.setattr(lp, "download", offline)
    with pytest.raises(GenbenchError) as info:
        load_lpips(heads=heads_file)
    message = str(info.value)
    assert lp.VGG16_URL in message and str(lp.default_backbone_path()) in message
    assert "backbone=" in message and "\n" not in message
    assert calls == [(lp.VGG16_URL, lp.default_backbone_path(), {"sha256_prefix": "397923af"})]
