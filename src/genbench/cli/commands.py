"""The command registry: every sub-command is one ``Command`` entry, registered by the
module of its family (``evaluate``, ``cas``, ``info``, ...)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

from genbench.registry import Registry


@dataclass(frozen=True)
class Command:
    """``add_arguments`` fills the sub-parser; ``run`` returns ``{"text": ...}`` or a
    JSON-ready record to print."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], dict]
    description: str | None = None


COMMANDS: Registry[Command] = Registry("command")


def register_command(name: str, help: str,
                     add_arguments: Callable[[argparse.ArgumentParser], None],
                     run: Callable[[argparse.Namespace], dict],
                     description: str | None = None) -> Command:
    return COMMANDS.register(name, Command(name, help, add_arguments, run, description))
