"""The command line, end to end with the real Inception on a few real images."""

import json

import numpy as np
import pytest
from PIL import Image

from conftest import requires_weights
from genbench.cli import main

FAST = ["--compile", "no", "--quiet", "--batch-size", "8"]


def _json(capsys):
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    return json.loads(out[0])


@requires_weights
def test_fid_json_then_cached_then_from_statistics(tmp_path, capsys):
    argv = ["fid", "digits", "fashion-mnist:test", "--num-images", "10", "--json", *FAST]
    assert main(argv) == 0
    first = _json(capsys)
    assert first["metric"] == "fid" and first["protocol"] == "tf"
    assert first["num_images"] == [10, 10]
    assert first["weights_sha256"].startswith("7ff4a85c")
    assert 50 < first["value"] < 1000
    assert any("N = 10 samples" in n for n in first["notes"])

    assert main(argv) == 0
    second = _json(capsys)
    assert second["value"] == first["value"]
    assert [side["extracted"] for side in second["inputs"]] == [0, 0]

    stats = tmp_path / "digits.npz"
    assert main(["stats", "digits", "-o", str(stats), "--num-images", "10", "--json",
                 *FAST]) == 0
    assert _json(capsys)["num_images"] == 10
    with np.load(stats) as data:
        assert data["mu"].shape == (2048,) and data["sigma"].shape == (2048, 2048)
    assert main(["fid", str(stats), "fashion-mnist:test", "--num-images", "10", "--json",
                 *FAST]) == 0
    assert _json(capsys)["value"] == pytest.approx(first["value"], rel=1e-9)

    assert main(["fid", str(stats), "digits", "--protocol", "clean", *FAST]) == 2
    assert "computed with protocol 'tf', not 'clean'" in capsys.readouterr().err


@requires_weights
def test_text_output_names_protocol_and_counts(capsys):
    assert main(["fid", "digits", "fashion-mnist:test", "--num-images", "10", *FAST]) == 0
    text = capsys.readouterr().out
    assert text.startswith("FID ") and "protocol   tf: TF1 bilinear" in text
    assert "digits: 10 images" in text


@requires_weights
def test_bad_image_errors_then_skip_bad(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(
            tmp_path / f"{i}.png")
    (tmp_path / "2.png").write_bytes(b"\x89PNG\r\n truncated")
    argv = ["fid", str(tmp_path), "digits", "--num-images", "4", "--json", *FAST]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "2.png: cannot decode image" in err and "--skip-bad" in err
    assert main([*argv, "--skip-bad"]) == 0
    record = _json(capsys)
    assert record["num_images"][0] == 3
    assert record["inputs"][0]["skipped"][0].endswith("2.png")


@pytest.mark.parametrize("argv, message", [
    (["fid", "/nonexistent/dir", "digits"], "/nonexistent/dir: no such file or folder"),
    (["fid", "digits", "digits", "--weights", "/no/w.pth"], "/no/w.pth: weights file given"),
    (["fid", "digits", "digits", "--num-images", "5000"], "--num-images 5000 but the source "
                                                          "has only 1797"),
])
def test_errors_are_one_line_and_exit_2(argv, message, capsys):
    assert main([*argv, *FAST]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("genbench: error: ") and message in err and "\n" not in err


def test_protocols_listing(capsys):
    assert main(["protocols"]) == 0
    out = capsys.readouterr().out
    assert "pytorch-fid" in out and "clean" in out and "tf " in out
