"""Published reference statistics by name: ``ref:NAME`` wherever an input is taken.

Papers compare against statistics their authors published; each entry of ``REFERENCES`` says
where the file lives, what it holds, and how it was made — the preprocessing **protocol**, the
feature network (a genbench extractor name) and the number of images — so a comparison
against it uses that protocol instead of assuming one. The file is downloaded once into
``<cache>/references/`` and checked on every use:

* a published sha256 (``Reference.sha256``) is checked after the download and on every load;
* where the publisher gives none (all of today's entries: ADM, clean-fid and NVlabs publish
  URLs only), the first download's sha256 is recorded beside the file and every later load
  checks the file against it (it catches a damaged or swapped cache file, not a publisher
  that changed the file before the first download). ``genbench references`` prints the
  recorded digests.

Formats (``Reference.kind``):

========  ===================================================================================
adm       ADM's reference batch ``.npz``: ``mu``/``sigma`` (pool3 of the TF graph, computed by
          ADM over the whole training set), ``mu_s``/``sigma_s`` (its spatial features, for
          sFID) and ``arr_0`` (10,000 images, for the feature metrics), read as an ADM batch
npz       ``mu``/``sigma`` (clean-fid's hosted statistics, NVlabs edm's ``fid-refs``)
edm2      EDM2's ``dataset-refs`` pickle: ``{"num_images": N, "fid": {"mu", "sigma"},
          "fd_dinov2": {"mu", "sigma"}}``, read by ``read_statistics_pickle``, an unpickler
          that admits plain numpy arrays, dicts and numbers and refuses anything else
========  ===================================================================================
"""

from __future__ import annotations

import io
import math
import pickle
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from genbench.errors import GenbenchError
from genbench.fileio import cache_dir, fetch_once
from genbench.registry import Registry
from genbench.stats import FeatureStatistics, load_statistics, validate_statistics

KINDS = ("adm", "npz", "edm2")


@dataclass(frozen=True)
class Reference:
    """One published statistics file: ``url``, format ``kind``, the ``protocol`` and
    ``extractor`` (genbench names) its features were made with, ``num_images`` it was
    computed from (None where the publisher does not say; EDM2's files record it),
    the images' ``resolution``, who publishes it, the published ``sha256`` (None: recorded at
    the first download) and, for an EDM2 pickle, which of its statistics (``entry``)."""

    name: str
    url: str
    kind: str
    protocol: str
    extractor: str
    num_images: int | None
    resolution: int
    publisher: str
    sha256: str | None = None
    entry: str = "fid"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"reference {self.name}: kind {self.kind!r} is not one of {KINDS}")

    @property
    def file_name(self) -> str:
        return self.url.rsplit("/", 1)[1]

    def to_dict(self) -> dict:
        return asdict(self)


REFERENCES: Registry[Reference] = Registry("reference statistics")


def register_reference(reference: Reference) -> Reference:
    return REFERENCES.register(reference.name, reference)


# ADM (Dhariwal & Nichol 2021), guided-diffusion/evaluations/README.md: TF Inception pool3
# (and mixed_6/conv for sFID) of the images as the TF graph resizes them: our tf protocol.
_ADM = "https://openaipublic.blob.core.windows.net/diffusion/jul-2021/ref_batches/"
for _name, _path, _res in (
        ("imagenet64", "imagenet/64/VIRTUAL_imagenet64_labeled.npz", 64),
        ("imagenet128", "imagenet/128/VIRTUAL_imagenet128_labeled.npz", 128),
        ("imagenet256", "imagenet/256/VIRTUAL_imagenet256_labeled.npz", 256),
        ("imagenet512", "imagenet/512/VIRTUAL_imagenet512.npz", 512),
        ("lsun-bedroom256", "lsun/bedroom/VIRTUAL_lsun_bedroom256.npz", 256),
        ("lsun-cat256", "lsun/cat/VIRTUAL_lsun_cat256.npz", 256),
        ("lsun-horse256", "lsun/horse/VIRTUAL_lsun_horse256.npz", 256)):
    register_reference(Reference(f"adm-{_name}", _ADM + _path, "adm", "tf", "inception", None,
                                 _res, "ADM (openai/guided-diffusion evaluations): statistics "
                                       "of the whole training set, arr_0 10,000 images"))

# clean-fid (Parmar et al. 2022), its README's table of hosted statistics; file names as
# cleanfid.features.get_reference_statistics builds them. Its modes are our protocols.
_CLEANFID = "https://www.cs.cmu.edu/~clean-fid/stats/"
_CLEANFID_MODES = {"clean": "clean", "legacy_tensorflow": "tf", "legacy_pytorch": "pytorch-fid"}
for _data, _split, _res, _n in (
        ("cifar10", "train", 32, 50000), ("cifar10", "test", 32, 10000),
        ("ffhq", "trainval", 256, 50000), ("ffhq", "trainval", 1024, 50000),
        ("ffhq", "trainval70k", 256, 70000), ("ffhq", "trainval70k", 1024, 70000),
        ("lsun_church", "train", 256, 50000), ("lsun_horse", "train", 256, 50000),
        ("lsun_cat", "train", 256, 50000), ("lsun_cat", "trainfull", 256, 1657264),
        ("afhq_cat", "train", 512, 5153), ("afhq_dog", "train", 512, 4739),
        ("afhq_wild", "train", 512, 4738), ("brecahad", "train", 512, 1944),
        ("metfaces", "train", 1024, 1336), ("horse2zebra", "test", 256, 140),
        ("cat2dog", "test", 256, 500)):
    for _mode, _protocol in _CLEANFID_MODES.items():
        register_reference(Reference(
            f"cleanfid-{_data.replace('_', '-')}-{_split}-{_res}-{_protocol}",
            f"{_CLEANFID}{_data}_{_mode}_{_split}_{_res}.npz", "npz", _protocol, "inception",
            _n, _res, f"clean-fid (mode {_mode})"))

# NVlabs: EDM's fid-refs (.npz, the StyleGAN3 Inception pickle, images resized inside the
# network as the TF graph does) and EDM2's dataset-refs (pickles, FID and FD_DINOv2).
_EDM = "https://nvlabs-fi-cdn.nvidia.com/edm/fid-refs/"
for _name, _res in (("cifar10", 32), ("ffhq", 64), ("afhqv2", 64), ("imagenet", 64)):
    register_reference(Reference(f"edm-{_name}{_res}", f"{_EDM}{_name}-{_res}x{_res}.npz",
                                 "npz", "tf", "inception", None, _res, "NVlabs EDM fid-refs"))
_EDM2 = "https://nvlabs-fi-cdn.nvidia.com/edm2/dataset-refs/"
for _res in (64, 512):
    register_reference(Reference(f"edm2-img{_res}", f"{_EDM2}img{_res}.pkl", "edm2", "tf",
                                 "inception", None, _res, "NVlabs EDM2 dataset-refs"))
    register_reference(Reference(f"edm2-img{_res}-dinov2", f"{_EDM2}img{_res}.pkl", "edm2",
                                 "dinov2", "dinov2-vitl14", None, _res,
                                 "NVlabs EDM2 dataset-refs (FD_DINOv2)", entry="fd_dinov2"))


def recorded_protocol(spec: object, extractor: str) -> str | None:
    """The protocol of a ``ref:NAME`` input made with ``extractor`` (None for any other
    input, or another network: that network's own protocol applies, e.g. to an ADM batch's
    ``arr_0``): a comparison against it uses that protocol unless the user names one."""
    from genbench.protocols import PROTOCOLS

    if isinstance(spec, str) and spec.startswith("ref:") and spec[4:] in REFERENCES:
        reference = REFERENCES[spec[4:]]
        if reference.extractor == extractor and reference.protocol in PROTOCOLS:
            return reference.protocol
    return None


# ---------------------------------------------------------------- the file


def reference_path(reference: Reference) -> Path:
    return cache_dir() / "references" / reference.file_name


def fetch(reference: Reference, *, download_missing: bool = True,
          progress: bool = True) -> Path:
    """The reference's file in the cache, downloaded when missing (``download_missing``) and
    checked (see the module docstring); a GenbenchError naming the file otherwise."""
    return fetch_once(reference.url, reference_path(reference), sha256=reference.sha256,
                      what=f"ref:{reference.name}", download_missing=download_missing,
                      progress=progress)


# ---------------------------------------------------------------- reading


# what a pickle of numpy arrays in dicts and lists names (numpy 1 and 2 spell the modules
# differently; protocol 5 writes arrays with _frombuffer); nothing else is ever imported
_RECONSTRUCT = {("numpy.core.multiarray", "_reconstruct"),
                ("numpy._core.multiarray", "_reconstruct")}
_ARRAY_GLOBALS = {*_RECONSTRUCT, ("numpy.core.multiarray", "scalar"),
                  ("numpy._core.multiarray", "scalar"), ("numpy.core.numeric", "_frombuffer"),
                  ("numpy._core.numeric", "_frombuffer"), ("numpy", "ndarray"),
                  ("numpy", "dtype"), ("_codecs", "encode")}
MAX_PICKLE_ARRAY_BYTES = 2 << 30  # statistics of a 16k-d feature space fit 16 times over


class _ArrayType:
    """Stands for ``numpy.ndarray`` in a pickle: usable only as ``_reconstruct``'s first
    argument, so a file cannot call ``ndarray(shape)`` for uninitialised memory."""


