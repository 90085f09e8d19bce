"""The flows that ship with genbench, by name, and the one way to open a model.

``models/MANIFEST.json`` lists each shipped model: its file (beside the manifest), sha256,
what it is and the command that made it. ``open_model`` takes a shipped name, a model file or
a training run directory (its ``model.pt``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from genbench.errors import GenbenchError
from genbench.generators.rectified_flow.model import FlowModel, load_model
from genbench.registry import Registry

MODELS_DIR = Path(__file__).parent / "models"
MANIFEST = MODELS_DIR / "MANIFEST.json"


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


def model_path(spec: str | Path) -> Path:
    """The model file that ``spec`` (a name, a file or a run directory) means."""
    text = str(spec)
    if text in SHIPPED:
        return SHIPPED[text].path
    path = Path(text)
    if path.is_dir():
        if not (path / "model.pt").is_file():
            raise GenbenchError(f"{path}: a run directory without model.pt (training has not "
                                "finished; run the same `genbench train rf` again to resume)")
        return path / "model.pt"
    if not path.exists():
        names = ", ".join(SHIPPED) or "none yet"
        raise GenbenchError(f"{text}: no such model file, run directory or shipped model "
                            f"(shipped: {names})")
    return path


def open_model(spec: str | Path) -> FlowModel:
    """A shipped model by name (checked against its recorded sha256), a model file, or a
    run directory's ``model.pt``."""
    text = str(spec)
    if text in SHIPPED:
        entry = SHIPPED[text]
        return load_model(entry.path, sha256=entry.sha256, name=text)
    return load_model(model_path(spec))
