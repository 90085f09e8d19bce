"""RCG's self-supervised image encoder, at toy scale: a small CNN trained without labels.

* **Backbone** (``ConvEncoder``): a 3×3 stem and stages of two 3×3 convolutions (batch norm,
  ReLU; the first of each later stage strided), global average pooling: ``feature_dim`` =
  width · 2^(stages − 1) features, for images of 28 to 64 pixels.
* **Projection head** (``projection_head``): MoCo v3's ``build_mlp(3, …)``: Linear → BN →
  ReLU → Linear → BN → ReLU → Linear → BN without affine parameters, to ``rep_dim``.
* **Representation**: the head's output standardised per sample, (r − mean(r)) / std(r)
  (std with Bessel's correction, as RCG's code), ``rep_dim`` 256 in the paper.
* **Objective**: SimCLR's NT-Xent (InfoNCE over the 2N views of N images, each view's
  positive the other view of its image, temperature τ) on the head outputs of two random
  views (``augment``: random resized crop, horizontal flip, brightness and contrast jitter),
  every random choice drawn from the epoch's generator. MoCo v3 uses the same InfoNCE with a
  momentum encoder and a predictor; at this scale the plain symmetric form suffices. Under
  torchrun the negatives are the process's own examples (no all-gather).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from genbench.errors import GenbenchError
from genbench.registry import Registry


@dataclass(frozen=True)
class EncoderConfig:
    """The encoder's size: image channels, stem width, stages (each halves the side after
    the first), head hidden width, representation dimension, and the NT-Xent temperature."""

    name: str
    image_channels: int = 1
    width: int = 32
    stages: int = 3
    head_hidden: int = 512
    rep_dim: int = 64
    temperature: float = 0.2

    def __post_init__(self) -> None:
        if min(self.image_channels, self.width, self.stages, self.head_hidden,
               self.rep_dim) < 1:
            raise GenbenchError(f"encoder configuration {self.name}: every size must be >= 1")
        if self.rep_dim < 2:
            raise GenbenchError("a standardised representation needs rep_dim >= 2")
        if not self.temperature > 0:
            raise GenbenchError(f"the temperature must be positive, got {self.temperature}")

    @property
    def feature_dim(self) -> int:
        return self.width * 2 ** (self.stages - 1)

    def to_dict(self) -> dict:
        return asdict(self)

    def with_options(self, **options) -> EncoderConfig:
        unknown = set(options) - set(self.to_dict())
        if unknown:
            raise GenbenchError(f"unknown encoder option(s) {', '.join(sorted(unknown))}")
        return replace(self, **options)


ENCODER_CONFIGS: Registry[EncoderConfig] = Registry("encoder configuration")
ENCODER_CONFIGS.register("fmnist", EncoderConfig("fmnist"))
ENCODER_CONFIGS.register("fmnist-s", EncoderConfig("fmnist-s", width=16, head_hidden=256))
ENCODER_CONFIGS.register("tiny", EncoderConfig("tiny", width=8, stages=2, head_hidden=32,
                                               rep_dim=8))


def _conv_bn(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class ConvEncoder(nn.Module):
    """Backbone: uint8-derived images in [-1, 1], N×C×H×W → N×feature_dim."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        layers, cur = _conv_bn(config.image_channels, config.width), config.width
        for stage in range(config.stages):
            out = config.width * 2 ** stage
            layers += _conv_bn(cur, out, 2 if stage else 1) + _conv_bn(out, out)
            cur = out
        self.features = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3))


def projection_head(cin: int, hidden: int, out: int) -> nn.Sequential:
    """MoCo v3's 3-layer projection MLP (the last batch norm without affine parameters)."""
    return nn.Sequential(nn.Linear(cin, hidden, bias=False), nn.BatchNorm1d(hidden),
                         nn.ReLU(inplace=True), nn.Linear(hidden, hidden, bias=False),
                         nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                         nn.Linear(hidden, out, bias=False), nn.BatchNorm1d(out, affine=False))


def standardize(rep: torch.Tensor) -> torch.Tensor:
    """Each row to mean 0 and (Bessel-corrected) standard deviation 1."""
    return (rep - rep.mean(dim=1, keepdim=True)) / rep.std(dim=1, keepdim=True)


class SSLEncoder(nn.Module):
    """Backbone plus head. ``forward`` gives the head output (the training objective's);
    ``representation`` the standardised one RCG conditions on; ``features`` the backbone's
    (for linear probes)."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = ConvEncoder(config)
        self.head = projection_head(config.feature_dim, config.head_hidden, config.rep_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def representation(self, x: torch.Tensor) -> torch.Tensor:
        return standardize(self(x).float())


def nt_xent(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's loss of paired views ``a[i]``, ``b[i]`` (N×D each): cross-entropy of each of
    the 2N views against the other 2N − 1 by cosine similarity / τ, its positive the other
    view of its image; the mean over the 2N views."""
    z = F.normalize(torch.cat([a, b]).float(), dim=1)
    n = len(a)
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, target)


def augment(x: torch.Tensor, generator: torch.Generator, *, scale: tuple[float, float]
            = (0.3, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3), flip: float = 0.5,
            jitter: float = 0.4) -> torch.Tensor:
    """One random view of each image of ``x`` (float N×C×H×W in [-1, 1]): a resized crop of
    area fraction in ``scale`` and aspect ratio in ``ratio`` (bilinear, back to H×W), a
    horizontal flip with probability ``flip``, then brightness and contrast factors in
    [1 − jitter, 1 + jitter]. Every number comes from ``generator`` (CPU), in a fixed order."""
    n = len(x)
    u = torch.rand((n, 7), generator=generator, dtype=torch.float64)
    area = scale[0] + (scale[1] - scale[0]) * u[:, 0]
    log_r = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[:, 1]
    aspect = torch.exp(log_r)
    w = torch.sqrt(area * aspect).clamp(max=1.0)
    h = torch.sqrt(area / aspect).clamp(max=1.0)
    cx = (u[:, 2] * 2 - 1) * (1 - w)  # crop centre in [-1 + w, 1 - w] (normalised coords)
    cy = (u[:, 3] * 2 - 1) * (1 - h)
    sign = torch.where(u[:, 4] < flip, -1.0, 1.0).to(torch.float64)
    theta = torch.zeros((n, 2, 3), dtype=torch.float64)
    theta[:, 0, 0], theta[:, 0, 2] = w * sign, cx
    theta[:, 1, 1], theta[:, 1, 2] = h, cy
    grid = F.affine_grid(theta.to(x.dtype).to(x.device), list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    bright = (1 + jitter * (2 * u[:, 5] - 1)).to(x.dtype).to(x.device)[:, None, None, None]
    contrast = (1 + jitter * (2 * u[:, 6] - 1)).to(x.dtype).to(x.device)[:, None, None, None]
    unit = (out + 1) / 2 * bright
    mean = unit.mean(dim=(1, 2, 3), keepdim=True)
    unit = (unit - mean) * contrast + mean
    return (unit.clamp(0, 1) * 2 - 1)
