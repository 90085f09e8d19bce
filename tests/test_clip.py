"""CLIP feature spaces and CMMD: the image tower against OpenAI's sizes and a hand
computation, the loader on a TorchScript archive and a float16 state_dict in OpenAI's layout
(built here: OpenAI's files cannot be downloaded), the sha256 in OpenAI's URL, the ``clip``
protocol, and CMMD against its official definition."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from genbench.cli import main as cli_main
from genbench.errors import GenbenchError
from genbench.extractors import EXTRACTORS, ExtractorEntry
from genbench.extractors import clip as c
from genbench.fileio import file_digest
from genbench.metrics.cmmd import cmmd
from genbench.protocols import get_protocol

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")]

TINY = c.CLIPConfig("clip-test", width=8, layers=1, heads=2, patch=14, image_size=28,
                    embed_dim=4)


class _OpenAIModel(torch.nn.Module):
    """The layout of OpenAI's archives: the image tower under ``visual``, text parts beside."""

    def __init__(self, config: c.CLIPConfig) -> None:
        super().__init__()
        self.visual = c.CLIPVisual(config)
        self.token_embedding = torch.nn.Embedding(5, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.visual(x)


@pytest.fixture
def tiny(monkeypatch, tmp_path):
    monkeypatch.setitem(c.CLIP_CONFIGS._entries, TINY.name, TINY)
    monkeypatch.setitem(EXTRACTORS._entries, TINY.name, ExtractorEntry(
        c.clip_extractor(TINY.name), "clip", TINY.image_size, "0..255"))
    torch.manual_seed(0)
    model = _OpenAIModel(TINY).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    archive = tmp_path / "ViT-test.pt"
    torch.jit.save(torch.jit.trace(model, torch.randn(1, 3, 28, 28)), str(archive))
    return model, archive


def test_image_towers_have_openais_sizes():
    # open_clip's model profiles: image parameters 87.85 M (B/32), 303.97 M (L/14),
    # 304.29 M (L/14@336px)
    counts = {n: sum(p.numel() for p in c.CLIPVisual(cfg).parameters())
              for n, cfg in c.CLIP_CONFIGS.items()}
    assert counts == {"clip-vit-b32": 87_849_216, "clip-vit-l14": 303_966_208,
                      "clip-vit-l14-336": 304_293_888}
    large = c.CLIP_CONFIGS["clip-vit-l14-336"]
    assert large.sha256 == "3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02"
    assert large.url.endswith("/ViT-L-14-336px.pt") and large.embed_dim == 768


def _layer_norm(x, weight, bias):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + 1e-5) * weight + bias


def test_image_tower_equals_a_hand_computation(tiny):
    model, _ = tiny
    w = {k: v.double() for k, v in model.visual.state_dict().items()}
    x = torch.randn(2, 3, 28, 28, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    patches = x.unfold(2, 14, 14).unfold(3, 14, 14).permute(0, 2, 3, 1, 4, 5).reshape(2, 4, -1)
    tokens = patches @ w["conv1.weight"].reshape(8, -1).T
    tokens = torch.cat([w["class_embedding"].expand(2, 1, 8), tokens], 1)
    tokens = _layer_norm(tokens + w["positional_embedding"], w["ln_pre.weight"],
                         w["ln_pre.bias"])
    p = "transformer.resblocks.0."
    h = _layer_norm(tokens, w[p + "ln_1.weight"], w[p + "ln_1.bias"])
    q, k, v = (h @ w[p + "attn.in_proj_weight"].T + w[p + "attn.in_proj_bias"]).split(8, -1)
    heads = [torch.softmax(q[..., 4 * j:4 * j + 4] @ k[..., 4 * j:4 * j + 4].transpose(1, 2)
                           / math.sqrt(4), -1) @ v[..., 4 * j:4 * j + 4] for j in range(2)]
    tokens = tokens + torch.cat(heads, -1) @ w[p + "attn.out_proj.weight"].T \
        + w[p + "attn.out_proj.bias"]
    h = _layer_norm(tokens, w[p + "ln_2.weight"], w[p + "ln_2.bias"])
    h = h @ w[p + "mlp.c_fc.weight"].T + w[p + "mlp.c_fc.bias"]
    h = h * torch.sigmoid(1.702 * h)  # QuickGELU
    tokens = tokens + h @ w[p + "mlp.c_proj.weight"].T + w[p + "mlp.c_proj.bias"]
    expected = _layer_norm(tokens[:, 0], w["ln_post.weight"], w["ln_post.bias"]) @ w["proj"]
    with torch.no_grad():
        ours = c.CLIPVisual(TINY).double()
        ours.load_state_dict(model.visual.state_dict())
        torch.testing.assert_close(ours(x), expected, rtol=1e-10, atol=1e-10)


def test_loader_reads_openais_archive_and_float16_state_dicts(tiny, tmp_path):
    model, archive = tiny
    x = torch.randn(2, 3, 28, 28, generator=torch.Generator().manual_seed(2))
    loaded, path = c.load_clip(TINY.name, path=archive)  # read without running its code
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x)) and path == archive
    half = {k: v.half() for k, v in model.state_dict().items()}
    torch.save(half, tmp_path / "half.pt")
    from_half, _ = c.load_clip(TINY.name, path=tmp_path / "half.pt")
    assert from_half.proj.dtype == torch.float32
    assert torch.equal(from_half.proj, half["visual.proj"].float())
    del half["visual.ln_post.bias"]
    torch.save(half, tmp_path / "partial.pt")
    with pytest.raises(GenbenchError, match=r"partial.pt: not the clip-test weights \(1 "
                                            r"missing.*visual.ln_post.bias"):
        c.load_clip(TINY.name, path=tmp_path / "partial.pt")


