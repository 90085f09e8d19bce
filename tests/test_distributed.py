"""torchrun with 2 CPU processes (gloo) gives the statistics of a single process."""

import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import requires_weights
from genbench.stats import load_statistics

COMMON = ["stats", "digits", "--num-images", "24", "--chunk-size", "5", "--batch-size", "5",
          "--compile", "no", "--quiet"]


@requires_weights
def test_two_processes_equal_one(tmp_path, session_cache):
    env = {**os.environ, "GENBENCH_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                "--master_port=29533", "-m", "genbench"]
    out2 = tmp_path / "two.npz"
    proc = subprocess.run([*torchrun, *COMMON, "-o", str(out2)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("wrote") == 1  # only rank 0 prints
    chunks = sorted(p.name for p in (tmp_path / "cache" / "features").rglob("chunk-*.npz"))
    assert len(chunks) == 5  # both ranks wrote their chunks to the shared entry

    env["GENBENCH_CACHE"] = str(tmp_path / "cache1")
    out1 = tmp_path / "one.npz"
    proc = subprocess.run([sys.executable, "-m", "genbench", *COMMON, "-o", str(out1)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    two, one = load_statistics(out2), load_statistics(out1)
    assert two.num_samples == one.num_samples == 24
    np.testing.assert_allclose(two.mu, one.mu, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(two.sigma, one.sigma, rtol=1e-9, atol=1e-12)


@pytest.fixture(autouse=True)
def _no_torchrun_env(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
