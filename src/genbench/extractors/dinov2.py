"""FD_DINOv2 (Stein et al. 2023, dgm-eval; EDM2's ``fd_dinov2``): Fréchet distance in the
feature space of DINOv2 ViT-L/14, ``--extractor dinov2-vitl14 --metrics fid`` (any metric runs
in this space: ``pr``, ``dc``, ``kid``, ...).

* **Weights**: Meta's official ``dinov2_vitl14_pretrain.pth`` (a plain ``state_dict``, read
  with ``weights_only=True``), downloaded once into the cache. Meta publishes no checksum: the
  first download's sha256 is recorded and every later use checks it (``--weights PATH`` takes
  a file you have; its sha256 keys the feature cache).
* **Network** (``DinoViT``): DINOv2's ``vit_large(patch_size=14, img_size=518,
  init_values=1.0, block_chunks=0)`` as ``torch.hub.load('facebookresearch/dinov2',
  'dinov2_vitl14')`` builds it, with its parameter names: a 14×14 patch embedding, a class
  token, learned positions for a 37×37 grid, 24 pre-norm blocks (LayerNorm eps 1e-6, 16
  heads, GELU MLP ×4, LayerScale), a final LayerNorm. 304,368,640 parameters (``mask_token``
  included: it is in the file, unused for features). Other inputs than 518 px interpolate the
  positions as DINOv2 does: bicubic, no antialias, ``scale_factor = (grid + 0.1) / 37`` (its
  "interpolate_offset" kludge, which changes the values, not just the size).
* **Features**: the class token after the final norm (1,024; the hub model's output, what
  dgm-eval and EDM2 use).
* **Preprocessing** (protocol ``dinov2``, EDM2's ``DINOv2Detector`` with its default
  ``resize_mode='torch'``): uint8 values as float, ``F.interpolate(bicubic, antialias=True)``
  to 224×224, then /255 and ImageNet mean/std. dgm-eval resizes with PIL's bicubic filter on
  uint8 images (EDM2's ``'pil'`` mode, "matches dgm-eval exactly"): protocol ``dinov2-pil``.

The pretrained weights cannot be downloaded on genbench's build machines: the architecture and
loader are tested with weights the tests build (parameter counts, a forward pass against a
hand computation on a tiny configuration), not with Meta's file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from genbench.errors import GenbenchError
from genbench.extractors import register_extractor
from genbench.extractors.vit import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Block,
    PatchEmbed,
    load_checked,
    official_extractor,
)
from genbench.fileio import cache_dir, fetch_once
from genbench.protocols import Protocol, register_protocol
from genbench.registry import Registry

INPUT_SIZE = 224
POS_OFFSET = 0.1  # DINOv2's interpolate_offset


@dataclass(frozen=True)
class DinoConfig:
    name: str
    width: int
    depth: int
    heads: int
    patch: int = 14
    pretrain_size: int = 518
    mlp_ratio: float = 4.0
    url: str | None = None

    @property
    def grid(self) -> int:
        return self.pretrain_size // self.patch


_META = "https://dl.fbaipublicfiles.com/dinov2/"
DINOV2_CONFIGS: Registry[DinoConfig] = Registry("DINOv2 configuration")
DINOV2_CONFIGS.register("dinov2-vits14", DinoConfig(
    "dinov2-vits14", 384, 12, 6, url=_META + "dinov2_vits14/dinov2_vits14_pretrain.pth"))
DINOV2_CONFIGS.register("dinov2-vitb14", DinoConfig(
    "dinov2-vitb14", 768, 12, 12, url=_META + "dinov2_vitb14/dinov2_vitb14_pretrain.pth"))
DINOV2_CONFIGS.register("dinov2-vitl14", DinoConfig(
    "dinov2-vitl14", 1024, 24, 16, url=_META + "dinov2_vitl14/dinov2_vitl14_pretrain.pth"))


class DinoViT(nn.Module):
    """DINOv2's ViT: ImageNet-normalised N×3×H×W (H, W multiples of the patch) → the class
    token after the final norm, N × width."""

    def __init__(self, config: DinoConfig) -> None:
        super().__init__()
        self.config = config
        self.patch_embed = PatchEmbed(config.patch, config.width)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.width))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + config.grid ** 2, config.width))
        self.mask_token = nn.Parameter(torch.zeros(1, config.width))  # training only
        self.blocks = nn.ModuleList(Block(config.width, config.heads, config.mlp_ratio,
                                          layer_scale=True) for _ in range(config.depth))
        self.norm = nn.LayerNorm(config.width, eps=1e-6)

    @property
    def feature_dim(self) -> int:
        return self.config.width

    input_size = INPUT_SIZE  # what its protocols give

    def positions(self, rows: int, cols: int) -> torch.Tensor:
        """The position embedding for a rows × cols patch grid (DINOv2's
        ``interpolate_pos_encoding``, square grids as every protocol here gives)."""
        grid = self.config.grid
        if rows == cols == grid:
            return self.pos_embed
        pos = self.pos_embed.float()
        patches = pos[:, 1:].reshape(1, grid, grid, -1).permute(0, 3, 1, 2)
        patches = F.interpolate(patches, mode="bicubic", antialias=False,
                                scale_factor=((cols + POS_OFFSET) / grid,
                                              (rows + POS_OFFSET) / grid))
        if patches.shape[-2:] != (cols, rows):
            raise GenbenchError(f"DINOv2 positions: {tuple(patches.shape[-2:])} is not the "
                                f"{cols} x {rows} grid")
        patches = patches.permute(0, 2, 3, 1).reshape(1, rows * cols, -1)
        return torch.cat([pos[:, :1], patches], dim=1).to(self.pos_embed.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patch = self.config.patch
        tokens = self.patch_embed(x)
        tokens = torch.cat([self.cls_token.expand(len(x), -1, -1), tokens], dim=1)
        tokens = tokens + self.positions(x.shape[-2] // patch, x.shape[-1] // patch)
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)[:, 0]


def load_dinov2(name: str = "dinov2-vitl14", *, path: str | os.PathLike | None = None,
                download: bool = True) -> tuple[DinoViT, Path]:
    """The network ``name`` with Meta's weights: ``path``, or the cache (downloaded once from
    the official URL when ``download``); a file that does not fit is refused with one line."""
    config = DINOV2_CONFIGS.lookup(name)
    if path is None:
        if config.url is None:
            raise GenbenchError(f"{name}: no official file; pass its weights with --weights")
        path = fetch_once(config.url, cache_dir() / "weights" / "dinov2" /
                          config.url.rsplit("/", 1)[1], what=f"the {name} weights",
                          download_missing=download)
    path = Path(path)
    if not path.is_file():
        raise GenbenchError(f"{path}: no such DINOv2 weights file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise GenbenchError(f"{path}: not a readable weights file ({type(exc).__name__})") \
            from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):  # a training file
        state = {k.removeprefix("backbone."): v for k, v in state["model"].items()}
    if not isinstance(state, dict):
        raise GenbenchError(f"{path}: holds a {type(state).__name__}, not a state_dict")
    return load_checked(DinoViT(config), state, str(path), f"the {name} weights"), path


def dinov2_extractor(name: str):
    return official_extractor(name, load_dinov2, IMAGENET_MEAN, IMAGENET_STD, "dinov2")


def _torch_bicubic(batch: torch.Tensor, size: int) -> torch.Tensor:
    return F.interpolate(batch.float(), size=(size, size), mode="bicubic", antialias=True)


def _pil_bicubic(batch: torch.Tensor, size: int) -> torch.Tensor:
    arr = batch.permute(0, 2, 3, 1).cpu().numpy()
    out = np.stack([np.asarray(Image.fromarray(img, "RGB").resize(
        (size, size), Image.Resampling.BICUBIC)) for img in arr])
    return torch.from_numpy(out).permute(0, 3, 1, 2).float().to(batch.device)


register_protocol(Protocol(
    "dinov2", "torch bicubic resize with antialias to 224 of 0..255 values (EDM2's "
    "DINOv2Detector, resize_mode='torch'); the extractor divides by 255 and applies ImageNet "
    "mean/std", _torch_bicubic, size=INPUT_SIZE, output="0..255"))
register_protocol(Protocol(
    "dinov2-pil", "PIL bicubic resize of the uint8 image to 224 (dgm-eval; EDM2's "
    "resize_mode='pil'); the extractor divides by 255 and applies ImageNet mean/std",
    _pil_bicubic, size=INPUT_SIZE, output="0..255"))
for _name in DINOV2_CONFIGS:
    register_extractor(_name, dinov2_extractor(_name), default_protocol="dinov2",
                       input_size=INPUT_SIZE, input_range="0..255")

