"""Write a generator's images to an ADM-layout ``.npz`` (``arr_0`` N×H×W×3 uint8, ``arr_1``
the labels of a class-conditional model), image i from seed ``first_seed + i``.

The images are made chunk by chunk in a chunked store beside the output
(``<out>.parts/``): under torchrun process r makes chunks r, r + W, ...; an interrupted run
resumes from the chunks it finished; the ``.npz`` appears (atomically) only when all exist,
and the parts are then removed. The file is the same with 1 or N processes.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from genbench import distributed
from genbench.errors import GenbenchError
from genbench.fileio import atomic_path
from genbench.generators.base import Generator
from genbench.generators.source import balanced_labels, checked_images
from genbench.store import ChunkStore, chunk_ranges, my_chunks


def write_samples(generator: Generator, out: str | Path, *, num_images: int,
                  first_seed: int = 0, labels: np.ndarray | None = None,
                  chunk_size: int = 1000, progress: bool = True) -> dict[str, Any]:
    """Sample ``num_images`` images to ``out`` (.npz); returns a record of what was written."""
    out = Path(out)
    if out.suffix != ".npz":
        raise GenbenchError(f"{out}: the samples are written as an ADM-layout .npz; name the "
                            "output *.npz")
    if num_images < 1:
        raise GenbenchError(f"-n must be at least 1, got {num_images}")
    if first_seed < 0:
        raise GenbenchError(f"--first-seed must be >= 0, got {first_seed}")
    if not out.parent.is_dir():
        raise GenbenchError(f"{out.parent}: no such folder for the output")
    if labels is None and generator.num_classes:
        labels = balanced_labels(num_images, generator.num_classes)
    parts = ChunkStore(out.with_name(out.name + ".parts"))
    plan = {"generator": generator.identity(), "num_images": num_images,
            "first_seed": first_seed, "chunk_size": chunk_size,
            "labels": None if labels is None else np.asarray(labels).tolist()}
    plan_path = parts.path("plan.json")
    stale = plan["generator"] is None or (plan_path.is_file()
                                          and json.loads(plan_path.read_text()) != plan)
    if stale and distributed.current().is_main:  # other settings, or not resumable
        shutil.rmtree(parts.root, ignore_errors=True)
    distributed.barrier()
    if distributed.current().is_main:
        parts.root.mkdir(parents=True, exist_ok=True)
        with atomic_path(plan_path) as tmp:
            tmp.write_text(json.dumps(plan))
    distributed.barrier()
    todo = [(c, r) for c, r in my_chunks(num_images, chunk_size) if not parts.has_chunk(c)]
    bar = tqdm(total=sum(len(r) for _, r in todo), desc="sampling", unit="img",
               disable=not progress or not distributed.current().is_main)
    start = time.perf_counter()
    for index, items in todo:
        seeds = first_seed + np.arange(items.start, items.stop, dtype=np.int64)
        part = None if labels is None else np.asarray(labels)[items.start:items.stop]
        rgb = np.stack(checked_images(generator.sample(seeds, part), len(items),
                                      generator.describe()))
        parts.write_chunk(index, images=rgb)
        bar.update(len(items))
    bar.close()
    seconds = time.perf_counter() - start
    distributed.barrier()
    count = len(chunk_ranges(num_images, chunk_size))
    if distributed.current().is_main:
        images = np.concatenate(list(parts.iter_field("images", count)))
        arrays = {"arr_0": images}
        if labels is not None:
            arrays["arr_1"] = np.asarray(labels, dtype=np.int64)
        with atomic_path(out) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)
        shutil.rmtree(parts.root, ignore_errors=True)
    distributed.barrier()
    made = sum(len(r) for _, r in todo)
    return {"out": str(out), "num_images": num_images, "first_seed": first_seed,
            "labels": labels is not None, "generator": generator.describe(),
            "images_this_process": made, "seconds": round(seconds, 2),
            "images_per_second": round(made / seconds, 2) if made and seconds > 0 else None}
