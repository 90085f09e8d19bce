"""Which device a run uses: one rule for every command, API function and training run."""

from __future__ import annotations

import torch

from genbench.errors import GenbenchError


def resolve_device(name: str | torch.device) -> torch.device:
    """``auto``: CUDA when present, else the CPU; any other name as torch spells it."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise GenbenchError(f"--device {name!r} is not a device; use auto, cpu, cuda or "
                            "cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise GenbenchError(f"--device {name}: this machine has no CUDA device; use --device "
                            "cpu (or auto)")
    return device
