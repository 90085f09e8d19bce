"""Training rectified flows on the genbench engine: the 1-rectified flow on images, and the
2-rectified flow(++) on reflow pairs, initialised from its 1-RF teacher.

* 1-RF: x from the data, z ~ N(0, I) and t ~ U(0, 1) drawn per example from the epoch's
  generator, x_t = (1 − t)·x + t·z, target z − x, squared L2. At genbench's scale the 1-RF
  plays the role of the paper's pretrained diffusion model (EDM): it makes the reflow pairs and
  initialises the student.
* 2-RF: (z, x) are the pairs (``reflow``); each improvement of the paper is a field of the
  ``FlowRecipe`` and the paper's Table 1 rows are named recipes (``RECIPES``): A (uniform t,
  squared L2), C (+ U-shaped t), D (+ pseudo-Huber), E (LPIPS-Huber), F (LPIPS-Huber-1/t).
  Pairs by inversion of real data (config G) are one more pair folder.

``train_flow`` runs one training in a run directory (``config.json``, ``checkpoint.pt``,
``model.pt``, ``summary.json``, ``log.jsonl``, ``scores.jsonl``, ``grids/``) and resumes it
there; a run directory of other settings is refused.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from genbench import distributed
from genbench.errors import GenbenchError
from genbench.generators.nets.unet import UNET_CONFIGS, UNetConfig
from genbench.generators.rectified_flow import objective
from genbench.generators.rectified_flow.model import (
    FlowGenerator,
    FlowModel,
    FlowSpec,
    SamplerConfig,
    check_weights,
    from_uint8,
    noise_for_seeds,
    save_model,
)
from genbench.generators.rectified_flow.reflow import PairSet, load_pairs
from genbench.registry import Registry
from genbench.training.callbacks import ProgressEvery, SampleGridEvery, ScoreEvery
from genbench.training.engine import Callback, TrainConfig, TrainTask, run_device, train
from genbench.training.rundir import check_run_dir, open_run_dir, run_timing, write_json

# ---------------------------------------------------------------- time distributions, losses

TimeSampler = Callable[[int, "FlowRecipe", torch.Generator], torch.Tensor]
TIME_DISTRIBUTIONS: Registry[TimeSampler] = Registry("time distribution")
TIME_DISTRIBUTIONS.register("uniform", lambda n, r, g: objective.sample_uniform_t(n, g))
TIME_DISTRIBUTIONS.register("u-shaped", lambda n, r, g: objective.sample_u_shaped_t(n, r.a, g))


@dataclass
class LossInputs:
    """What a premetric may look at, per example: the prediction and target velocity, the
    time, the noisy input and the clean image, and the LPIPS network when the loss needs one."""

    v: torch.Tensor
    target: torch.Tensor
    t: torch.Tensor
    x_t: torch.Tensor
    x: torch.Tensor
    lpips: nn.Module | None = None

    @property
    def x_hat(self) -> torch.Tensor:
        """The data prediction x̂ = x_t − t·v."""
        return self.x_t - _expand(self.t, self.x_t) * self.v


def _expand(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1, *([1] * (like.ndim - 1))).to(like.dtype)


def _lpips_huber(inputs: LossInputs, divide_by_t: bool) -> torch.Tensor:
    if inputs.lpips is None:
        raise GenbenchError("this loss needs the LPIPS network (genbench.perceptual)")
    t = inputs.t.to(inputs.v.dtype)
    huber = objective.pseudo_huber(inputs.v, inputs.target)
    perceptual = inputs.lpips(inputs.x_hat, inputs.x).to(huber.dtype)
    return (1 - t) * huber + (perceptual / t if divide_by_t else perceptual)


LossFn = Callable[[LossInputs], torch.Tensor]
LOSSES: Registry[LossFn] = Registry("flow loss")
LOSSES.register("l2", lambda i: objective.squared_l2(i.v, i.target))
LOSSES.register("pseudo-huber", lambda i: objective.pseudo_huber(i.v, i.target))
LOSSES.register("lpips-huber", lambda i: _lpips_huber(i, divide_by_t=False))
LOSSES.register("lpips-huber-1/t", lambda i: _lpips_huber(i, divide_by_t=True))
NEEDS_LPIPS = ("lpips-huber", "lpips-huber-1/t")


@dataclass(frozen=True)
class FlowRecipe:
    """The training objective and optimiser schedule: time distribution (``a`` for the
    U-shaped one), premetric, Adam learning rate with a linear warm-up."""

    name: str
    time: str = "uniform"
    a: float = 4.0
    loss: str = "l2"
    lr: float = 2e-4
    warmup: int = 0

    def __post_init__(self) -> None:
        TIME_DISTRIBUTIONS.lookup(self.time)
        LOSSES.lookup(self.loss)
        if self.lr <= 0 or self.warmup < 0:
            raise GenbenchError("the learning rate must be positive and the warm-up >= 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


RECIPES: Registry[FlowRecipe] = Registry("flow recipe")
# Learning rates for genbench's short toy schedules (thousands of steps, not the paper's
# 800k): the 1-RF at 1e-3, the 2-RF rows at 5e-4 (the paper: 2e-4), the same for every row.
RECIPES.register("1rf", FlowRecipe("1rf", "uniform", loss="l2", lr=1e-3, warmup=50))
for _row, _time, _loss in (("A", "uniform", "l2"), ("C", "u-shaped", "l2"),
                           ("D", "u-shaped", "pseudo-huber"), ("E", "u-shaped", "lpips-huber"),
                           ("F", "u-shaped", "lpips-huber-1/t")):
    RECIPES.register(_row, FlowRecipe(_row, _time, loss=_loss, lr=5e-4, warmup=50))

# ---------------------------------------------------------------- the task


@dataclass
class FlowData:
    """Training examples: uint8 images N×C×H×W, labels (conditional), for a 2-RF the pairs'
    noise (``PairSet``) and, for a representation-conditioned (RCG) flow, each image's
    representation (float32 N×D)."""

    images: torch.Tensor
    labels: torch.Tensor | None
    pairs: PairSet | None
    description: str
    reps: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.images)


class FlowTask(TrainTask):
    """One rectified-flow training (see the module docstring). A representation-conditioned
    network (``spec.net.rep_dim``) is given ``data.reps`` and replaces each example's with
    the learned null representation with probability ``rep_dropout`` (RCG's 0.1), drawn
    from the epoch's generator after the times."""

    def __init__(self, data: FlowData, spec: FlowSpec, recipe: FlowRecipe, *,
                 init: FlowModel | None = None, lpips: nn.Module | None = None,
                 rep_dropout: float = 0.0) -> None:
        if recipe.loss in NEEDS_LPIPS and lpips is None:
            raise GenbenchError(f"recipe {recipe.name} ({recipe.loss}) needs the LPIPS network")
        if (data.reps is not None) != bool(spec.net.rep_dim):
            raise GenbenchError("a representation-conditioned flow trains on images with "
                                "representations, and only it does")
        if data.reps is not None and data.reps.shape[1] != spec.net.rep_dim:
            raise GenbenchError(f"the representations have {data.reps.shape[1]} dimensions, "
                                f"the network takes {spec.net.rep_dim}")
        if not 0.0 <= rep_dropout < 1.0:
            raise GenbenchError(f"the representation dropout must be in [0, 1), got "
                                f"{rep_dropout}")
        self.data, self.spec, self.recipe = data, spec, recipe
        self.init, self.lpips, self.rep_dropout = init, lpips, rep_dropout
        self.shape = spec.shape

    @property
    def num_examples(self) -> int:
        return len(self.data)

    def build_network(self, device: torch.device) -> nn.Module:
        net = self.spec.build()
        if self.init is not None:
            weights = self.init.network.state_dict()
            check_weights(net, weights, self.init.source)
            net.load_state_dict(weights)
        if self.lpips is not None:
            self.lpips.to(device)
        net = net.to(device)
        return net.to(memory_format=torch.channels_last) if device.type == "cuda" else net

    def build_optimizer(self, network: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.Adam(network.parameters(), lr=self.recipe.lr, betas=(0.9, 0.999),
                                eps=1e-8)

    def lr(self, step: int) -> float:
        warm = self.recipe.warmup
        return self.recipe.lr * (min(1.0, (step + 1) / warm) if warm else 1.0)

    def _noise(self, idx: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        pairs = self.data.pairs
        if pairs is None:
            return torch.randn((len(idx), *self.shape), generator=generator)
        seeds = pairs.seeds[idx]
        z = torch.empty((len(idx), *self.shape))
        by_seed = seeds >= 0
        if bool(by_seed.any()):
            z[by_seed] = noise_for_seeds(seeds[by_seed].numpy(), self.shape)
        if not bool(by_seed.all()):
            assert pairs.noise is not None
            z[~by_seed] = pairs.noise[-seeds[~by_seed] - 1].float()
        return z

    def make_batch(self, indices: torch.Tensor, generator: torch.Generator,
                   device: torch.device) -> dict[str, torch.Tensor | None]:
        x = from_uint8(self.data.images[indices])
        z = self._noise(indices, generator)
        t = TIME_DISTRIBUTIONS[self.recipe.time](len(indices), self.recipe, generator)
        labels = None if self.data.labels is None else self.data.labels[indices].to(device)
        batch = {"x": x.to(device), "z": z.to(device), "t": t.to(device), "labels": labels,
                 "rep": None, "drop": None}
        if self.data.reps is not None:
            batch["rep"] = self.data.reps[indices].float().to(device)
            batch["drop"] = (torch.rand(len(indices), generator=generator)
                             < self.rep_dropout).to(device)
        return batch

    def loss(self, model: nn.Module, batch: Any, step: int) -> torch.Tensor:
        x, z, t = batch["x"], batch["z"], batch["t"]
        x_t, target = objective.interpolate(x, z, t)
        if x_t.is_cuda:
            x_t = x_t.contiguous(memory_format=torch.channels_last)
        v = model(x_t, t.float(), batch["labels"], rep=batch["rep"], drop=batch["drop"]).float()
        inputs = LossInputs(v, target, t.float(), x_t, x, self.lpips)
        return LOSSES[self.recipe.loss](inputs).mean()


# ---------------------------------------------------------------- data


def load_images(spec: str, *, conditional: bool) -> FlowData:
    """Training images of a data set, folder, zip or array file as uint8 N×C×H×W (one
    channel when the images are grey), with their labels when ``conditional``."""
    from genbench.resolve import ResolveOptions, resolve_input

    resolved = resolve_input(spec, ResolveOptions(with_labels=conditional))
    source = resolved.source
    if resolved.kind != "images" or source is None:
        raise GenbenchError(f"{spec}: training needs images (a data set, folder, zip or "
                            f"array file), got {resolved.kind}")
    raw = getattr(source, "images", None)  # array sources hold N×H×W×C uint8 already
    nhwc = np.asarray(raw) if raw is not None else np.stack(source.load_many(range(len(
        source))))
    if nhwc.shape[-1] == 3 and np.array_equal(nhwc[..., 0], nhwc[..., 1]) \
            and np.array_equal(nhwc[..., 0], nhwc[..., 2]):
        nhwc = nhwc[..., :1]
    if nhwc.shape[1] != nhwc.shape[2]:
        raise GenbenchError(f"{spec}: images are {nhwc.shape[1]}×{nhwc.shape[2]}; the flow "
                            "trains on square images (crop or resize them first)")
    labels = None
    if conditional:
        raw_labels = getattr(source, "labels", None)
        if raw_labels is None:
            raise GenbenchError(f"{spec}: --conditional needs labels (a labelled data set, "
                                "class sub-folders, or an .npz with arr_1)")
        labels = torch.as_tensor(np.asarray(raw_labels), dtype=torch.long)
    images = torch.from_numpy(np.array(nhwc.transpose(0, 3, 1, 2)))  # a writable copy
    return FlowData(images, labels, None, source.describe())


def pair_data(folders: list[str]) -> FlowData:
    pairs = PairSet.concat([load_pairs(f) for f in folders])
    return FlowData(pairs.images, pairs.labels, pairs, ", ".join(folders), reps=pairs.reps)


# ---------------------------------------------------------------- a run


@dataclass(frozen=True)
class ScoreConfig:
    """The training-loop evaluator: every ``every`` steps FID (and any ``metrics``) of
    ``num_images`` samples (seeds 0..n-1, ``sampler``) against ``reference``, and a grid PNG
    every ``grid_every`` steps (0: never)."""

    every: int = 0
    reference: str | None = None
    num_images: int = 500
    metrics: str = "fid"
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    grid_every: int = 0
    protocol: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["sampler"] = self.sampler.to_dict()
        return out


@dataclass(frozen=True)
class FlowRun:
    """Everything that defines one flow training: the data (images, or pair folders for a
    2-RF), the network configuration, the recipe, the teacher to start from (2-RF), the
    default sampler recorded in the model, and the engine settings."""

    data: str | None
    recipe: FlowRecipe
    train: TrainConfig
    net: str = "fmnist-xs"
    conditional: bool = False
    pairs: tuple[str, ...] = ()
    init: str | None = None
    sampler: SamplerConfig | None = None
    score: ScoreConfig = field(default_factory=ScoreConfig)
    progress_every: int = 50

    @property
    def kind(self) -> str:
        return "2-rf" if self.pairs else "1-rf"

    def to_dict(self) -> dict[str, Any]:
        """What must agree for a run directory to be resumed (not the device, not the
        evaluator's cadence)."""
        train = asdict(self.train)
        train.pop("device")
        return {"data": self.data, "recipe": self.recipe.to_dict(), "train": train,
                "net": self.net, "conditional": self.conditional, "pairs": list(self.pairs),
                "init": self.init, "kind": self.kind}


def _net_config(run: FlowRun, channels: int, num_classes: int | None,
                init: FlowModel | None) -> UNetConfig:
    if init is not None:
        return init.spec.net
    return UNET_CONFIGS.lookup(run.net).with_options(image_channels=channels,
                                                     num_classes=num_classes)


def train_flow(run: FlowRun, out: str | Path, *, quiet: bool = False,
               lpips: nn.Module | None = None) -> dict[str, Any]:
    """Train (or resume) ``run`` in run directory ``out``; returns its summary (also written
    to ``out/summary.json``), the model in ``out/model.pt``."""
    from genbench.generators.zoo import open_model

    out = Path(out)
    wanted = run.to_dict()
    # the schedule is the recipe's warm-up then constant: a run may be extended
    check_run_dir(out, wanted, extendable=True)
    init = None
    if run.pairs:
        if run.init is None:
            raise GenbenchError("a 2-rectified flow starts from its 1-RF teacher: give --init "
                                "(a model name, model file or run directory)")
        init = open_model(run.init)
        data = pair_data(list(run.pairs))
        meta_shapes = {tuple(p["shape"]) for p in data.pairs.plans}  # type: ignore[union-attr]
        if meta_shapes != {init.spec.shape}:
            raise GenbenchError(f"the pairs have images of shape {sorted(meta_shapes)}, the "
                                f"--init model makes {init.spec.shape}")
        if (data.labels is not None) != bool(init.spec.num_classes):
            raise GenbenchError("the pairs and the --init model disagree on being "
                                "class-conditional")
    else:
        if run.data is None:
            raise GenbenchError("give --data (the training images) or --pairs")
        if run.init is not None:
            init = open_model(run.init)
        data = load_images(run.data, conditional=run.conditional)
    num_classes = None
    if data.labels is not None:
        num_classes = int(data.labels.max()) + 1
    channels, size = data.images.shape[1], data.images.shape[2]
    net = _net_config(run, channels, num_classes, init)
    if init is not None and init.spec.shape != (channels, size, size):
        raise GenbenchError(f"--init makes {init.spec.shape} images, the data are "
                            f"{(channels, size, size)}")
    default_sampler = run.sampler or (SamplerConfig("heun", 15) if run.kind == "1-rf"
                                      else SamplerConfig("euler", 1))
    spec = FlowSpec(net, size, run.kind, default_sampler)
    task = FlowTask(data, spec, run.recipe, init=init, lpips=lpips)

    open_run_dir(out, wanted, extendable=True)
    callbacks: list[Callback] = []
    progress = ProgressEvery(run.progress_every, run.train.batch_size, log=out / "log.jsonl",
                             quiet=quiet, label=f"train {run.kind}")
    callbacks.append(progress)
    device = run_device(run.train.device)

    def make_generator(network: nn.Module) -> FlowGenerator:
        return FlowGenerator(network, spec, run.score.sampler, device=device)

    if run.score.every and run.score.reference:
        from genbench.config import ExtractionConfig
        from genbench.evaluation import Evaluation
        evaluation = Evaluation(run.score.reference, metrics=run.score.metrics,
                                num_images=run.score.num_images,
                                config=ExtractionConfig(protocol=run.score.protocol,
                                                        progress=not quiet))
        callbacks.append(ScoreEvery(run.score.every, evaluation, make_generator,
                                    run.score.num_images, log=out / "scores.jsonl"))
    if run.score.grid_every:
        callbacks.append(SampleGridEvery(run.score.grid_every, make_generator, out / "grids"))
    start = time.perf_counter()
    result = train(task, run.train, checkpoint_path=out / "checkpoint.pt", callbacks=callbacks)
    seconds = time.perf_counter() - start
    network = result.ema_network if result.ema_network is not None else result.network
    meta = {"recipe": run.recipe.to_dict(), "steps": result.steps,
            "batch_size": run.train.batch_size, "data": data.description,
            "teacher": None if init is None else {"source": init.source,
                                                  "sha256": init.sha256},
            "pairs": [] if data.pairs is None else data.pairs.plans,
            "ema": run.train.ema, "seed": run.train.seed}
    summary = {
        "kind": run.kind, "steps": result.steps, "examples": len(data),
        "training_forward_passes": result.steps * run.train.batch_size,
        "pair_forward_passes": sum(p.get("forward_passes", 0) for p in data.pairs.plans)
        if data.pairs is not None else 0,
        **run_timing(out, result, run.train.batch_size, seconds),
        "world_size": distributed.current().world_size, "amp": result.amp,
        "num_params": sum(p.numel() for p in network.parameters()),
    }
    if distributed.current().is_main:
        meta["summary"] = summary
        summary["sha256"] = save_model(out / "model.pt", network, spec, meta)
    write_json(out / "summary.json", summary)
    distributed.barrier()
    return summary
