"""What the generator benchmarks share: a log line, and scored rows kept one JSON file each
(reused on resume, so an interrupted benchmark scores only what is missing)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from genbench.config import ExtractionConfig
from genbench.evaluation import Evaluation
from genbench.generators import Generator
from genbench.generators.zoo import MANIFEST, MODELS_DIR, open_checkpoint

SHIP_LIMIT = 8 * 2**20  # bytes a shipped model may have


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Timings(dict):
    """Seconds per stage of this invocation: ``timed(key, fn)`` runs ``fn`` and adds its
    wall time under ``key``."""

    def __call__(self, key: str, fn: Callable):
        start = time.perf_counter()
        value = fn()
        self[key] = self.get(key, 0.0) + time.perf_counter() - start
        return value

    def rounded(self) -> dict[str, float]:
        return {k: round(v, 1) for k, v in self.items()}


class Rows:
    """Scored rows against ``reference`` (its first n images), one JSON each under
    DIR/rows: samples are seeds 0..n-1 of a generator."""

    def __init__(self, out: Path, reference: str, quiet: bool,
                 borrow: tuple[Path, ...] = ()) -> None:
        self.folder, self.reference, self.quiet = out / "rows", reference, quiet
        self.folder.mkdir(parents=True, exist_ok=True)
        self.evaluations: dict[tuple[int, str, bool], Evaluation] = {}
        self.borrow = borrow  # other benchmarks' rows folders, read for identical rows

    def borrowed(self, what: dict, n: int, metrics: str, per_class: bool) -> dict | None:
        """A row of another benchmark (``self.borrow``) that scored the same model digest
        and sampler (``what``) with the same n, reference and metrics: the same number, as
        every row is a deterministic function of these (samples are seeds 0..n-1)."""
        if "model_sha256" not in what:
            return None
        wanted = set(metrics.split(","))
        for folder in self.borrow:
            for path in sorted(folder.glob("*.json")):
                row = json.loads(path.read_text())
                if (row.get("num_images") == n and bool(row.get("per_class")) == per_class
                        and row.get("reference") == f"{self.reference} (first {n})"
                        and all(row.get(k) == v for k, v in what.items())
                        and wanted <= set(row.get("metrics", {}))):
                    return {**row, "borrowed_from": str(path)}
        return None

    def evaluation(self, n: int, metrics: str, per_class: bool = False) -> Evaluation:
        key = (n, metrics, per_class)
        if key not in self.evaluations:
            self.evaluations[key] = Evaluation(
                self.reference, metrics=metrics, num_images=n, per_class=per_class,
                config=ExtractionConfig(progress=not self.quiet))
        return self.evaluations[key]

    def score(self, name: str, make: Callable[[], Generator], n: int, *, metrics: str = "fid",
              per_class: bool = False, record: Callable[[], dict] | None = None) -> dict:
        """The row ``name`` (scored now unless its file exists and records the same
        ``record()``): ``make()`` builds the generator, ``record()`` says what it is (model
        digest, sampler, ...), so a row of a model since retrained is scored again."""
        path = self.folder / f"{name}.json"
        what = record() if record else {}
        if path.is_file():
            saved = json.loads(path.read_text())
            if all(saved.get(k) == v for k, v in what.items()):
                return saved
            log(f"{name}: its row is of another model or sampler; scoring it again")
        borrowed = self.borrowed(what, n, metrics, per_class)
        if borrowed is not None:
            log(f"{name}: the same row is {borrowed['borrowed_from']}; reusing it")
            row = {**borrowed, "name": name}
            path.write_text(json.dumps(row, indent=1))
            return row
        generator = make()
        log(f"scoring {name}: {generator.describe()}, {n} vs {n}")
        result = self.evaluation(n, metrics, per_class).score(
            generator, num_images=n, desc=name).to_dict()
        row = {"name": name, **what, "num_images": n,
               "reference": f"{self.reference} (first {n})", "metrics": result["metrics"],
               "per_class": result.get("per_class"), "seconds": result["seconds"]}
        path.write_text(json.dumps(row, indent=1))
        return row


def ship(entries: dict[str, tuple[Path, str, str]]) -> dict:
    """Copy trained checkpoints into genbench's shipped models (``name`` → (file, what it
    is, the command that made it)), each with its sha256 in MANIFEST.json; files not made
    yet are skipped."""
    import shutil

    manifest = json.loads(MANIFEST.read_text()) if MANIFEST.is_file() else {}
    for name, (src, what, made_by) in entries.items():
        if not src.is_file():
            continue
        size = src.stat().st_size
        if size > SHIP_LIMIT:
            raise SystemExit(f"{src}: {size} bytes, more than the 8 MB a shipped model may be")
        model = open_checkpoint(src)
        shutil.copyfile(src, MODELS_DIR / f"{name}.pt")
        manifest[name] = {"file": f"{name}.pt", "sha256": model.sha256,
                          "description": f"Fashion-MNIST 28×28 {what}; default sampler "
                                         f"{model.default_sampler.describe()}",
                          "made_by": made_by}
    MANIFEST.write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest
