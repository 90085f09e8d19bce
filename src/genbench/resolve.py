"""The one place that decides what an input is.

Every command and API function hands what the user gave (a path, a data set name, an array, a
generator, ...) to ``resolve_input``, which says what it is:

=============  ==============================================================================
kind           what it is, and what the metrics use
=============  ==============================================================================
statistics     an ``.npz`` with ``mu``/``sigma`` only (genbench, pytorch-fid, TTUR, NVlabs) or a
               ``FeatureStatistics``: FID only
adm-batch      an ``.npz`` with ``arr_0`` images *and* ``mu``/``sigma`` (ADM's reference
               batches): FID from the stored statistics, the feature metrics from ``arr_0``,
               as ADM's evaluator does (when the extractor is the Inception they were made
               with; otherwise everything from ``arr_0``, said in a note)
features       a 2-D float array (``.npy`` file or in memory), N × D features of any network
images         a folder, ``.zip``, ``.npz`` (``arr_0``), ``.npy`` (N×H×W×C), an array or
               tensor of images, a data set name, an ``ImageSource``
generator      a ``Generator`` (drawn by seed: ``SeededSource``), a ``python:module:attr``
               spec naming one, or a legacy callable ``batch_size -> images``
=============  ==============================================================================

New spellings (``ckpt:...`` for generator checkpoints) are one ``register_scheme`` call.
"""

from __future__ import annotations

import importlib
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from genbench.errors import GenbenchError
from genbench.generators import Generator, SeededSource
from genbench.registry import Registry
from genbench.sources import (
    DATASETS,
    ArraySource,
    GeneratorSource,
    ImageFolderSource,
    ImageSource,
    NpySource,
    NpzSource,
    ZipSource,
)
from genbench.stats import FeatureStatistics, load_statistics, validate_statistics

InputLike = object  # anything resolve_input accepts (see the module docstring)

@dataclass
class ResolvedInput:
    """What an input is. ``statistics``: stored statistics (statistics file, ADM batch);
    ``features``: N × D user features; ``source``: images to extract (image source, generator,
    an ADM batch's ``arr_0``)."""

    kind: str
    label: str
    statistics: FeatureStatistics | None = None
    features: np.ndarray | None = None
    source: ImageSource | None = None
    notes: list[str] = field(default_factory=list)
    generator: Generator | None = None  # the model behind a seeded generator input
    checked: bool = False  # checked against a pipeline (protocol of stored statistics)


@dataclass(frozen=True)
class ResolveOptions:
    """How to read an input: the first ``num_images`` (None: all), the generator batch size,
    and whether a folder's first-level sub-folders are classes."""

    num_images: int | None = None
    batch_size: int = 64
    with_labels: bool = False
    seed: int = 0  # first seed of a generator run


SchemeHandler = Callable[[str, ResolveOptions], "ResolvedInput"]
SCHEMES: Registry[SchemeHandler] = Registry("input scheme")


def register_scheme(name: str, handler: SchemeHandler) -> None:
    """Inputs spelt ``name:rest`` are resolved by ``handler(rest, options)``."""
    SCHEMES.register(name, handler)


def check_num_images(num_images: int | None) -> None:
    if num_images is not None and (isinstance(num_images, bool) or int(num_images) < 1):
        raise GenbenchError(f"--num-images must be a positive number of images, got "
                            f"{num_images}")


def resolve_input(spec: InputLike, options: ResolveOptions | None = None) -> ResolvedInput:
    """What ``spec`` is (see the module docstring); a one-line GenbenchError when it is none
    of these."""
    options = options or ResolveOptions()
    check_num_images(options.num_images)
    if isinstance(spec, ResolvedInput):
        if spec.kind == "generator" and spec.source is None and spec.generator is not None \
                and options.num_images is not None:  # the number of images is known now
            return _generator(spec.generator, options)
        return spec
    if isinstance(spec, FeatureStatistics):
        validate_statistics(spec, str(spec.label or "statistics"))
        return _statistics(spec, options, str(spec.label or "statistics"))
    if isinstance(spec, Generator):
        return _generator(spec, options)
    if isinstance(spec, ImageSource):
        kind = "generator" if isinstance(spec, SeededSource | GeneratorSource) else "images"
        return ResolvedInput(kind, spec.describe(), source=spec)
    if isinstance(spec, np.ndarray | torch.Tensor):
        if spec.ndim == 2:
            return _features(spec.detach().cpu().numpy() if isinstance(spec, torch.Tensor)
                             else spec, "features", options)
        return ResolvedInput("images", "array", source=ArraySource(spec))
    if callable(spec):
        source = GeneratorSource(spec, options.num_images, batch_size=options.batch_size,
                                 name=getattr(spec, "__name__", "generator"))
        return ResolvedInput("generator", source.describe(), source=source)
    if not isinstance(spec, str | os.PathLike):
        raise GenbenchError(f"cannot use a {type(spec).__name__} as an input; give a path, a "
                            "data set name, an array, an ImageSource or a Generator")
    text = os.fspath(spec)
    if text in DATASETS:
        source = DATASETS[text]()
        return ResolvedInput("images", source.describe(), source=source)
    scheme, sep, rest = text.partition(":")
    if sep and scheme in SCHEMES and not Path(text).exists():
        return SCHEMES[scheme](rest, options)
    return _path(Path(text), options)


