import io
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from genbench.errors import BadImageError, GenbenchError
from genbench.sources import (
    ArraySource,
    GeneratorSource,
    ImageFolderSource,
    NpzSource,
    ZipSource,
    float_to_uint8,
    open_source,
)


def _write(path, array, mode=None, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path, **kw)


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "imgs"
    _write(root / "a.png", rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    _write(root / "sub" / "b.JPG", rng.integers(0, 256, (16, 12, 3), dtype=np.uint8))
    _write(root / "sub" / "deeper" / "c.bmp", rng.integers(0, 256, (5, 5), dtype=np.uint8))
    _write(root / "d.webp", rng.integers(0, 256, (6, 6, 3), dtype=np.uint8), lossless=True)
    _write(root / "e.tiff", rng.integers(0, 256, (4, 4, 4), dtype=np.uint8))
    (root / "notes.txt").write_text("not an image")
    return root


def test_folder_is_recursive_sorted_and_rgb(folder):
    src = ImageFolderSource(folder)
    assert [p.name for p in src.files] == ["a.png", "d.webp", "e.tiff", "b.JPG", "c.bmp"]
    shapes = [src.load(i).shape for i in range(len(src))]
    assert shapes == [(8, 8, 3), (6, 6, 3), (4, 4, 3), (16, 12, 3), (5, 5, 3)]
    gray = src.load(4)
    assert (gray[..., 0] == gray[..., 2]).all()
    assert all(src.load(i).dtype == np.uint8 for i in range(len(src)))


def test_fingerprint_follows_content(folder):
    before = ImageFolderSource(folder).fingerprint()
    assert ImageFolderSource(folder).fingerprint() == before
    _write(folder / "a.png", np.zeros((8, 8, 3), np.uint8))
    assert ImageFolderSource(folder).fingerprint() != before


def test_palette_and_rgba(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 10
    _write(tmp_path / "x.png", rgba)
    Image.fromarray(np.full((4, 4, 3), 102, np.uint8)).convert("P").save(tmp_path / "p.png")
    src = ImageFolderSource(tmp_path)
    assert src.load(0).shape == (4, 4, 3) and (src.load(0) == 102).all()
    assert (src.load(1)[..., 0] == 200).all()  # alpha dropped, as PIL convert('RGB')


def test_corrupt_and_truncated_images_name_the_file(tmp_path):
    good = io.BytesIO()
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(good, "PNG")
    (tmp_path / "trunc.png").write_bytes(good.getvalue()[: len(good.getvalue()) // 2])
    (tmp_path / "junk.jpg").write_bytes(b"\xff\xd8 this is no jpeg")
    src = ImageFolderSource(tmp_path)
    for i in range(2):
        with pytest.raises(BadImageError, match=str(src.files[i].name)):
            src.load(i)


def test_empty_folder(tmp_path):
    with pytest.raises(GenbenchError, match="no image files found"):
        ImageFolderSource(tmp_path)


def test_zip_source_and_zip_slip(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.full((3, 3, 3), 9, np.uint8)).save(buf, "PNG")
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w") as zf:
        zf.writestr("x/1.png", buf.getvalue())
        zf.writestr("readme.txt", "hi")
    src = ZipSource(good)
    assert len(src) == 1 and (src.load(0) == 9).all()
    bad = tmp_path / "evil.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("../../etc/x.png", buf.getvalue())
    with pytest.raises(GenbenchError, match=r"evil.zip: member '../../etc/x.png' points outside"):
        ZipSource(bad)


def test_adm_npz_is_memory_mapped_with_labels(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 7, 7, 3), dtype=np.uint8)
    np.savez(tmp_path / "batch.npz", images, np.arange(5))
    src = NpzSource(tmp_path / "batch.npz")
    assert isinstance(src.images, np.memmap)
    np.testing.assert_array_equal(src.load(3), images[3])
    np.testing.assert_array_equal(src.labels, np.arange(5))
    np.savez_compressed(tmp_path / "c.npz", arr_0=images)
    np.testing.assert_array_equal(NpzSource(tmp_path / "c.npz").load(4), images[4])


@pytest.mark.parametrize("array, message", [
    (np.zeros((2, 4, 4, 3), np.float32), "must be uint8"),
    (np.zeros((2, 4, 4), np.uint8), "N×H×W×C"),
    (np.array([{"x": 1}], dtype=object), "pickled"),
])
def test_bad_npz(tmp_path, array, message):
    path = tmp_path / "bad.npz"
    np.savez(path, arr_0=array)
    with pytest.raises(GenbenchError, match=message):
        NpzSource(path)


def test_npz_without_arr_0(tmp_path):
    np.savez(tmp_path / "x.npz", images=np.zeros((1, 2, 2, 3), np.uint8))
    with pytest.raises(GenbenchError, match="no 'arr_0'"):
        NpzSource(tmp_path / "x.npz")


def test_float_images_are_rounded_not_truncated():
    x = np.array([0.0, 0.999, 1.0, 0.5 / 255 + 1e-6, 1 / 255 - 1e-6])
    np.testing.assert_array_equal(float_to_uint8(x, "0,1"), [0, 255, 255, 1, 1])
    y = torch.tensor([-1.0, 0.0, 0.999, 1.0])
    np.testing.assert_array_equal(float_to_uint8(y), [0, 128, 255, 255])  # auto: [-1, 1]
    with pytest.raises(GenbenchError, match=r"\[0, 1\] or \[-1, 1\]"):
        float_to_uint8(np.array([0.0, 255.0]))


def test_tensor_layouts():
    t = torch.rand(2, 3, 5, 6)
    src = ArraySource(t)
    assert src.load(0).shape == (5, 6, 3)
    np.testing.assert_array_equal(src.load(1)[..., 2], float_to_uint8(t[1, 2], "0,1"))
    assert ArraySource(np.zeros((4, 9, 9), np.uint8)).load(0).shape == (9, 9, 3)


def test_generator_source_draws_requested_counts():
    calls = []

    def generate(n):
        calls.append(n)
        return torch.zeros(n, 3, 4, 4)

    src = GeneratorSource(generate, 10, batch_size=4)
    assert len(src.load_many(list(range(7)))) == 7 and calls == [4, 3]
    assert src.fingerprint() is None
    assert GeneratorSource(generate, 3, cache_key="ckpt1-seed0").fingerprint()


def test_open_source_dispatch_and_errors(tmp_path, folder):
    assert isinstance(open_source(folder), ImageFolderSource)
    assert len(open_source("digits")) == 1797
    with pytest.raises(GenbenchError, match="no such file or folder"):
        open_source(tmp_path / "missing")
    (tmp_path / "x.gif").write_bytes(b"GIF89a")
    with pytest.raises(GenbenchError, match=r"cannot read images from a \.gif"):
        open_source(tmp_path / "x.gif")
    with pytest.raises(GenbenchError, match="num_images"):
        open_source(lambda n: None)
