"""A trained rectified flow as a file, and as a seeded generator.

A **model file** (``model.pt``, what ``genbench train rf`` writes and what ships by name) is
a ``torch.save`` dict read with ``weights_only=True``:

    format   "genbench-flow", version 1
    spec     ``FlowSpec.to_dict()``: the network configuration, image size, what kind of flow
             (1-RF or 2-RF) and its default sampler
    weights  the EMA network's state dict (float32, or float16 for the shipped toy models)
    meta     how it was made (recipe, steps, data, teacher), for the record

Its sha256 (with the sampler settings) is the generator's identity, so the features of its
images are cached like a folder's. Image i of a run is made from seed i alone
(``noise_for_seeds``), whatever the batch, the process or the resume.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from genbench.errors import GenbenchError
from genbench.fileio import atomic_path, file_digest
from genbench.generators import solvers
from genbench.generators.base import Generator
from genbench.generators.nets.unet import UNet, UNetConfig

FORMAT, VERSION = "genbench-flow", 1
#: seeds are below this: torch's CPU generator keeps only a seed's low 32 bits
SEED_LIMIT = 1 << 32
KINDS = ("1-rf", "2-rf")


@dataclass(frozen=True)
class SamplerConfig:
    """How to integrate the flow: ``solver`` euler|heun, ``nfe`` network evaluations (Heun:
    odd), ``rule`` standard|new (the paper's x̂-based update), or an explicit descending time
    ``grid`` (then ``nfe`` follows from it)."""

    solver: str = "euler"
    nfe: int = 1
    rule: str = "standard"
    grid: tuple[float, ...] | None = None

    option_names = ("solver", "nfe", "rule", "grid")

    def __post_init__(self) -> None:
        times = solvers.time_grid(self.solver, self.nfe, self.grid, self.rule)
        if self.grid is not None:
            object.__setattr__(self, "grid", tuple(times))
            object.__setattr__(self, "nfe", solvers.evaluations(self.solver, len(times) - 1))

    def with_options(self, *, solver: str | None = None, nfe: int | None = None,
                     rule: str | None = None,
                     grid: tuple[float, ...] | None = None) -> SamplerConfig:
        """This sampler with the given settings changed (None: kept). A new solver or NFE
        drops a recorded grid."""
        changes: dict[str, Any] = {k: v for k, v in
                                   {"solver": solver, "nfe": nfe, "rule": rule}.items()
                                   if v is not None}
        if grid is not None:
            changes["grid"] = tuple(grid)
        elif "solver" in changes or "nfe" in changes:
            changes["grid"] = None
            changes.setdefault("nfe", self.nfe)
        return replace(self, **changes)

    @property
    def forward_passes(self) -> int:
        """Network evaluations per image."""
        return self.nfe

    def run(self, velocity: solvers.Velocity, z: torch.Tensor) -> torch.Tensor:
        return solvers.sample(velocity, z, solver=self.solver, nfe=self.nfe,
                              grid=self.grid, rule=self.rule)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["grid"] = None if self.grid is None else list(self.grid)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SamplerConfig:
        grid = data.get("grid")
        return cls(data["solver"], int(data["nfe"]), data.get("rule", "standard"),
                   None if grid is None else tuple(grid))

    def describe(self) -> str:
        rule = "" if self.rule == "standard" else f", {self.rule} rule"
        return f"{self.solver}, {self.nfe} NFE{rule}"


@dataclass(frozen=True)
class FlowSpec:
    """What a model file holds besides its weights."""

    net: UNetConfig
    image_size: int
    kind: str = "1-rf"
    sampler: SamplerConfig = field(default_factory=SamplerConfig)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise GenbenchError(f"flow kind must be one of {', '.join(KINDS)}, got {self.kind!r}")

    @property
    def num_classes(self) -> int | None:
        return self.net.num_classes

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.net.image_channels, self.image_size, self.image_size)

    def build(self) -> UNet:
        return UNet(self.net, self.image_size)

    def to_dict(self) -> dict[str, Any]:
        return {"net": self.net.to_dict(), "image_size": self.image_size, "kind": self.kind,
                "sampler": self.sampler.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FlowSpec:
        net = dict(data["net"])
        for key in ("channel_mult", "attn_resolutions"):
            net[key] = tuple(net[key])
        return cls(UNetConfig(**net), int(data["image_size"]), data["kind"],
                   SamplerConfig.from_dict(data["sampler"]))


@dataclass
class FlowModel:
    """A loaded flow: its network (eval mode, no gradients), spec, meta and file digest."""

    network: UNet
    spec: FlowSpec
    meta: dict[str, Any]
    sha256: str | None = None
    source: str = "flow"

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.spec.shape

    @property
    def num_classes(self) -> int | None:
        return self.spec.num_classes

    @property
    def default_sampler(self) -> SamplerConfig:
        return self.spec.sampler

    @property
    def rep_dim(self) -> int | None:
        """The representation dimension of an RCG pixel flow, else None."""
        return self.spec.net.rep_dim

    def generator(self, sampler: SamplerConfig | None = None, *, device: str | torch.device
                  = "cpu", batch_size: int = 256) -> FlowGenerator:
        self.network.to(device)
        return FlowGenerator(self.network, self.spec, sampler, device=device,
                             batch_size=batch_size, sha256=self.sha256, name=self.source)


def save_model(path: str | os.PathLike, network: nn.Module, spec: FlowSpec, meta: dict[str, Any],
               *, half: bool = False) -> str:
    """Write a model file atomically; returns its sha256."""
    payload = {"format": FORMAT, "version": VERSION, "spec": spec.to_dict(),
               "weights": state_for_file(network, half), "meta": json.loads(json.dumps(meta))}
    return write_payload(path, payload)


def state_for_file(network: nn.Module, half: bool = False) -> dict[str, torch.Tensor]:
    """A detached CPU copy of the state dict (floating tensors in float16 with ``half``)."""
    return {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().clone()
            for k, v in network.state_dict().items()}


def write_payload(path: str | os.PathLike, payload: dict) -> str:
    """``torch.save`` a genbench file atomically; returns its sha256."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return file_digest(path)


def read_payload(path: str | os.PathLike, *, sha256: str | None = None,
                 name: str | None = None, kind: str = "model") -> tuple[dict, str, str]:
    """(the ``weights_only`` dict of a genbench file, its sha256, the name to report); with
    ``sha256`` the file must match it. A missing, damaged or unreadable file is one line."""
    path = Path(path)
    where = name or str(path)
    if not path.is_file():
        raise GenbenchError(f"{where}: no such {kind} file")
    digest = file_digest(path)
    if sha256 is not None and digest != sha256:
        raise GenbenchError(f"{where}: sha256 {digest[:16]}... does not match the recorded "
                            f"{sha256[:16]}...; the file is damaged, reinstall genbench")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors of every kind: not a model file we can read
        raise GenbenchError(f"{where}: not a genbench {kind} file ({type(exc).__name__})") \
            from None
    if not isinstance(payload, dict):
        raise GenbenchError(f"{where}: not a genbench {kind} file")
    return payload, digest, where


def check_format(payload: dict, fmt: str, version: int, where: str, what: str) -> None:
    """One line unless ``payload`` is a ``fmt`` file of ``version``."""
    if payload.get("format") != fmt:
        hint = " (a training checkpoint: give its run directory, whose model.pt is the " \
               "trained model)" if "optimizer" in payload else ""
        raise GenbenchError(f"{where}: not a genbench {what} file{hint}")
    if payload.get("version") != version:
        raise GenbenchError(f"{where}: {what} file version {payload.get('version')}, this "
                            f"genbench reads version {version}; upgrade genbench")


def float_weights(payload: dict) -> dict[str, torch.Tensor]:
    """The payload's state dict with half-precision weights back to float32."""
    return {k: v.float() if v.is_floating_point() else v for k, v in payload["weights"].items()}


def load_model(path: str | os.PathLike, *, sha256: str | None = None,
               name: str | None = None) -> FlowModel:
    """A model file as a ``FlowModel``; with ``sha256`` the file must match it. Anything
    else (a training checkpoint, another program's file, weights of another network) is one
    error line naming the file."""
    payload, digest, where = read_payload(path, sha256=sha256, name=name)
    return model_from_payload(payload, digest, where)


def model_from_payload(payload: dict, digest: str | None, where: str) -> FlowModel:
    """The ``FlowModel`` of a flow file's dict (also a part of an RCG file)."""
    check_format(payload, FORMAT, VERSION, where, "flow model")
    try:
        spec = FlowSpec.from_dict(payload["spec"])
        network = spec.build()
    except (KeyError, TypeError, ValueError) as exc:
        raise GenbenchError(f"{where}: its network description is unreadable ({exc})") \
            from None
    restore(network, payload, where)
    return FlowModel(network, spec, dict(payload.get("meta", {})), digest, where)


def restore(network: nn.Module, payload: dict, where: str) -> nn.Module:
    """``network`` with the payload's weights (checked to be its own), in eval mode and
    without gradients."""
    weights = float_weights(payload)
    check_weights(network, weights, where)
    network.load_state_dict(weights)
    return network.eval().requires_grad_(False)


def check_weights(network: nn.Module, weights: dict[str, torch.Tensor], where: str) -> None:
    """One error line when ``weights`` are not this network's (names or shapes differ)."""
    own = network.state_dict()
    missing = sorted(set(own) - set(weights))
    extra = sorted(set(weights) - set(own))
    shapes = [k for k in set(own) & set(weights) if own[k].shape != weights[k].shape]
    if missing or extra or shapes:
        first = (missing or extra or shapes)[0]
        raise GenbenchError(f"{where}: weights of another network ({len(missing)} missing, "
                            f"{len(extra)} unexpected, {len(shapes)} of other shapes, e.g. "
                            f"{first!r}); use the matching --net configuration")


def noise_for_seeds(seeds: np.ndarray | list[int], shape: tuple[int, ...]) -> torch.Tensor:
    """float32 N×shape standard normal noise, row i from ``seeds[i]`` alone (a CPU generator
    per seed), so it never depends on the batch or the process."""
    seeds = np.asarray(seeds, dtype=np.int64).reshape(-1)
    out = torch.empty((len(seeds), *shape), dtype=torch.float32)
    gen = torch.Generator()
    for i, seed in enumerate(seeds.tolist()):
        if not 0 <= seed < SEED_LIMIT:
            raise GenbenchError(f"seeds must be in 0..2**32 - 1 (torch's generator keeps 32 "
                                f"bits of a seed), got {seed}")
        gen.manual_seed(seed)
        out[i] = torch.randn(shape, generator=gen)
    return out


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] as uint8, rounded (never truncated) and clipped."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def from_uint8(images: torch.Tensor) -> torch.Tensor:
    """uint8 images as float32 in [-1, 1]."""
    return images.float() / 127.5 - 1


