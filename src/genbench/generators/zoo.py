"""The generators that ship with genbench, by name, and the one way to open a checkpoint.

``models/MANIFEST.json`` lists each shipped checkpoint: its file (beside the manifest),
sha256, what it is and the command that made it. ``open_checkpoint`` takes a shipped name, a
checkpoint file or a training run directory and reads the file by its ``format``
(``CHECKPOINT_FORMATS``: a rectified flow, an RCG checkpoint set, ...); ``open_model`` is the
same for a rectified flow only.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genbench.errors import GenbenchError
from genbench.generators.rectified_flow.model import FlowModel, read_payload
from genbench.registry import Registry

MODELS_DIR = Path(__file__).parent / "models"
MANIFEST = MODELS_DIR / "MANIFEST.json"
#: the file a run directory holds its trained checkpoint in, tried in this order
RUN_DIR_FILES = ("model.pt", "rcg.pt")


@dataclass(frozen=True)
class ShippedModel:
    name: str
    file: str
    sha256: str
    description: str
    made_by: str

    @property
    def path(self) -> Path:
        return MODELS_DIR / self.file

    def to_dict(self) -> dict:
        return {"name": self.name, "file": self.file, "sha256": self.sha256,
                "description": self.description, "made_by": self.made_by}


SHIPPED: Registry[ShippedModel] = Registry("shipped model")
if MANIFEST.is_file():
    for _name, _entry in json.loads(MANIFEST.read_text()).items():
        SHIPPED.register(_name, ShippedModel(name=_name, **_entry))

Reader = Callable[[dict, "str | None", str], Any]
CHECKPOINT_FORMATS: Registry[Reader] = Registry("checkpoint format")


def _flow(payload: dict, digest: str | None, where: str) -> Any:
    from genbench.generators.rectified_flow.model import model_from_payload
    return model_from_payload(payload, digest, where)


def _rcg(payload: dict, digest: str | None, where: str) -> Any:
    from genbench.generators.rcg.model import rcg_from_payload
    return rcg_from_payload(payload, digest, where)


CHECKPOINT_FORMATS.register("genbench-flow", _flow)
CHECKPOINT_FORMATS.register("genbench-rcg", _rcg)


def model_path(spec: str | Path) -> Path:
    """The checkpoint file that ``spec`` (a name, a file or a run directory) means."""
    text = str(spec)
    if text in SHIPPED:
        return SHIPPED[text].path
    path = Path(text)
    if path.is_dir():
        for name in RUN_DIR_FILES:
            if (path / name).is_file():
                return path / name
        raise GenbenchError(f"{path}: a run directory without {' or '.join(RUN_DIR_FILES)} "
                            "(training has not finished; run the same `genbench train` "
                            "command again to resume it)")
    if not path.exists():
        names = ", ".join(SHIPPED) or "none yet"
        raise GenbenchError(f"{text}: no such model file, run directory or shipped model "
                            f"(shipped: {names})")
    return path


def open_checkpoint(spec: str | Path) -> Any:
    """A shipped checkpoint by name (checked against its recorded sha256), a checkpoint
    file or a run directory's, read as its format says (a ``FlowModel``, an ``RCGModel``)."""
    text = str(spec)
    if text in SHIPPED:
        entry = SHIPPED[text]
        payload, digest, where = read_payload(entry.path, sha256=entry.sha256, name=text)
    else:
        payload, digest, where = read_payload(model_path(spec))
    fmt = payload.get("format")
    if fmt not in CHECKPOINT_FORMATS:
        hint = " (a training checkpoint: give its run directory, whose model.pt is the " \
               "trained model)" if "optimizer" in payload else ""
        raise GenbenchError(f"{where}: not a genbench model file{hint}")
    return CHECKPOINT_FORMATS[fmt](payload, digest, where)


def open_model(spec: str | Path) -> FlowModel:
    """A rectified flow (see ``open_checkpoint``); anything else is one line."""
    model = open_checkpoint(spec)
    if not isinstance(model, FlowModel):
        raise GenbenchError(f"{spec}: a {type(model).__name__}, not a rectified flow; this "
                            "needs a flow model")
    return model
