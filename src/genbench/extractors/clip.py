"""CLIP image embeddings (Radford et al. 2021) as feature spaces: CLIP-FD (clean-fid's
``model_name="clip_vit_b_32"``: FID's formula on CLIP's image embedding) and CMMD
(Jayasumana et al. 2024, ``--metrics cmmd`` on ``clip-vit-l14-336``).

* **Weights**: OpenAI's published files (``openaipublic.azureedge.net/clip/models/<sha256>/
  <name>.pt``, TorchScript archives of the whole model; the sha256 is the URL's folder, and
  OpenAI's own loader checks it: so does genbench). The archive is read without running its
  code (genbench's static TorchScript reader); a plain ``state_dict`` file with the same names
  (``clip.load(jit=False).state_dict()``) loads too. Only the ``visual.*`` tower is used.
* **Network** (``CLIPVisual``): OpenAI's ``VisionTransformer`` with its parameter names: a
  patch convolution without bias, a class embedding, learned positions, ``ln_pre``, residual
  attention blocks (``nn.MultiheadAttention``'s ``in_proj``/``out_proj``, LayerNorm eps 1e-5,
  an MLP ``c_fc``/``c_proj`` with QuickGELU x·σ(1.702x)), ``ln_post`` on the class token and
  the projection ``proj``: ``encode_image``'s output (not normalised; CMMD normalises).
* **Preprocessing** (protocol ``clip``): a centre crop to a square, PIL's bicubic resize of
  the uint8 image to the network's size, then /255 and CLIP's mean/std (inside the
  extractor): CMMD's ``_center_crop_and_resize`` exactly; for square images also OpenAI's
  ``Resize`` + ``CenterCrop`` and clean-fid's ``img_preprocess_clip``, which for other shapes
  resize the short side first, then crop. OpenAI's and clean-fid's loaders run the network
  in float16 on a GPU; genbench runs it in float32.

OpenAI's files cannot be downloaded on genbench's build machines: the architecture and
loader are tested with weights and a TorchScript archive the tests build, not the real ones.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from genbench.errors import GenbenchError
from genbench.extractors import register_extractor
from genbench.extractors.vit import load_checked, official_extractor
from genbench.fileio import cache_dir, fetch_once
from genbench.protocols import Protocol, register_protocol
from genbench.registry import Registry

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_OPENAI = "https://openaipublic.azureedge.net/clip/models/"


@dataclass(frozen=True)
class CLIPConfig:
    name: str
    width: int
    layers: int
    heads: int
    patch: int
    image_size: int
    embed_dim: int
    url: str | None = None

    @property
    def sha256(self) -> str | None:
        return self.url.rsplit("/", 2)[1] if self.url else None


CLIP_CONFIGS: Registry[CLIPConfig] = Registry("CLIP configuration")
for _cfg in (
        CLIPConfig("clip-vit-b32", 768, 12, 12, 32, 224, 512, _OPENAI + "40d365715913c9da9857"
                   "9312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt"),
        CLIPConfig("clip-vit-l14", 1024, 24, 16, 14, 224, 768, _OPENAI + "b8cca3fd41ae0c99ba7e"
                   "8951adf17d267cdb84cd88be6f7c2e0eca1737a03836/ViT-L-14.pt"),
        CLIPConfig("clip-vit-l14-336", 1024, 24, 16, 14, 336, 768, _OPENAI + "3035c92b350959924"
                   "f9f00213499208652fc7ea050643e8b385c2dac08641f02/ViT-L-14-336px.pt")):
    CLIP_CONFIGS.register(_cfg.name, _cfg)


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class _ResidualAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential()
        self.mlp.add_module("c_fc", nn.Linear(width, 4 * width))
        self.mlp.add_module("gelu", QuickGELU())
        self.mlp.add_module("c_proj", nn.Linear(4 * width, width))
        self.ln_2 = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # tokens x N x width
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class _Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int) -> None:
        super().__init__()
        self.resblocks = nn.Sequential(*[_ResidualAttentionBlock(width, heads)
                                         for _ in range(layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resblocks(x)


class CLIPVisual(nn.Module):
    """CLIP's image tower: CLIP-normalised N×3×S×S → ``encode_image`` (N × embed_dim)."""

    def __init__(self, config: CLIPConfig) -> None:
        super().__init__()
        self.config = config
        w = config.width
        self.conv1 = nn.Conv2d(3, w, config.patch, stride=config.patch, bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(w))
        self.positional_embedding = nn.Parameter(
            torch.zeros((config.image_size // config.patch) ** 2 + 1, w))
        self.ln_pre = nn.LayerNorm(w)
        self.transformer = _Transformer(w, config.layers, config.heads)
        self.ln_post = nn.LayerNorm(w)
        self.proj = nn.Parameter(torch.zeros(w, config.embed_dim))

    @property
    def feature_dim(self) -> int:
        return self.config.embed_dim

    @property
    def input_size(self) -> int:
        return self.config.image_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.conv1(x).flatten(2).transpose(1, 2)
        cls = self.class_embedding.to(tokens.dtype).expand(len(x), 1, -1)
        tokens = torch.cat([cls, tokens], dim=1) + self.positional_embedding.to(tokens.dtype)
        tokens = self.transformer(self.ln_pre(tokens).permute(1, 0, 2)).permute(1, 0, 2)
        return self.ln_post(tokens[:, 0]) @ self.proj


def load_clip(name: str = "clip-vit-l14-336", *, path: str | os.PathLike | None = None,
              download: bool = True) -> tuple[CLIPVisual, Path]:
    """CLIP ``name``'s image tower with OpenAI's weights: ``path`` or the cache (downloaded
    once, its sha256 checked against the one in OpenAI's URL)."""
    from genbench.extractors.inception_weights import _read_raw_state_dict

    config = CLIP_CONFIGS.lookup(name)
    if path is None:
        if config.url is None:
            raise GenbenchError(f"{name}: no official file; pass its weights with --weights")
        path = fetch_once(config.url, cache_dir() / "weights" / "clip" /
                          config.url.rsplit("/", 1)[1], sha256=config.sha256,
                          what=f"the {name} weights", download_missing=download)
    path = Path(path)
    if not path.is_file():
        raise GenbenchError(f"{path}: no such CLIP weights file")
    raw = _read_raw_state_dict(path)
    state = {k.removeprefix("visual."): v for k, v in raw.items() if k.startswith("visual.")}
    network = load_checked(CLIPVisual(config), state, str(path), f"the {name} weights",
                           prefix="visual.")  # OpenAI stores float16: read as float32
    return network, path


def clip_extractor(name: str):
    return official_extractor(name, load_clip, CLIP_MEAN, CLIP_STD, "clip")


def _centre_crop_pil_bicubic(batch: torch.Tensor, size: int) -> torch.Tensor:
    arr = batch.permute(0, 2, 3, 1).cpu().numpy()
    h, w = arr.shape[1:3]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    out = np.stack([np.asarray(Image.fromarray(img[top:top + side, left:left + side], "RGB")
                               .resize((size, size), Image.Resampling.BICUBIC))
                    for img in arr])
    return torch.from_numpy(out).permute(0, 3, 1, 2).float().to(batch.device)


register_protocol(Protocol(
    "clip", "centre crop, PIL bicubic resize of the uint8 image to 224 (OpenAI CLIP, clean-fid, "
    "CMMD); the extractor divides by 255 and applies CLIP's mean/std",
    _centre_crop_pil_bicubic, size=224, output="0..255"))
for _name, _cfg in CLIP_CONFIGS.items():
    register_extractor(_name, clip_extractor(_name), default_protocol="clip",
                       input_size=_cfg.image_size, input_range="0..255")
