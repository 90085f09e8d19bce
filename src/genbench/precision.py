"""What low-precision arithmetic the hardware runs natively."""

from __future__ import annotations

import functools

import torch


@functools.cache
def _cpu_has_bfloat16() -> bool:
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def fast_bfloat16(device: torch.device) -> bool:
    """Whether bfloat16 matmuls run natively (faster than float32) on ``device``: CUDA, or a
    CPU with AVX512-BF16 / AMX and oneDNN."""
    if device.type == "cuda":
        return True
    return device.type == "cpu" and _cpu_has_bfloat16()
