"""Self-supervised feature spaces as extractors, so any metric can run in them:

* ``rcg-encoder``: an RCG encoder (``--weights``: an RCG checkpoint set by name, file or run
  directory, or an encoder file): the standardised representation (``rep_dim`` features) of
  the ``pytorch-fid`` protocol's output at the encoder's size (2x/255 − 1, what the encoder
  was trained on; grey images are the mean of the three channels);
* ``mocov3-vit-b`` / ``mocov3-vit-l``: the official MoCo v3 encoders (``--weights``: the
  checkpoint file; else the cache, downloaded once), RCG's representation of the
  ``imagenet-bicubic`` protocol's output (256 features). Not run with the real weights on
  genbench's build machines (see ``genbench.generators.rcg.mocov3``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genbench.errors import GenbenchError
from genbench.extractors import ModuleExtractor, register_extractor
from genbench.protocols import Protocol, register_protocol

ENCODER_SIZE = 28  # the shipped Fashion-MNIST encoders'; other sizes are resized to theirs


def _imagenet_bicubic(batch: torch.Tensor, size: int) -> torch.Tensor:
    from genbench.generators.rcg.mocov3 import IMAGENET_MEAN, IMAGENET_STD

    x = batch.float() / 255.0
    mean = torch.tensor(IMAGENET_MEAN, device=x.device)[None, :, None, None]
    std = torch.tensor(IMAGENET_STD, device=x.device)[None, :, None, None]
    return F.interpolate((x - mean) / std, size=(size, size), mode="bicubic",
                         align_corners=False)


register_protocol(Protocol(
    "imagenet-bicubic", "x/255, ImageNet mean/std, torch bicubic resize to 224 (RCG's MoCo v3 "
    "input)", _imagenet_bicubic, size=224, output="ImageNet-normalised"))


class _EncoderFeatures(nn.Module):
    def __init__(self, network: nn.Module, channels: int, size: int) -> None:
        super().__init__()
        self.network, self.channels, self.size = network, channels, size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear",
                              align_corners=False)
        if self.channels == 1:
            x = x.mean(dim=1, keepdim=True)
        return self.network.representation(x)


def rcg_encoder(weights: str | None = None, device: str | torch.device = "cpu",
                **_: object) -> ModuleExtractor:
    if weights is None:
        raise GenbenchError("--extractor rcg-encoder needs --weights: an RCG checkpoint set "
                            "(name, file or run directory) or an encoder file")
    from genbench.generators.rcg.zoo import open_encoder

    encoder = open_encoder(weights)
    module = _EncoderFeatures(encoder.network, encoder.config.image_channels,
                              encoder.image_size)
    return ModuleExtractor(module, "rcg-encoder", encoder.rep_dim,
                           identity=f"rcg-encoder:{encoder.sha256}", device=device,
                           input_size=encoder.image_size, default_protocol="pytorch-fid")


class _MoCoFeatures(nn.Module):
    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from genbench.generators.rcg.encoder import standardize
        return standardize(self.network(x).float())


def _mocov3(name: str):
    def factory(weights: str | None = None, device: str | torch.device = "cpu",
                **_: object) -> ModuleExtractor:
        from genbench.fileio import file_digest
        from genbench.generators.rcg.mocov3 import MOCOV3_CHECKPOINTS, _cached, load_mocov3

        path = weights or _cached(MOCOV3_CHECKPOINTS[name], download=True)
        network = load_mocov3(name, path=path)
        return ModuleExtractor(_MoCoFeatures(network), name, network.config.rep_dim,
                               identity=f"{name}:{file_digest(path)}", device=device,
                               input_size=network.config.image_size,
                               default_protocol="imagenet-bicubic",
                               input_range="ImageNet-normalised")
    return factory


register_extractor("rcg-encoder", rcg_encoder, default_protocol="pytorch-fid",
                   input_size=ENCODER_SIZE)
for _name in ("mocov3-vit-b", "mocov3-vit-l"):
    register_extractor(_name, _mocov3(_name), default_protocol="imagenet-bicubic",
                       input_size=224, input_range="ImageNet-normalised")
