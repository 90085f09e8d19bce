"""Sampler settings by name, read from the CLI or a ``ckpt:`` spec, in one place.

Every sampler class (``SamplerConfig`` of a flow, ``RCGSampler`` of an RCG checkpoint set)
names the settings it takes in ``option_names`` and applies them with ``with_options``;
``apply_settings`` checks the names against it, so a setting the model does not have (e.g.
``guidance`` for a plain flow) is one line instead of being ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from genbench.errors import GenbenchError


def _grid(value: str) -> tuple[float, ...]:
    return tuple(float(v) for v in value.replace(",", "/").split("/"))


#: setting name → how its text is read
SETTINGS: dict[str, Callable[[str], Any]] = {
    "solver": str, "nfe": int, "rule": str, "grid": _grid,
    "guidance": float, "rdm_steps": int, "eta": float,
}


def parse_setting(key: str, value: str, where: str) -> Any:
    if key not in SETTINGS:
        raise GenbenchError(f"{where}: unknown sampler setting {key!r}; settings are "
                            f"{', '.join(SETTINGS)}")
    try:
        return SETTINGS[key](value)
    except ValueError:
        raise GenbenchError(f"{where}: cannot read {key}={value!r}") from None


def apply_settings(base: Any, changes: dict[str, Any], where: str) -> Any:
    """``base`` (a sampler) with ``changes`` (None values skipped) applied."""
    changes = {k: v for k, v in changes.items() if v is not None}
    extra = sorted(set(changes) - set(base.option_names))
    if extra:
        raise GenbenchError(f"{where}: {', '.join(extra)} do(es) not apply to this model "
                            f"(its sampler takes {', '.join(base.option_names)})")
    return base.with_options(**changes)
