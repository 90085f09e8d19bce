"""Opening an RCG checkpoint set by name, file or run directory (see ``genbench.generators
.zoo``, the one place that knows the shipped names)."""

from __future__ import annotations

from pathlib import Path

from genbench.errors import GenbenchError
from genbench.generators.rcg.model import RCGModel
from genbench.generators.zoo import open_checkpoint


def open_rcg(spec: str | Path) -> RCGModel:
    model = open_checkpoint(spec)
    if not isinstance(model, RCGModel):
        raise GenbenchError(f"{spec}: a {type(model).__name__}, not an RCG checkpoint set")
    return model
