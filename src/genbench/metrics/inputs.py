"""Checks shared by the metrics that take feature arrays (numpy or torch)."""

from __future__ import annotations

import numpy as np
import torch

from genbench.errors import GenbenchError


def resolve_device(device, *arrays) -> torch.device:
    """``device`` if given, else the device of the first torch tensor among ``arrays``, else CPU."""
    if device is not None:
        return torch.device(device)
    for arr in arrays:
        if isinstance(arr, torch.Tensor):
            return arr.device
    return torch.device("cpu")


def as_feature_tensor(name: str, value, device: torch.device,
                      dtype: torch.dtype | None = torch.float64) -> torch.Tensor:
    """A finite, contiguous samples × features tensor of ``dtype`` on ``device``; a one-line
    GenbenchError naming ``name`` otherwise. ``dtype=None`` keeps float32 and float64 as they
    are (no copy) and turns anything else into float64."""
    x = value.detach() if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))
    if x.ndim != 2:
        raise GenbenchError(f"{name} must be a 2-D (samples × features) array, "
                            f"got shape {tuple(x.shape)}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise GenbenchError(f"{name} is empty (shape {tuple(x.shape)}); need samples × features")
    if not (x.is_floating_point() or x.dtype in (torch.int8, torch.int16, torch.int32,
                                                 torch.int64, torch.uint8)):
        raise GenbenchError(f"{name} must hold real numbers, got dtype {x.dtype}")
    if dtype is None:
        dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float64
    x = x.to(device=device, dtype=dtype)
    # a finite sum proves every entry finite (one cheap pass); else check entry by entry,
    # as the sum of finite values can overflow
    if not bool(torch.isfinite(x.sum())) and not bool(torch.isfinite(x).all()):
        raise GenbenchError(f"{name} contains NaN or infinite values")
    return x.contiguous()
