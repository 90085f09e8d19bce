"""Training RCG's three stages on the genbench engine, in one RCG run directory:

    ROOT/encoder/   the SSL encoder (``train_encoder``): NT-Xent on two augmented views
    ROOT/reps/      the training images' representations, computed once (chunked store)
    ROOT/rdm/       the representation diffusion model (``train_rdm``) on those
    ROOT/pixel/     the representation-conditioned pixel flow (``train_pixel``): a 1-RF on the
                    images and their own representations, with representation dropout; or a
                    2-RF++ on reflow pairs of an RCG teacher (``genbench reflow``)
    ROOT/rcg.pt     the checkpoint set (written by the pixel stage)

Each stage directory is a run directory (``config.json`` checked on resume, ``checkpoint.pt``,
``log.jsonl``, ``model.pt``, ``summary.json``) and every stage resumes bit for bit. The
pixel flow's trainer is the rectified-flow one (``FlowTask``); only its conditioning differs.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from genbench import distributed
from genbench.errors import GenbenchError
from genbench.generators.nets.unet import UNET_CONFIGS
from genbench.generators.rcg.encoder import (
    ENCODER_CONFIGS,
    SSLEncoder,
    augment,
    nt_xent,
)
from genbench.generators.rcg.model import (
    RCGModel,
    RCGSampler,
    encoder_payload,
    load_encoder,
    load_rcg,
    rdm_payload,
    save_rcg,
)
from genbench.generators.rcg.rdm import MLP_CONFIGS, DDPMSchedule, SimpleMLP, rdm_loss
from genbench.generators.rectified_flow.model import (
    FlowSpec,
    from_uint8,
    read_payload,
    save_model,
    state_for_file,
    write_payload,
)
from genbench.generators.rectified_flow.training import (
    RECIPES,
    FlowData,
    FlowRecipe,
    FlowTask,
    load_images,
    pair_data,
)
from genbench.store import ChunkStore, chunk_ranges, my_chunks
from genbench.training.callbacks import ProgressEvery
from genbench.training.engine import TrainConfig, TrainResult, TrainTask, train
from genbench.training.rundir import check_run_dir, open_run_dir, run_timing, write_json

STAGES = ("encoder", "rdm", "pixel")
BUNDLE_NAME = "rcg.pt"


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with a linear warm-up then a constant rate."""

    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    warmup: int = 0

    def __post_init__(self) -> None:
        if not self.lr > 0 or self.weight_decay < 0 or self.warmup < 0:
            raise GenbenchError("the learning rate must be positive, weight decay and warm-up "
                                ">= 0")

    def build(self, network: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.AdamW(network.parameters(), lr=self.lr, betas=self.betas,
                                 weight_decay=self.weight_decay)

    def at(self, step: int) -> float:
        return self.lr * (min(1.0, (step + 1) / self.warmup) if self.warmup else 1.0)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["betas"] = list(self.betas)
        return out


# ---------------------------------------------------------------- stage settings


@dataclass(frozen=True)
class EncoderStage:
    """The encoder's training: data, ``ENCODER_CONFIGS`` name (with ``rep_dim`` override),
    engine settings, optimiser."""

    data: str
    train: TrainConfig
    config: str = "fmnist"
    rep_dim: int | None = None
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(1e-3, 1e-4, warmup=100))

    def network_config(self, channels: int):
        options: dict[str, Any] = {"image_channels": channels}
        if self.rep_dim is not None:
            options["rep_dim"] = self.rep_dim
        return ENCODER_CONFIGS.lookup(self.config).with_options(**options)

    def to_dict(self) -> dict[str, Any]:
        return {"stage": "encoder", "data": self.data, "config": self.config,
                "rep_dim": self.rep_dim, "optim": self.optim.to_dict(),
                "train": _train_dict(self.train)}


@dataclass(frozen=True)
class RDMStage:
    """The RDM's training on ROOT/reps: ``MLP_CONFIGS`` name, schedule, default DDIM
    sampler, engine settings, optimiser (the paper: AdamW 5.12e-4, wd 0.01, constant)."""

    train: TrainConfig
    config: str = "fmnist"
    schedule: DDPMSchedule = field(default_factory=DDPMSchedule)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(5.12e-4, 0.01))

    def to_dict(self) -> dict[str, Any]:
        return {"stage": "rdm", "config": self.config, "schedule": self.schedule.to_dict(),
                "optim": self.optim.to_dict(), "train": _train_dict(self.train)}


