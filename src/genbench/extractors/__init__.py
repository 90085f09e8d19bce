"""Feature extractors: preprocessed float images in, float32 features out. A registry maps
names to factories, so a new network is added in one place (``register_extractor``).

The contract every extractor states as members (nothing is probed): ``name``,
``feature_dim``, ``input_size`` (the protocol resizes to it), ``default_protocol``,
``identity`` (name plus weights checksum: it keys the cache), ``weights_sha256`` (None for
weights without a published file), ``device``, ``classifier_weight`` (None: no Inception
Score), ``plan(num_images)`` (a hint before a run, e.g. to decide compilation) and
``extra_outputs`` (features besides the main ones that the same pass gives, by name, e.g. the
Inception's ``spatial`` features for sFID), which ``extract(batch, outputs)`` returns."""

from __future__ import annotations

import contextlib
import inspect
import shutil
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch

from genbench.errors import GenbenchError
from genbench.extractors.inception_net import FEATURE_DIM, SPATIAL_DIM, FIDInceptionV3
from genbench.extractors.inception_weights import InceptionWeights, load_inception_weights
from genbench.protocols import DEFAULT_PROTOCOL, INCEPTION_SIZE
from genbench.registry import Registry


class FeatureExtractor(ABC):
    """``__call__`` maps a float32 N×3×S×S batch (the protocol's output) to N×D features."""

    name: str
    feature_dim: int
    #: side of the square images the network takes; the protocol resizes to it
    input_size: int = INCEPTION_SIZE
    #: the protocol used unless the user names another
    default_protocol: str = DEFAULT_PROTOCOL
    #: the values it takes: a protocol must give these (``Protocol.output``); None: what
    #: its default protocol gives
    input_range: str | None = None

    @property
    @abstractmethod
    def identity(self) -> str:
        """Name plus weights checksum: part of every cache key and result record."""

    #: other features the same pass gives (name -> dimension), for ``extract``
    extra_outputs: ClassVar[dict[str, int]] = {}
    #: the arithmetic precisions it can run in (``ExtractionConfig.precision``), and its own
    precisions: ClassVar[tuple[str, ...]] = ("float32",)
    precision: str = "float32"

    @abstractmethod
    def __call__(self, batch: torch.Tensor) -> torch.Tensor: ...

    def extract(self, batch: torch.Tensor,
                outputs: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
        """``{"features": self(batch)}`` plus each of ``outputs`` (names of
        ``extra_outputs``), from one pass through the network."""
        check_outputs(self, outputs)
        return {"features": self(batch)}

    @property
    def weights_sha256(self) -> str | None:
        """sha256 of the weights file the network was built from (None: no such file)."""
        return None

    def plan(self, num_images: int) -> None:  # noqa: B027 (a hook; most extractors need none)
        """Told how many images the coming run extracts, before it starts."""

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @property
    def classifier_weight(self) -> torch.Tensor | None:
        """classes × D weight of a linear classifier on the features (logits = features @
        weight.T, no bias), or None when the network has none (then no Inception Score)."""
        return None


def check_outputs(extractor: FeatureExtractor, outputs: tuple[str, ...]) -> None:
    lacking = [o for o in outputs if o not in extractor.extra_outputs]
    if lacking:
        raise GenbenchError(f"extractor {extractor.name!r} gives no {', '.join(lacking)} "
                            "features (only the TF-FID Inception has sFID's spatial features)")


# the eager network on a CPU runs its batch in slices of this many images: with 2 cores,
# 1,000 PNGs end to end took 117 s in slices of 8 against 131 s whole at 50, the same
# features (bench/results/extract_throughput_batches.json; conv2d's working set stays in cache)
CPU_SLICE = 8
COMPILE_MIN_IMAGES = 5000


def _compiler_available() -> bool:
    return any(shutil.which(cc) for cc in ("cc", "gcc", "clang", "g++"))


class InceptionExtractor(FeatureExtractor):
    """pool3 features (2048-d) of the TF-FID Inception-v3.

    Speed without lower precision: batch norms are folded into the convolutions, activations
    are channels-last, and on request (``compile='auto'`` does so where a C compiler or a GPU is
    present and at least COMPILE_MIN_IMAGES are to be extracted) the network goes through
    ``torch.compile``. Features stay float32 and agree with
    the unmodified network to ~1e-6 relative. Batches are padded to a fixed size so a compiled
    network never recompiles for the last, smaller batch.
    """

    name = "inception-v3-tf-2015-12-05"
    feature_dim = FEATURE_DIM
    extra_outputs: ClassVar[dict[str, int]] = {"spatial": SPATIAL_DIM}
    precisions: ClassVar[tuple[str, ...]] = ("float32", "bfloat16")

    def __init__(self, weights: str | None = None, device: str | torch.device = "cpu",
                 compile: str | bool = "auto", batch_size: int = 50,
                 fold_batch_norm: bool = True, use_cache: bool = True,
                 trust_pickle: bool = False, precision: str = "float32") -> None:
        if precision not in self.precisions:
            raise GenbenchError(f"precision must be one of {', '.join(self.precisions)}, got "
                                f"{precision!r}")
        self.precision = precision
        self.weights: InceptionWeights = load_inception_weights(
            weights, cache=use_cache, trust_pickle=trust_pickle)
        self._device = torch.device(device)
        self.batch_size = batch_size
        self.fold = fold_batch_norm
        self.compile_request = compile
        self.compiled = False if compile == "auto" else bool(compile)
        self.net: FIDInceptionV3 | None = None  # built on first call (cache hits need none)
        self._forward: Callable[[torch.Tensor], torch.Tensor] | None = None
        self._forward_spatial: Callable[[torch.Tensor], tuple] | None = None

    def plan(self, num_images: int) -> None:
        """Decide ``compile='auto'`` for a run of ``num_images``. On a 2-core CPU compiling costs
        ~1 min the first time (~10 s once inductor's cache is warm) and makes the network ~15 %
        faster than the BN-folded channels-last eager one, so it pays off from ~5,000 images."""
        if self.compile_request == "auto" and self.net is None:
            self.compiled = self._device.type == "cuda" or (
                num_images >= COMPILE_MIN_IMAGES and _compiler_available())

    def _build(self) -> None:
        net = FIDInceptionV3()
        net.load_state_dict(self.weights.state_dict)
        net.eval().requires_grad_(False)
        if self.fold:
            net.fold_batch_norm()
        self.net = net.to(self._device).to(memory_format=torch.channels_last)
        self._forward = torch.compile(self.net, dynamic=False) if self.compiled else self.net
        self._forward_spatial = torch.compile(self.net.forward_spatial, dynamic=False) \
            if self.compiled else self.net.forward_spatial

    @property
    def identity(self) -> str:
        """Keys the cache and is recorded: bfloat16 features are another feature space."""
        suffix = "" if self.precision == "float32" else f":{self.precision}"
        return f"{self.name}:{self.weights.source_sha256[:16]}{suffix}"

    @property
    def weights_sha256(self) -> str | None:
        return self.weights.source_sha256

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def has_logits(self) -> bool:
        return self.weights.has_logits

    @property
    def classifier_weight(self) -> torch.Tensor | None:
        return self.weights.state_dict["fc.weight"] if self.has_logits else None

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        return self.extract(batch)["features"]

    @torch.inference_mode()
    def extract(self, batch: torch.Tensor,
                outputs: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
        check_outputs(self, outputs)
        if self._forward is None:
            self._build()
        spatial = "spatial" in outputs
        n = batch.shape[0]
        x = batch.to(self._device, torch.float32).contiguous(memory_format=torch.channels_last)
        if self.compiled and n < self.batch_size:
            pad = x.new_zeros((self.batch_size - n, *x.shape[1:]))
            x = torch.cat([x, pad]).contiguous(memory_format=torch.channels_last)
        try:
            parts = self._apply(x, spatial)
        except Exception as exc:  # a broken compiler toolchain: fall back, say so once
            if not self.compiled:
                raise
            warnings.warn(f"torch.compile failed ({type(exc).__name__}: {exc}); using the "
                          "eager network (same features, slower)", stacklevel=2)
            self.compiled = False
            self._forward, self._forward_spatial = self.net, self.net.forward_spatial
            parts = self._apply(x, spatial)
        names = ("features", "spatial") if spatial else ("features",)
        return {name: part[:n].float().cpu() for name, part in zip(names, parts, strict=True)}

    def _apply(self, x: torch.Tensor, spatial: bool) -> tuple[torch.Tensor, ...]:
        """The network on ``x``: (pool3,) or (pool3, spatial); an eager network on a CPU
        in slices of CPU_SLICE images."""
        forward = self._forward_spatial if spatial else self._forward
        with torch.autocast(self._device.type, dtype=torch.bfloat16) \
                if self.precision == "bfloat16" else contextlib.nullcontext():
            if self.compiled or self._device.type != "cpu" or len(x) <= CPU_SLICE:
                slices = [forward(x)]
            else:
                slices = [forward(part) for part in x.split(CPU_SLICE)]
        slices = [out if isinstance(out, tuple) else (out,) for out in slices]
        return tuple(torch.cat(column) for column in zip(*slices, strict=True))


class ModuleExtractor(FeatureExtractor):
    """Any torch module as the feature network: it receives the protocol's output (float32
    N×3×S×S, e.g. S = 299 in [-1, 1] for ``tf``) and returns N×D features (flattened).
    ``identity`` must change whenever the weights do: it keys the feature cache. Pass
    ``classifier_weight`` (classes × D) to allow an Inception-Score-style metric, and
    ``input_size`` / ``default_protocol`` for a network that takes other images."""

    def __init__(self, module: torch.nn.Module, name: str, feature_dim: int, *,
                 identity: str | None = None, device: str | torch.device = "cpu",
                 classifier_weight: torch.Tensor | None = None,
                 input_size: int = INCEPTION_SIZE,
                 default_protocol: str = DEFAULT_PROTOCOL,
                 input_range: str | None = None) -> None:
        self.module = module.eval().requires_grad_(False).to(device)
        self.name, self.feature_dim = name, int(feature_dim)
        self.input_size, self.default_protocol = int(input_size), default_protocol
        self.input_range = input_range
        self._identity = identity or name
        self._device = torch.device(device)
        self._classifier = classifier_weight

    @property
    def identity(self) -> str:
        return self._identity

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def classifier_weight(self) -> torch.Tensor | None:
        return self._classifier

    @torch.inference_mode()
    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        out = self.module(batch.to(self._device, torch.float32)).flatten(1).float().cpu()
        if out.shape[1] != self.feature_dim:
            raise GenbenchError(f"extractor {self.name!r} returned {out.shape[1]} features per "
                                f"image, not the declared {self.feature_dim}")
        return out


@dataclass(frozen=True)
class ExtractorEntry:
    """A registered extractor: its factory (see ``register_extractor``) and what is known
    before it is built (so that statistics files can be compared without loading weights)."""

    factory: Callable[..., FeatureExtractor]
    default_protocol: str = DEFAULT_PROTOCOL
    input_size: int = INCEPTION_SIZE
    input_range: str | None = None  # None: what the default protocol gives

    def __call__(self, **options) -> FeatureExtractor:
        """The extractor, built with the options its factory takes (one written for fewer
        options, e.g. before ``use_cache``/``trust_pickle`` existed, gets only those)."""
        params = inspect.signature(self.factory).parameters.values()
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            names = {p.name for p in params}
            options = {k: v for k, v in options.items() if k in names}
        return self.factory(**options)


EXTRACTORS: Registry[ExtractorEntry] = Registry("extractor")
DEFAULT_EXTRACTOR = "inception"


def register_extractor(name: str, factory: Callable[..., FeatureExtractor], *,
                       default_protocol: str = DEFAULT_PROTOCOL,
                       input_size: int = INCEPTION_SIZE,
                       input_range: str | None = None) -> None:
    """Make ``factory(weights=, device=, compile=, batch_size=, use_cache=, trust_pickle=,
    precision=)`` available as ``--extractor name`` (a factory may ignore options it has no
    use for, and is given only those it takes;
    ``use_cache=False`` must write nothing to the cache). ``input_range`` says which values
    it takes (default: what ``default_protocol`` gives): only protocols giving those are
    accepted with it."""
    EXTRACTORS.register(name, ExtractorEntry(factory, default_protocol, input_size,
                                             input_range))


register_extractor(DEFAULT_EXTRACTOR, InceptionExtractor)


def create_extractor(name: str = DEFAULT_EXTRACTOR, **options) -> FeatureExtractor:
    return EXTRACTORS.lookup(name)(**options)


from genbench.extractors import clip as _clip  # noqa: E402,F401  (registers extractors)
from genbench.extractors import dinov2 as _dinov2  # noqa: E402,F401  (registers extractors)
from genbench.extractors import ssl as _ssl  # noqa: E402,F401  (registers its extractors)
