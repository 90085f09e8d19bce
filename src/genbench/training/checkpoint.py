"""Atomic training checkpoints.

A checkpoint is one ``torch.save`` file of plain named state (loaded back with
``torch.load(..., weights_only=True)``, so it holds tensors, numbers, strings, lists and
dicts only)::

    format      FORMAT, the layout version
    step        optimizer steps done
    world_size  processes that wrote it
    model       the network's state_dict (unwrapped from DistributedDataParallel)
    optimizer   the optimizer's state_dict
    ema         the EMA network's state_dict, or None without EMA
    sampler     one EpochSampler state per process (epoch, generator state, next step)
    rng         one torch RNG state per process ({"cpu": ..., "cuda": ... or None})
    task        the task's own state (TrainTask.state_dict), {} by default
    meta        what the run must match to resume from it (seed, batch size, ...)

Every process gathers its sampler and RNG state to process 0, which alone writes (to a
temporary file renamed into place, so a crash never leaves half a checkpoint, and its sha256
beside it); all processes then wait at a barrier. A checkpoint that does not match its digest
is set aside with a warning and training starts again from the beginning: a damaged
checkpoint is never resumed from. One without a digest (an older genbench, or a crash between
the rename and the digest: the rename is atomic, so the file is whole) is loaded, with a
warning. All processes take the same decision (process 0's view of the file). A checkpoint
that cannot be written (read-only folder, full disk) is a warning: training goes on.
Resuming from a good one reproduces the uninterrupted run bit for bit (under the same world
size and deterministic kernels).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from genbench import distributed
from genbench.errors import GenbenchError
from genbench.fileio import atomic_path, digest_state, file_digest, set_aside, write_digest

FORMAT = "genbench.training/1"


@dataclass
class Checkpoint:
    step: int
    world_size: int
    model: dict[str, Any]
    optimizer: dict[str, Any]
    ema: dict[str, Any] | None
    sampler: list[dict[str, Any]]
    rng: list[dict[str, Any]]
    task: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0  # training wall seconds up to ``step``, over every invocation


def rng_state(device: torch.device) -> dict[str, Any]:
    """torch's global RNG state (CPU, and ``device``'s when it is a CUDA device)."""
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return {"cpu": torch.get_rng_state(), "cuda": cuda}


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"], device)


def save_checkpoint(path: str | os.PathLike, checkpoint: Checkpoint) -> None:
    """Write ``checkpoint`` atomically from process 0; every process waits until it is
    written. (Gather per-process state into ``checkpoint.sampler``/``rng`` before.)"""
    if distributed.current().is_main:
        try:
            with atomic_path(path) as tmp:
                torch.save({"format": FORMAT, **asdict(checkpoint)}, tmp)
                digest = file_digest(tmp)
            write_digest(path, digest)
        except OSError as exc:
            warnings.warn(f"{path}: cannot write the checkpoint ({exc.strerror or exc}); "
                          "training goes on without it", stacklevel=2)
    distributed.barrier()


def load_checkpoint(path: str | os.PathLike) -> Checkpoint | None:
    """The checkpoint at ``path`` (tensors on the CPU), or None when there is none."""
    path = Path(path)
    ctx = distributed.current()
    # process 0's view decides for all (a per-node folder may differ): "none", "ok",
    # "unrecorded" (no digest) or "corrupt"
    mine = digest_state(path) if path.is_file() else "none"
    mine = "unrecorded" if mine == "missing" else mine
    state_of_file = distributed.all_gather_objects(mine)[0]
    if state_of_file == "none":
        return None
    if state_of_file == "corrupt":
        if ctx.is_main:
            set_aside(path, "does not match its recorded sha256")
        distributed.barrier()
        return None
    if state_of_file == "unrecorded" and ctx.is_main:
        warnings.warn(f"{path}: has no recorded sha256 (written by an older genbench, or "
                      "interrupted before its digest); loaded as it is", stacklevel=2)
    state = torch.load(path, map_location="cpu", weights_only=True)
    found = state.get("format") if isinstance(state, dict) else None
    if found != FORMAT:
        raise GenbenchError(f"{path}: not a {FORMAT} checkpoint (format {found!r}; written by "
                            "another genbench version?); delete it to train from the start")
    del state["format"]
    return Checkpoint(**state)
