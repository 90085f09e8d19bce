"""Hostile and careless inputs through the real command line, as a user would run them.

Each case builds its input in a fresh folder, runs ``python -m genbench ...`` in a subprocess
(real TF-FID Inception, small inputs) and is handled cleanly when it either

* succeeds (exit 0) with the right result (the case's own check), or
* fails with exit status 2 and exactly one ``genbench: error:`` line, no traceback,

and nothing half-written is left where the case says so. Writes a JSON report.

    .venv/bin/python bench/hostile_cases.py --json bench/results/hostile_cases.json
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

FAST = ["--compile", "no", "--quiet", "--batch-size", "8", "--device", "cpu"]


@dataclass
class Case:
    name: str
    setup: Callable[[Path], list[str]]          # builds inputs, returns the argv
    expect: str                                 # "error" or "ok"
    check: Callable[[Path, subprocess.CompletedProcess], bool] | None = None
    env: dict | None = None


def _png_set(folder: Path, n: int = 6, seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(
            folder / f"{i}.png")
    return folder


def _feats(path: Path, n: int = 50, d: int = 8, seed: int = 0) -> Path:
    np.save(path, np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32))
    return path


def _stats(path: Path, sigma=None, **meta) -> Path:
    x = np.random.default_rng(0).standard_normal((300, 6))
    sigma = np.cov(x, rowvar=False) if sigma is None else sigma
    np.savez(path, mu=np.zeros(6), sigma=sigma, **meta)
    return path


def _png16_rgb(path: Path) -> Path:
    h = w = 4
    raw = b"".join(b"\x00" + np.full((w, 3), 0x1234, ">u2").tobytes() for _ in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2,
                                                                        0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return path


def _one_error_line(proc: subprocess.CompletedProcess) -> bool:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("genbench: error:")]
    return proc.returncode == 2 and len(errors) == 1 and "Traceback" not in proc.stderr


def _value(proc) -> float:
    return json.loads(proc.stdout.strip().splitlines()[-1])["value"]


class Evil:
    """Unpickling it creates ``marker``: code from the file runs."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _cases() -> list[Case]:
    cases = [
        Case("stats: sigma - 10 I (not PSD)", lambda d: [
            "fid", str(_stats(d / "a.npz", np.eye(6) - 10 * np.eye(6))),
            str(_stats(d / "b.npz"))], "error"),
        Case("stats: asymmetric sigma", lambda d: [
            "fid", str(_stats(d / "a.npz", np.eye(6) + np.triu(np.ones((6, 6)), 1))),
            str(_stats(d / "b.npz"))], "error"),
        Case("stats: num_samples 0", lambda d: [
            "fid", str(_stats(d / "a.npz", num_samples=np.array(0))),
            str(_stats(d / "b.npz"))], "error"),
        Case("stats: another network recorded", lambda d: [
            "fid", str(_stats(d / "a.npz", extractor=np.array("net-a:1"))),
            str(_stats(d / "b.npz", extractor=np.array("net-b:2"))), "--json"], "error"),
        Case("stats: another protocol recorded", lambda d: [
            "fid", str(_stats(d / "a.npz", protocol=np.array("clean"))),
            str(_stats(d / "b.npz")), "--json"], "error"),
        Case("stats: only mu", lambda d: (
            np.savez(d / "m.npz", mu=np.zeros(3)), ["fid", str(d / "m.npz"), str(d / "m.npz")])[1],
            "error"),
        Case("npz with neither images nor statistics", lambda d: (
            np.savez(d / "w.npz", weights=np.zeros(3)),
            ["fid", str(d / "w.npz"), str(d / "w.npz")])[1], "error"),
        Case("fid A A is 0, not -0", lambda d: [
            "fid", str(_stats(d / "a.npz")), str(d / "a.npz")], "ok",
            lambda d, p: "FID 0.0000" in p.stdout and "-0.0000" not in p.stdout),
        Case("--num-images -3 on features", lambda d: [
            "fid", str(_feats(d / "a.npy")), str(_feats(d / "b.npy", seed=1)),
            "--num-images", "-3"], "error"),
        Case("--num-images above the rows of features", lambda d: [
            "fid", str(_feats(d / "a.npy")), str(_feats(d / "b.npy", seed=1)),
            "--num-images", "500"], "error"),
        Case("--num-images with a statistics file (noted)", lambda d: [
            "fid", str(_stats(d / "a.npz")), str(_stats(d / "b.npz")), "--num-images", "5",
            "--json"], "ok", lambda d, p: "does not apply to a statistics file" in p.stdout),
        Case("fid on feature arrays equals eval", lambda d: [
            "fid", str(_feats(d / "a.npy")), str(_feats(d / "b.npy", seed=1)), "--json"], "ok",
            lambda d, p: _value(p) > 0),
        Case("float labels for --per-class", lambda d: (
            np.savez(d / "s.npz", np.zeros((10, 8, 8, 3), np.uint8), np.linspace(0, 2, 10)),
            ["eval", str(d / "s.npz"), "--ref", str(d / "s.npz"), "--per-class",
             "--metrics", "fid", *FAST])[1], "error"),
        Case("16-bit RGB PNG", lambda d: (
            _png_set(d / "imgs", 3), _png16_rgb(d / "imgs" / "x.png"),
            ["fid", str(d / "imgs"), "digits", "--num-images", "4", *FAST])[2], "error"),
        Case("16-bit grey PNG (converted)", lambda d: (
            _png_set(d / "imgs", 3),
            Image.fromarray(np.full((8, 8), 40000, np.uint16)).save(d / "imgs" / "g.png"),
            ["stats", str(d / "imgs"), "-o", str(d / "s.npz"), *FAST])[2], "ok",
            lambda d, p: (d / "s.npz").is_file()),
        Case("decompression bomb PNG", lambda d: (
            _png_set(d / "imgs", 3), Image.new("1", (30000, 30000)).save(d / "imgs" / "b.png"),
            ["fid", str(d / "imgs"), "digits", "--num-images", "4", *FAST])[2], "error"),
        Case("decompression bomb with --skip-bad (skipped)", lambda d: (
            _png_set(d / "imgs", 3), Image.new("1", (30000, 30000)).save(d / "imgs" / "b.png"),
            ["fid", str(d / "imgs"), "digits", "--num-images", "4", "--skip-bad", "--json",
             *FAST])[2], "ok", lambda d, p: "skipped 1" in p.stdout),
        Case("zip member of 1.5 GiB declared", lambda d: _zip_bomb(d), "error"),
        Case("encrypted zip member", lambda d: _encrypted_zip(d), "error"),
        Case("non-UTF-8 file name", lambda d: _bad_name(d), "ok",
             lambda d, p: (d / "s.npz").is_file()),
        Case("hidden files, .git and __MACOSX skipped", lambda d: (
            _png_set(d / "imgs", 3), _png_set(d / "imgs" / ".git", 2),
            _png_set(d / "imgs" / "__MACOSX", 2),
            (d / "imgs" / "._0.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble"),
            ["stats", str(d / "imgs"), "-o", str(d / "s.npz"), "--json", *FAST])[4], "ok",
            lambda d, p: json.loads(p.stdout)["num_images"] == 3),
        Case("empty folder", lambda d: ((d / "e").mkdir(), ["fid", str(d / "e"), "digits"])[1],
             "error"),
        Case("--device cuda on a CPU-only machine", lambda d: [
            "fid", "digits", "digits", "--device", "cuda"], "error"),
        Case("--device banana", lambda d: ["fid", "digits", "digits", "--device", "banana"],
             "error"),
        Case("eval --out naming a file", lambda d: (
            (d / "taken").write_text("x"),
            ["eval", "digits", "--ref", "digits", "--num-images", "20", "--out",
             str(d / "taken"), *FAST])[1], "error",
            lambda d, p: (d / "taken").read_text() == "x"),
        Case("stats -o naming a folder", lambda d: (
            (d / "f.npz").mkdir(), ["stats", "digits", "-o", str(d / "f.npz"), "--force",
                                    *FAST])[1], "error"),
        Case("stats -o an existing file without --force", lambda d: (
            (d / "s.npz").write_text("x"), ["stats", "digits", "-o", str(d / "s.npz"),
                                            *FAST])[1], "error",
            lambda d, p: (d / "s.npz").read_text() == "x"),
        Case("--weights evil.pkl runs no code", lambda d: (
            (d / "evil.pkl").write_bytes(pickle.dumps(Evil(d / "marker"))),
            ["weights", "--weights", str(d / "evil.pkl")])[1], "error",
            lambda d, p: not (d / "marker").exists()),
        Case("--weights naming a folder", lambda d: ["weights", "--weights", str(d)], "error"),
        Case("corrupted feature chunk is recomputed", _corrupt_chunk, "ok",
             lambda d, p: "does not match its recorded sha256" in p.stderr
             and abs(_value(p) - float((d / "clean.txt").read_text())) < 1e-9),
        Case("garbage meta.json is recomputed", _garbage_meta, "ok",
             lambda d, p: abs(_value(p) - float((d / "clean.txt").read_text())) < 1e-9),
        Case("corrupted converted weights are reconverted", _corrupt_weights, "ok",
             lambda d, p: abs(_value(p) - float((d / "clean.txt").read_text())) < 1e-9),
        Case("--no-cache writes nothing", lambda d: [
            "fid", "digits", "digits", "--num-images", "4", "--no-cache", *FAST], "ok",
            lambda d, p: not any((d / "cache").rglob("*"))),
        Case("cache folder that cannot be created (runs uncached)", lambda d: (
            (d / "file").write_text("x"),
            ["fid", "digits", "digits", "--num-images", "4", "--json", *FAST])[1], "ok",
            lambda d, p: "cache" in p.stderr, {"GENBENCH_CACHE": "file/cache"}),
        Case("CAS real label 1000", lambda d: _cas_labels(d, 1000), "error"),
        Case("CAS real label -1", lambda d: _cas_labels(d, -1), "error"),
        Case("CAS float labels", lambda d: _cas_labels(d, 0.5), "error"),
        Case("skip-bad entry does not serve a strict run", _skip_bad_then_strict, "error"),
    ]
    return cases


