"""Hostile or unusual input to the file sources: decompression bombs and size limits, 16-bit
images, non-UTF-8 and unreadable files, odd zip members, hidden files and macOS junk. Each
gives the right pixels or one clear GenbenchError / BadImageError line."""

import builtins
import io
import os
import struct
import warnings
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image

from genbench.errors import BadImageError, GenbenchError
from genbench.sources import ImageFolderSource, NpzSource, ZipSource
from genbench.sources.base import ImageTooLargeError, display_path, max_pixels
from genbench.sources.files import decode_image


@pytest.fixture(autouse=True)
def _default_limits(monkeypatch):
    for name in ("GENBENCH_MAX_PIXELS", "GENBENCH_MAX_MEMBER_BYTES", "GENBENCH_MAX_ARRAY_BYTES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # restored after


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG")
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _raw_png(width: int, height: int, bit_depth: int, colour_type: int, rows: bytes) -> bytes:
    """A PNG written by hand: IHDR, one IDAT of ``rows`` (filter bytes included), IEND."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(rows))
            + _chunk(b"IEND", b""))


def _zip_with(path, name: str, data: bytes, compress=zipfile.ZIP_DEFLATED) -> None:
    with zipfile.ZipFile(path, "w", compression=compress) as zf:
        zf.writestr(name, data)


def _patch_single_member_zip(path, *, flags: int | None = None, method: int | None = None,
                             file_size: int | None = None) -> None:
    """Rewrite fields of the one member's local header (at 0) and central directory entry."""
    data = bytearray(path.read_bytes())
    central = data.rfind(b"PK\x01\x02")
    for base, (flag_at, method_at, size_at) in ((0, (6, 8, 22)), (central, (8, 10, 24))):
        if flags is not None:
            old = struct.unpack_from("<H", data, base + flag_at)[0]
            struct.pack_into("<H", data, base + flag_at, old | flags)
        if method is not None:
            struct.pack_into("<H", data, base + method_at, method)
        if file_size is not None:
            struct.pack_into("<I", data, base + size_at, file_size)
    path.write_bytes(bytes(data))


# 1. decompression bombs and size limits


def test_pixel_limit_is_checked_from_the_header_before_decoding(tmp_path):
    # 9000 x 9000 declared, no real pixel data: refused from the header (never decoded)
    (tmp_path / "bomb.png").write_bytes(_raw_png(9000, 9000, 8, 2, b"\0"))
    src = ImageFolderSource(tmp_path)
    with pytest.raises(ImageTooLargeError) as info:
        src.load(0)
    msg = str(info.value)
    assert isinstance(info.value, BadImageError)  # so --skip-bad skips and counts it
    assert info.value.location == src.location(0)
    assert "bomb.png: image of 9000x9000 = 81,000,000 pixels" in msg
    assert "limit of 67,108,864 (GENBENCH_MAX_PIXELS)" in msg and "--skip-bad" in msg
    assert "\n" not in msg


def test_pillow_decompression_bomb_error_becomes_a_refusal(tmp_path):
    # 10^10 pixels: Pillow itself raises DecompressionBombError in Image.open
    with pytest.raises(ImageTooLargeError, match=r"x\.png: image of 10,000,000,000 pixels, "
                                                 r"over genbench's limit of 67,108,864"):
        decode_image(_raw_png(100_000, 100_000, 8, 0, b"\0"), "x.png")


def test_pixel_limit_from_environment(tmp_path, monkeypatch):
    data = _png(np.full((4, 4, 3), 7, np.uint8))
    monkeypatch.setenv("GENBENCH_MAX_PIXELS", "15")
    assert max_pixels() == 15
    with pytest.raises(ImageTooLargeError, match=r"a\.png: image of 4x4 = 16 pixels, over "
                                                 r"genbench's limit of 15 \(GENBENCH_MAX_PIXELS"):
        decode_image(data, "a.png")
    monkeypatch.setenv("GENBENCH_MAX_PIXELS", "16")
    assert (decode_image(data, "a.png") == 7).all()
    monkeypatch.setenv("GENBENCH_MAX_PIXELS", "lots")
    with pytest.raises(GenbenchError, match=r"GENBENCH_MAX_PIXELS='lots': expected a whole "
                                            "number"):
        decode_image(data, "a.png")


def test_raised_limit_raises_pillows_own_check(monkeypatch):
    data = _png(np.full((8, 8, 3), 3, np.uint8))  # 64 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)  # Pillow would refuse over 20
    with pytest.raises(ImageTooLargeError, match="image of 64 pixels, over Pillow's limit"):
        decode_image(data, "p.png")  # the user's own (lower) Pillow limit is kept
    monkeypatch.setenv("GENBENCH_MAX_PIXELS", "100")
    assert (decode_image(data, "p.png") == 3).all()
    assert Image.MAX_IMAGE_PIXELS == 100


def test_pillow_bomb_warning_as_error_becomes_a_refusal(monkeypatch):
    data = _png(np.zeros((5, 5, 3), np.uint8))  # 25 pixels: Pillow warns above 20
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with pytest.raises(ImageTooLargeError, match=r"w\.png: image of 25 pixels, over "
                                                     "Pillow's limit of 20"):
            decode_image(data, "w.png")
    with pytest.warns(Image.DecompressionBombWarning):
        assert decode_image(data, "w.png").shape == (5, 5, 3)


def test_zip_member_over_the_declared_size_limit(tmp_path, monkeypatch):
    data = _png(np.full((6, 6, 3), 5, np.uint8))
    _zip_with(tmp_path / "z.zip", "big.png", data)
    src = ZipSource(tmp_path / "z.zip")
    monkeypatch.setenv("GENBENCH_MAX_MEMBER_BYTES", str(len(data) - 1))
    with pytest.raises(ImageTooLargeError, match=rf"z\.zip:big\.png: member of {len(data)} "
                                                 "bytes uncompressed, over genbench's limit "
                                                 rf"of {len(data) - 1} \(GENBENCH_MAX_MEMBER"):
        src.load(0)
    monkeypatch.setenv("GENBENCH_MAX_MEMBER_BYTES", str(len(data)))
    assert (src.load(0) == 5).all()


def test_zip_member_that_decompresses_to_more_than_it_declares(tmp_path):
    data = _png(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8))
    _zip_with(tmp_path / "z.zip", "liar.png", data)
    _patch_single_member_zip(tmp_path / "z.zip", file_size=40)
    src = ZipSource(tmp_path / "z.zip")
    with pytest.raises(BadImageError, match=r"z\.zip:liar\.png: cannot decode image"):
        src.load(0)  # read at most the 40 declared bytes, then refused (bad CRC)


