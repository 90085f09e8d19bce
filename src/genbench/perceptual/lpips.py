"""LPIPS (Zhang et al. 2018, "lin" version 0.1, VGG16 backbone), written in plain PyTorch.

This is the network behind the LPIPS-Huber loss of 2-rectified-flow++ (Lee et al. 2024), whose
official code calls ``piq.LPIPS(replace_pooling=True, reduction='none')`` on images mapped from
[-1, 1] to [0, 1] and upsampled bilinearly to 224×224. Here the same computation is:

1. inputs N×C×H×W in [-1, 1], C = 1 (repeated to 3 channels) or 3; bilinear resize
   (``align_corners=False``) to ``resize``×``resize`` (default 224; ``None`` keeps the size);
2. lpips' scaling layer ``(x - shift) / scale`` with shift (-.030, -.088, -.188) and scale
   (.458, .448, .450). For x in [-1, 1] this is exactly piq's ImageNet standardisation of
   (x + 1) / 2 with mean (.485, .456, .406) and std (.229, .224, .225) (shift = 2·mean - 1,
   scale = 2·std), and since both it and bilinear resizing are affine with weights summing to
   one, the order of mapping and resizing does not matter;
3. torchvision's ``vgg16().features`` (``VGG16Features``), tapped after relu1_2, relu2_2,
   relu3_3, relu4_3 and relu5_3 (indices 3, 8, 15, 22, 29; the final pool at index 30 is never
   run). ``pooling="avg"`` replaces each 2×2 max-pool by a 2×2 average-pool, as piq's
   ``replace_pooling=True`` does (the rfpp setting and ``load_lpips``' default);
   ``pooling="max"`` is lpips' own network;
4. per tap: unit-normalise each feature vector over channels, ``f / (||f||_2 + 1e-10)`` as
   lpips does, square the difference of the two images' normalised features, weight the
   channels by lpips' learned non-negative 1×1 head (no bias) and average over space;
5. sum over the five taps: one distance per sample (shape N).

Weights. The heads are lpips' own ``lpips/weights/v0.1/vgg.pth`` (keys
``lin0.model.1.weight`` ... ``lin4.model.1.weight``), located with
``importlib.util.find_spec("lpips")`` without importing the package (its ``__init__`` imports
torchvision, which genbench does not need): ``pip install --no-deps lpips==0.1.4``. The backbone
is torchvision's ImageNet VGG16 file ``vgg16-397923af.pth``
(https://download.pytorch.org/models/vgg16-397923af.pth), looked for in
``<genbench cache>/weights/`` and the torch hub checkpoint folder, else downloaded into the
former; only its ``features.*`` tensors are used.

Not verified against the real backbone: the VGG16 backbone weights are not available on the
development machines (no internet), so genbench's LPIPS was tested with a backbone the tests
build (random weights saved in torchvision's layout), checked against an independent
step-by-step computation; the heads used in those tests are the real lpips v0.1 file. The
absolute LPIPS values with the real backbone have not been compared with lpips' or piq's here.

The network is frozen (every parameter has ``requires_grad=False``, the module is in eval mode,
and it has no dropout or batch norm, so train/eval mode changes nothing) but differentiable with
respect to its inputs, as a training loss needs. Keep it out of the trained model's parameters.
"""

from __future__ import annotations

import importlib.util
import os
import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from genbench.errors import GenbenchError
from genbench.fileio import cache_dir, download, file_digest

VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"
VGG16_FILENAME = "vgg16-397923af.pth"
# torchvision names its files by the first 8 hex digits of their sha256 and publishes nothing
# more; torch.hub checks downloads against that prefix, and so does genbench.
VGG16_SHA256_PREFIX = "397923af"

# torchvision's VGG16 configuration "D": conv widths and "M" for a 2×2 pool.
_VGG16_CFG: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
                                     512, 512, 512, "M", 512, 512, 512, "M")
