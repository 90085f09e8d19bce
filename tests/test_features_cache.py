"""The one-pass pipeline and its cache, run with the small registered test extractor."""

import json

import numpy as np
import pytest
import torch

from genbench.errors import BadImageError, GenbenchError
from genbench.extractors import create_extractor
from genbench.features import extract_statistics
from genbench.protocols import get_protocol
from genbench.sources import ArraySource, GeneratorSource, ImageFolderSource
from genbench.stats import StreamingMoments


@pytest.fixture
def images():
    return np.random.default_rng(5).integers(0, 256, (23, 9, 9, 3), dtype=np.uint8)


def _run(source, extractor, **kw):
    kw.setdefault("chunk_size", 5)
    return extract_statistics(source, get_protocol("tf"), extractor, batch_size=4,
                              progress=False, **kw)


def test_statistics_equal_direct_computation(fresh_cache, images):
    ext = create_extractor("tiny-test")
    run = _run(ArraySource(images), ext)
    direct = ext(get_protocol("tf")(torch.from_numpy(images).permute(0, 3, 1, 2)))
    ref = StreamingMoments(32)
    ref.update(direct)
    np.testing.assert_allclose(run.statistics.mu, ref.statistics().mu, rtol=1e-6)
    np.testing.assert_allclose(run.statistics.sigma, ref.statistics().sigma, rtol=1e-5,
                               atol=1e-7)
    assert run.num_images == 23 and run.extracted == 23
    assert sum(len(f) for f in run.iter_features()) == 23


def test_second_run_does_no_extraction(fresh_cache, images):
    ext = create_extractor("tiny-test")
    first = _run(ArraySource(images), ext)
    calls = ext.calls
    second = _run(ArraySource(images.copy()), ext)
    assert ext.calls == calls and second.extracted == 0
    np.testing.assert_array_equal(first.statistics.sigma, second.statistics.sigma)
    assert not list(fresh_cache.rglob("*.tmp"))
    # other protocol, other image count or other content -> other entry
    assert extract_statistics(ArraySource(images), get_protocol("clean"), ext, chunk_size=5,
                              progress=False).extracted == 23
    assert _run(ArraySource(images), ext, num_images=20).extracted == 20
    changed = images.copy()
    changed[0, 0, 0, 0] ^= 1
    assert _run(ArraySource(changed), ext).extracted == 23


class FailingSource(ArraySource):
    """Raises on one image, as a crash in the middle of a long run would."""

    fail_at: int | None = 12

    def load(self, index):
        if index == self.fail_at:
            raise RuntimeError("simulated crash")
        return super().load(index)


def test_interrupted_run_resumes_from_whole_chunks(fresh_cache, images):
    ext = create_extractor("tiny-test")
    src = FailingSource(images)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _run(src, ext)
    entry = next((fresh_cache / "features").iterdir())
    assert sorted(p.name for p in entry.iterdir()) == [
        "chunk-000000.npz", "chunk-000000.npz.sha256", "chunk-000001.npz",
        "chunk-000001.npz.sha256"]
    src.fail_at = None
    resumed = _run(src, ext)
    assert resumed.extracted == 13  # 23 - the two finished chunks of 5
    clean = _run(ArraySource(images), ext, use_cache=False)
    np.testing.assert_allclose(resumed.statistics.sigma, clean.statistics.sigma, rtol=1e-12)
    meta = json.loads((entry / "meta.json").read_text())
    assert meta["num_samples"] == 23 and meta["protocol"] == "tf"


def test_skip_bad_counts_and_reports(fresh_cache, tmp_path, images):
    from PIL import Image
    for i in range(6):
        Image.fromarray(images[i]).save(tmp_path / f"{i}.png")
    (tmp_path / "3.png").write_bytes(b"\x89PNG broken")
    ext = create_extractor("tiny-test")
    with pytest.raises(BadImageError, match=r"3\.png"):
        _run(ImageFolderSource(tmp_path), ext)
    assert not list(fresh_cache.rglob("chunk-000000.npz"))  # nothing half-written
    run = _run(ImageFolderSource(tmp_path), ext, skip_bad=True)
    assert run.num_images == 5 and len(run.skipped) == 1 and run.skipped[0].endswith("3.png")
    again = _run(ImageFolderSource(tmp_path), ext, skip_bad=True)
    assert again.extracted == 0 and again.skipped == run.skipped


def test_generator_is_not_cached_without_key(fresh_cache):
    ext = create_extractor("tiny-test")
    g = torch.Generator().manual_seed(0)
    run = _run(GeneratorSource(lambda n: torch.rand(n, 3, 8, 8, generator=g), 11), ext)
    assert run.num_images == 11 and run.cache_entry is None
    assert not (fresh_cache / "features").exists()


def test_too_many_images_requested(fresh_cache, images):
    with pytest.raises(GenbenchError, match="--num-images 50 but the source has only 23"):
        _run(ArraySource(images), create_extractor("tiny-test"), num_images=50)