@dataclass(frozen=True)
class PixelStage:
    """The pixel flow's training: a 1-RF on ROOT's images and representations, or (with
    ``pairs`` and ``init``, an RCG checkpoint set) a 2-RF on reflow pairs; U-Net
    configuration, recipe, representation dropout, the checkpoint set's default sampler."""

    train: TrainConfig
    net: str = "fmnist-xs"
    recipe: FlowRecipe = field(default_factory=lambda: RECIPES["1rf"])
    rep_dropout: float = 0.1
    pairs: tuple[str, ...] = ()
    init: str | None = None
    sampler: RCGSampler = field(default_factory=RCGSampler)

    @property
    def kind(self) -> str:
        return "2-rf" if self.pairs else "1-rf"

    def to_dict(self) -> dict[str, Any]:
        return {"stage": "pixel", "net": self.net, "recipe": self.recipe.to_dict(),
                "rep_dropout": self.rep_dropout, "pairs": list(self.pairs), "init": self.init,
                "kind": self.kind, "train": _train_dict(self.train)}


def _train_dict(config: TrainConfig) -> dict[str, Any]:
    out = asdict(config)
    out.pop("device")
    return out


# ---------------------------------------------------------------- tasks


class EncoderTask(TrainTask):
    """NT-Xent between two augmented views of each image."""

    def __init__(self, images: torch.Tensor, stage: EncoderStage) -> None:
        self.images, self.stage = images, stage
        self.config = stage.network_config(images.shape[1])

    @property
    def num_examples(self) -> int:
        return len(self.images)

    def build_network(self, device: torch.device) -> nn.Module:
        return SSLEncoder(self.config).to(device)

    def build_optimizer(self, network: nn.Module) -> torch.optim.Optimizer:
        return self.stage.optim.build(network)

    def lr(self, step: int) -> float:
        return self.stage.optim.at(step)

    def make_batch(self, indices: torch.Tensor, generator: torch.Generator,
                   device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        x = from_uint8(self.images[indices])
        return augment(x, generator).to(device), augment(x, generator).to(device)

    def loss(self, model: nn.Module, batch: Any, step: int) -> torch.Tensor:
        a, b = batch
        return nt_xent(model(a), model(b), self.config.temperature)


class RDMTask(TrainTask):
    """x₀-parameterised DDPM on representation vectors (t uniform over the T steps)."""

    def __init__(self, reps: torch.Tensor, stage: RDMStage) -> None:
        self.reps, self.stage = reps.float(), stage
        self.config = MLP_CONFIGS.lookup(stage.config).with_options(rep_dim=reps.shape[1])

    @property
    def num_examples(self) -> int:
        return len(self.reps)

    def build_network(self, device: torch.device) -> nn.Module:
        return SimpleMLP(self.config).to(device)

    def build_optimizer(self, network: nn.Module) -> torch.optim.Optimizer:
        return self.stage.optim.build(network)

    def lr(self, step: int) -> float:
        return self.stage.optim.at(step)

    def make_batch(self, indices: torch.Tensor, generator: torch.Generator,
                   device: torch.device) -> dict[str, torch.Tensor]:
        n = len(indices)
        t = torch.randint(0, self.stage.schedule.steps, (n,), generator=generator)
        noise = torch.randn((n, self.config.rep_dim), generator=generator)
        return {"x0": self.reps[indices].to(device), "t": t.to(device),
                "noise": noise.to(device)}

    def loss(self, model: nn.Module, batch: Any, step: int) -> torch.Tensor:
        return rdm_loss(model, self.stage.schedule, batch["x0"], batch["t"],
                        batch["noise"]).mean()


# ---------------------------------------------------------------- stages


def _run(task: TrainTask, config: TrainConfig, out: Path, label: str,
         quiet: bool, progress_every: int) -> tuple[TrainResult, float]:
    progress = ProgressEvery(progress_every, config.batch_size, log=out / "log.jsonl",
                             quiet=quiet, label=label)
    start = time.perf_counter()
    result = train(task, config, checkpoint_path=out / "checkpoint.pt", callbacks=[progress])
    return result, time.perf_counter() - start


def _summary(out: Path, result: TrainResult, config: TrainConfig, seconds: float,
             examples: int, network: nn.Module, extra: dict[str, Any]) -> dict[str, Any]:
    return {"steps": result.steps, "examples": examples,
            **run_timing(out, result, config.batch_size, seconds),
            "world_size": distributed.current().world_size, "amp": result.amp,
            "num_params": sum(p.numel() for p in network.parameters()), **extra}


def train_encoder(stage: EncoderStage, root: str | Path, *, quiet: bool = False,
                  progress_every: int = 50) -> dict[str, Any]:
    """Stage 1: the SSL encoder in ROOT/encoder (model.pt: an encoder file)."""
    out = Path(root) / "encoder"
    wanted = stage.to_dict()
    check_run_dir(out, wanted)
    data = load_images(stage.data, conditional=False)
    task = EncoderTask(data.images, stage)
    open_run_dir(out, wanted)
    result, seconds = _run(task, stage.train, out, "train rcg encoder", quiet,
                              progress_every)
    network = result.network
    summary = _summary(out, result, stage.train, seconds, len(data), network,
                       {"data": data.description})
    if distributed.current().is_main:
        payload = encoder_payload(network, data.images.shape[2], {"summary": summary,
                                  "data": data.description, "seed": stage.train.seed},
                                  state_for_file(network))
        summary["sha256"] = write_payload(out / "model.pt", payload)
    write_json(out / "summary.json", summary)
    distributed.barrier()
    return summary


def stage_data(root: Path) -> str:
    """The training data the encoder stage of ROOT used."""
    path = root / "encoder" / "config.json"
    if not path.is_file():
        raise GenbenchError(f"{root}: no encoder stage yet; run `genbench train rcg --stage "
                            f"encoder --data DATA --out {root}` first")
    return json.loads(path.read_text())["data"]


def _encoder_file(root: Path) -> Path:
    return _finished(root / "encoder" / "model.pt", "encoder", root)


def training_reps(root: str | Path, *, chunk_size: int = 5000, batch_size: int = 500,
                  progress: bool = True) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(uint8 training images, their float32 representations, data description), the
    representations computed once into ROOT/reps (a chunked store keyed by the encoder's
    sha256 and the data; split across torchrun processes, resumed chunk by chunk)."""
    root = Path(root)
    encoder = load_encoder(_encoder_file(root))
    data = load_images(stage_data(root), conditional=False)
    store = ChunkStore(root / "reps")
    plan = {"encoder_sha256": encoder.sha256, "data": data.description,
            "count": len(data), "chunk_size": chunk_size, "rep_dim": encoder.rep_dim}
    meta = store.read_meta()
    if meta is not None and meta != plan:
        raise GenbenchError(f"{store.root}: representations of another encoder or data; "
                            "delete the folder to compute them again")
    if meta is None:
        for index, items in my_chunks(len(data), chunk_size):
            if not store.has_chunk(index):
                reps = encoder.represent(data.images[items.start:items.stop],
                                         batch_size=batch_size)
                store.write_chunk(index, reps=reps.numpy().astype(np.float32))
        distributed.barrier()
        if distributed.current().is_main:
            store.write_meta(plan)
        distributed.barrier()
    count = len(chunk_ranges(len(data), chunk_size))
    reps = torch.from_numpy(np.concatenate(list(store.iter_field("reps", count))))
    return data.images, reps, data.description


def train_rdm(stage: RDMStage, root: str | Path, *, quiet: bool = False,
              progress_every: int = 50) -> dict[str, Any]:
    """Stage 2: the RDM on ROOT/reps, in ROOT/rdm (model.pt: an RDM file)."""
    root = Path(root)
    out = root / "rdm"
    wanted = {**stage.to_dict(), "data": stage_data(root)}
    check_run_dir(out, wanted)
    _, reps, description = training_reps(root, progress=not quiet)
    encoder_sha = ChunkStore(root / "reps").read_meta()["encoder_sha256"]  # what made them
    task = RDMTask(reps, stage)
    open_run_dir(out, wanted)
    result, seconds = _run(task, stage.train, out, "train rcg rdm", quiet, progress_every)
    network = result.ema_network if result.ema_network is not None else result.network
    summary = _summary(out, result, stage.train, seconds, len(reps), network,
                       {"data": description})
    if distributed.current().is_main:
        payload = rdm_payload(network, stage.schedule, RCGSampler().rdm, encoder_sha,
                              {"summary": summary, "seed": stage.train.seed},
                              state_for_file(network))
        summary["sha256"] = write_payload(out / "model.pt", payload)
    write_json(out / "summary.json", summary)
    distributed.barrier()
    return summary


def _finished(path: Path, what: str, root: Path) -> Path:
    if not path.is_file():
        raise GenbenchError(f"{root}: the {what} stage has not finished (no {path}); run it "
                            "first")
    return path


def train_pixel(stage: PixelStage, root: str | Path, *, quiet: bool = False,
                half: bool = False, progress_every: int = 50) -> dict[str, Any]:
    """Stage 3: the pixel flow in ROOT/pixel, then the checkpoint set ROOT/rcg.pt (with
    ``half``: float16 weights, as the shipped models)."""
    from genbench.generators.rcg.zoo import open_rcg

    root = Path(root)
    out = root / "pixel"
    teacher: RCGModel | None = None
    if stage.pairs:
        if stage.init is None:
            raise GenbenchError("an RCG 2-rectified flow starts from its RCG teacher: give "
                                "--init (a checkpoint set, its run directory or a name)")
        teacher = open_rcg(stage.init)
        wanted = {**stage.to_dict(), "teacher_sha256": teacher.sha256}
        check_run_dir(out, wanted)
        data = pair_data(list(stage.pairs))
        if data.reps is None:
            raise GenbenchError(f"{', '.join(stage.pairs)}: pairs without representations; "
                                "make them with `genbench reflow` from an RCG checkpoint set")
        spec = FlowSpec(teacher.pixel.spec.net, teacher.pixel.spec.image_size, "2-rf",
                        stage.sampler.pixel)
        encoder_part, encoder_sha = _part(teacher, "encoder"), teacher.encoder.sha256
        rdm_part = _part(teacher, "rdm")
    else:
        wanted = {**stage.to_dict(), "data": stage_data(root)}
        check_run_dir(out, wanted)
        images, reps, description = training_reps(root, progress=not quiet)
        data = FlowData(images, None, None, description, reps=reps)
        net = UNET_CONFIGS.lookup(stage.net).with_options(image_channels=images.shape[1],
                                                          rep_dim=reps.shape[1])
        spec = FlowSpec(net, images.shape[2], "1-rf", stage.sampler.pixel)
        encoder_part, encoder_sha, _ = read_payload(_encoder_file(root), kind="encoder")
        rdm_part = read_payload(_finished(root / "rdm" / "model.pt", "rdm", root),
                                kind="RDM")[0]
    task = FlowTask(data, spec, stage.recipe, init=None if teacher is None else teacher.pixel,
                    rep_dropout=stage.rep_dropout)
    open_run_dir(out, wanted)
    result, seconds = _run(task, stage.train, out, f"train rcg pixel {stage.kind}", quiet,
                              progress_every)
    network = result.ema_network if result.ema_network is not None else result.network
    summary = _summary(out, result, stage.train, seconds, len(data), network,
                       {"kind": stage.kind, "data": data.description,
                        "training_forward_passes": result.steps * stage.train.batch_size})
    if distributed.current().is_main:
        meta = {"recipe": stage.recipe.to_dict(), "rep_dropout": stage.rep_dropout,
                "summary": summary, "seed": stage.train.seed,
                "teacher": None if teacher is None else {"source": teacher.source,
                                                         "sha256": teacher.sha256}}
        summary["sha256"] = save_model(out / "model.pt", network, spec, meta)
        pixel_part = read_payload(out / "model.pt")[0]
        if half:
            for part in (encoder_part, rdm_part, pixel_part):
                part["weights"] = {k: v.half() if v.is_floating_point() else v
                                   for k, v in part["weights"].items()}
        summary["rcg_sha256"] = save_rcg(root / BUNDLE_NAME, encoder=encoder_part,
                                         encoder_sha256=encoder_sha, rdm=rdm_part,
                                         pixel=pixel_part,
                                         sampler=stage.sampler, meta={"pixel": meta})
    write_json(out / "summary.json", summary)
    distributed.barrier()
    load_rcg(root / BUNDLE_NAME)  # the parts fit together: checked once, here
    return summary


def _part(model: RCGModel, name: str) -> dict:
    if model.parts is None:
        raise GenbenchError(f"{model.source}: an RCG model not read from a file; its parts "
                            "cannot be written again")
    return model.parts[name]


__all__ = ["STAGES", "EncoderStage", "OptimConfig", "PixelStage", "RDMStage", "stage_data",
           "train_encoder", "train_pixel", "train_rdm", "training_reps"]