def test_download_is_checked_against_the_sha256_in_openais_url(tiny, tmp_path, monkeypatch,
                                                               fresh_cache):
    _, archive = tiny
    good = tmp_path / file_digest(archive)
    good.mkdir()
    (good / "ViT-test.pt").write_bytes(archive.read_bytes())
    monkeypatch.setitem(c.CLIP_CONFIGS._entries, TINY.name, c.CLIPConfig(
        **{**TINY.__dict__, "url": (good / "ViT-test.pt").as_uri()}))
    network, path = c.load_clip(TINY.name)
    assert file_digest(path) == good.name and network.config.embed_dim == 4
    bad = tmp_path / ("0" * 64)
    bad.mkdir()
    (bad / "ViT-bad.pt").write_bytes(archive.read_bytes())
    monkeypatch.setitem(c.CLIP_CONFIGS._entries, TINY.name, c.CLIPConfig(
        **{**TINY.__dict__, "url": (bad / "ViT-bad.pt").as_uri()}))
    with pytest.raises(GenbenchError, match="is not the published 0000"):
        c.load_clip(TINY.name)


def test_clip_protocol_crops_the_centre_then_pil_bicubic(rng):
    images = torch.from_numpy(rng.integers(0, 256, (2, 3, 30, 40), dtype=np.uint8))
    out = get_protocol("clip").at_size(28)(images)
    square = images[0, :, :, 5:35].permute(1, 2, 0).numpy()
    expected = np.array(Image.fromarray(square, "RGB").resize((28, 28),
                                                               Image.Resampling.BICUBIC))
    assert out.shape == (2, 3, 28, 28)
    assert torch.equal(out[0], torch.from_numpy(expected).permute(2, 0, 1).float())


def _official_cmmd(x: np.ndarray, y: np.ndarray) -> float:
    """google-research/cmmd distance.mmd, on unit-length embeddings, in numpy float64."""
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    y = y / np.linalg.norm(y, axis=1, keepdims=True)
    xs, ys = np.diag(x @ x.T), np.diag(y @ y.T)
    gamma = 1 / (2 * 10 ** 2)
    k_xx = np.mean(np.exp(-gamma * (-2 * x @ x.T + xs[:, None] + xs[None, :])))
    k_xy = np.mean(np.exp(-gamma * (-2 * x @ y.T + xs[:, None] + ys[None, :])))
    k_yy = np.mean(np.exp(-gamma * (-2 * y @ y.T + ys[:, None] + ys[None, :])))
    return 1000 * (k_xx + k_yy - 2 * k_xy)


def test_cmmd_is_the_official_definition(rng):
    x = rng.normal(size=(300, 16)) + 0.3
    y = rng.normal(size=(250, 16))
    value = cmmd(samples=x, reference=y, block=64).value
    assert value == pytest.approx(_official_cmmd(x, y), rel=1e-10) and value > 0.01
    assert cmmd(samples=3.0 * x, reference=y, block=1000).value == pytest.approx(value,
                                                                                rel=1e-10)
    assert cmmd(samples=y, reference=y).value == pytest.approx(0.0, abs=1e-12)


def test_clip_extractor_and_cmmd_end_to_end(tiny, fresh_cache, capsys):
    _, archive = tiny
    assert cli_main(["eval", "digits", "--ref", "digits", "--num-images", "40",
                     "--extractor", TINY.name, "--weights", str(archive),
                     "--metrics", "fid,cmmd", "--json", "--quiet"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["protocol"] == "clip" and record["extractor"].startswith("clip-test:")
    assert record["metrics"]["fid"]["value"] == pytest.approx(0.0, abs=1e-6)
    assert record["metrics"]["cmmd"]["value"] == pytest.approx(0.0, abs=1e-9)
    assert record["metrics"]["cmmd"]["num_samples"] == 40
