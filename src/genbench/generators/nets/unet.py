"""A compact U-Net in the DDPM++ / EDM family for flow velocities v_θ(x_t, t [, label]).

Residual blocks (GroupNorm, SiLU, 3×3 convolutions, the embedding added between them, dropout,
zero-initialised last convolution, skip scaled by 1/√2 as DDPM++), self-attention at the
resolutions named, average-pool down / nearest up, Fourier (EDM) or sinusoidal (DDPM) time
embedding, an optional class embedding, an optional representation conditioning (RCG: a
zero-initialised projection of a representation vector added to the embedding, and a learned
null representation, N(0, 0.02²) at the start, standing in for a dropped one), and a
zero-initialised output convolution, so a new network predicts v = 0. Sized by a named
configuration (``UNET_CONFIGS``).
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
class UNetConfig:
    name: str
    image_channels: int = 3
    base_channels: int = 64
    channel_mult: tuple[int, ...] = (1, 2, 2)
    num_blocks: int = 2                       # residual blocks per resolution
    attn_resolutions: tuple[int, ...] = (7,)  # feature-map sides with self-attention
    dropout: float = 0.1
    embedding: str = "fourier"                # "fourier" (EDM) or "positional" (DDPM)
    num_classes: int | None = None            # class-conditional when set
    rep_dim: int | None = None                # representation-conditioned (RCG) when set
    groups: int = 32

    def to_dict(self) -> dict:
        return asdict(self)

    def with_options(self, **options) -> UNetConfig:
        unknown = set(options) - set(self.to_dict())
        if unknown:
            raise GenbenchError(f"unknown U-Net option(s) {', '.join(sorted(unknown))}")
        return replace(self, **options)


UNET_CONFIGS: Registry[UNetConfig] = Registry("U-Net configuration")
UNET_CONFIGS.register("tiny", UNetConfig("tiny", base_channels=16, channel_mult=(1, 2),
                                         num_blocks=1, attn_resolutions=(4,), groups=8))
UNET_CONFIGS.register("fmnist-tiny", UNetConfig("fmnist-tiny", base_channels=16,
                                                channel_mult=(1, 2, 2), num_blocks=1,
                                                attn_resolutions=(7,), dropout=0.0, groups=8))
UNET_CONFIGS.register("fmnist-xs", UNetConfig("fmnist-xs", base_channels=32,
                                              channel_mult=(1, 2, 2), num_blocks=1,
                                              attn_resolutions=(7,), dropout=0.0, groups=8))
UNET_CONFIGS.register("fmnist-s", UNetConfig("fmnist-s", base_channels=48,
                                             channel_mult=(1, 2, 2), num_blocks=2,
                                             attn_resolutions=(7,), groups=16))


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(groups, channels), channels, eps=1e-6)


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class FourierEmbedding(nn.Module):
    """EDM's random Fourier features of t (fixed frequencies, scale 16)."""

    def __init__(self, channels: int, scale: float = 16.0) -> None:
        super().__init__()
        self.register_buffer("freqs", torch.randn(channels // 2) * scale)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        x = t.float()[:, None] * (2 * math.pi * self.freqs[None, :])
        return torch.cat([x.cos(), x.sin()], dim=1)


class PositionalEmbedding(nn.Module):
    """DDPM's sinusoidal embedding of 1000·t."""

    def __init__(self, channels: int, max_positions: int = 10000) -> None:
        super().__init__()
        self.channels, self.max_positions = channels, max_positions

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.channels // 2
        freqs = torch.exp(-math.log(self.max_positions) * torch.arange(half, device=t.device)
                          / half)
        x = (1000 * t.float())[:, None] * freqs[None, :]
        return torch.cat([x.cos(), x.sin()], dim=1)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb: int, dropout: float, groups: int) -> None:
        super().__init__()
        self.norm0, self.conv0 = _norm(cin, groups), nn.Conv2d(cin, cout, 3, padding=1)
        self.affine = nn.Linear(emb, cout)
        self.norm1 = _norm(cout, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv1 = _zero(nn.Conv2d(cout, cout, 3, padding=1))
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv0(F.silu(self.norm0(x)))
        h = h + self.affine(emb)[:, :, None, None]
        h = self.conv1(self.dropout(F.silu(self.norm1(h))))
        return (h + self.skip(x)) / math.sqrt(2)


class Attention(nn.Module):
    def __init__(self, channels: int, groups: int, heads: int = 1) -> None:
        super().__init__()
        self.norm, self.heads = _norm(channels, groups), heads
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = _zero(nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(n, 3, self.heads, c // self.heads, h * w) \
            .unbind(1)
        out = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2),
                                             v.transpose(-1, -2))
        return (x + self.proj(out.transpose(-1, -2).reshape(n, c, h, w))) / math.sqrt(2)


class UNet(nn.Module):
    """v_θ(x, t, labels): ``x`` N×C×H×W, ``t`` N times in [0, 1], ``labels`` N ints (a
    class-conditional configuration) or None."""

    def __init__(self, config: UNetConfig, image_size: int) -> None:
        super().__init__()
        self.config, self.image_size = config, image_size
        c, g = config.base_channels, config.groups
        emb = 4 * c
        embed = {"fourier": FourierEmbedding, "positional": PositionalEmbedding}
        if config.embedding not in embed:
            raise GenbenchError(f"unknown time embedding {config.embedding!r}")
        self.time = embed[config.embedding](c)
        self.emb = nn.Sequential(nn.Linear(c, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.label = nn.Embedding(config.num_classes, emb) if config.num_classes else None
        if config.rep_dim:
            self.rep = _zero(nn.Linear(config.rep_dim, emb))
            self.null_rep = nn.Parameter(torch.randn(1, config.rep_dim) * 0.02)
        self.input = nn.Conv2d(config.image_channels, c, 3, padding=1)
        self.down, skips, size, cur = nn.ModuleList(), [c], image_size, c
        for level, mult in enumerate(config.channel_mult):
            for _ in range(config.num_blocks):
                block = nn.ModuleList([ResBlock(cur, c * mult, emb, config.dropout, g)])
                cur = c * mult
                if size in config.attn_resolutions:
                    block.append(Attention(cur, g))
                self.down.append(block)
                skips.append(cur)
            if level < len(config.channel_mult) - 1:
                self.down.append(nn.ModuleList([nn.AvgPool2d(2, ceil_mode=True)]))
                skips.append(cur)
                size = math.ceil(size / 2)
        self.mid = nn.ModuleList([ResBlock(cur, cur, emb, config.dropout, g), Attention(cur, g),
                                  ResBlock(cur, cur, emb, config.dropout, g)])
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(config.channel_mult))):
            for _ in range(config.num_blocks + 1):
                block = nn.ModuleList([ResBlock(cur + skips.pop(), c * mult, emb,
                                                config.dropout, g)])
                cur = c * mult
                if size in config.attn_resolutions:
                    block.append(Attention(cur, g))
                self.up.append(block)
            if level > 0:
                self.up.append(nn.ModuleList([nn.Upsample(scale_factor=2, mode="nearest")]))
                size *= 2
        self.out_norm = _norm(cur, g)
        self.output = _zero(nn.Conv2d(cur, config.image_channels, 3, padding=1))

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None,
                rep: torch.Tensor | None = None,
                drop: torch.Tensor | None = None) -> torch.Tensor:
        """``rep`` N×rep_dim representations (None: the null one for all), ``drop`` N bools:
        where true the null representation replaces the given one."""
        emb = self.emb(self.time(t))
        if self.label is not None:
            if labels is None:
                raise GenbenchError("this U-Net is class-conditional: give labels")
            emb = emb + self.label(labels)
        if self.config.rep_dim:
            null = self.null_rep.to(emb.dtype).expand(len(x), -1)
            if rep is None:
                rep = null
            elif drop is not None:
                rep = torch.where(drop[:, None], null, rep.to(emb.dtype))
            emb = emb + self.rep(rep.to(emb.dtype))
        elif rep is not None:
            raise GenbenchError("this U-Net is not representation-conditioned")
        emb = F.silu(emb)
        h = self.input(x)
        skips = [h]
        for block in self.down:
            h = self._run(block, h, emb)
            skips.append(h)
        for layer in self.mid:
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
        for block in self.up:
            if isinstance(block[0], nn.Upsample):
                h = block[0](h)
                skip = skips[-1]
                h = h[..., :skip.shape[-2], :skip.shape[-1]]  # odd sizes (7 -> 14 -> 28)
                continue
            h = self._run(block, torch.cat([h, skips.pop()], dim=1), emb)
        return self.output(F.silu(self.out_norm(h)))

    @staticmethod
    def _run(block: nn.ModuleList, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        for layer in block:
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
        return h