def _npy_header(shape, dtype="|u1") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return b"\x93NUMPY\x01\x00" + buf.getvalue()[8:]


def test_compressed_npz_array_is_size_checked_from_its_header(tmp_path):
    path = tmp_path / "bomb.npz"  # declares 3 TB of pixels, holds none
    _zip_with(path, "arr_0.npy", _npy_header((1_000_000, 1024, 1024, 3)))
    with pytest.raises(GenbenchError, match=r"bomb\.npz: arr_0 is stored compressed and would "
                                            r"take 3,145,728,000,000 bytes") as info:
        NpzSource(path)
    assert "np.savez" in str(info.value) and "GENBENCH_MAX_ARRAY_BYTES" in str(info.value)


def test_compressed_npz_limit_from_environment(tmp_path, monkeypatch):
    images = np.random.default_rng(0).integers(0, 256, (5, 7, 7, 3), dtype=np.uint8)
    np.savez_compressed(tmp_path / "c.npz", images, np.arange(5))
    monkeypatch.setenv("GENBENCH_MAX_ARRAY_BYTES", str(images.nbytes - 1))
    with pytest.raises(GenbenchError, match=r"c\.npz: arr_0 is stored compressed .* over the "
                                            rf"limit of {images.nbytes - 1:,}"):
        NpzSource(tmp_path / "c.npz")
    monkeypatch.setenv("GENBENCH_MAX_ARRAY_BYTES", str(images.nbytes))
    src = NpzSource(tmp_path / "c.npz")
    np.testing.assert_array_equal(src.load(2), images[2])
    np.testing.assert_array_equal(src.labels, np.arange(5))


