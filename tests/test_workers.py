"""Decoding in worker processes (``--workers N``): the same features as one process, in order,
for folders and zips (each worker with its own zip handle), bad files named in one line, and
generators kept in this process."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from genbench.cli import main as cli_main
from genbench.config import ExtractionConfig
from genbench.errors import GenbenchError
from genbench.extractors import create_extractor
from genbench.features import extract_statistics
from genbench.protocols import get_protocol
from genbench.sources import ArraySource, GeneratorSource, ImageFolderSource, ZipSource


@pytest.fixture
def folder(tmp_path, image_sets):
    a, _ = image_sets
    root = tmp_path / "imgs"
    root.mkdir()
    for i, img in enumerate(a):
        size = (12, 12) if i % 3 else (17, 9)  # mixed sizes, kept in order
        Image.fromarray(img).resize(size).save(root / f"{i:03d}.png")
    return root


def _features(source, workers, **options):
    run = extract_statistics(source, get_protocol("tf"), create_extractor("tiny-test"),
                             batch_size=4, chunk_size=10, use_cache=False, progress=False,
                             keep_features=True, workers=workers, **options)
    return np.concatenate(run.features), run


def test_workers_give_the_features_of_one_process(folder, tmp_path):
    one, run_one = _features(ImageFolderSource(folder), 0)
    two, run_two = _features(ImageFolderSource(folder), 2)
    assert one.shape == (40, 32) and np.array_equal(one, two)
    np.testing.assert_array_equal(run_one.statistics.sigma, run_two.statistics.sigma)
    archive = tmp_path / "imgs.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.iterdir()):
            zf.write(path, path.name)
    zipped, _ = _features(ZipSource(archive), 2)  # each worker opens the archive itself
    assert np.array_equal(zipped, one)


def test_a_bad_file_is_one_line_or_skipped_the_same_way(folder):
    (folder / "020.png").write_bytes(b"not a png")
    with pytest.raises(GenbenchError, match=r"020\.png") as info:
        _features(ImageFolderSource(folder), 2)
    assert "\n" not in str(info.value) and "Traceback" not in str(info.value)
    one, run_one = _features(ImageFolderSource(folder), 0, skip_bad=True)
    two, run_two = _features(ImageFolderSource(folder), 2, skip_bad=True)
    assert run_one.skipped == run_two.skipped and len(run_two.skipped) == 1
    assert np.array_equal(one, two) and len(two) == 39


def test_generators_stay_in_this_process(image_sets):
    a, _ = image_sets
    calls = []

    def draw(n):
        calls.append(n)
        return a[:n]

    source = GeneratorSource(draw, 8, batch_size=4)
    assert not source.parallel_load and ArraySource(a).parallel_load
    feats, _ = _features(source, 2)
    assert len(feats) == 8 and calls  # drawn here: a worker's calls would not be seen


def test_cli_workers(folder, fresh_cache, capsys):
    args = ["fid", str(folder), "digits", "--num-images", "40", "--extractor", "tiny-test",
            "--json", "--quiet"]
    assert cli_main(args) == 0
    plain = json.loads(capsys.readouterr().out)["value"]
    assert cli_main([*args, "--workers", "2", "--no-cache"]) == 0
    assert json.loads(capsys.readouterr().out)["value"] == plain
    assert cli_main([*args, "--workers", "-1"]) == 2
    assert "--workers must be >= 0" in capsys.readouterr().err
    with pytest.raises(GenbenchError, match="--workers must be >= 0"):
        ExtractionConfig(workers=-2)


@pytest.mark.parametrize("workers", [0, 2])
def test_a_failed_cache_write_mid_run_keeps_every_image(folder, fresh_cache, monkeypatch,
                                                        workers):
    from genbench import store as store_module

    def run(**options):
        return extract_statistics(ImageFolderSource(folder), get_protocol("tf"),
                                  create_extractor("tiny-test"), batch_size=4, chunk_size=10,
                                  progress=False, workers=workers, **options)

    full = run()
    entry = full.cache_entry
    for name in ("chunk-000000.npz", "chunk-000002.npz", "meta.json"):
        for path in entry.glob(name + "*"):
            path.unlink()

    def refuse(*_args, **_kwargs):
        raise store_module.CacheWriteError("disk full (test)")

    monkeypatch.setattr(store_module.ChunkStore, "write_chunk", refuse)
    with pytest.warns(UserWarning, match="continuing without the cache"):
        again = run(keep_features=True)
    assert again.num_images == 40 and again.extracted == 20  # chunks 1 and 3 read back
    np.testing.assert_allclose(again.statistics.mu, full.statistics.mu, rtol=1e-12)
    np.testing.assert_allclose(again.statistics.sigma, full.statistics.sigma, rtol=1e-12,
                               atol=1e-15)
