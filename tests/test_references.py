"""Published reference statistics by name (``ref:NAME``): the registry, the download with its
checks, the three file formats (built here: the real files cannot be downloaded on these
machines), the restricted unpickler, and the protocol a reference carries."""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest
from scipy import linalg

import genbench
from genbench.cli import main as cli_main
from genbench.errors import GenbenchError
from genbench.extractors import EXTRACTORS
from genbench.fileio import digest_path, file_digest
from genbench.protocols import PROTOCOLS
from genbench.references import (
    KINDS,
    REFERENCES,
    Reference,
    fetch,
    read_statistics_pickle,
    recorded_protocol,
    reference_path,
)
from genbench.resolve import resolve_input

DIM = 6


def _gaussian(rng, n=40, shift=0.0):
    features = rng.normal(size=(n, DIM)) + shift
    return features, features.mean(0), np.cov(features, rowvar=False)


def _fid_by_hand(mu1, s1, mu2, s2) -> float:
    root = linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(root))


@pytest.fixture
def published(tmp_path, fresh_cache, monkeypatch):
    """Register a reference served from a file:// URL; returns (register, folder)."""
    served = tmp_path / "served"
    served.mkdir()

    def register(file_name: str, **fields) -> Reference:
        options = {"kind": "npz", "protocol": "clean", "extractor": "inception",
                   "num_images": 40, "resolution": 32, "publisher": "a test"} | fields
        ref = Reference(f"test-{file_name.split('.')[0]}", (served / file_name).as_uri(),
                        **options)
        monkeypatch.setitem(REFERENCES._entries, ref.name, ref)
        return ref

    return register, served


def test_registry_entries_are_complete_and_consistent():
    names = list(REFERENCES)
    assert len(names) == len(set(names)) == 66
    for ref in REFERENCES.values():
        assert ref.url.startswith("https://") and ref.kind in KINDS and ref.resolution > 0
        # either a protocol and network genbench has, or a network it does not have yet
        assert (ref.protocol in PROTOCOLS) == (ref.extractor in EXTRACTORS), ref.name
    adm = REFERENCES["adm-imagenet256"]
    assert adm.url == ("https://openaipublic.blob.core.windows.net/diffusion/jul-2021/"
                       "ref_batches/imagenet/256/VIRTUAL_imagenet256_labeled.npz")
    assert (adm.kind, adm.protocol) == ("adm", "tf")
    # clean-fid's names: f"{name}_{mode}_{split}_{res}.npz", its modes our protocols
    ref = REFERENCES["cleanfid-ffhq-trainval70k-1024-tf"]
    assert ref.url.endswith("/~clean-fid/stats/ffhq_legacy_tensorflow_trainval70k_1024.npz")
    assert (ref.protocol, ref.num_images) == ("tf", 70000)
    assert REFERENCES["cleanfid-cifar10-test-32-pytorch-fid"].url.endswith(
        "cifar10_legacy_pytorch_test_32.npz")
    assert REFERENCES["edm2-img512-dinov2"].entry == "fd_dinov2"
    # a reference's protocol applies to its own network only (another network's features of
    # an ADM batch's arr_0 take that network's protocol)
    assert recorded_protocol("ref:adm-imagenet256", "inception") == "tf"
    assert recorded_protocol("ref:adm-imagenet256", "clip-vit-l14-336") is None
    assert recorded_protocol("ref:edm2-img512-dinov2", "dinov2-vitl14") == "dinov2"
    assert recorded_protocol("fashion-mnist:test", "inception") is None


def test_fetch_records_the_digest_then_checks_it(published):
    register, served = published
    _, mu, sigma = _gaussian(np.random.default_rng(0))
    np.savez(served / "stats.npz", mu=mu, sigma=sigma)
    ref = register("stats.npz")
    path = fetch(ref, progress=False)
    assert path == reference_path(ref) and path.read_bytes() == (served / "stats.npz").read_bytes()
    assert digest_path(path).read_text().strip() == file_digest(path)
    # a cached file changed afterwards is set aside and fetched again
    (served / "stats.npz").rename(served / "kept.npz")
    with open(path, "ab") as f:
        f.write(b"tampered")
    with pytest.raises(GenbenchError, match="could not download"), \
            pytest.warns(UserWarning, match="does not match its recorded sha256"):
        fetch(ref, progress=False)
    (served / "kept.npz").rename(served / "stats.npz")
    assert file_digest(fetch(ref, progress=False)) == file_digest(served / "stats.npz")


