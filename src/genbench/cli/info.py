"""Commands that describe: ``weights`` and ``protocols``."""

from __future__ import annotations

import argparse

from genbench.cli.commands import register_command
from genbench.protocols import PROTOCOLS


def _weights_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", default=None, metavar="PATH")
    parser.add_argument("--download", action="store_true",
                        help="fetch the official pytorch-fid file (needs the internet)")


def _weights(args: argparse.Namespace) -> dict:
    from genbench.extractors.inception_weights import (
        download_pytorch_fid_weights,
        load_inception_weights,
    )
    if args.download:
        download_pytorch_fid_weights()
    w = load_inception_weights(args.weights)
    return {"text": f"{w.source_path}\n  layout {w.layout}, sha256 {w.source_sha256}, "
                    f"classifier (logits) {'yes' if w.has_logits else 'no'}"}


def _protocols(args: argparse.Namespace) -> dict:
    return {"text": "\n".join(f"{p.name:12s} {p.description}" for p in PROTOCOLS.values())}


register_command("weights", "show (or download) the Inception weights in use",
                 _weights_arguments, _weights)
register_command("protocols", "list the preprocessing protocols", lambda parser: None,
                 _protocols)
