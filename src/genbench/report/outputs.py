"""Result files: the JSON record is written first and atomically; plots are an extra that
needs matplotlib (``pip install genbench[plot]``) and are skipped with a note without it."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from genbench.errors import GenbenchError
from genbench.fileio import atomic_path

PLOT_EXTRA_HINT = "pip install 'genbench[plot]'"


def check_out_dir(path: str | os.PathLike | None, option: str = "--out") -> None:
    """Refuse, before any work, an output folder that cannot be one (an existing file, or
    under a file)."""
    if path is None:
        return
    path = Path(path)
    for p in (path, *path.parents):
        if p.exists() and not p.is_dir():
            raise GenbenchError(f"{option} {path}: {p} is a file, not a folder; choose another "
                                "output folder")
        if p.exists():
            break


def write_json(path: str | os.PathLike, record: dict) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=1))
    return path


def matplotlib_available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def try_plot(draw: Callable[[Path], object], path: Path, record: dict) -> bool:
    """Draw a plot to ``path`` and list it in ``record["plots"]``; without matplotlib, add a
    note to ``record["notes"]`` instead and return False."""
    if not matplotlib_available():
        record.setdefault("notes", []).append(
            f"plot {path.name} skipped: matplotlib is not installed ({PLOT_EXTRA_HINT})")
        return False
    draw(path)
    record.setdefault("plots", []).append(str(path))
    return True