class FlowGenerator(Generator):
    """A flow network as a ``Generator``: image i is the ODE solution from
    ``noise_for_seeds([seeds[i]])`` (with ``labels[i]`` when class-conditional)."""

    def __init__(self, network: nn.Module, spec: FlowSpec, sampler: SamplerConfig | None = None,
                 *, device: str | torch.device = "cpu", batch_size: int = 256,
                 sha256: str | None = None, name: str = "flow") -> None:
        if batch_size < 1:
            raise GenbenchError(f"batch size must be >= 1, got {batch_size}")
        self.network, self.spec = network, spec
        self.sampler = sampler or spec.sampler
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.num_classes = spec.num_classes
        self.sha256, self.name = sha256, name

    def velocity(self, labels: torch.Tensor | None) -> solvers.Velocity:
        def v(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return self.network(x, t.to(x.dtype), labels).float()
        return v

    @torch.no_grad()
    def sample(self, seeds: np.ndarray, labels: np.ndarray | None = None) -> torch.Tensor:
        seeds = np.asarray(seeds, dtype=np.int64)
        if self.num_classes and labels is None:
            raise GenbenchError(f"{self.name}: class-conditional: give one label per seed")
        out = []
        for start in range(0, len(seeds), self.batch_size):
            part = slice(start, start + self.batch_size)
            z = noise_for_seeds(seeds[part], self.spec.shape).to(self.device)
            y = None if not self.num_classes else torch.as_tensor(
                np.asarray(labels)[part], dtype=torch.long, device=self.device)
            out.append(to_uint8(self.sampler.run(self.velocity(y), z)).cpu())
        return torch.cat(out)

    def identity(self) -> str | None:
        if self.sha256 is None:
            return None
        return json.dumps({"flow": self.sha256, "sampler": self.sampler.to_dict()},
                          sort_keys=True)

    def describe(self) -> str:
        return f"{self.name} ({self.sampler.describe()})"