def test_a_published_checksum_that_differs_is_refused_and_nothing_kept(published):
    register, served = published
    np.savez(served / "other.npz", mu=np.zeros(DIM), sigma=np.eye(DIM))
    ref = register("other.npz", sha256="0" * 64)
    with pytest.raises(GenbenchError, match="is not the published 0000"):
        fetch(ref, progress=False)
    assert not reference_path(ref).exists()
    with pytest.raises(GenbenchError, match="is not cached; download"):
        fetch(ref, download_missing=False)


def test_fid_against_a_named_reference_uses_its_protocol(published, tmp_path):
    register, served = published
    rng = np.random.default_rng(1)
    _, mu, sigma = _gaussian(rng)
    feats = _gaussian(rng, shift=0.3)[0].astype(np.float32)
    np.savez(served / "clean-stats.npz", mu=mu, sigma=sigma)
    register("clean-stats.npz")
    np.save(tmp_path / "feats.npy", feats)
    fmu, fsigma = feats.astype(np.float64).mean(0), np.cov(feats.astype(np.float64),
                                                          rowvar=False)
    result = genbench.compute_fid(tmp_path / "feats.npy", "ref:test-clean-stats")
    assert result.protocol == "clean"  # taken from the reference, not the default tf
    assert result.fid == pytest.approx(_fid_by_hand(fmu, fsigma, mu, sigma), rel=1e-9)
    with pytest.raises(GenbenchError, match="computed with protocol 'clean', not 'tf'"):
        genbench.compute_fid(tmp_path / "feats.npy", "ref:test-clean-stats", protocol="tf")


def test_edm2_pickle_is_read_without_running_code(published, tmp_path):
    register, served = published
    rng = np.random.default_rng(2)
    _, mu, sigma = _gaussian(rng)
    with open(served / "img64.pkl", "wb") as f:
        pickle.dump({"num_images": 1281167, "fid": {"mu": mu, "sigma": sigma},
                     "fd_dinov2": {"mu": mu[:3], "sigma": sigma[:3, :3]}}, f)
    register("img64.pkl", kind="edm2", protocol="tf", num_images=None)
    resolved = resolve_input("ref:test-img64")
    assert resolved.kind == "statistics" and resolved.label == "ref:test-img64"
    stats = resolved.statistics
    assert (stats.protocol, stats.num_samples) == ("tf", 1281167)
    np.testing.assert_array_equal(stats.mu, mu)
    np.testing.assert_array_equal(stats.sigma, sigma)

    class Payload:  # what a crafted pickle does: call a function while loading
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'ran'}",))

    crafted = tmp_path / "crafted.pkl"
    crafted.write_bytes(pickle.dumps({"fid": {"mu": Payload(), "sigma": sigma}}))
    with pytest.raises(GenbenchError, match=r"refused: not a pickle of plain arrays \(it "
                                            r"names (posix|nt)\.system\)"):
        read_statistics_pickle(crafted)
    assert not (tmp_path / "ran").exists()
    for protocol in (2, 3, 4, 5):  # Python 2-compatible bytes, native bytes, out-of-band
        plain = tmp_path / f"p{protocol}.pkl"
        plain.write_bytes(pickle.dumps({"fid": {"mu": mu, "sigma": sigma}}, protocol=protocol))
        np.testing.assert_array_equal(read_statistics_pickle(plain)["fid"]["sigma"], sigma)
    loop: list = []
    loop.append(loop)  # a list holding itself: walked without recursion
    (tmp_path / "loop.pkl").write_bytes(pickle.dumps({"x": loop}))
    assert set(read_statistics_pickle(tmp_path / "loop.pkl")) == {"x"}
    # numpy.ndarray called directly (uninitialised memory) and a 17 GB array are refused
    direct = b"\x80\x02}X\x02\x00\x00\x00mucnumpy\nndarray\nK\x03\x85\x85Rs."
    (tmp_path / "direct.pkl").write_bytes(direct)
    with pytest.raises(GenbenchError, match=r"direct\.pkl: not a readable statistics pickle"):
        read_statistics_pickle(tmp_path / "direct.pkl")
    huge = (b"\x80\x02}X\x02\x00\x00\x00mucnumpy.core.multiarray\n_reconstruct\ncnumpy\n"
            b"ndarray\nJ\x00\x00\x00\x7f\x85cnumpy\ndtype\nX\x02\x00\x00\x00f8\x89\x88"
            b"\x87R\x87Rs.")
    (tmp_path / "huge.pkl").write_bytes(huge)
    with pytest.raises(GenbenchError, match=r"huge.pkl: refused.*an array of shape"):
        read_statistics_pickle(tmp_path / "huge.pkl")
    objects = tmp_path / "objects.pkl"
    objects.write_bytes(pickle.dumps({"fid": {"mu": np.array([1, "a"], dtype=object)}}))
    with pytest.raises(GenbenchError, match="array of Python objects"):
        read_statistics_pickle(objects)


