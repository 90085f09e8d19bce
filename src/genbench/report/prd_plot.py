"""PRD curves of several models on one plot (recall on x, precision on y, both [0, 1]).

Drawn with matplotlib's Agg canvas (no display, no global pyplot state) and written
atomically: to a temporary file beside the target, then renamed onto it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from genbench.errors import GenbenchError
from genbench.fileio import atomic_path
from genbench.metrics.prd import PRDResult, prd_to_max_f_beta_pair


def _curve(label: str, result) -> tuple[np.ndarray, np.ndarray, float, float, float]:
    """(precision, recall, F_β, F_1/β, β) of a PRDResult or a (precision, recall) pair."""
    if isinstance(result, PRDResult):
        return (np.asarray(result.precision), np.asarray(result.recall), result.f_beta,
                result.f_beta_inv, result.beta)
    try:
        precision, recall = result
    except (TypeError, ValueError):
        raise GenbenchError(f"results[{label!r}] must be a PRDResult or a (precision, recall) "
                            "pair") from None
    precision = np.asarray(precision, dtype=np.float64)
    recall = np.asarray(recall, dtype=np.float64)
    if precision.ndim != 1 or precision.shape != recall.shape:
        raise GenbenchError(f"results[{label!r}]: precision and recall must be 1-D arrays of "
                            f"the same length, got {precision.shape} and {recall.shape}")
    f8, f1_8 = prd_to_max_f_beta_pair(precision, recall, 8)
    return precision, recall, f8, f1_8, 8.0


def _beta_text(beta: float) -> str:
    return f"{beta:g}"


def plot_prd_curves(results: Mapping[str, PRDResult], path: str | os.PathLike, *,
                    title: str | None = None, legend_loc: str = "lower left",
                    dpi: int = 300, figsize: tuple[float, float] = (4.5, 4.5)) -> Path:
    """Plot the PRD curves of ``results`` ({label: PRDResult}) on one figure and save it.

    Each curve is labelled "label (F_8 0.xxx, F_1/8 0.yyy)"; the format comes from the suffix of
    ``path`` (``.png``, ``.pdf``, ``.svg``, ...). Returns the path written.
    """
    if not isinstance(results, Mapping) or not results:
        raise GenbenchError("results must be a non-empty mapping {label: PRDResult}")
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    if not fmt:
        raise GenbenchError(f"path {str(path)!r} needs a file suffix (.png, .pdf, .svg) "
                            "naming the image format")
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:  # pragma: no cover - depends on the environment
        raise GenbenchError("plotting PRD curves needs matplotlib: pip install 'genbench[plot]'")\
            from None

    curves = [(str(label), *_curve(str(label), result)) for label, result in results.items()]
    fig = Figure(figsize=figsize, dpi=dpi)
    canvas = FigureCanvasAgg(fig)
    if fmt not in canvas.get_supported_filetypes():
        raise GenbenchError(f"path {str(path)!r}: unsupported image format {fmt!r}; use one of "
                            f"{', '.join(sorted(canvas.get_supported_filetypes()))}")
    ax = fig.add_subplot(111)
    for label, precision, recall, fb, fb_inv, beta in curves:
        b = _beta_text(beta)
        ax.plot(recall, precision, alpha=0.5, linewidth=3, clip_on=False,
                label=f"{label} (F$_{{{b}}}$ {fb:.3f}, F$_{{1/{b}}}$ {fb_inv:.3f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("Recall", fontsize=12)
    ax.set_ylabel("Precision", fontsize=12)
    ax.tick_params(axis="both", which="major", labelsize=10)
    ax.set_aspect("equal")
    if title:
        ax.set_title(title, fontsize=12)
    ax.legend(loc=legend_loc, fontsize=8, framealpha=0.8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight")
    return path
