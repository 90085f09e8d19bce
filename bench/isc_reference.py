"""Freeze torch-fidelity's Inception Score on seeded logits for tests/test_inception_score.py.

Runs in the peers' venv (torch-fidelity installed; see ../shared/reference/offline-assets.md):

    /work/peers-venv/bin/python bench/isc_reference.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch_fidelity
from torch_fidelity.metric_isc import isc_features_to_metric

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "isc_reference.json"


def logits_case(n: int, seed: int) -> np.ndarray:
    """The logits the test rebuilds: float32, peaked enough for IS well above 1."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, 1008)) * 3).astype(np.float32)


def main() -> None:
    cases = {}
    for n, data_seed in ((500, 7), (1003, 8)):
        logits = torch.from_numpy(logits_case(n, data_seed))
        for rng_seed in (2020, 0):
            value = isc_features_to_metric(logits, splits=10, shuffle=True, rng_seed=rng_seed)
            cases[f"n{n}_data{data_seed}_seed{rng_seed}"] = {
                "n": n, "data_seed": data_seed, "rng_seed": rng_seed,
                "mean": value["inception_score_mean"], "std": value["inception_score_std"]}
    OUT.write_text(json.dumps({"torch_fidelity": torch_fidelity.__version__,
                               "cases": cases}, indent=1))
    print(OUT.read_text())


if __name__ == "__main__":
    main()
