"""Reflow pairs (z, x = ODE_teacher(z)), stored compactly in the chunked store.

As the official code stores noise as generator states and images as PNGs in a zip, a pair is
kept as its **seed** (the noise is ``noise_for_seeds`` of it, regenerated when training) and
its **image as uint8** (the teacher's output rounded, exactly what a sample of the teacher
is). Pairs from real data by inversion (the paper's config G) keep the inverted noise itself
(float32): it comes from no seed.

A pair folder is a ``ChunkStore``: ``plan.json`` (teacher sha256, sampler, count, first
seed, labels: written first, checked on every resume), ``chunk-NNNNNN.npz`` (``seeds`` or
``noise``, ``images`` N×C×H×W uint8, ``labels`` when conditional) and ``meta.json`` when all
chunks exist. Under torchrun process r makes chunks r, r + W, ...; a rerun makes only the
missing ones, and the result is the same with 1 or N processes.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from genbench import distributed
from genbench.errors import GenbenchError
from genbench.fileio import atomic_path
from genbench.generators import solvers
from genbench.generators.rectified_flow.model import (
    FlowModel,
    from_uint8,
)
from genbench.generators.source import balanced_labels
from genbench.store import ChunkStore, chunk_ranges, my_chunks

#: pairs use seeds from here on by default, so a student is never scored on its own pairs'
#: noise (evaluation draws seeds 0..n-1)
PAIR_SEED_BASE = 1_000_000_000
PLAN_NAME = "plan.json"


@dataclass
class PairSet:
    """Training examples of a 2-rectified flow: images (uint8 N×C×H×W), the noise of each
    (``seeds[i]`` ≥ 0: from that seed; ``seeds[i]`` = −1 − k: row k of the stored ``noise``)
    and labels when conditional; for an RCG teacher the representation each image was
    conditioned on (float32 N×D)."""

    images: torch.Tensor
    seeds: torch.Tensor
    noise: torch.Tensor | None
    labels: torch.Tensor | None
    plans: list[dict[str, Any]]
    reps: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.images)

    @staticmethod
    def concat(parts: list[PairSet]) -> PairSet:
        if len({p.labels is None for p in parts}) > 1:
            raise GenbenchError("pair sets mix conditional and unconditional pairs")
        if len({p.reps is None for p in parts}) > 1:
            raise GenbenchError("pair sets mix pairs with and without representations")
        noise_rows, seeds, offset = [], [], 0
        for p in parts:
            s = p.seeds.clone()
            if p.noise is not None:
                s[s < 0] -= offset  # row k of this part is row offset + k of the whole
                noise_rows.append(p.noise)
                offset += len(p.noise)
            seeds.append(s)
        labels = None if parts[0].labels is None else torch.cat([p.labels for p in parts])
        reps = None if parts[0].reps is None else torch.cat([p.reps for p in parts])
        return PairSet(torch.cat([p.images for p in parts]), torch.cat(seeds),
                       torch.cat(noise_rows) if noise_rows else None, labels,
                       [plan for p in parts for plan in p.plans], reps)


def _check_plan(store: ChunkStore, plan: dict[str, Any]) -> None:
    """Write ``plan.json`` (process 0, first run) and check it on every process: every
    process reads the same file after the barrier, so all agree (and all stop together)."""
    path = store.path(PLAN_NAME)
    if distributed.current().is_main and not path.is_file():
        store.root.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(plan, indent=1))
    distributed.barrier()
    old = json.loads(path.read_text())
    if old != plan:
        diff = sorted(k for k in set(old) | set(plan) if old.get(k) != plan.get(k))
        raise GenbenchError(f"{store.root}: holds pairs of another plan (differs in "
                            f"{', '.join(diff)}); use another --out or delete it")


def generate_pairs(teacher: Any, out: str | Path, *, num_pairs: int,
                   sampler: Any, first_seed: int = PAIR_SEED_BASE,
                   chunk_size: int = 1000, batch_size: int = 250,
                   device: str | torch.device = "cpu", progress: bool = True) -> dict[str, Any]:
    """Make (or finish) ``num_pairs`` pairs of ``teacher`` in folder ``out``: pair i from
    seed ``first_seed + i`` (and label i mod C for a conditional teacher). The teacher is a
    ``FlowModel`` with a ``SamplerConfig``, or an ``RCGModel`` with an ``RCGSampler`` (then
    each pair keeps its representation too). Returns the folder's meta (counts, forward
    passes, seconds)."""
    if num_pairs < 1:
        raise GenbenchError(f"--num-pairs must be at least 1, got {num_pairs}")
    if chunk_size < 1:
        raise GenbenchError(f"--chunk-size must be at least 1, got {chunk_size}")
    store = ChunkStore(out)
    plan = {"kind": "seeded", "teacher_sha256": teacher.sha256, "teacher": teacher.source,
            "sampler": sampler.to_dict(), "num_pairs": num_pairs, "first_seed": first_seed,
            "chunk_size": chunk_size, "num_classes": teacher.num_classes,
            "shape": list(teacher.shape)}
    rep_dim = teacher.rep_dim
    if rep_dim:
        plan["rep_dim"] = rep_dim
    _check_plan(store, plan)
    generator = teacher.generator(sampler, device=device, batch_size=batch_size)
    labels = None if not teacher.num_classes else balanced_labels(
        num_pairs, teacher.num_classes)
    todo = [(c, r) for c, r in my_chunks(num_pairs, chunk_size) if not store.has_chunk(c)]
    start = time.perf_counter()
    bar = tqdm(total=sum(len(r) for _, r in todo), desc="reflow pairs", unit="pair",
               disable=not progress or not distributed.current().is_main)
    for index, items in todo:
        seeds = first_seed + np.arange(items.start, items.stop, dtype=np.int64)
        part = None if labels is None else labels[items.start:items.stop]
        arrays = {"seeds": seeds}
        if rep_dim:
            images, reps = generator.sample_with_reps(seeds)
            arrays["reps"] = reps.numpy().astype(np.float32)
        else:
            images = generator.sample(seeds, part)
        arrays["images"] = images.numpy()
        if part is not None:
            arrays["labels"] = part
        store.write_chunk(index, **arrays)
        bar.update(len(items))
    bar.close()
    return _finish(store, plan, num_pairs * sampler.forward_passes, time.perf_counter() - start,
                   len(chunk_ranges(num_pairs, chunk_size)))


def invert_real(teacher: FlowModel, out: str | Path, *, images: np.ndarray,
                labels: np.ndarray | None, source: str, nfe: int = 100, chunk_size: int = 1000,
                batch_size: int = 250, device: str | torch.device = "cpu",
                progress: bool = True) -> dict[str, Any]:
    """Pairs (z = inversion of x, x) of real images (uint8 N×C×H×W): the paper's config G."""
    if images.ndim != 4 or tuple(images.shape[1:]) != teacher.spec.shape:
        raise GenbenchError(f"{source}: images of shape {tuple(images.shape[1:])}, the "
                            f"teacher makes {teacher.spec.shape}")
    if teacher.spec.num_classes and labels is None:
        raise GenbenchError(f"{source}: the teacher is class-conditional: the images need labels")
    store = ChunkStore(out)
    plan = {"kind": "inverted", "teacher_sha256": teacher.sha256, "teacher": teacher.source,
            "nfe": nfe, "num_pairs": len(images), "source": source, "chunk_size": chunk_size,
            "num_classes": teacher.spec.num_classes, "shape": list(teacher.spec.shape)}
    _check_plan(store, plan)
    net = teacher.network.to(device)
    todo = [(c, r) for c, r in my_chunks(len(images), chunk_size) if not store.has_chunk(c)]
    start = time.perf_counter()
    bar = tqdm(total=sum(len(r) for _, r in todo), desc="inverting", unit="image",
               disable=not progress or not distributed.current().is_main)
    for index, items in todo:
        noise = []
        for s in range(items.start, items.stop, batch_size):
            e = min(s + batch_size, items.stop)
            x = from_uint8(torch.as_tensor(images[s:e])).to(device)
            y = None if labels is None else torch.as_tensor(labels[s:e], device=device)
            with torch.no_grad():
                noise.append(solvers.invert(lambda xt, t, y=y: net(xt, t, y).float(), x,
                                            nfe=nfe).cpu().numpy())
        arrays = {"seeds": np.full(len(items), -1, dtype=np.int64),
                  "noise": np.concatenate(noise).astype(np.float32),
                  "images": np.asarray(images[items.start:items.stop], dtype=np.uint8)}
        if labels is not None:
            arrays["labels"] = np.asarray(labels[items.start:items.stop], dtype=np.int64)
        store.write_chunk(index, **arrays)
        bar.update(len(items))
    bar.close()
    return _finish(store, plan, len(images) * nfe, time.perf_counter() - start,
                   len(chunk_ranges(len(images), chunk_size)))


