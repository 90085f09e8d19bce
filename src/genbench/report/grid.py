"""Image grids: a quick look at what a generator makes (PIL, atomic write)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from genbench.errors import GenbenchError
from genbench.fileio import atomic_path


def save_grid(images: np.ndarray | torch.Tensor, path: str | os.PathLike, *,
              columns: int | None = None, padding: int = 2) -> Path:
    """Write uint8 N×C×H×W images (C = 1 or 3) as one PNG grid, ``columns`` wide (default:
    about square), separated by ``padding`` black pixels."""
    arr = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) \
        else np.asarray(images)
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[1] not in (1, 3) or not len(arr):
        raise GenbenchError(f"a grid takes uint8 N×C×H×W images (C = 1 or 3), got "
                            f"{arr.dtype} {arr.shape}")
    n, c, h, w = arr.shape
    cols = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = np.zeros((rows * (h + padding) + padding, cols * (w + padding) + padding, 3),
                    np.uint8)
    for i, img in enumerate(arr.transpose(0, 2, 3, 1)):
        y, x = padding + (i // cols) * (h + padding), padding + (i % cols) * (w + padding)
        grid[y:y + h, x:x + w] = img if c == 3 else np.repeat(img, 3, axis=2)
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(grid).save(tmp, format="PNG")
    return path
