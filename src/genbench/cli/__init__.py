"""The command line: one module per command family, each registering its commands in
``cli.commands.COMMANDS``; shared option groups in ``cli.options`` build the typed
configuration. A new family is one module and one line in ``FAMILIES``."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import warnings

from genbench import __version__, distributed
from genbench.cli.commands import COMMANDS
from genbench.devices import resolve_device
from genbench.errors import GenbenchError

FAMILIES = ("genbench.cli.evaluate", "genbench.cli.cas", "genbench.cli.info",
            "genbench.cli.train", "genbench.cli.flow", "genbench.cli.rcg")


def build_parser() -> argparse.ArgumentParser:
    for module in FAMILIES:
        importlib.import_module(module)
    parser = argparse.ArgumentParser(
        prog="genbench", description="Faithful, fast metrics for generative image models.")
    parser.add_argument("--version", action="version", version=f"genbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for cmd in COMMANDS.values():
        cmd.add_arguments(sub.add_parser(cmd.name, help=cmd.help,
                                         description=cmd.description))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    warnings.simplefilter("default")
    warnings.formatwarning = lambda msg, cat, *a, **k: f"genbench: warning: {msg}\n"
    try:
        device = resolve_device(getattr(args, "device", "cpu"))
        ctx = distributed.init_distributed(device.type)
        record = COMMANDS[args.command].run(args)
    except GenbenchError as exc:
        print(f"genbench: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file that cannot be written or read: one line, no traceback
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"genbench: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("genbench: interrupted; finished chunks are cached and the next run resumes",
              file=sys.stderr)
        return 130
    if ctx.is_main:
        print(record["text"] if "text" in record else json.dumps(record))
    return 0
