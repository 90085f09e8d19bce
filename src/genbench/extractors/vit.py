"""Vision-transformer parts with timm's parameter names, shared by the ViTs genbench reads
from official checkpoints (MoCo v3's, DINOv2's): patch embedding, multi-head attention, the
GELU MLP and the pre-norm block (LayerNorm eps 1e-6), with DINOv2's LayerScale as an option
(``ls1.gamma``, ``ls2.gamma``; absent, the block has exactly timm's plain parameters)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genbench.errors import GenbenchError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Attention(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, tokens, c = x.shape
        q, k, v = self.qkv(x).reshape(n, tokens, 3, self.heads, c // self.heads) \
            .permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(d)) v
        return self.proj(out.transpose(1, 2).reshape(n, tokens, c))


class Mlp(nn.Module):
    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(width, hidden), nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class LayerScale(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Block(nn.Module):
    def __init__(self, width: int, heads: int, mlp_ratio: float,
                 layer_scale: bool = False) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width, eps=1e-6)
        self.attn = Attention(width, heads)
        self.ls1 = LayerScale(width) if layer_scale else nn.Identity()
        self.norm2 = nn.LayerNorm(width, eps=1e-6)
        self.mlp = Mlp(width, int(width * mlp_ratio))
        self.ls2 = LayerScale(width) if layer_scale else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, width: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, width, patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


def load_checked(network: nn.Module, state: dict, where: str, what: str,
                 prefix: str = "", strict: bool = True) -> nn.Module:
    """``network`` with the float32 weights of ``state`` (an official file's, names without
    ``prefix``), in eval mode; a file that lacks a weight, has one of another shape or
    (``strict``) one the network does not have (e.g. DINOv2's register tokens of a ``_reg4``
    file) is refused with one line naming the first (with its name in the file)."""
    own = network.state_dict()
    missing = sorted(set(own) - set(state))
    shapes = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    extra = sorted(set(state) - set(own)) if strict else []
    if missing or shapes or extra:
        raise GenbenchError(f"{where}: not {what} ({len(missing)} missing, {len(shapes)} of "
                            f"other shapes, {len(extra)} unknown, e.g. "
                            f"{prefix + (missing or shapes or extra)[0]!r})")
    network.load_state_dict({k: state[k].float() for k in own})
    return network.eval().requires_grad_(False)


class Normalised(nn.Module):
    """``network`` on a protocol's 0..255 values: x / 255, then (x − mean) / std."""

    def __init__(self, network: nn.Module, mean: tuple[float, ...],
                 std: tuple[float, ...]) -> None:
        super().__init__()
        self.network = network
        self.register_buffer("mean", torch.tensor(mean)[None, :, None, None])
        self.register_buffer("std", torch.tensor(std)[None, :, None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network((x / 255.0 - self.mean) / self.std)


def official_extractor(name: str, load, mean: tuple[float, ...], std: tuple[float, ...],
                       protocol: str):
    """The extractor factory of a network read from an official file: ``load(name, path=)``
    gives (network, file); features of the 0..255 values the protocol gives, normalised;
    the file's sha256 keys the cache."""
    from genbench.extractors import ModuleExtractor
    from genbench.fileio import file_digest

    def factory(weights: str | None = None, device: str | torch.device = "cpu",
                **_: object) -> ModuleExtractor:
        network, path = load(name, path=weights)
        return ModuleExtractor(Normalised(network, mean, std), name, network.feature_dim,
                               identity=f"{name}:{file_digest(path)[:16]}", device=device,
                               input_size=network.input_size, default_protocol=protocol,
                               input_range="0..255")
    return factory
