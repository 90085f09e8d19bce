"""Run directories: one folder per training, resumed when the same training is asked again.

``open_run_dir(out, wanted)`` writes ``config.json`` (what must agree for a resume) on the
first run and checks it on every later one; a folder of another training, or a folder that
is not a run directory, is one line naming it. ``write_json`` writes a run file atomically
on process 0. Everything else in a run directory (checkpoint, logs, the trained model,
``summary.json``) is the training's; ``run_timing`` is the timing its summary records.

A training whose schedule does not depend on its length (a constant learning rate after a
warm-up, as the rectified flows') may be *extended*: asked again with a longer
``train.total_steps`` / ``total_images`` and nothing else changed (``extendable=True``), it
continues from its last checkpoint, and the engine's bit-for-bit resume makes the result the
model an uninterrupted run of the new length would have given. A shorter length is refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genbench import distributed
from genbench.errors import GenbenchError
from genbench.fileio import atomic_path

if TYPE_CHECKING:
    from genbench.training.engine import TrainResult

CONFIG_NAME = "config.json"
LENGTH_KEYS = ("total_steps", "total_images")


def write_json(path: Path, data: dict[str, Any]) -> None:
    """``data`` as indented JSON at ``path``, atomically, by process 0 only."""
    if distributed.current().is_main:
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(data, indent=1))


def _steps(train: dict[str, Any]) -> int:
    if train.get("total_steps") is not None:
        return int(train["total_steps"])
    return -(-int(train["total_images"]) // int(train["batch_size"]))


def _length_only(have: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Whether two run configs differ in the training length alone."""
    def strip(config: dict[str, Any]) -> dict[str, Any]:
        train = {k: v for k, v in config["train"].items() if k not in LENGTH_KEYS}
        return {**config, "train": train}
    return isinstance(have.get("train"), dict) and isinstance(wanted.get("train"), dict) \
        and strip(have) == strip(wanted)


def check_run_dir(out: str | Path, wanted: dict[str, Any], *,
                  extendable: bool = False) -> None:
    """One line unless ``out`` is free or a run directory of the training ``wanted``
    describes (check before loading anything, create with ``open_run_dir`` after); with
    ``extendable`` also a run of the same training asked to go on longer."""
    out = Path(out)
    config_path = out / CONFIG_NAME
    if config_path.is_file():
        have = json.loads(config_path.read_text())
        if have != wanted and extendable and _length_only(have, wanted):
            before, after = _steps(have["train"]), _steps(wanted["train"])
            if after < before:
                raise GenbenchError(f"{out}: a run directory of this training for {before} "
                                    f"steps; it cannot be shortened to {after} (use another "
                                    "--out)")
            return
        if have != wanted:
            diff = sorted(k for k in set(have) | set(wanted) if have.get(k) != wanted.get(k))
            raise GenbenchError(f"{out}: a run directory of another training (differs in "
                                f"{', '.join(diff)}); use another --out or delete it")
    elif out.exists() and any(out.iterdir()):
        raise GenbenchError(f"{out}: exists and is not a training run directory; use another "
                            "--out")


def open_run_dir(out: str | Path, wanted: dict[str, Any], *, extendable: bool = False) -> Path:
    """The run directory ``out`` for the training ``wanted`` describes: created with its
    ``config.json``, or checked against it (and the new length recorded when extended)."""
    out = Path(out)
    check_run_dir(out, wanted, extendable=extendable)
    if distributed.current().is_main:
        out.mkdir(parents=True, exist_ok=True)
    distributed.barrier()
    write_json(out / CONFIG_NAME, wanted)
    return out


def run_timing(out: str | Path, result: TrainResult, batch_size: int,
               seconds_now: float) -> dict[str, Any]:
    """``summary.json``'s timing of a run directory's training: ``seconds`` is the wall time
    of the whole run over every invocation (the checkpoint carries it, so an interrupted
    invocation's steps count; a run resumed from a checkpoint written before genbench
    recorded it counts only this invocation, and a finished one asked again keeps its
    previous figure), ``images_per_second`` this invocation's training rate (``seconds_now``
    its time in ``train``, setup included; the previous figure when nothing was left)."""
    previous_path = Path(out) / "summary.json"
    previous = json.loads(previous_path.read_text()) if previous_path.is_file() else {}
    steps_now = result.steps - result.start_step
    seconds = result.seconds or previous.get("seconds", 0.0) + (seconds_now if steps_now else 0)
    rate = round(steps_now * batch_size / seconds_now, 2) if steps_now and seconds_now > 0 \
        else previous.get("images_per_second")
    return {"seconds": round(seconds, 2), "images_per_second": rate}