def _path(path: Path, options: ResolveOptions) -> ResolvedInput:
    if path.is_dir():
        return ResolvedInput("images", str(path),
                             source=ImageFolderSource(path, with_labels=options.with_labels))
    if not path.exists():
        text = str(path)
        hint = f"; built-in data sets: {', '.join(DATASETS)}" if ":" in text or \
            not path.suffix else ""
        raise GenbenchError(f"{text}: no such file or folder{hint}")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return _npz(path, options)
    if suffix == ".npy":
        return _npy(path, options)
    if suffix == ".zip":
        return ResolvedInput("images", str(path), source=ZipSource(path))
    raise GenbenchError(f"{path}: cannot read images from a {suffix or 'extension-less'} file; "
                        "give a folder, .zip, .npz (ADM batch or statistics), .npy or a data "
                        "set name")


def _npz(path: Path, options: ResolveOptions) -> ResolvedInput:
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
    except (zipfile.BadZipFile, OSError) as exc:
        raise GenbenchError(f"{path}: not a readable .npz file ({exc})") from None
    has_stats = {"mu.npy", "sigma.npy"} <= names
    if len({"mu.npy", "sigma.npy"} & names) == 1:
        have, lack = ("mu", "sigma") if "mu.npy" in names else ("sigma", "mu")
        raise GenbenchError(f"{path}: has '{have}' but no '{lack}'; a statistics file holds "
                            "both (and an ADM batch arr_0 as well)")
    if not has_stats and "arr_0.npy" not in names:
        found = ", ".join(sorted(n.removesuffix(".npy") for n in names)) or "nothing"
        raise GenbenchError(f"{path}: holds neither images (arr_0) nor statistics (mu, "
                            f"sigma), found {found}")
    if has_stats and "arr_0.npy" in names:
        stats = load_statistics(path)
        source = NpzSource(path)
        return ResolvedInput("adm-batch", str(path), statistics=stats, source=source,
                             notes=list(stats.extra.get("notes", [])))
    if has_stats:
        return _statistics(load_statistics(path), options, str(path))
    return ResolvedInput("images", str(path), source=NpzSource(path))


def _npy(path: Path, options: ResolveOptions) -> ResolvedInput:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        raise GenbenchError(f"{path}: holds pickled objects ({exc}); genbench never "
                            "unpickles data") from None
    except OSError as exc:
        raise GenbenchError(f"{path}: not a readable .npy file ({exc})") from None
    if array.ndim == 2:
        return _features(array, str(path), options)
    return ResolvedInput("images", str(path), source=NpySource(path))


def _features(array: np.ndarray, label: str, options: ResolveOptions) -> ResolvedInput:
    if not np.issubdtype(array.dtype, np.floating):
        raise GenbenchError(f"{label}: a 2-D feature array must be float, got {array.dtype}")
    if options.num_images is not None:
        if options.num_images > len(array):
            raise GenbenchError(f"{label}: --num-images {options.num_images} but the array "
                                f"has only {len(array)} rows")
        array = array[:options.num_images]
    features = np.array(array, dtype=np.float32)  # a writable copy, not the read-only map
    if features.shape[0] < 2 or features.shape[1] < 1:
        raise GenbenchError(f"{label}: need at least 2 feature rows, got shape "
                            f"{features.shape}")
    if not np.isfinite(features).all():
        raise GenbenchError(f"{label}: features contain NaN or infinite values")
    return ResolvedInput("features", label, features=features)


