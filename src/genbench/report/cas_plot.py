"""Per-class CAS bar chart: accuracy on the real test set of the classifier trained on the
samples next to the one trained on real data, class by class (Agg canvas, atomic write)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from genbench.fileio import atomic_path


def plot_cas_per_class(record: dict, path: str | os.PathLike, dpi: int = 150) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = record["per_class"]
    names = [r["name"] for r in rows]
    real = np.array([np.nan if r["real"] is None else 100 * r["real"] for r in rows])
    cas = np.array([np.nan if r["cas"] is None else 100 * r["cas"] for r in rows])
    x = np.arange(len(rows))
    fig = Figure(figsize=(max(6.0, 0.45 * len(rows) + 2), 4.0), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(111)
    ax.bar(x - 0.2, real, 0.4, label=f"trained on real data (top-1 "
                                     f"{100 * record['real_baseline']['top1']:.1f} %)",
           color="#4c72b0")
    ax.bar(x + 0.2, cas, 0.4, label=f"trained on samples: CAS (top-1 "
                                    f"{100 * record['cas']['top1']:.1f} %)", color="#dd8452")
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=45 if len(rows) > 6 else 0, ha="right"
                       if len(rows) > 6 else "center", fontsize=8)
    ax.set_ylim(0, 105)
    ax.set_ylabel("accuracy on the real test set (%)")
    ax.set_title(f"CAS per class: {record['samples']}", fontsize=10)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=dpi)
    return path