def _reconstruct(subtype, shape, dtype):
    if subtype is not _ArrayType:
        raise pickle.UnpicklingError("_reconstruct of something other than an ndarray")
    if not isinstance(shape, tuple) or any(not isinstance(n, int) or n < 0 for n in shape):
        raise pickle.UnpicklingError(f"an array shape {shape!r}")
    if math.prod(shape) * np.dtype(dtype).itemsize > MAX_PICKLE_ARRAY_BYTES:
        raise pickle.UnpicklingError(f"an array of shape {shape} (more than statistics need)")
    return np.ndarray.__new__(np.ndarray, shape, dtype)  # (0,) in numpy's own pickles


def _latin1(text, encoding):
    """``_codecs.encode`` as protocol-2 pickles use it for bytes: latin-1 only."""
    if encoding != "latin1" or not isinstance(text, str):
        raise pickle.UnpicklingError(f"_codecs.encode with {encoding!r}")
    return text.encode("latin1")


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ARRAY_GLOBALS:
            raise pickle.UnpicklingError(f"it names {module}.{name}")
        if (module, name) in _RECONSTRUCT:
            return _reconstruct
        if module == "_codecs":
            return _latin1
        if name == "ndarray":
            return _ArrayType
        # the module of the numpy that wrote the file, as the numpy here spells it
        here = "numpy._core" if hasattr(np, "_core") else "numpy.core"
        return super().find_class(module.replace("numpy._core", here, 1)
                                  .replace("numpy.core", here, 1), name)


def read_statistics_pickle(path: str | Path) -> dict:
    """A pickle of statistics (EDM2's ``dataset-refs``), read with an unpickler that admits
    numpy arrays of numbers, dicts, lists, strings and numbers only (at most
    ``MAX_PICKLE_ARRAY_BYTES`` of arrays): a file that names any other class or function is
    refused with one line, before anything in it runs."""
    path = Path(path)
    if path.stat().st_size > MAX_PICKLE_ARRAY_BYTES + (1 << 20):
        raise GenbenchError(f"{path}: {path.stat().st_size:,} bytes; more than a statistics "
                            "pickle holds")
    try:
        data = _ArraysOnly(io.BytesIO(path.read_bytes())).load()
    except pickle.UnpicklingError as exc:
        raise GenbenchError(f"{path}: refused: not a pickle of plain arrays ({exc}); genbench "
                            "reads statistics pickles without running code") from None
    except (EOFError, ValueError, TypeError, IndexError, AttributeError, KeyError,
            MemoryError, RecursionError, OverflowError) as exc:
        raise GenbenchError(f"{path}: not a readable statistics pickle "
                            f"({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict):
        raise GenbenchError(f"{path}: holds a {type(data).__name__}, not a dict of statistics")
    _refuse_objects(data, path)
    return data


def _refuse_objects(data: dict, path: Path) -> None:
    """Walk the loaded values (without recursion: a list may contain itself): arrays of
    numbers only, in all at most MAX_PICKLE_ARRAY_BYTES."""
    seen, stack, total = set(), [data], 0
    while stack:
        value = stack.pop()
        if id(value) in seen:
            continue
        seen.add(id(value))
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list | tuple):
            stack.extend(value)
        elif isinstance(value, np.ndarray):
            if value.dtype.hasobject:
                raise GenbenchError(f"{path}: holds an array of Python objects; statistics "
                                    "are numbers")
            total += value.nbytes
            if total > MAX_PICKLE_ARRAY_BYTES:
                raise GenbenchError(f"{path}: holds more than {MAX_PICKLE_ARRAY_BYTES:,} "
                                    "bytes of arrays; more than statistics need")


def load_reference(reference: Reference, path: Path) -> FeatureStatistics:
    """The statistics of a fetched reference file, labelled ``ref:NAME`` and carrying its
    protocol, so a run with another protocol is refused instead of compared."""
    label = f"ref:{reference.name}"
    if reference.kind == "edm2":
        data = read_statistics_pickle(path)
        part = data.get(reference.entry)
        if not isinstance(part, dict) or not {"mu", "sigma"} <= set(part):
            raise GenbenchError(f"{path}: no {reference.entry!r} statistics (mu, sigma) in it; "
                                f"it holds {', '.join(map(str, data))}")
        n = data.get("num_images")
        if n is not None and not isinstance(n, int | np.integer):
            raise GenbenchError(f"{path}: num_images is a {type(n).__name__}, not a count")
        try:
            mu, sigma = (np.asarray(part[k], np.float64) for k in ("mu", "sigma"))
        except (TypeError, ValueError) as exc:
            raise GenbenchError(f"{path}: {reference.entry} mu/sigma are not numbers "
                                f"({exc})") from None
        stats = FeatureStatistics(mu, sigma, num_samples=int(n) if n is not None else None)
        stats.extra["notes"] = validate_statistics(stats, label)
    else:
        stats = load_statistics(path)
        stats.num_samples = stats.num_samples or reference.num_images
    stats.protocol, stats.label = reference.protocol, label
    stats.extra["reference"] = reference.to_dict()
    return stats
