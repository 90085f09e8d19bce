"""Commands that describe: ``weights``, ``protocols`` and ``references``."""

from __future__ import annotations

import argparse

from genbench.cli.commands import register_command
from genbench.protocols import PROTOCOLS


def _weights_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", default=None, metavar="PATH")
    parser.add_argument("--download", action="store_true",
                        help="fetch the official pytorch-fid file (needs the internet)")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="let a --weights file that only its own code can rebuild (NVlabs' "
                             ".pkl) be unpickled: that runs code from the file, so only for "
                             "files you trust")
    parser.add_argument("--no-cache", action="store_true",
                        help="convert the weights in memory; neither read nor write the "
                             "converted copy in the cache")


def _weights(args: argparse.Namespace) -> dict:
    from genbench.extractors.inception_weights import (
        download_pytorch_fid_weights,
        load_inception_weights,
    )
    if args.download:
        download_pytorch_fid_weights()
    w = load_inception_weights(args.weights, cache=not args.no_cache,
                               trust_pickle=args.trust_pickle)
    converted = {
        "verified": f"{w.converted_path} (sha256 verified)",
        "written": f"{w.converted_path} (converted now, sha256 recorded)",
    }.get(w.cache_state, "none (converted in memory, nothing cached)")
    return {"text": f"{w.source_path}\n  layout {w.layout}, sha256 {w.source_sha256}, "
                    f"classifier (logits) {'yes' if w.has_logits else 'no'}\n"
                    f"  converted copy {converted}"}


def _protocols(args: argparse.Namespace) -> dict:
    return {"text": "\n".join(f"{p.name:12s} {p.description}" for p in PROTOCOLS.values())}


register_command("weights", "show (or download) the Inception weights in use",
                 _weights_arguments, _weights)
register_command("protocols", "list the preprocessing protocols", lambda parser: None,
                 _protocols)


def _references_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="every entry in full, as JSON")


def _references(args: argparse.Namespace) -> dict:
    from genbench.fileio import digest_path
    from genbench.references import REFERENCES, reference_path

    rows = []
    for ref in REFERENCES.values():
        path = reference_path(ref)
        recorded = digest_path(path)
        state = (f"cached, sha256 {recorded.read_text().strip()}" if path.is_file()
                 and recorded.is_file() else "not downloaded")
        rows.append({**ref.to_dict(), "cached": state})
    if args.json:
        return {"references": rows}
    return {"text": "\n".join(
        f"{r['name']:34s} {r['protocol']:11s} {r['extractor']:13s} "
        f"N={r['num_images'] or '?':<8} {r['publisher']}; {r['cached']}" for r in rows)}


register_command("references", "list the published reference statistics usable as ref:NAME",
                 _references_arguments, _references)
