"""RCG's trained parts as files, and the RCG checkpoint set as a seeded generator.

Three stage files, each a ``torch.save`` dict read with ``weights_only=True`` (as a flow
model file, see ``genbench.generators.rectified_flow.model``):

    encoder.pt  format "genbench-rcg-encoder": ``EncoderConfig``, image size, weights
    rdm.pt      format "genbench-rdm": ``MLPConfig``, ``DDPMSchedule``, default ``DDIMConfig``,
                the sha256 of the encoder whose representations it learned, weights
    pixel       a flow model file whose U-Net has ``rep_dim`` (1-RF, or a 2-RF++)

and the **checkpoint set** ``rcg.pt`` (format "genbench-rcg"): the three dicts and the
default ``RCGSampler``. Its parts must agree (one representation dimension, one image
shape): anything else is one line naming the file.

``RCGGenerator``: image i is made from seed i alone: its representation by DDIM from the RDM
(its own stream of seed i, see ``rdm.seeded_noise``), then the pixel flow from
``noise_for_seeds([i])`` conditioned on it, with classifier-free guidance
v = v_c + τ_k·(v_c − v_u) (v_u: the null representation) and the paper's linear schedule
τ_k = τ·(k + 1)/K over the K pixel steps (on any time grid: τ·min(1, 1 − t + 1/K) at time t,
exactly (k + 1)/K on the uniform one).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from genbench.errors import GenbenchError
from genbench.generators import solvers
from genbench.generators.base import Generator
from genbench.generators.rcg.encoder import EncoderConfig, SSLEncoder
from genbench.generators.rcg.rdm import DDIMConfig, DDPMSchedule, MLPConfig, SimpleMLP, ddim_sample
from genbench.generators.rectified_flow.model import (
    FlowModel,
    SamplerConfig,
    check_format,
    from_uint8,
    model_from_payload,
    noise_for_seeds,
    read_payload,
    restore,
    to_uint8,
    write_payload,
)

ENCODER_FORMAT, RDM_FORMAT, RCG_FORMAT, VERSION = ("genbench-rcg-encoder", "genbench-rdm",
                                                  "genbench-rcg", 1)
SCHEDULES = ("linear", "constant")


@dataclass(frozen=True)
class RCGSampler:
    """How an RCG checkpoint set samples: the pixel flow's solver, the RDM's DDIM, the
    guidance scale τ and its schedule over the pixel steps (linear as the paper, or
    constant)."""

    pixel: SamplerConfig = field(default_factory=lambda: SamplerConfig("heun", 11))
    rdm: DDIMConfig = field(default_factory=DDIMConfig)
    guidance: float = 0.0
    schedule: str = "linear"

    option_names = ("solver", "nfe", "rule", "grid", "guidance", "rdm_steps", "eta")

    def __post_init__(self) -> None:
        if not self.guidance >= 0:
            raise GenbenchError(f"--guidance must be >= 0, got {self.guidance}")
        if self.schedule not in SCHEDULES:
            raise GenbenchError(f"guidance schedule must be one of {', '.join(SCHEDULES)}, "
                                f"got {self.schedule!r}")

    def with_options(self, *, guidance: float | None = None, rdm_steps: int | None = None,
                     eta: float | None = None, **pixel: Any) -> RCGSampler:
        """This sampler with the given settings changed (None: kept); ``pixel`` options as
        ``SamplerConfig.with_options``."""
        rdm = DDIMConfig(rdm_steps if rdm_steps is not None else self.rdm.steps,
                         eta if eta is not None else self.rdm.eta)
        return replace(self, pixel=self.pixel.with_options(**pixel), rdm=rdm,
                       guidance=self.guidance if guidance is None else float(guidance))

    @property
    def forward_passes(self) -> int:
        """Pixel-network evaluations per image (guidance evaluates twice per step; the
        RDM's steps are not counted)."""
        return self.pixel.nfe * (2 if self.guidance else 1)

    def to_dict(self) -> dict[str, Any]:
        return {"pixel": self.pixel.to_dict(), "rdm": self.rdm.to_dict(),
                "guidance": self.guidance, "schedule": self.schedule}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RCGSampler:
        return cls(SamplerConfig.from_dict(data["pixel"]), DDIMConfig(**data["rdm"]),
                   float(data["guidance"]), data.get("schedule", "linear"))

    def describe(self) -> str:
        return (f"{self.rdm.describe()}; pixels {self.pixel.describe()}; guidance "
                f"{self.guidance:g} ({self.schedule})")


# ---------------------------------------------------------------- the encoder


@dataclass
class EncoderModel:
    """A trained SSL encoder (eval mode): ``represent`` maps uint8 images to standardised
    representations."""

    network: SSLEncoder
    image_size: int
    meta: dict[str, Any]
    sha256: str | None = None
    source: str = "encoder"

    @property
    def config(self) -> EncoderConfig:
        return self.network.config

    @property
    def rep_dim(self) -> int:
        return self.config.rep_dim

    @torch.no_grad()
    def represent(self, images: torch.Tensor | np.ndarray, *, batch_size: int = 500,
                  device: str | torch.device = "cpu", features: bool = False) -> torch.Tensor:
        """float32 N×D representations (``features``: the backbone's features) of uint8
        N×C×H×W images of the encoder's size and channels."""
        images = torch.as_tensor(np.asarray(images))
        want = (self.config.image_channels, self.image_size, self.image_size)
        if images.dtype != torch.uint8 or images.ndim != 4 or tuple(images.shape[1:]) != want:
            raise GenbenchError(f"{self.source}: takes uint8 N×{want[0]}×{want[1]}×{want[2]} "
                                f"images, got {images.dtype} {tuple(images.shape)}")
        net = self.network.to(device)
        fn = net.features if features else net.representation
        out = [fn(from_uint8(images[s:s + batch_size]).to(device)).float().cpu()
               for s in range(0, len(images), batch_size)]
        return torch.cat(out) if out else torch.empty(0, self.rep_dim)


def encoder_payload(network: nn.Module, image_size: int, meta: dict[str, Any],
                    weights: dict[str, torch.Tensor]) -> dict[str, Any]:
    return {"format": ENCODER_FORMAT, "version": VERSION,
            "config": network.config.to_dict(), "image_size": int(image_size),
            "weights": weights, "meta": json.loads(json.dumps(meta))}


def encoder_from_payload(payload: dict, digest: str | None, where: str) -> EncoderModel:
    check_format(payload, ENCODER_FORMAT, VERSION, where, "RCG encoder")
    try:
        network = SSLEncoder(EncoderConfig(**payload["config"]))
        size = int(payload["image_size"])
    except (KeyError, TypeError, ValueError) as exc:
        raise GenbenchError(f"{where}: its encoder description is unreadable ({exc})") \
            from None
    restore(network, payload, where)
    return EncoderModel(network, size, dict(payload.get("meta", {})), digest, where)


def load_encoder(path: str | os.PathLike, *, sha256: str | None = None) -> EncoderModel:
    payload, digest, where = read_payload(path, sha256=sha256, kind="encoder")
    return encoder_from_payload(payload, digest, where)


# ---------------------------------------------------------------- the RDM


@dataclass
class RDMModel:
    """A trained representation diffusion model (eval mode)."""

    network: SimpleMLP
    schedule: DDPMSchedule
    sampler: DDIMConfig
    encoder_sha256: str | None
    meta: dict[str, Any]
    sha256: str | None = None
    source: str = "rdm"

    @property
    def rep_dim(self) -> int:
        return self.network.config.rep_dim

    def sample(self, seeds: np.ndarray, sampler: DDIMConfig | None = None, *,
               device: str | torch.device = "cpu") -> torch.Tensor:
        self.network.to(device)
        return ddim_sample(self.network, self.schedule, sampler or self.sampler, seeds,
                           device=device)


def rdm_payload(network: SimpleMLP, schedule: DDPMSchedule, sampler: DDIMConfig,
                encoder_sha256: str | None, meta: dict[str, Any],
                weights: dict[str, torch.Tensor]) -> dict[str, Any]:
    return {"format": RDM_FORMAT, "version": VERSION, "config": network.config.to_dict(),
            "schedule": schedule.to_dict(), "sampler": sampler.to_dict(),
            "encoder_sha256": encoder_sha256, "weights": weights,
            "meta": json.loads(json.dumps(meta))}


def rdm_from_payload(payload: dict, digest: str | None, where: str) -> RDMModel:
    check_format(payload, RDM_FORMAT, VERSION, where, "RDM")
    try:
        network = SimpleMLP(MLPConfig(**payload["config"]))
        schedule = DDPMSchedule(**payload["schedule"])
        sampler = DDIMConfig(**payload["sampler"])
    except (KeyError, TypeError, ValueError) as exc:
        raise GenbenchError(f"{where}: its RDM description is unreadable ({exc})") from None
    restore(network, payload, where)
    return RDMModel(network, schedule, sampler, payload.get("encoder_sha256"),
                    dict(payload.get("meta", {})), digest, where)


def load_rdm(path: str | os.PathLike, *, sha256: str | None = None) -> RDMModel:
    payload, digest, where = read_payload(path, sha256=sha256, kind="RDM")
    return rdm_from_payload(payload, digest, where)


# ---------------------------------------------------------------- the checkpoint set


@dataclass
class RCGModel:
    """Encoder, RDM and representation-conditioned pixel flow, checked to fit together."""

    encoder: EncoderModel
    rdm: RDMModel
    pixel: FlowModel
    sampler: RCGSampler
    sha256: str | None = None
    source: str = "rcg"
    #: the file's three part dicts (to write a new checkpoint set from this one's parts)
    parts: dict[str, dict] | None = None
    num_classes = None  # unconditional

    def __post_init__(self) -> None:
        check_parts(self.encoder, self.rdm, self.pixel, self.source)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.pixel.spec.shape

    @property
    def default_sampler(self) -> RCGSampler:
        return self.sampler

    @property
    def rep_dim(self) -> int:
        return self.encoder.rep_dim

    def generator(self, sampler: RCGSampler | None = None, *,
                  device: str | torch.device = "cpu", batch_size: int = 256,
                  reps: RepSource | None = None) -> RCGGenerator:
        """The seeded generator; ``reps`` replaces the RDM (e.g. ``OracleReps``)."""
        return RCGGenerator(self, sampler or self.sampler, device=device,
                            batch_size=batch_size, reps=reps)


def check_parts(encoder: EncoderModel, rdm: RDMModel, pixel: FlowModel, where: str) -> None:
    """One line unless the three parts take and make one representation and image shape."""
    dims = {"the encoder": encoder.rep_dim, "the RDM": rdm.rep_dim,
            "the pixel generator": pixel.spec.net.rep_dim}
    if len(set(dims.values())) != 1:
        said = ", ".join(f"{k} {v}" for k, v in dims.items())
        raise GenbenchError(f"{where}: the parts disagree on the representation dimension "
                            f"({said}); train them from one encoder")
    shape = (encoder.config.image_channels, encoder.image_size, encoder.image_size)
    if shape != pixel.spec.shape:
        raise GenbenchError(f"{where}: the encoder takes {shape} images, the pixel "
                            f"generator makes {pixel.spec.shape}")
    if rdm.encoder_sha256 and encoder.sha256 and rdm.encoder_sha256 != encoder.sha256:
        raise GenbenchError(f"{where}: the RDM learned another encoder's representations "
                            f"(sha256 {rdm.encoder_sha256[:12]}..., this encoder "
                            f"{encoder.sha256[:12]}...)")


def save_rcg(path: str | os.PathLike, *, encoder: dict, encoder_sha256: str | None,
             rdm: dict, pixel: dict, sampler: RCGSampler,
             meta: dict[str, Any] | None = None) -> str:
    """Write a checkpoint set from the three stage files' dicts (``encoder_sha256``: the
    digest of the encoder file the part came from, which the RDM records too); returns its
    sha256."""
    payload = {"format": RCG_FORMAT, "version": VERSION, "encoder": encoder,
               "encoder_sha256": encoder_sha256, "rdm": rdm, "pixel": pixel,
               "sampler": sampler.to_dict(), "meta": json.loads(json.dumps(meta or {}))}
    return write_payload(path, payload)


def load_rcg(path: str | os.PathLike, *, sha256: str | None = None,
             name: str | None = None) -> RCGModel:
    payload, digest, where = read_payload(path, sha256=sha256, name=name,
                                          kind="RCG checkpoint")
    return rcg_from_payload(payload, digest, where)


def rcg_from_payload(payload: dict, digest: str | None, where: str) -> RCGModel:
    check_format(payload, RCG_FORMAT, VERSION, where, "RCG checkpoint")
    try:
        parts = payload["encoder"], payload["rdm"], payload["pixel"]
        sampler = RCGSampler.from_dict(payload["sampler"])
    except (KeyError, TypeError, ValueError) as exc:
        raise GenbenchError(f"{where}: its description is unreadable ({exc})") from None
    encoder = encoder_from_payload(parts[0], payload.get("encoder_sha256"),
                                   f"{where} (encoder)")
    rdm = rdm_from_payload(parts[1], None, f"{where} (RDM)")
    pixel = model_from_payload(parts[2], None, f"{where} (pixel generator)")
    if pixel.spec.net.rep_dim is None:
        raise GenbenchError(f"{where}: its pixel generator is not representation-conditioned")
    return RCGModel(encoder, rdm, pixel, sampler, digest, where,
                    {"encoder": parts[0], "rdm": parts[1], "pixel": parts[2]})


# ---------------------------------------------------------------- sampling


class RepSource:
    """Where a generator's representations come from instead of the RDM: ``reps(seeds)``
    N×D, and an ``identity`` (None: uncacheable)."""

    identity: str | None = None

    def reps(self, seeds: np.ndarray) -> torch.Tensor:
        raise NotImplementedError


class OracleReps(RepSource):
    """Real representations (the paper's oracle row): seed i takes row i mod N."""

    def __init__(self, reps: torch.Tensor, identity: str | None, name: str = "oracle") -> None:
        self.table, self.identity, self.name = reps.float(), identity, name

    def reps(self, seeds: np.ndarray) -> torch.Tensor:
        return self.table[torch.as_tensor(np.asarray(seeds) % len(self.table))]


def guided_velocity(network: nn.Module, reps: torch.Tensor, guidance: float, schedule: str,
                    steps: int) -> solvers.Velocity:
    """v(x, t) of the representation-conditioned flow with classifier-free guidance (see
    the module docstring); τ = 0 is the plain conditional velocity (one evaluation)."""
    if guidance == 0:
        def plain(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return network(x, t.to(x.dtype), rep=reps).float()
        return plain

    def guided(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        n = len(x)
        drop = torch.cat([torch.zeros(n, dtype=torch.bool), torch.ones(n, dtype=torch.bool)])
        v = network(torch.cat([x, x]), torch.cat([t, t]).to(x.dtype), rep=torch.cat(
            [reps, reps]), drop=drop.to(x.device)).float()
        v_c, v_u = v[:n], v[n:]
        if schedule == "linear":
            scale = guidance * (1 - t.double() + 1 / steps).clamp(max=1.0)
        else:
            scale = torch.full_like(t, guidance, dtype=torch.float64)
        return v_c + scale.to(v.dtype).view(-1, *([1] * (v.ndim - 1))) * (v_c - v_u)
    return guided


class RCGGenerator(Generator):
    """An RCG checkpoint set as a ``Generator`` (unconditional: labels are ignored)."""

    def __init__(self, model: RCGModel, sampler: RCGSampler, *, device: str | torch.device
                 = "cpu", batch_size: int = 256, reps: RepSource | None = None) -> None:
        if batch_size < 1:
            raise GenbenchError(f"batch size must be >= 1, got {batch_size}")
        self.model, self.sampler, self.reps = model, sampler, reps
        self.device, self.batch_size = torch.device(device), batch_size
        self.network = model.pixel.network.to(self.device)
        self.num_classes = None
        self.steps = len(solvers.time_grid(sampler.pixel.solver, sampler.pixel.nfe,
                                           sampler.pixel.grid, sampler.pixel.rule)) - 1

    def representations(self, seeds: np.ndarray) -> torch.Tensor:
        """The N×D representations the images of ``seeds`` are conditioned on."""
        if self.reps is not None:
            return self.reps.reps(seeds).to(self.device)
        return self.model.rdm.sample(seeds, self.sampler.rdm, device=self.device)

    @torch.no_grad()
    def sample_with_reps(self, seeds: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(uint8 images, the float32 representations they were conditioned on)."""
        seeds = np.asarray(seeds, dtype=np.int64)
        images, reps = [], []
        for start in range(0, len(seeds), self.batch_size):
            part = seeds[start:start + self.batch_size]
            r = self.representations(part)
            z = noise_for_seeds(part, self.model.shape).to(self.device)
            v = guided_velocity(self.network, r, self.sampler.guidance, self.sampler.schedule,
                                self.steps)
            images.append(to_uint8(self.sampler.pixel.run(v, z)).cpu())
            reps.append(r.cpu())
        return torch.cat(images), torch.cat(reps)

    def sample(self, seeds: np.ndarray, labels: np.ndarray | None = None) -> torch.Tensor:
        return self.sample_with_reps(seeds)[0]

    def identity(self) -> str | None:
        if self.model.sha256 is None or (self.reps is not None and self.reps.identity is None):
            return None
        return json.dumps({"rcg": self.model.sha256, "sampler": self.sampler.to_dict(),
                           "reps": None if self.reps is None else self.reps.identity},
                          sort_keys=True)

    def describe(self) -> str:
        reps = "" if self.reps is None else f", {getattr(self.reps, 'name', 'given')} reps"
        return f"{self.model.source} ({self.sampler.describe()}{reps})"


__all__ = ["EncoderModel", "OracleReps", "RCGGenerator", "RCGModel", "RCGSampler", "RDMModel",
           "RepSource", "encoder_payload", "load_encoder", "load_rcg", "load_rdm",
           "rdm_payload", "save_rcg"]
