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


@requires_weights
def test_eval_two_processes_equal_one(tmp_path, session_cache):
    """k-NN metrics, KID and PRD under torchrun: each process reads every rank's cached
    chunks, so the numbers equal a single process's."""
    import json

    from genbench.sources.datasets import digits

    images = digits()
    np.savez(tmp_path / "samples.npz", images.load_many(list(range(24, 48))))
    args = ["eval", str(tmp_path / "samples.npz"), "--ref", "digits", "--num-images", "24",
            "--metrics", "fid,kid,pr,dc,prd", "--chunk-size", "5", "--batch-size", "5",
            "--compile", "no", "--quiet", "--json"]
    env = {**os.environ, "GENBENCH_CACHE": str(tmp_path / "cache2"), "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                "--master_port=29534", "-m", "genbench"]
    two = subprocess.run([*torchrun, *args], env=env, capture_output=True, text=True,
                         timeout=600)
    assert two.returncode == 0, two.stderr[-2000:]
    env["GENBENCH_CACHE"] = str(tmp_path / "cache1")
    one = subprocess.run([sys.executable, "-m", "genbench", *args], env=env,
                         capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-2000:]
    m2 = json.loads(two.stdout.strip().splitlines()[-1])["metrics"]
    m1 = json.loads(one.stdout.strip().splitlines()[-1])["metrics"]
    for name in ("pr", "dc", "kid", "prd"):
        assert m2[name] == m1[name], name
    assert m2["fid"]["value"] == pytest.approx(m1["fid"]["value"], rel=1e-9)


def test_cas_under_torchrun(tmp_path):
    """The CAS classifier trains under torchrun (DistributedDataParallel, gloo, 2 processes):
    one result, printed once, from a classifier that learned something."""
    import json

    import torch

    from genbench.cas import load_labelled

    data = load_labelled("digits", "digits", progress=False)
    images, labels = data.images.permute(0, 2, 3, 1).numpy(), data.labels.numpy()
    np.savez(tmp_path / "train.npz", images[:1300], labels[:1300])
    np.savez(tmp_path / "test.npz", images[1300:], labels[1300:])
    env = {**os.environ, "GENBENCH_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                "--master_port=29535", "-m", "genbench"]
    proc = subprocess.run([*torchrun, "cas", str(tmp_path / "train.npz"), "--real-train",
                           str(tmp_path / "train.npz"), "--real-test", str(tmp_path / "test.npz"),
                           "--recipe", "small-resnet", "--epochs", "2", "--json", "--quiet"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["real_baseline"]["top1"] > 0.5
    assert record["gap"]["top1_points"] == 0.0  # same data, same seed: same classifier
    assert torch.distributed.is_available()
