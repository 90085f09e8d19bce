"""Preprocessing protocols: uint8 images -> the float tensor an extractor expects.

A protocol is the resize filter plus the normalisation. It changes FID by more than any other
numerical detail (0.5 % between ``tf`` and ``pytorch-fid``, ~6 % for ``clean`` on small images),
so every result names its protocol. Registered protocols:

``tf``           TF1 ``ResizeBilinear`` (align_corners=False, no half-pixel centres, no
                 antialias) on float 0..255, then (x − 128)/128. What TTUR, ADM's evaluator,
                 NVlabs and torch-fidelity compute; the numbers papers report. Default.
``pytorch-fid``  x/255, ``F.interpolate(bilinear, align_corners=False)`` without antialias,
                 then 2x − 1, as pytorch-fid's ``InceptionV3.forward``.
``clean``        clean-fid's ``clean`` mode: PIL bicubic resize of each channel as a float32
                 ('F') image, clipped to [0, 255], not re-quantised, then (x − 128)/128.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from genbench.errors import GenbenchError
from genbench.registry import Registry

INCEPTION_SIZE = 299


def _tf1_axis_weights(in_size: int, out_size: int, device) -> tuple[torch.Tensor, ...]:
    """Source indices and weights of TF1 legacy bilinear resizing along one axis.

    TF1 computes scale = in/out in float32 and src = dst * scale (no half-pixel offset).
    """
    scale = np.float32(in_size) / np.float32(out_size)
    src = torch.arange(out_size, dtype=torch.float32, device=device) * torch.tensor(
        scale, dtype=torch.float32)
    lo = torch.floor(src)
    frac = src - lo
    lo = lo.long().clamp(max=in_size - 1)
    hi = (lo + 1).clamp(max=in_size - 1)
    return lo, hi, frac


def resize_bilinear_tf1(x: torch.Tensor, size: int) -> torch.Tensor:
    """TF1 ``tf.image.resize_bilinear(align_corners=False)`` of an N×C×H×W float tensor.

    TF's kernel computes, per output pixel, top = tl + (tr − tl)·fx, bottom = bl + (br − bl)·fx,
    then top + (bottom − top)·fy, in float32. The horizontal step depends only on the source
    row, so it is done once per source row (H × S values, not S × S) and the rows are then
    gathered: the same operations on the same numbers, bit for bit, with in-place arithmetic
    (on these 2 cores 2.5–9× faster than gathering the four corners at full size, 28 to 512
    px, 1 or 2 threads; ``bench/results/tf_resize.json``)."""
    h, w = x.shape[-2:]
    if (h, w) == (size, size):
        return x
    y0, y1, fy = _tf1_axis_weights(h, size, x.device)
    x0, x1, fx = _tf1_axis_weights(w, size, x.device)
    # (advanced indexing: index_select is ~25x slower on a 2-thread CPU for large inputs)
    left = x[..., x0]
    rows = x[..., x1].sub_(left).mul_(fx).add_(left)  # tl + (tr − tl)·fx, once per row
    top = rows[:, :, y0]
    return rows[:, :, y1].sub_(top).mul_(fy.view(1, 1, -1, 1)).add_(top)


@dataclass(frozen=True)
class Protocol:
    """A named resize + normalisation. ``transform(batch, size)`` takes uint8 N×3×H×W (one
    size) and returns float32 N×3×S×S (S = ``size``) ready for the extractor. The size is the
    extractor's input size: ``at_size`` gives the same protocol for another network."""

    name: str
    description: str
    transform: Callable[[torch.Tensor, int], torch.Tensor]
    size: int = INCEPTION_SIZE
    #: the values it gives, which an extractor must take (``FeatureExtractor.input_range``)
    output: str = "[-1, 1]"

    def at_size(self, size: int) -> Protocol:
        """This protocol resizing to ``size`` × ``size`` instead."""
        if size == self.size:
            return self
        return replace(self, size=int(size),
                       description=self.description.replace(f"to {self.size}", f"to {size}"))

    def __call__(self, images: Sequence[torch.Tensor] | torch.Tensor) -> torch.Tensor:
        """Preprocess a batch: a uint8 N×3×H×W tensor, or a list of uint8 3×H×W tensors of any
        sizes (consecutive images of one size are transformed together; order is kept)."""
        if isinstance(images, torch.Tensor):
            return self._checked(images)
        out: list[torch.Tensor] = []
        start = 0
        while start < len(images):
            end = start + 1
            while end < len(images) and images[end].shape == images[start].shape:
                end += 1
            out.append(self._checked(torch.stack(list(images[start:end]))))
            start = end
        return torch.cat(out) if out else torch.empty(0, 3, self.size, self.size)

    def _checked(self, batch: torch.Tensor) -> torch.Tensor:
        if batch.dtype != torch.uint8 or batch.ndim != 4 or batch.shape[1] != 3:
            raise GenbenchError(f"protocol {self.name!r} takes uint8 N×3×H×W images, got "
                                f"{batch.dtype} {tuple(batch.shape)}")
        return self.transform(batch, self.size)


def _tf_transform(batch: torch.Tensor, size: int) -> torch.Tensor:
    x = resize_bilinear_tf1(batch.float(), size)
    return (x - 128.0) / 128.0


def _pytorch_fid_transform(batch: torch.Tensor, size: int) -> torch.Tensor:
    x = batch.float() / 255.0
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return 2.0 * x - 1.0


def _pil_bicubic_float(channel: np.ndarray, size: int) -> np.ndarray:
    img = Image.fromarray(channel.astype(np.float32), mode="F")
    return np.asarray(img.resize((size, size), resample=Image.Resampling.BICUBIC))


def _clean_transform(batch: torch.Tensor, size: int) -> torch.Tensor:
    arr = batch.cpu().numpy()
    out = np.empty((arr.shape[0], 3, size, size), dtype=np.float32)
    for i in range(arr.shape[0]):
        for ch in range(3):
            out[i, ch] = _pil_bicubic_float(arr[i, ch], size)
    np.clip(out, 0.0, 255.0, out=out)
    x = torch.from_numpy(out).to(batch.device)
    return (x - 128.0) / 128.0


PROTOCOLS: Registry[Protocol] = Registry("protocol")


def register_protocol(protocol: Protocol) -> Protocol:
    """Add a protocol to the registry (name must be new)."""
    return PROTOCOLS.register(protocol.name, protocol)


register_protocol(Protocol(
    "tf", "TF1 bilinear resize to 299 (as TTUR/ADM/NVlabs/torch-fidelity), (x-128)/128",
    _tf_transform))
register_protocol(Protocol(
    "pytorch-fid", "torch bilinear resize to 299 without antialias, 2x/255-1 (as pytorch-fid)",
    _pytorch_fid_transform))
register_protocol(Protocol(
    "clean", "PIL bicubic resize of float channels to 299, clipped, (x-128)/128 (clean-fid)",
    _clean_transform))

DEFAULT_PROTOCOL = "tf"


def get_protocol(name: str) -> Protocol:
    return PROTOCOLS.lookup(name)
