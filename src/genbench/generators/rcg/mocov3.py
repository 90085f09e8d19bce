"""The official MoCo v3 ViT encoders (Chen, Xie & He 2021), RCG's representation network at
ImageNet scale, read from their published checkpoints.

* **Files** (``MOCOV3_CHECKPOINTS``): ``vit-b-300ep.pth.tar`` and ``vit-l-300ep.pth.tar`` from
  ``dl.fbaipublicfiles.com/moco-v3``: a ``torch.save`` dict whose ``state_dict`` holds
  ``module.base_encoder.*`` (the ViT and its projection head), ``module.momentum_encoder.*``
  and ``module.predictor.*``. Only the base encoder is read. Facebook publishes no checksum
  for them; the download records the file's sha256 beside it in the cache, every later use
  checks it, and ``sha256=`` pins a digest the user trusts.
* **Network** (``MoCoViT``): timm's ``VisionTransformer`` as MoCo v3 configures it, written
  here with timm's parameter names: 16×16 patches, a class token, the fixed 2-D sin-cos
  position embedding (the class token's position zero), pre-norm blocks (LayerNorm eps 1e-6,
  qkv with bias, GELU MLP ×4), a final LayerNorm; ViT-B 768 wide × 12 blocks × 12 heads,
  ViT-L 1024 × 24 × 16. The projection head is MoCo v3's ``_build_mlp(3, width, 4096, 256)``
  (Linear without bias, BN, ReLU, twice, then Linear and BN without affine parameters).
* **Representation** (as RCG's ``RDM.get_input``): images in [0, 1], ImageNet mean/std,
  bicubic resize to 224, the class token after the final norm, the head, per-sample
  standardisation.

The pretrained files cannot be downloaded on genbench's build machines: the loader is tested
with a checkpoint in the official layout that the test builds, not with the real weights.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from genbench.errors import GenbenchError
from genbench.extractors.vit import IMAGENET_MEAN, IMAGENET_STD, Block, PatchEmbed, load_checked
from genbench.fileio import cache_dir, fetch_once, file_digest
from genbench.generators.rcg.encoder import projection_head, standardize
from genbench.registry import Registry

PREFIX = "module.base_encoder."


@dataclass(frozen=True)
class ViTConfig:
    name: str
    width: int
    depth: int
    heads: int
    patch: int = 16
    image_size: int = 224
    mlp_ratio: float = 4.0
    head_hidden: int = 4096
    rep_dim: int = 256


@dataclass(frozen=True)
class MoCoCheckpoint:
    config: ViTConfig
    url: str
    size_bytes: int | None = None


VIT_CONFIGS: Registry[ViTConfig] = Registry("MoCo v3 ViT configuration")
VIT_CONFIGS.register("vit-b", ViTConfig("vit-b", 768, 12, 12))
VIT_CONFIGS.register("vit-l", ViTConfig("vit-l", 1024, 24, 16))

MOCOV3_CHECKPOINTS: Registry[MoCoCheckpoint] = Registry("MoCo v3 checkpoint")
MOCOV3_CHECKPOINTS.register("mocov3-vit-b", MoCoCheckpoint(
    VIT_CONFIGS["vit-b"], "https://dl.fbaipublicfiles.com/moco-v3/vit-b-300ep/vit-b-300ep.pth.tar"))
MOCOV3_CHECKPOINTS.register("mocov3-vit-l", MoCoCheckpoint(
    VIT_CONFIGS["vit-l"], "https://dl.fbaipublicfiles.com/moco-v3/vit-l-300ep/vit-l-300ep.pth.tar"))


def sincos_position_embedding(grid: int, width: int) -> torch.Tensor:
    """MoCo v3's fixed 2-D sin-cos embedding (``build_2d_sincos_position_embedding``),
    1×(1 + grid²)×width, the class token first and zero: for the patch at row r, column c
    (token 1 + r·grid + c) a quarter of the channels each sin(r·ω), cos(r·ω), sin(c·ω),
    cos(c·ω), ω_k = 1 / 10000^(k / (width / 4)). (MoCo v3 calls the row coordinate "w": its
    ``meshgrid(grid_w, grid_h)`` puts grid_w on the slow axis.)"""
    if width % 4:
        raise GenbenchError("the sin-cos position embedding needs a width divisible by 4")
    w, h = torch.meshgrid(torch.arange(grid, dtype=torch.float32),
                          torch.arange(grid, dtype=torch.float32), indexing="ij")
    quarter = width // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float32) / quarter)
    out_w = w.flatten()[:, None] * omega[None]
    out_h = h.flatten()[:, None] * omega[None]
    emb = torch.cat([out_w.sin(), out_w.cos(), out_h.sin(), out_h.cos()], dim=1)[None]
    return torch.cat([torch.zeros(1, 1, width), emb], dim=1)


class MoCoViT(nn.Module):
    """The MoCo v3 base encoder: ``forward`` takes ImageNet-normalised N×3×224×224 images and
    returns the projection head's N×256; ``features`` the class token (after the norm)."""

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.config = config
        grid = config.image_size // config.patch
        self.patch_embed = PatchEmbed(config.patch, config.width)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.width))
        self.register_buffer("pos_embed", sincos_position_embedding(grid, config.width))
        self.blocks = nn.ModuleList(Block(config.width, config.heads, config.mlp_ratio)
                                    for _ in range(config.depth))
        self.norm = nn.LayerNorm(config.width, eps=1e-6)
        self.head = projection_head(config.width, config.head_hidden, config.rep_dim)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embed(x)
        tokens = torch.cat([self.cls_token.expand(len(x), -1, -1), tokens], dim=1)
        tokens = tokens + self.pos_embed
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def representation(self, images: torch.Tensor) -> torch.Tensor:
        """RCG's representation of uint8 N×3×H×W images (see the module docstring)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise GenbenchError(f"MoCo v3 takes N×3×H×W RGB images, got {tuple(images.shape)}"
                                " (repeat a grey channel three times)")
        x = images.float() / 255.0
        mean = torch.tensor(IMAGENET_MEAN, device=x.device)[None, :, None, None]
        std = torch.tensor(IMAGENET_STD, device=x.device)[None, :, None, None]
        x = (x - mean) / std
        x = F.interpolate(x, size=(self.config.image_size,) * 2, mode="bicubic",
                          align_corners=False)
        return standardize(self(x).float())


def _weights_from_checkpoint(payload: object, where: str) -> dict[str, torch.Tensor]:
    state = payload.get("state_dict") if isinstance(payload, dict) else None
    if not isinstance(state, dict):
        raise GenbenchError(f"{where}: not a MoCo v3 checkpoint (no state_dict)")
    weights = {k[len(PREFIX):]: v for k, v in state.items() if k.startswith(PREFIX)}
    if not weights:
        raise GenbenchError(f"{where}: a state_dict without {PREFIX}* keys; not a MoCo v3 "
                            "training checkpoint")
    return weights


def load_mocov3(name: str = "mocov3-vit-b", *, path: str | os.PathLike | None = None,
                sha256: str | None = None, download: bool = True) -> MoCoViT:
    """The MoCo v3 base encoder ``name`` (``MOCOV3_CHECKPOINTS``) from ``path``, or from the
    cache (downloaded once from the official URL when ``download``). The file's sha256 is
    checked against ``sha256`` when given, else against the digest recorded at download."""
    entry = MOCOV3_CHECKPOINTS.lookup(name)
    if path is None:
        path = _cached(entry, download)
    path = Path(path)
    if not path.is_file():
        raise GenbenchError(f"{path}: no such MoCo v3 checkpoint")
    digest = file_digest(path)
    recorded = Path(str(path) + ".sha256")
    want = sha256 or (recorded.read_text().split()[0] if recorded.is_file() else None)
    if want is not None and digest != want:
        raise GenbenchError(f"{path}: sha256 {digest[:16]}... is not the expected "
                            f"{want[:16]}...; the file is damaged or another one")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise GenbenchError(f"{path}: not a readable checkpoint ({type(exc).__name__})") \
            from None
    weights = _weights_from_checkpoint(payload, str(path))
    network = MoCoViT(entry.config)
    weights.setdefault("pos_embed", network.pos_embed)  # a buffer in some versions
    return load_checked(network, weights, str(path),
                        f"a {entry.config.name} MoCo v3 encoder", strict=False)


def _cached(entry: MoCoCheckpoint, download: bool) -> Path:
    path = cache_dir() / "weights" / "mocov3" / entry.url.rsplit("/", 1)[1]
    return fetch_once(entry.url, path, what=f"the {entry.config.name} MoCo v3 weights",
                      download_missing=download)
