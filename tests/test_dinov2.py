"""DINOv2 (FD_DINOv2): the architecture against the official sizes and a hand computation,
the loader with weights the test builds (Meta's file cannot be downloaded here), the two
preprocessing protocols, and the extractor end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from genbench.cli import main as cli_main
from genbench.errors import GenbenchError
from genbench.extractors import EXTRACTORS, ExtractorEntry
from genbench.extractors import dinov2 as d
from genbench.protocols import get_protocol

TINY = d.DinoConfig("dinov2-test", width=8, depth=1, heads=2, patch=14, pretrain_size=28)


@pytest.fixture
def tiny(monkeypatch, tmp_path):
    """A tiny DINOv2 registered as an extractor, its random weights saved as Meta's are."""
    monkeypatch.setitem(d.DINOV2_CONFIGS._entries, TINY.name, TINY)
    monkeypatch.setitem(EXTRACTORS._entries, TINY.name, ExtractorEntry(
        d.dinov2_extractor(TINY.name), "dinov2", d.INPUT_SIZE, "0..255"))
    torch.manual_seed(0)
    net = d.DinoViT(TINY)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    path = tmp_path / "dinov2_test_pretrain.pth"
    torch.save(net.state_dict(), path)
    return net.eval(), path


def test_sizes_are_the_official_ones():
    # timm's vit_{small,base,large}_patch14_dinov2: 22.06 M, 86.58 M, 304.37 M parameters
    counts = {name: sum(p.numel() for p in d.DinoViT(cfg).parameters())
              for name, cfg in d.DINOV2_CONFIGS.items()}
    assert counts == {"dinov2-vits14": 22_056_576, "dinov2-vitb14": 86_580_480,
                      "dinov2-vitl14": 304_368_640}
    large = d.DINOV2_CONFIGS["dinov2-vitl14"]
    assert large.grid == 37 and large.url == (
        "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/dinov2_vitl14_pretrain.pth")
    keys = set(d.DinoViT(TINY).state_dict())
    assert {"cls_token", "pos_embed", "mask_token", "patch_embed.proj.weight",
            "blocks.0.ls1.gamma", "blocks.0.attn.qkv.bias", "blocks.0.mlp.fc2.weight",
            "norm.bias"} <= keys


def _layer_norm(x, weight, bias):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + 1e-6) * weight + bias


