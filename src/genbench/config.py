"""Typed configuration: one frozen dataclass per concern, built once (from the command line
or by the caller) and handed down whole, never as loose keyword options."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

from genbench.errors import GenbenchError
from genbench.extractors import DEFAULT_EXTRACTOR, FeatureExtractor
from genbench.features import CHUNK_SIZE

PRECISIONS = ("float32", "bfloat16")


@dataclass(frozen=True)
class ExtractionConfig:
    """How images become features: the protocol (None: the extractor's default), the
    extractor (a registered name or an instance) with its weights, the device, batching,
    compilation, the cache, and what to do with undecodable images."""

    protocol: str | None = None
    extractor: str | FeatureExtractor = DEFAULT_EXTRACTOR
    weights: str | os.PathLike | None = None
    device: str = "auto"
    batch_size: int = 50
    compile: str | bool = "auto"
    use_cache: bool = True
    skip_bad: bool = False
    progress: bool = True
    chunk_size: int = CHUNK_SIZE
    trust_pickle: bool = False  # let a --weights pickle run its own code (NVlabs' .pkl)
    workers: int = 0  # processes decoding images (0: one background thread)
    # the network's arithmetic: "bfloat16" (opt-in, where matmuls are natively bfloat16) is
    # ~2× faster on such CPUs but gives other features, kept apart in the cache and records
    precision: str = "float32"

    def __post_init__(self) -> None:
        if isinstance(self.batch_size, bool) or self.batch_size < 1:
            raise GenbenchError(f"--batch-size must be >= 1, got {self.batch_size}")
        if isinstance(self.chunk_size, bool) or self.chunk_size < 1:
            raise GenbenchError(f"--chunk-size must be >= 1, got {self.chunk_size}")
        if isinstance(self.workers, bool) or self.workers < 0:
            raise GenbenchError(f"--workers must be >= 0, got {self.workers}")
        if self.precision not in PRECISIONS:
            raise GenbenchError(f"--precision must be one of {', '.join(PRECISIONS)}, got "
                                f"{self.precision!r}")
        if self.compile not in ("auto", True, False):
            raise GenbenchError(f"compile must be 'auto', True or False, got {self.compile!r}")

    @classmethod
    def build(cls, config: ExtractionConfig | None = None, **overrides) -> ExtractionConfig:
        """``config`` (default: the defaults) with ``overrides`` replaced; an unknown name is
        an error naming it."""
        base = config or cls()
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise TypeError(f"unknown option(s) {', '.join(unknown)}; ExtractionConfig takes "
                            f"{', '.join(sorted(names))}")
        values = {f.name: getattr(base, f.name) for f in fields(cls)}
        return cls(**{**values, **overrides})
