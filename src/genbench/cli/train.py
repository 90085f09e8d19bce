"""``genbench train NAME``: one sub-command per generator family, each one ``TRAINERS``
entry (its argument builder and its handler) registered by the family's CLI module."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from genbench.cli.commands import register_command
from genbench.registry import Registry

Trainer = tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], dict]]
TRAINERS: Registry[Trainer] = Registry("trainer")


def _train_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="trainer", required=True)
    for name, (add_arguments, _) in TRAINERS.items():
        add_arguments(sub.add_parser(name, help=f"train a {name} generator"))


register_command("train", "train a reference generator (rf: rectified flows, rcg: RCG)",
                 _train_arguments, lambda args: TRAINERS[args.trainer][1](args),
                 "Train genbench's reference generators; every run resumes from its run "
                 "directory.")