TAP_NAMES = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
TAP_INDICES = (3, 8, 15, 22, 29)  # positions in vgg16().features
TAP_CHANNELS = (64, 128, 256, 512, 512)

LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
NORM_EPS = 1e-10
HEADS_KEYS = tuple(f"lin{k}.model.1.weight" for k in range(len(TAP_CHANNELS)))
HEADS_RELPATH = ("weights", "v0.1", "vgg.pth")
_POOLINGS = ("max", "avg")


class VGG16Features(nn.Module):
    """torchvision's ``vgg16().features`` written by hand: Conv2d(3×3, padding 1) / ReLU /
    2×2 pool at the same indices 0..30, held as ``self.features`` so the keys of a torchvision
    state dict (``features.0.weight``, ``features.0.bias``, ... ``features.28.bias``) load
    directly. ``forward`` returns the five LPIPS taps (relu1_2, relu2_2, relu3_3, relu4_3,
    relu5_3) and stops there (the last pool, index 30, is not run).

    ``pooling="max"`` is torchvision's (and lpips') network; ``pooling="avg"`` uses
    ``AvgPool2d(2, 2)`` instead, as piq's ``replace_pooling=True`` does. Neither pooling has
    parameters, so the same weights serve both.
    """

    def __init__(self, pooling: str = "max") -> None:
        super().__init__()
        if pooling not in _POOLINGS:
            raise GenbenchError(f"pooling={pooling!r}: expected 'max' or 'avg'")
        self.pooling = pooling
        layers: list[nn.Module] = []
        in_ch = 3
        for item in _VGG16_CFG:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2) if pooling == "max"
                              else nn.AvgPool2d(kernel_size=2, stride=2))
            else:
                assert isinstance(item, int)
                layers.append(nn.Conv2d(in_ch, item, kernel_size=3, padding=1))
                layers.append(nn.ReLU(inplace=False))
                in_ch = item
        self.features = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps: list[torch.Tensor] = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in TAP_INDICES:
                taps.append(x)
                if index == TAP_INDICES[-1]:
                    break
        return taps


def _normalize(feat: torch.Tensor) -> torch.Tensor:
    norm = torch.sqrt(torch.sum(feat * feat, dim=1, keepdim=True))
    return feat / (norm + NORM_EPS)


