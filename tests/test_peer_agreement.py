"""genbench's three protocols against the peers they name, on the same PNG files with the same
TF-FID weights. The reference values were computed by the peers themselves
(bench/peer_reference.py, in a separate venv with pytorch-fid, torch-fidelity and clean-fid)
and frozen in tests/data/peer_fid_reference.json."""

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import requires_weights
from genbench.config import ExtractionConfig
from genbench.evaluation import Pipeline
from genbench.metrics.fid import fid_from_statistics

DATA = Path(__file__).parent / "data"
REFERENCE = json.loads((DATA / "peer_fid_reference.json").read_text())

# protocol -> the peer runs it must reproduce
PEERS = {
    "tf": ["torch_fidelity_float32", "clean_fid_legacy_tensorflow"],
    "pytorch-fid": ["pytorch_fid"],
    "clean": ["clean_fid_clean"],
}
CASES = [(protocol, run, pair) for protocol, runs in PEERS.items() for run in runs
         for pair in REFERENCE["pairs"]]

pytestmark = [requires_weights, pytest.mark.filterwarnings("ignore::UserWarning")]


@pytest.fixture(scope="module")
def runs():
    """Statistics (and cached features) for every image set under every protocol."""
    out = {}
    for protocol in PEERS:
        evaluator = Pipeline(ExtractionConfig(protocol=protocol, compile=False,
                                              progress=False))
        for name in REFERENCE["image_sets"]:
            out[protocol, name] = evaluator.statistics(str(DATA / "agreement" / name))
    return out


@pytest.mark.parametrize("protocol, run, pair", CASES)
def test_fid_equals_peer(runs, protocol, run, pair):
    a, b = REFERENCE["pairs"][pair]
    ours = fid_from_statistics(runs[protocol, a].statistics, runs[protocol, b].statistics)
    theirs = REFERENCE["runs"][run]["fid"][pair]
    assert abs(ours - theirs) <= 1e-3, f"{protocol} vs {run} on {pair}: {ours} vs {theirs}"


@pytest.mark.parametrize("protocol, run", [(p, r) for p, runs in PEERS.items() for r in runs])
def test_features_equal_peer(runs, protocol, run):
    for name, theirs in REFERENCE["runs"][run]["features"].items():
        theirs = np.asarray(theirs, dtype=np.float64)
        ours = next(runs[protocol, name].iter_features())[: len(theirs)]
        rel = np.abs(ours - theirs).max() / np.abs(theirs).max()
        assert rel < 1e-4, f"{protocol} vs {run} on {name}: max relative difference {rel:.2e}"


def test_protocols_really_differ(runs):
    """The protocol matters more than any numerical detail: the three give different FIDs."""
    values = {p: fid_from_statistics(runs[p, "fmnist_a"].statistics,
                                     runs[p, "fmnist_b"].statistics) for p in PEERS}
    assert len({round(v, 1) for v in values.values()}) == 3
