"""Opening an RCG checkpoint set (or its encoder) by name, file or run directory (see
``genbench.generators.zoo``, the one place that knows the shipped names)."""

from __future__ import annotations

from pathlib import Path

from genbench.errors import GenbenchError
from genbench.generators.rcg.model import (
    ENCODER_FORMAT,
    EncoderModel,
    RCGModel,
    encoder_from_payload,
)
from genbench.generators.rectified_flow.model import read_payload
from genbench.generators.zoo import open_checkpoint


def open_rcg(spec: str | Path) -> RCGModel:
    model = open_checkpoint(spec)
    if not isinstance(model, RCGModel):
        raise GenbenchError(f"{spec}: a {type(model).__name__}, not an RCG checkpoint set")
    return model


def open_encoder(spec: str | Path) -> EncoderModel:
    """An RCG encoder: an encoder file, or the encoder of an RCG checkpoint set (by name,
    file or run directory; its digest is the one the RDM recorded)."""
    path = Path(str(spec))
    if path.is_file():
        payload, digest, where = read_payload(path, kind="encoder")
        if payload.get("format") == ENCODER_FORMAT:
            return encoder_from_payload(payload, digest, where)
    return open_rcg(spec).encoder
