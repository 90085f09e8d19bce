"""Option groups shared by commands, and the one place that turns them into typed
configuration (``ExtractionConfig``)."""

from __future__ import annotations

import argparse

from genbench.config import PRECISIONS, ExtractionConfig
from genbench.extractors import DEFAULT_EXTRACTOR, EXTRACTORS
from genbench.features import CHUNK_SIZE
from genbench.protocols import PROTOCOLS

COMPILE_CHOICES = {"auto": "auto", "yes": True, "no": False}


def add_device_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto",
                        help="auto (CUDA when present, else CPU), cpu, cuda, cuda:1 ...")


def add_output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def add_extraction_options(parser: argparse.ArgumentParser) -> None:
    """Protocol, extractor, weights, device, batching, cache: what ``ExtractionConfig``
    holds (plus ``--num-images`` and the output options)."""
    group = parser.add_argument_group("feature extraction")
    group.add_argument("--protocol", default=None, choices=sorted(PROTOCOLS),
                       help="preprocessing protocol (default: the extractor's, tf for "
                            "Inception: TF1 bilinear, what papers report)")
    group.add_argument("--num-images", type=int, default=None, metavar="N",
                       help="use the first N images of each input (default: all; a "
                            "generator needs N)")
    group.add_argument("--batch-size", type=int, default=50)
    add_device_option(group)
    group.add_argument("--weights", default=None, metavar="PATH",
                       help="Inception weights file (also $GENBENCH_INCEPTION_WEIGHTS)")
    group.add_argument("--trust-pickle", action="store_true",
                       help="let a --weights pickle that only its own code can rebuild "
                            "(NVlabs' .pkl) be unpickled: that runs code from the file")
    group.add_argument("--extractor", default=DEFAULT_EXTRACTOR, choices=sorted(EXTRACTORS))
    group.add_argument("--compile", default="auto", choices=sorted(COMPILE_CHOICES),
                       help="torch.compile the network (auto: where a compiler/GPU exists)")
    group.add_argument("--no-cache", action="store_true",
                       help="neither read nor write the cache (features, converted weights)")
    group.add_argument("--skip-bad", action="store_true",
                       help="skip undecodable images (counted and reported) instead of "
                            "stopping")
    group.add_argument("--workers", type=int, default=0, metavar="N",
                       help="decode images in N worker processes (default 0: one background "
                            "thread); the features are the same")
    group.add_argument("--precision", default="float32", choices=PRECISIONS,
                       help="the network's arithmetic. bfloat16 (TF-FID Inception, on CPUs "
                            "with AVX512-BF16/AMX and on GPUs): about 2x faster, but other "
                            "features: none of its metrics (FID, IS, ...) compare with float32 "
                            "numbers or published ones (see the README, Speed)")
    group.add_argument("--chunk-size", type=int, default=CHUNK_SIZE,
                       help="images per cached chunk: the unit of resuming and of the split "
                            f"across torchrun processes (default {CHUNK_SIZE})")
    add_output_options(parser)


def extraction_config(args: argparse.Namespace) -> ExtractionConfig:
    return ExtractionConfig(
        protocol=args.protocol, extractor=args.extractor, weights=args.weights,
        device=args.device, batch_size=args.batch_size, compile=COMPILE_CHOICES[args.compile],
        use_cache=not args.no_cache, skip_bad=args.skip_bad, progress=not args.quiet,
        chunk_size=args.chunk_size, trust_pickle=args.trust_pickle, workers=args.workers,
        precision=args.precision)