def _zip_bomb(d: Path) -> list[str]:
    _png_set(d / "imgs", 2)
    with zipfile.ZipFile(d / "bomb.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted((d / "imgs").iterdir()):
            zf.write(p, p.name)
        with zf.open("big.png", "w", force_zip64=True) as f:
            block = b"\x00" * (1 << 24)
            for _ in range(96):  # 1.5 GiB of zeros, about 1.5 MB compressed
                f.write(block)
    return ["fid", str(d / "bomb.zip"), "digits", "--num-images", "3", *FAST]


def _encrypted_zip(d: Path) -> list[str]:
    _png_set(d / "imgs", 2)
    with zipfile.ZipFile(d / "e.zip", "w") as zf:
        for p in sorted((d / "imgs").iterdir()):
            zf.write(p, p.name)
    data = bytearray((d / "e.zip").read_bytes())
    # set the "encrypted" flag bit in every local and central header
    for sig, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = 0
        while (i := data.find(sig, start)) >= 0:
            data[i + offset] |= 0x01
            start = i + 4
    (d / "e.zip").write_bytes(bytes(data))
    return ["fid", str(d / "e.zip"), "digits", "--num-images", "2", *FAST]


def _bad_name(d: Path) -> list[str]:
    _png_set(d / "imgs", 3)
    os.rename(d / "imgs" / "0.png", os.path.join(os.fsencode(d / "imgs"), b"caf\xe9.png"))
    return ["stats", str(d / "imgs"), "-o", str(d / "s.npz"), *FAST]


def _cas_labels(d: Path, bad) -> list[str]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.repeat(np.rint(bunch.images * 255 / 16).astype(np.uint8)[..., None], 3, axis=3)
    labels = bunch.target.astype(np.float64 if isinstance(bad, float) else np.int64)
    labels[3] = bad
    np.savez(d / "train.npz", images[:600], labels[:600])
    np.savez(d / "test.npz", images[600:800], bunch.target[600:800])
    return ["cas", str(d / "train.npz"), "--real-train", str(d / "train.npz"), "--real-test",
            str(d / "test.npz"), "--recipe", "small-resnet", "--epochs", "1", "--quiet"]


FID_ARGS = ["fid", "digits", "fashion-mnist:test", "--num-images", "6", "--json",
            "--chunk-size", "3", *FAST]


def _prime(d: Path) -> None:
    """A clean run into d/cache, its FID written to d/clean.txt."""
    proc = subprocess.run([sys.executable, "-m", "genbench", *FID_ARGS], env=_env(d),
                          capture_output=True, text=True, timeout=600)
    (d / "clean.txt").write_text(repr(_value(proc)))


def _corrupt_chunk(d: Path) -> list[str]:
    _prime(d)
    chunk = next((d / "cache" / "features").rglob("chunk-000001.npz"))
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0x01
    chunk.write_bytes(bytes(data))
    return FID_ARGS


def _garbage_meta(d: Path) -> list[str]:
    _prime(d)
    for meta in (d / "cache" / "features").rglob("meta.json"):
        meta.write_text("{not json")
    return FID_ARGS


def _corrupt_weights(d: Path) -> list[str]:
    _prime(d)
    for entry in (d / "cache" / "features").iterdir():  # make the run extract again
        for p in entry.iterdir():
            p.unlink()
        entry.rmdir()
    converted = next((d / "cache" / "weights").glob("*.pt"))
    data = bytearray(converted.read_bytes())
    for i in range(1000, len(data), 4096):
        data[i] ^= 0x40
    converted.write_bytes(bytes(data))
    return FID_ARGS


def _skip_bad_then_strict(d: Path) -> list[str]:
    _png_set(d / "imgs", 4)
    (d / "imgs" / "2.png").write_bytes(b"\x89PNG broken")
    args = ["stats", str(d / "imgs"), "-o", str(d / "s.npz"), *FAST]
    subprocess.run([sys.executable, "-m", "genbench", *args, "--skip-bad"], env=_env(d),
                   capture_output=True, text=True, timeout=600, check=True)
    return ["stats", str(d / "imgs"), "-o", str(d / "t.npz"), *FAST]


def _env(d: Path, extra: dict | None = None) -> dict:
    env = {**os.environ, "GENBENCH_CACHE": str(d / "cache"), "OMP_NUM_THREADS": "2"}
    for key, value in (extra or {}).items():
        env[key] = str(d / value) if key == "GENBENCH_CACHE" else value
    return env


def run_case(case: Case) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        argv = case.setup(d)
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "genbench", *argv],
                              env=_env(d, case.env), capture_output=True, text=True,
                              timeout=600, cwd=d)
        seconds = time.perf_counter() - start
        if case.expect == "error":
            clean = _one_error_line(proc)
        else:
            clean = proc.returncode == 0 and "Traceback" not in proc.stderr
        if clean and case.check is not None:
            clean = bool(case.check(d, proc))
        tail = (proc.stderr.strip().splitlines() or [""])[-1][:300]
        return {"case": case.name, "expect": case.expect, "exit": proc.returncode,
                "clean": clean, "seconds": round(seconds, 1), "stderr_last_line": tail}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=None)
    parser.add_argument("-k", default=None, help="run only cases whose name contains this")
    args = parser.parse_args()
    results = []
    for case in _cases():
        if args.k and args.k not in case.name:
            continue
        r = run_case(case)
        results.append(r)
        print(f"{'ok ' if r['clean'] else 'BAD'} {r['exit']:3d} {r['seconds']:5.1f}s  "
              f"{r['case']}: {r['stderr_last_line'][:120]}", flush=True)
    handled = sum(r["clean"] for r in results)
    print(f"{handled} of {len(results)} cases handled cleanly")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"handled": handled, "cases": len(results),
                                               "results": results}, indent=1))


if __name__ == "__main__":
    main()