def _statistics(stats: FeatureStatistics, options: ResolveOptions, label: str) -> ResolvedInput:
    notes = list(stats.extra.get("notes", []))
    if options.num_images is not None:
        notes.append(f"{label}: --num-images does not apply to a statistics file "
                     f"(its {stats.num_samples or 'unrecorded number of'} samples are used)")
    return ResolvedInput("statistics", label, statistics=stats, notes=notes)


def _generator(generator: Generator, options: ResolveOptions) -> ResolvedInput:
    """A generator input; its images (seeds ``seed .. seed + num_images - 1``) exist once the
    number of images is known."""
    source = None if options.num_images is None else SeededSource(
        generator, options.num_images, seed=options.seed, batch_size=options.batch_size)
    return ResolvedInput("generator", generator.describe(), source=source, generator=generator)


def _python_object(rest: str, options: ResolveOptions) -> ResolvedInput:
    """``python:package.module:name``: a Generator (or a function returning one) in an
    importable module."""
    module_name, sep, attr = rest.partition(":")
    if not sep or not module_name or not attr:
        raise GenbenchError(f"python:{rest}: spell a Python generator as "
                            "python:package.module:name")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise GenbenchError(f"python:{rest}: cannot import it ({exc})") from None
    if not isinstance(obj, Generator) and callable(obj):
        obj = obj()
    if not isinstance(obj, Generator):
        raise GenbenchError(f"python:{rest}: is a {type(obj).__name__}, not a genbench "
                            "Generator (or a function returning one)")
    return _generator(obj, options)


register_scheme("python", _python_object)


def _checkpoint(rest: str, options: ResolveOptions) -> ResolvedInput:
    """``ckpt:MODEL[,solver=euler|heun][,nfe=K][,rule=standard|new][,grid=T0/T1/.../0]``
    (and for an RCG checkpoint set ``guidance=``, ``rdm_steps=``, ``eta=``): a shipped name,
    checkpoint file or run directory, sampled by seed (its recorded default sampler unless
    overridden)."""
    from genbench.generators.settings import apply_settings, parse_setting
    from genbench.generators.zoo import open_checkpoint
    from genbench.training.engine import run_device

    name, *settings = rest.split(",")
    if not name:
        raise GenbenchError("ckpt: give a model, e.g. ckpt:fmnist-2rfpp,nfe=1")
    changes: dict = {}
    for item in settings:
        key, sep, value = item.partition("=")
        if not sep:
            raise GenbenchError(f"ckpt:{rest}: cannot read {item!r}; write setting=value "
                                "(solver=, nfe=, rule=, grid=T0/T1/.../0, guidance=, ...)")
        changes[key] = parse_setting(key, value, f"ckpt:{rest}")
    model = open_checkpoint(name)
    sampler = apply_settings(model.default_sampler, changes, f"ckpt:{rest}")
    generator = model.generator(sampler, device=run_device("auto"),
                                batch_size=max(options.batch_size, 1))
    return _generator(generator, options)


register_scheme("ckpt", _checkpoint)


def _reference(rest: str, options: ResolveOptions) -> ResolvedInput:
    """``ref:NAME``: published reference statistics (``genbench references`` lists them),
    downloaded once and checked, carrying the protocol they were made with; an ADM reference
    batch keeps its ``arr_0`` images for the feature metrics."""
    from genbench.extractors import EXTRACTORS
    from genbench.references import REFERENCES, fetch, load_reference

    reference = REFERENCES.lookup(rest, hint=" (genbench references lists them)")
    if reference.extractor not in EXTRACTORS:
        raise GenbenchError(f"ref:{rest}: statistics of the {reference.extractor} network, "
                            "which this genbench does not have as an extractor; FD in its "
                            "space cannot be computed here")
    path = fetch(reference)
    stats = load_reference(reference, path)
    notes = [*stats.extra.get("notes", []),
             f"ref:{rest}: {reference.publisher}; {reference.extractor} features, protocol "
             f"{reference.protocol!r}, {stats.num_samples or 'an unpublished number of'} "
             f"images ({path})"]
    stats.extra["notes"] = notes
    if reference.kind == "adm":
        resolved = _npz(path, options)
        if resolved.kind != "adm-batch":
            raise GenbenchError(f"{path}: ref:{rest} should be an ADM reference batch "
                                "(arr_0 and mu/sigma); delete it and download it again")
        resolved.label, resolved.statistics, resolved.notes = stats.label, stats, notes
        return resolved
    return _statistics(stats, options, stats.label)


register_scheme("ref", _reference)
