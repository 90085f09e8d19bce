"""Print genbench's FID next to the peers' frozen values (tests/data/peer_fid_reference.json)
for every protocol and image pair, with |ΔFID| and the feature difference.

    .venv/bin/python bench/peer_agreement.py
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
PEERS = {"tf": ["torch_fidelity_float32", "clean_fid_legacy_tensorflow"],
         "pytorch-fid": ["pytorch_fid"], "clean": ["clean_fid_clean"]}


def main() -> None:
    os.environ.setdefault("GENBENCH_CACHE", tempfile.mkdtemp(prefix="genbench-agreement-"))
    from genbench.config import ExtractionConfig
    from genbench.evaluation import Pipeline
    from genbench.metrics.fid import frechet_distance

    reference = json.loads((DATA / "peer_fid_reference.json").read_text())
    print(f"{'protocol':12s} {'peer run':30s} {'pair':20s} {'genbench':>12s} {'peer':>12s} "
          f"{'|dFID|':>9s} {'feat rel':>9s}")
    for protocol, runs in PEERS.items():
        evaluator = Pipeline(ExtractionConfig(protocol=protocol, compile=False,
                                              progress=False))
        stats = {name: evaluator.statistics(str(DATA / "agreement" / name))
                 for name in reference["image_sets"]}
        for run in runs:
            for pair, (a, b) in reference["pairs"].items():
                sa, sb = stats[a].statistics, stats[b].statistics
                ours = frechet_distance(sa.mu, sa.sigma, sb.mu, sb.sigma)
                theirs = reference["runs"][run]["fid"][pair]
                feat = max(
                    float(np.abs(next(stats[n].iter_features())[: len(f)] - np.asarray(f)).max()
                          / np.abs(np.asarray(f)).max())
                    for n, f in reference["runs"][run]["features"].items())
                print(f"{protocol:12s} {run:30s} {pair:20s} {ours:12.6f} {theirs:12.6f} "
                      f"{abs(ours - theirs):9.2e} {feat:9.1e}")


if __name__ == "__main__":
    main()