def test_forward_equals_a_hand_computation(tiny):
    net, _ = tiny
    w = {k: v.double() for k, v in net.state_dict().items()}
    x = torch.randn(2, 3, 28, 28, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    # patches of 14 x 14, each flattened as (channel, row, column), times the conv kernel
    patches = x.unfold(2, 14, 14).unfold(3, 14, 14)  # 2 x 3 x 2 x 2 x 14 x 14
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(2, 4, 3 * 14 * 14)
    tokens = patches @ w["patch_embed.proj.weight"].reshape(8, -1).T + w["patch_embed.proj.bias"]
    tokens = torch.cat([w["cls_token"].expand(2, 1, 8), tokens], 1) + w["pos_embed"]
    h = _layer_norm(tokens, w["blocks.0.norm1.weight"], w["blocks.0.norm1.bias"])
    q, k, v = (h @ w["blocks.0.attn.qkv.weight"].T + w["blocks.0.attn.qkv.bias"]).split(8, -1)
    heads = []
    for j in range(2):
        qj, kj, vj = (t[..., 4 * j:4 * j + 4] for t in (q, k, v))
        heads.append(torch.softmax(qj @ kj.transpose(1, 2) / math.sqrt(4), -1) @ vj)
    attn = torch.cat(heads, -1) @ w["blocks.0.attn.proj.weight"].T + w["blocks.0.attn.proj.bias"]
    tokens = tokens + attn * w["blocks.0.ls1.gamma"]
    h = _layer_norm(tokens, w["blocks.0.norm2.weight"], w["blocks.0.norm2.bias"])
    h = h @ w["blocks.0.mlp.fc1.weight"].T + w["blocks.0.mlp.fc1.bias"]
    h = 0.5 * h * (1 + torch.erf(h / math.sqrt(2)))
    h = h @ w["blocks.0.mlp.fc2.weight"].T + w["blocks.0.mlp.fc2.bias"]
    tokens = tokens + h * w["blocks.0.ls2.gamma"]
    expected = _layer_norm(tokens, w["norm.weight"], w["norm.bias"])[:, 0]
    with torch.no_grad():
        ours = net.double()(x)
    torch.testing.assert_close(ours, expected, rtol=1e-10, atol=1e-10)


def test_positions_are_interpolated_with_dinov2s_offset(tiny):
    net, _ = tiny
    pos = net.pos_embed.detach()
    grid = pos[:, 1:].reshape(1, 2, 2, 8).permute(0, 3, 1, 2)
    kludge = F.interpolate(grid, scale_factor=(3.1 / 2, 3.1 / 2), mode="bicubic")
    plain = F.interpolate(grid, size=(3, 3), mode="bicubic")
    got = net.positions(3, 3).detach()
    assert got.shape == (1, 10, 8)
    torch.testing.assert_close(got[:, 1:], kludge.permute(0, 2, 3, 1).reshape(1, 9, 8))
    assert (got[:, 1:] - plain.permute(0, 2, 3, 1).reshape(1, 9, 8)).abs().max() > 1e-3
    assert torch.equal(got[:, :1], pos[:, :1]) and torch.equal(net.positions(2, 2), net.pos_embed)


def test_loader_reads_the_official_layout_and_refuses_others(tiny, tmp_path, fresh_cache):
    net, path = tiny
    loaded, where = d.load_dinov2(TINY.name, path=path)
    x = torch.randn(1, 3, 42, 42, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(loaded(x), net.float()(x)) and where == path
    state = torch.load(path, weights_only=True)
    del state["blocks.0.ls1.gamma"]
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(GenbenchError, match=r"partial.pth: not the dinov2-test weights \(1 "
                                            r"missing.*blocks.0.ls1.gamma"):
        d.load_dinov2(TINY.name, path=tmp_path / "partial.pth")
    state = torch.load(path, weights_only=True)
    state["register_tokens"] = torch.zeros(1, 4, 8)  # a *_reg4 file: another network
    torch.save(state, tmp_path / "reg4.pth")
    with pytest.raises(GenbenchError, match=r"reg4.pth: not the dinov2-test weights \(0 "
                                            r"missing, 0 of other shapes, 1 unknown.*"
                                            r"register_tokens"):
        d.load_dinov2(TINY.name, path=tmp_path / "reg4.pth")
    with pytest.raises(GenbenchError, match=r"dinov2-vitl14 weights is not cached; download "
                                            r"https://dl\.fbaipublicfiles\.com/dinov2/"):
        d.load_dinov2("dinov2-vitl14", download=False)


def test_protocols_are_edm2s_torch_mode_and_dgm_evals_pil(rng):
    images = torch.from_numpy(rng.integers(0, 256, (2, 3, 40, 30), dtype=np.uint8))
    torch_mode = get_protocol("dinov2")(images)
    expected = F.interpolate(images.float(), size=(224, 224), mode="bicubic", antialias=True)
    assert torch.equal(torch_mode, expected)
    pil_mode = get_protocol("dinov2-pil")(images)
    first = Image.fromarray(images[0].permute(1, 2, 0).numpy(), "RGB").resize(
        (224, 224), Image.Resampling.BICUBIC)
    assert torch.equal(pil_mode[0], torch.from_numpy(np.array(first)).permute(2, 0, 1).float())
    assert (torch_mode - pil_mode).abs().max() > 0.5  # two protocols, not one


def test_extractor_end_to_end(tiny, tmp_path, fresh_cache, capsys):
    _, path = tiny
    assert cli_main(["eval", "digits", "--ref", "digits", "--num-images", "40",
                     "--extractor", TINY.name, "--weights", str(path), "--metrics", "fid,pr",
                     "--json", "--quiet"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["protocol"] == "dinov2" and record["extractor"].startswith("dinov2-test:")
    assert record["metrics"]["fid"]["value"] == pytest.approx(0.0, abs=1e-6)
    assert record["metrics"]["pr"]["precision"] == 1.0
    # a protocol giving other values than the network takes is refused, not run
    assert cli_main(["eval", "digits", "--ref", "digits", "--num-images", "40",
                     "--extractor", TINY.name, "--weights", str(path), "--protocol", "tf",
                     "--metrics", "fid"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "protocol 'tf' gives [-1, 1] values, but extractor " \
        "'dinov2-test' takes 0..255" in err
