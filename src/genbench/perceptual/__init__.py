"""Perceptual distances used as training losses (LPIPS, VGG16 backbone)."""

from genbench.perceptual.lpips import (
    LPIPS,
    VGG16_SHA256_PREFIX,
    VGG16_URL,
    VGG16Features,
    default_backbone_path,
    default_heads_path,
    load_lpips,
    locate_backbone,
    read_backbone,
    read_heads,
)

__all__ = [
    "LPIPS",
    "VGG16_SHA256_PREFIX",
    "VGG16_URL",
    "VGG16Features",
    "default_backbone_path",
    "default_heads_path",
    "load_lpips",
    "locate_backbone",
    "read_backbone",
    "read_heads",
]