def test_adm_reference_batch_keeps_its_images(published):
    register, served = published
    rng = np.random.default_rng(3)
    _, mu, sigma = _gaussian(rng)
    images = rng.integers(0, 256, size=(5, 8, 8, 3), dtype=np.uint8)
    np.savez(served / "VIRTUAL_tiny.npz", arr_0=images, mu=mu, sigma=sigma, mu_s=mu[:2],
             sigma_s=sigma[:2, :2])
    register("VIRTUAL_tiny.npz", kind="adm", protocol="tf", num_images=None)
    resolved = resolve_input("ref:test-VIRTUAL_tiny")
    assert resolved.kind == "adm-batch" and len(resolved.source) == 5
    assert (resolved.statistics.protocol, resolved.label) == ("tf", "ref:test-VIRTUAL_tiny")
    assert any("inception features, protocol 'tf'" in n for n in resolved.notes)


def test_unknown_names_and_networks_genbench_lacks_are_one_line_errors(published):
    register, _ = published
    with pytest.raises(GenbenchError, match=r"unknown reference statistics 'imagenet'.*"
                                            r"genbench references lists them"):
        resolve_input("ref:imagenet")
    ref = register("elsewhere.npz", extractor="swav-resnet50")
    with pytest.raises(GenbenchError, match="swav-resnet50 network, which this genbench does "
                                            "not have"):
        resolve_input(f"ref:{ref.name}")  # refused before any download
    assert not reference_path(ref).exists()
    dino = REFERENCES["edm2-img512-dinov2"]  # FD_DINOv2 statistics: in DINOv2's space
    assert (dino.extractor, dino.protocol, dino.entry) == ("dinov2-vitl14", "dinov2",
                                                           "fd_dinov2")


def test_cli_lists_and_uses_references(published, tmp_path, capsys):
    register, served = published
    rng = np.random.default_rng(4)
    _, mu, sigma = _gaussian(rng)
    np.savez(served / "cli.npz", mu=mu, sigma=sigma)
    register("cli.npz", protocol="tf")
    feats, _, _ = _gaussian(rng, shift=1.0)
    np.save(tmp_path / "f.npy", feats.astype(np.float32))
    assert cli_main(["references", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["references"]
    assert {r["name"] for r in rows} >= {"adm-imagenet64", "test-cli", "edm2-img512"}
    assert cli_main(["fid", str(tmp_path / "f.npy"), "ref:test-cli", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["protocol"] == "tf" and record["value"] > 0
    assert cli_main(["references"]) == 0
    line = next(row for row in capsys.readouterr().out.splitlines()
                if row.startswith("test-cli "))
    assert f"cached, sha256 {file_digest(served / 'cli.npz')}" in line
    assert cli_main(["fid", str(tmp_path / "f.npy"), "ref:nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown reference statistics 'nope'" in err