def _finish(store: ChunkStore, plan: dict[str, Any], forward_passes: int, seconds: float,
            num_chunks: int) -> dict[str, Any]:
    distributed.barrier()
    if not distributed.all_true(all(store.has_chunk(c) for c in range(num_chunks))):
        raise GenbenchError(f"{store.root}: some pair chunks are missing after the run; run "
                            "again to make them")
    meta = store.read_meta()
    if meta is None:
        meta = {**plan, "forward_passes": forward_passes,
                "seconds_this_run": round(seconds, 2),
                "world_size": distributed.current().world_size}
        store.write_meta(meta)
    distributed.barrier()
    return meta


def load_pairs(folder: str | Path) -> PairSet:
    """A complete pair folder (every chunk checked against its digest)."""
    store = ChunkStore(folder)
    if not store.root.is_dir():
        raise GenbenchError(f"{folder}: no such pair folder (make it with `genbench reflow`)")
    meta = store.read_meta()
    if meta is None:
        raise GenbenchError(f"{folder}: the pairs are not complete; run the same "
                            "`genbench reflow` again to finish them")
    count = len(chunk_ranges(meta["num_pairs"], meta["chunk_size"]))
    images = np.concatenate(list(store.iter_field("images", count)))
    seeds = np.concatenate(list(store.iter_field("seeds", count)))
    noise = None
    if meta["kind"] == "inverted":
        noise = np.concatenate(list(store.iter_field("noise", count)))
        seeds = -np.arange(len(seeds), dtype=np.int64) - 1
    labels = np.concatenate(list(store.iter_field("labels", count))) \
        if meta.get("num_classes") else None
    reps = np.concatenate(list(store.iter_field("reps", count))) if meta.get("rep_dim") \
        else None
    if len(images) != meta["num_pairs"]:
        raise GenbenchError(f"{folder}: {len(images)} pairs, its meta.json says "
                            f"{meta['num_pairs']}; make it again")
    return PairSet(torch.from_numpy(images), torch.from_numpy(seeds),
                   None if noise is None else torch.from_numpy(noise),
                   None if labels is None else torch.from_numpy(labels), [meta],
                   None if reps is None else torch.from_numpy(reps))


__all__ = ["PAIR_SEED_BASE", "PairSet", "generate_pairs", "invert_real", "load_pairs"]