@pytest.mark.parametrize("compress", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_truncated_npz_array(tmp_path, compress):
    path = tmp_path / "t.npz"
    _zip_with(path, "arr_0.npy", _npy_header((4, 8, 8, 3)) + bytes(100), compress)
    with pytest.raises(GenbenchError, match=r"t\.npz: (arr_0: the array is truncated|not a "
                                            r"readable \.npz file)"):
        NpzSource(path)


# 2. 16-bit images


def test_16_bit_grey_png_is_rounded_to_8_bits(tmp_path):
    values = np.array([[0, 1, 128, 129, 257], [385, 386, 32767, 32768, 65535]], np.uint16)
    (tmp_path / "g16.png").write_bytes(_png(values))
    with Image.open(tmp_path / "g16.png") as img:
        assert img.mode == "I;16"
    out = ImageFolderSource(tmp_path).load(0)
    expected = [[0, 0, 0, 1, 1], [1, 2, 127, 128, 255]]  # round(v * 255 / 65535)
    assert out.shape == (2, 5, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[..., 0], expected)
    assert (out[..., 0] == out[..., 2]).all()


def test_16_bit_big_endian_grey_converted_32_bit_integer_refused(tmp_path):
    values = np.array([[0, 129, 386, 65535]], np.uint16)
    Image.frombytes("I;16B", (4, 1), values.astype(">u2").tobytes()).save(tmp_path / "b.tif")
    Image.fromarray(values.astype(np.int32)).save(tmp_path / "i.tif")
    Image.fromarray(np.array([[0, 70000]], np.int32)).save(tmp_path / "over.tif")
    src = ImageFolderSource(tmp_path)
    assert [p.name for p in src.files] == ["b.tif", "i.tif", "over.tif"]
    np.testing.assert_array_equal(src.load(0)[..., 1], [[0, 1, 2, 255]])
    # 32-bit integer images have no fixed range (0..255? 0..65535?): refused, never guessed
    for i in (1, 2):
        with pytest.raises(BadImageError, match=r"\.tif: cannot decode image \(I \(float or "
                                                r"unusual integer\) images are not supported"):
            src.load(i)


@pytest.mark.parametrize("colour_type, channels", [(2, 3), (6, 4), (4, 2)])
def test_16_bit_colour_png_is_refused_not_truncated(tmp_path, colour_type, channels):
    pixels = np.full((3, 2, channels), 0x80FF, ">u2")
    rows = b"".join(b"\0" + row.tobytes() for row in pixels)
    (tmp_path / "c16.png").write_bytes(_raw_png(2, 3, 16, colour_type, rows))
    src = ImageFolderSource(tmp_path)
    with pytest.raises(BadImageError, match=r"c16\.png: cannot decode image \(16 bits per "
                                            r"channel colour \(PNG [A-Z]+;16B\) is not "
                                            "supported"):
        src.load(0)
    # the same picture in 8 bits decodes
    (tmp_path / "c16.png").write_bytes(_raw_png(2, 3, 8, colour_type, b"".join(
        b"\0" + bytes([0x80] * 2 * channels) for _ in range(3))))
    assert (src.load(0) == 0x80).all()


# 3. non-UTF-8 names, unreadable files and folders


def test_non_utf8_file_names(tmp_path):
    root = os.fsencode(tmp_path)
    for name, data in ((b"caf\xe9.png", _png(np.full((3, 3, 3), 42, np.uint8))),
                       (b"bad\xff.png", b"not a png")):
        fd = os.open(os.path.join(root, name), os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(fd, data)
        os.close(fd)
    src = ImageFolderSource(tmp_path)
    assert len(src) == 2
    fingerprint = src.fingerprint()
    assert fingerprint == ImageFolderSource(tmp_path).fingerprint()
    assert src.location(1) == f"{tmp_path}/caf\\xe9.png"
    assert (src.load(1) == 42).all()
    with pytest.raises(BadImageError) as info:
        src.load(0)
    msg = str(info.value)
    assert f"{tmp_path}/bad\\xff.png: cannot decode image" in msg
    msg.encode("utf-8")  # printable: no lone surrogates
    assert display_path(os.fsdecode(b"a\nb\xe9")) == "a\\nb\\xe9"


def test_unreadable_file_is_named_and_skippable(tmp_path, monkeypatch):
    (tmp_path / "ok.png").write_bytes(_png(np.zeros((2, 2, 3), np.uint8)))
    (tmp_path / "locked.png").write_bytes(_png(np.zeros((2, 2, 3), np.uint8)))
    readable = ImageFolderSource(tmp_path).fingerprint()
    locked = str(tmp_path / "locked.png")
    real_open = builtins.open

    def guarded_open(file, *args, **kwargs):
        if os.fspath(file) == locked:
            raise PermissionError(13, "Permission denied", locked)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded_open)  # root ignores chmod 000
    src = ImageFolderSource(tmp_path)
    assert src.fingerprint() != readable  # no traceback; hashed as unreadable
    assert src.load(1).shape == (2, 2, 3)
    with pytest.raises(BadImageError, match=r"locked\.png: cannot decode image \(cannot read "
                                            r"the file: Permission denied\)"):
        src.load(0)  # a BadImageError, so --skip-bad skips and counts it


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_with_chmod(tmp_path):
    (tmp_path / "locked.png").write_bytes(_png(np.zeros((2, 2, 3), np.uint8)))
    (tmp_path / "locked.png").chmod(0)
    try:
        src = ImageFolderSource(tmp_path)
        src.fingerprint()
        with pytest.raises(BadImageError, match=r"locked\.png: .*Permission denied"):
            src.load(0)
    finally:
        (tmp_path / "locked.png").chmod(0o644)


def test_unreadable_sub_folder_is_an_error_not_skipped(tmp_path, monkeypatch):
    (tmp_path / "a.png").write_bytes(_png(np.zeros((2, 2, 3), np.uint8)))
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "b.png").write_bytes(_png(np.zeros((2, 2, 3), np.uint8)))
    real_scandir = os.scandir

    def guarded_scandir(path="."):
        if os.fspath(path) == str(tmp_path / "secret"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", guarded_scandir)
    with pytest.raises(GenbenchError, match=rf"secret: cannot list this folder \(Permission "
                                            rf"denied\); make it readable or move it out of "
                                            rf"{tmp_path}$"):
        ImageFolderSource(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root lists folders whatever their mode")
def test_unreadable_sub_folder_with_chmod(tmp_path):
    (tmp_path / "a.png").write_bytes(_png(np.zeros((2, 2, 3), np.uint8)))
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret").chmod(0)
    try:
        with pytest.raises(GenbenchError, match="secret: cannot list this folder"):
            ImageFolderSource(tmp_path)
    finally:
        (tmp_path / "secret").chmod(0o755)


# 4. odd zip members


def test_encrypted_zip_member(tmp_path):
    _zip_with(tmp_path / "e.zip", "x/secret.png", _png(np.zeros((2, 2, 3), np.uint8)))
    _patch_single_member_zip(tmp_path / "e.zip", flags=0x1)
    src = ZipSource(tmp_path / "e.zip")
    with pytest.raises(BadImageError, match=r"e\.zip:x/secret\.png: cannot decode image \(the "
                                            r"member is encrypted"):
        src.load(0)


def test_unknown_zip_compression_method(tmp_path):
    _zip_with(tmp_path / "m.zip", "odd.png", _png(np.zeros((2, 2, 3), np.uint8)))
    _patch_single_member_zip(tmp_path / "m.zip", method=98)  # PPMd
    src = ZipSource(tmp_path / "m.zip")
    with pytest.raises(BadImageError, match=r"m\.zip:odd\.png: cannot decode image "
                                            r"\(unsupported zip compression method 98"):
        src.load(0)


def test_zip_with_invalid_utf8_member_name(tmp_path):
    path = tmp_path / "u.zip"
    _zip_with(path, "xa.png", _png(np.zeros((2, 2, 3), np.uint8)))
    path.write_bytes(path.read_bytes().replace(b"xa.png", b"x\xff.png"))
    _patch_single_member_zip(path, flags=0x800)  # names declared UTF-8
    try:
        src = ZipSource(path)
    except GenbenchError as exc:
        assert "u.zip: not a readable zip archive" in str(exc)
    else:  # a Python that decodes such names leniently: still a printable location
        src.location(0).encode("utf-8")


# 5. hidden files and macOS junk


def _junk_tree() -> dict[str, bytes]:
    png = _png(np.zeros((2, 2, 3), np.uint8))
    return {name: png for name in (
        "cats/a.png", "cats/._a.png", "cats/.hidden.png", "dogs/b.png", ".git/objects/c.png",
        "__MACOSX/cats/._a.png", ".thumbs/d.png", "dogs/.cache/e.png")}


def test_folder_skips_hidden_files_and_macos_junk(tmp_path):
    root = tmp_path / ".data" / "imgs"  # a hidden folder *above* the root is fine
    for name, data in _junk_tree().items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    src = ImageFolderSource(root, with_labels=True)
    assert [p.relative_to(root).as_posix() for p in src.files] == ["cats/a.png", "dogs/b.png"]
    assert src.class_names == ["cats", "dogs"] and src.labels.tolist() == [0, 1]


def test_zip_skips_hidden_members_and_macos_junk(tmp_path):
    with zipfile.ZipFile(tmp_path / "j.zip", "w") as zf:
        for name, data in _junk_tree().items():
            zf.writestr(name, data)
    assert ZipSource(tmp_path / "j.zip").names == ["cats/a.png", "dogs/b.png"]
    with zipfile.ZipFile(tmp_path / "only.zip", "w") as zf:
        zf.writestr("__MACOSX/._a.png", b"\0\x05\x16\x07")
    with pytest.raises(GenbenchError, match="no image files in the archive"):
        ZipSource(tmp_path / "only.zip")