class LPIPS(nn.Module):
    """LPIPS distance between two batches in [-1, 1]: ``lpips(x, y)`` has shape N.

    Built with placeholder weights (random backbone, zero heads); ``load_lpips`` builds one
    with the real files. Frozen: no parameter requires grad; gradients flow to the inputs.
    """

    def __init__(self, *, pooling: str = "avg", resize: int | None = 224) -> None:
        super().__init__()
        if resize is not None and (not isinstance(resize, int) or resize < 16):
            raise GenbenchError(f"resize={resize!r}: expected None or an int >= 16 "
                                "(VGG16 halves the size four times before relu5_3)")
        self.resize = resize
        self.net = VGG16Features(pooling)
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, kernel_size=1, bias=False)
                                  for c in TAP_CHANNELS)
        for lin in self.lins:
            nn.init.zeros_(lin.weight)
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    @property
    def pooling(self) -> str:
        return self.net.pooling

    def _prepare(self, x: torch.Tensor, name: str) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise GenbenchError(f"LPIPS {name}: expected N×C×H×W with C = 1 or 3, got shape "
                                f"{tuple(x.shape)}")
        x = x.to(self.shift.dtype)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if self.resize is not None and tuple(x.shape[-2:]) != (self.resize, self.resize):
            x = F.interpolate(x, size=(self.resize, self.resize), mode="bilinear",
                              align_corners=False)
        if min(x.shape[-2:]) < 16:
            raise GenbenchError(f"LPIPS {name}: images of {x.shape[-2]}×{x.shape[-1]} are too "
                                "small for VGG16 (at least 16×16; pass resize=)")
        return (x - self.shift) / self.scale

    def per_tap(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The five taps' terms, shape N×5 (relu1_2 ... relu5_3); they sum to ``forward``."""
        if x.shape != y.shape:
            raise GenbenchError(f"LPIPS: inputs differ in shape: {tuple(x.shape)} vs "
                                f"{tuple(y.shape)}")
        # one pass over both batches: same result, one call per layer
        taps = self.net(torch.cat([self._prepare(x, "x"), self._prepare(y, "y")]))
        n = x.shape[0]
        terms = []
        for feat, lin in zip(taps, self.lins, strict=True):
            feat = feat.float()
            diff = (_normalize(feat[:n]) - _normalize(feat[n:])) ** 2
            terms.append(lin(diff.to(lin.weight.dtype)).float().mean(dim=(1, 2, 3)))
        return torch.stack(terms, dim=1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Distances, shape N, for N×C×H×W inputs ``x`` and ``y`` in [-1, 1]."""
        return self.per_tap(x, y).sum(dim=1)


# --- files ----------------------------------------------------------------------------------

def _torch_load(path: Path, what: str) -> Mapping[str, torch.Tensor]:
    if not path.is_file():
        raise GenbenchError(f"{path}: {what} file does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError,
            AttributeError, KeyError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GenbenchError(f"{path}: cannot read {what} as a torch state dict "
                            f"(torch.load with weights_only=True: {first})") from exc
    if not isinstance(obj, Mapping) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise GenbenchError(f"{path}: {what} file is not a state dict (a mapping of names to "
                            "tensors)")
    return obj


def _expected_backbone() -> dict[str, torch.Size]:
    return {f"features.{k}": v.shape for k, v in VGG16Features().features.state_dict().items()}


def read_backbone(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The ``features.*`` tensors of a torchvision-layout VGG16 state dict (``classifier.*``
    entries, as in torchvision's file, are ignored), checked key by key and shape by shape."""
    path = Path(path).expanduser()
    state = _torch_load(path, "VGG16 backbone")
    expected = _expected_backbone()
    feats = {k: v for k, v in state.items() if k.startswith("features.")}
    others = [k for k in state if not k.startswith(("features.", "classifier."))]
    missing = [k for k in expected if k not in feats]
    extra = [k for k in feats if k not in expected] + others
    if missing or extra:
        detail = (f"missing {missing[:3]}" if missing else "") + \
                 ("; " if missing and extra else "") + (f"unexpected {extra[:3]}" if extra else "")
        raise GenbenchError(f"{path}: not a torchvision VGG16 state dict ({detail}); expected "
                            f"the keys of vgg16-397923af.pth (features.0.weight ... "
                            f"features.28.bias)")
    for key, shape in expected.items():
        if feats[key].shape != shape:
            raise GenbenchError(f"{path}: not a torchvision VGG16 state dict ({key} has shape "
                                f"{tuple(feats[key].shape)}, expected {tuple(shape)})")
    return {k: feats[k].float() for k in expected}


def read_heads(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """lpips' v0.1 VGG heads file: ``lin0.model.1.weight`` ... ``lin4.model.1.weight``, of
    shapes 1×C×1×1 for C = 64, 128, 256, 512, 512, checked."""
    path = Path(path).expanduser()
    state = _torch_load(path, "LPIPS heads")
    if set(state) != set(HEADS_KEYS):
        raise GenbenchError(f"{path}: not lpips' v0.1 vgg.pth heads file (keys "
                            f"{sorted(state)[:6]}, expected {list(HEADS_KEYS)})")
    for key, c in zip(HEADS_KEYS, TAP_CHANNELS, strict=True):
        if tuple(state[key].shape) != (1, c, 1, 1):
            raise GenbenchError(f"{path}: not lpips' v0.1 vgg.pth heads file ({key} has shape "
                                f"{tuple(state[key].shape)}, expected (1, {c}, 1, 1))")
        if not torch.isfinite(state[key]).all():
            raise GenbenchError(f"{path}: {key} has non-finite values")
    return {k: state[k].float() for k in HEADS_KEYS}


def default_heads_path() -> Path:
    """``lpips/weights/v0.1/vgg.pth`` of the installed lpips package, found without importing
    it; a GenbenchError saying how to install it when it is not there."""
    how = ("LPIPS heads not found: install the lpips package without its dependencies (it "
           "would pull torchvision; genbench reads only its weight file): "
           "`pip install --no-deps lpips==0.1.4`, or pass heads=PATH to lpips' "
           "weights/v0.1/vgg.pth")
    spec = importlib.util.find_spec("lpips")  # located, never imported
    if spec is None or not spec.submodule_search_locations:
        raise GenbenchError(how)
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*HEADS_RELPATH)
    if not path.is_file():
        raise GenbenchError(f"{path} does not exist; {how}")
    return path


def default_backbone_path() -> Path:
    """Where genbench keeps torchvision's VGG16 file: ``<cache>/weights/vgg16-397923af.pth``."""
    return cache_dir() / "weights" / VGG16_FILENAME


def _check_torchvision_file(path: Path) -> None:
    digest = file_digest(path)
    if not digest.startswith(VGG16_SHA256_PREFIX):
        raise GenbenchError(
            f"{path}: sha256 {digest[:16]}... does not start with {VGG16_SHA256_PREFIX}, so it "
            f"is not torchvision's {VGG16_FILENAME} (damaged or a different file); delete it "
            f"to download it again from {VGG16_URL}, or pass backbone=PATH")


def locate_backbone() -> Path:
    """torchvision's VGG16 file, sha256-checked (its name's 8-hex prefix, all torchvision
    publishes): genbench's cache, then the torch hub checkpoint folder, else downloaded into
    genbench's cache; offline and absent, a GenbenchError naming the URL and the path."""
    dest = default_backbone_path()
    hub = Path(torch.hub.get_dir()) / "checkpoints" / VGG16_FILENAME
    for path in (dest, hub):
        if path.is_file():
            _check_torchvision_file(path)
            return path
    try:
        return download(VGG16_URL, dest, sha256_prefix=VGG16_SHA256_PREFIX)
    except GenbenchError as exc:
        raise GenbenchError(
            f"VGG16 backbone weights for LPIPS not found and not downloadable ({exc}); "
            f"download {VGG16_URL} and place it at {dest}, or pass backbone=PATH") from exc


def load_lpips(*, backbone: str | Path | None = None, heads: str | Path | None = None,
               pooling: str = "avg", resize: int | None = 224,
               device: str | torch.device = "cpu") -> LPIPS:
    """The LPIPS network with real weights, frozen, in eval mode, on ``device``.

    ``backbone``: a torchvision-layout VGG16 state dict (default: torchvision's
    ``vgg16-397923af.pth``, located or downloaded by ``locate_backbone``; a file passed here is
    checked for keys and shapes but not for its sha256, which lets other VGG16 weights in).
    ``heads``: lpips' ``weights/v0.1/vgg.pth`` (default: from the installed lpips package).
    ``pooling``: "avg" (piq ``replace_pooling=True``, as 2-rectified-flow++ uses) or "max"
    (lpips' network). ``resize``: bilinear resize to ``resize``×``resize`` before the network
    (``None``: none). Every file is read with ``torch.load(weights_only=True)``.
    """
    heads_path = Path(heads).expanduser() if heads is not None else default_heads_path()
    heads_state = read_heads(heads_path)
    backbone_path = Path(backbone).expanduser() if backbone is not None else locate_backbone()
    backbone_state = read_backbone(backbone_path)

    model = LPIPS(pooling=pooling, resize=resize)
    model.net.load_state_dict(backbone_state, strict=True)
    for lin, key in zip(model.lins, HEADS_KEYS, strict=True):
        lin.weight.copy_(heads_state[key])
    model.requires_grad_(False)
    return model.to(device).eval()
