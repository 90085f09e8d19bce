"""Small file helpers: the cache folder, atomic writes, digests written beside cached files and
checked on every read, content hashing, checked downloads."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path

from genbench.errors import GenbenchError


def cache_dir() -> Path:
    """Root of genbench's cache: ``$GENBENCH_CACHE``, else ``$XDG_CACHE_HOME/genbench``,
    else ``~/.cache/genbench``."""
    env = os.environ.get("GENBENCH_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "genbench"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    A crash or exception leaves no half-written ``path`` (the temporary file is removed).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # as open() would create it, not mkstemp's 0600
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once, at import (os.umask is process-wide)


# --- digests of cached files -------------------------------------------------------------

DIGEST_SUFFIX = ".sha256"


def digest_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(path.name + DIGEST_SUFFIX)


def write_digest(path: str | os.PathLike, digest: str | None = None) -> None:
    """Record the sha256 of ``path`` (or ``digest``, the hash of the temporary file that was
    renamed onto it) beside it, as ``<name>.sha256`` written atomically after the file, so
    every later read can tell a damaged file from a good one."""
    with atomic_path(digest_path(path)) as tmp:
        tmp.write_text((digest or file_digest(path)) + "\n")


def digest_state(path: str | os.PathLike) -> str:
    """"ok" (the file matches its recorded digest), "missing" (no file or no digest: e.g. a
    write that did not finish) or "corrupt" (the file is not what was written)."""
    path = Path(path)
    record = digest_path(path)
    if not path.is_file() or not record.is_file():
        return "missing"
    try:
        expected = record.read_text().strip()
        return "ok" if file_digest(path) == expected else "corrupt"
    except OSError:
        return "corrupt"


def verified(path: str | os.PathLike) -> bool:
    """True for an intact file; a damaged one is set aside (with a warning) and, like a
    missing one, gives False."""
    state = digest_state(path)
    if state == "corrupt":
        set_aside(path)
    return state == "ok"


def set_aside(path: str | os.PathLike, why: str = "does not match its recorded sha256") -> None:
    """Move a damaged cached file (and its digest) out of the way, with one warning naming
    it; the caller then recomputes it."""
    path = Path(path)
    try:
        for p in (path, digest_path(path)):
            with contextlib.suppress(FileNotFoundError):  # another process may have moved it
                os.replace(p, p.with_name(p.name + ".corrupt"))
    except OSError as exc:  # a read-only cache: not used, and left where it is
        warnings.warn(f"{path}: {why}; not used (could not be set aside: "
                      f"{exc.strerror or exc})", stacklevel=2)
        return
    warnings.warn(f"{path}: {why}; set aside as {path.name}.corrupt and recomputed",
                  stacklevel=2)


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download(url: str, dest: Path, *, sha256_prefix: str | None = None,
             progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` atomically and check its sha256 (a prefix is enough, as
    torch.hub names its files). Raises GenbenchError naming the URL when it cannot."""
    from tqdm import tqdm

    try:
        with atomic_path(dest) as tmp:
            with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:
                total = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, disable=not progress,
                          desc=f"download {dest.name}") as bar:
                    for block in iter(lambda: response.read(1 << 20), b""):
                        out.write(block)
                        bar.update(len(block))
            if sha256_prefix is not None:
                digest = file_digest(tmp)
                if not digest.startswith(sha256_prefix):
                    raise GenbenchError(
                        f"checksum mismatch for {url}: sha256 {digest} does not start with "
                        f"{sha256_prefix}; the download is corrupt or the file changed")
    except OSError as exc:  # URLError is an OSError
        raise GenbenchError(f"could not download {url}: {exc}") from exc
    return dest


def fetch_once(url: str, path: Path, *, sha256: str | None = None, what: str = "",
               download_missing: bool = True, progress: bool = True) -> Path:
    """``url``'s file kept at ``path``: downloaded when missing (``download_missing``), then
    checked on every call, against ``sha256`` where the publisher gives one, else against the
    sha256 recorded beside it at the first download. A file put at ``path`` by hand (without
    the internet) is taken and its digest recorded; a cached file that no longer matches its
    digest is set aside (with a warning) and fetched again. ``what`` names the file in
    errors."""
    what = what or path.name
    if path.is_file() and digest_path(path).is_file() and verified(path):
        _check_published(what, path, digest_path(path).read_text().strip(), sha256)
        return path
    if path.is_file() and not digest_path(path).is_file():
        digest = file_digest(path)
        _check_published(what, path, digest, sha256)
        write_digest(path, digest)
        return path
    if not download_missing:
        raise GenbenchError(f"{what} is not cached; download {url} to {path}")
    try:
        download(url, path, progress=progress)
    except GenbenchError as exc:
        raise GenbenchError(f"{what}: {exc}; without the internet, download it elsewhere and "
                            f"put it at {path}") from None
    digest = file_digest(path)
    try:
        _check_published(what, path, digest, sha256)
    except GenbenchError:
        path.unlink()
        raise
    write_digest(path, digest)
    return path


def _check_published(what: str, path: Path, digest: str, sha256: str | None) -> None:
    if sha256 is not None and digest != sha256:
        raise GenbenchError(f"{path}: sha256 {digest} is not the published {sha256} of "
                            f"{what}; delete it and download it again")
