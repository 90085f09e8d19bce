"""One small generic registry for every set of named things: protocols, extractors, metrics,
data sets, CAS recipes and networks, input schemes, CLI commands.

A ``Registry`` reads like a read-only mapping (``name in R``, ``R[name]``, iteration in
registration order); ``register`` refuses a name twice, and ``lookup`` turns an unknown name
into the one-line user error that lists the choices.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TypeVar

from genbench.errors import GenbenchError

T = TypeVar("T")


class Registry(Mapping[str, T]):
    """Named entries of one kind (``kind`` appears in error messages)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T) -> T:
        """Add ``entry`` under ``name`` (a new name) and return it."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def lookup(self, name: str, hint: str = "") -> T:
        """The entry called ``name``; a GenbenchError listing the choices otherwise."""
        try:
            return self._entries[name]
        except KeyError:
            raise GenbenchError(f"unknown {self.kind} {name!r}; choose from "
                                f"{', '.join(self._entries)}{hint}") from None

    def __getitem__(self, name: str) -> T:
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"
