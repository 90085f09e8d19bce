"""RCG's representation generator (RDM): a diffusion model over representation vectors.

* **Network** ``SimpleMLP`` (the paper's ``latentmlp.py``, written afresh): input projection
  D → C, ``num_blocks`` residual blocks (LayerNorm, SiLU, Linear C → B; plus the time
  embedding's SiLU, Linear → B; then LayerNorm, SiLU, dropout and a zero-initialised Linear
  B → C added to the input), output LayerNorm (eps 1e-6), SiLU and a zero-initialised
  Linear C → D. Time: the sinusoidal embedding of the step index (dimension C), Linear C → E,
  SiLU, Linear E → E. The paper's configuration is D 256, C = B 1536, E 256, 12 blocks
  (``MLP_CONFIGS["paper"]``, ≈ 63 M parameters).
* **Diffusion** (``DDPMSchedule``): T = 1000 steps, the LDM "linear" schedule
  β = linspace(√0.0015, √0.0195, T)², x₀ parameterisation (the network predicts the clean
  representation), squared error on x₀, t uniform over 0..T−1.
* **Sampling** (``DDIMConfig``, ``ddim_sample``): DDIM on the uniform sub-grid of LDM
  (``range(0, T, T // S) + 1``), σ = η·√((1 − ᾱ')/(1 − ᾱ))·√(1 − ᾱ/ᾱ'), the noise estimate
  ε̂ = (x − √ᾱ·x̂₀)/√(1 − ᾱ) from the x₀ prediction, x' = √ᾱ'·x̂₀ + √(1 − ᾱ' − σ²)·ε̂ + σ·ξ;
  no clipping (the paper's ``clip_denoised=False``). η = 1 as the paper samples; η = 0 is
  deterministic and ``ddim_invert`` runs it backwards.

Every random number of sample i (its start and the noise of every step) is drawn from one
numpy PCG64 stream of the seed sequence (seeds[i], ``REP_STREAM``), so a representation never
depends on the batch or the process, and never shares a stream with the pixel noise of any
seed (torch's CPU generator, which the pixel noise uses, keeps only a seed's low 32 bits: an
offset seed would alias another image's noise).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
from torch import nn

from genbench.errors import GenbenchError
from genbench.registry import Registry

#: the second word of a representation stream's seed sequence (the pixel noise uses torch)
REP_STREAM = 0x52434752  # "RCGR"


@dataclass(frozen=True)
class MLPConfig:
    """``SimpleMLP``'s size: representation dimension D, width C, bottleneck B, time
    embedding E, blocks, dropout."""

    name: str
    rep_dim: int = 256
    width: int = 1536
    bottleneck: int = 1536
    time_dim: int = 256
    num_blocks: int = 12
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if min(self.rep_dim, self.width, self.bottleneck, self.time_dim, self.num_blocks) < 1:
            raise GenbenchError(f"RDM configuration {self.name}: every size must be >= 1")

    def to_dict(self) -> dict:
        return asdict(self)

    def with_options(self, **options) -> MLPConfig:
        unknown = set(options) - set(self.to_dict())
        if unknown:
            raise GenbenchError(f"unknown RDM option(s) {', '.join(sorted(unknown))}")
        return replace(self, **options)


MLP_CONFIGS: Registry[MLPConfig] = Registry("RDM configuration")
MLP_CONFIGS.register("paper", MLPConfig("paper"))
MLP_CONFIGS.register("fmnist", MLPConfig("fmnist", rep_dim=64, width=256, bottleneck=256,
                                         time_dim=128, num_blocks=6))
MLP_CONFIGS.register("tiny", MLPConfig("tiny", rep_dim=8, width=32, bottleneck=32,
                                       time_dim=16, num_blocks=2))


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """The sinusoidal embedding of (integer) steps ``t``: cos then sin of t·10000^(−k/half)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32,
                                                           device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    return torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=1) if dim % 2 else emb


def _zero(layer: nn.Linear) -> nn.Linear:
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class MLPBlock(nn.Module):
    def __init__(self, width: int, bottleneck: int, time_dim: int, dropout: float) -> None:
        super().__init__()
        self.inp = nn.Sequential(nn.LayerNorm(width), nn.SiLU(), nn.Linear(width, bottleneck))
        self.emb = nn.Sequential(nn.SiLU(), nn.Linear(time_dim, bottleneck))
        self.out = nn.Sequential(nn.LayerNorm(bottleneck), nn.SiLU(), nn.Dropout(dropout),
                                 _zero(nn.Linear(bottleneck, width)))

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return x + self.out(self.inp(x) + self.emb(emb))


class SimpleMLP(nn.Module):
    """x̂₀(x_t, t): ``x`` N×D, ``t`` N integer steps."""

    def __init__(self, config: MLPConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.time = nn.Sequential(nn.Linear(c.width, c.time_dim), nn.SiLU(),
                                  nn.Linear(c.time_dim, c.time_dim))
        self.input = nn.Linear(c.rep_dim, c.width)
        self.blocks = nn.ModuleList(MLPBlock(c.width, c.bottleneck, c.time_dim, c.dropout)
                                    for _ in range(c.num_blocks))
        self.output = nn.Sequential(nn.LayerNorm(c.width, eps=1e-6), nn.SiLU(),
                                    _zero(nn.Linear(c.width, c.rep_dim)))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        emb = self.time(timestep_embedding(t, self.config.width))
        h = self.input(x)
        for block in self.blocks:
            h = block(h, emb)
        return self.output(h)


@dataclass(frozen=True)
class DDPMSchedule:
    """The noise schedule (float64): ``betas`` and ᾱ of steps 0..T−1."""

    steps: int = 1000
    linear_start: float = 0.0015
    linear_end: float = 0.0195

    @property
    def betas(self) -> torch.Tensor:
        return torch.linspace(self.linear_start ** 0.5, self.linear_end ** 0.5, self.steps,
                              dtype=torch.float64) ** 2

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        return torch.cumprod(1 - self.betas, dim=0)

    def to_dict(self) -> dict:
        return asdict(self)

    def noised(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = √ᾱ_t·x₀ + √(1 − ᾱ_t)·ε."""
        a = self.alphas_cumprod.to(x0.device)[t].to(x0.dtype)[:, None]
        return a.sqrt() * x0 + (1 - a).sqrt() * noise


@dataclass(frozen=True)
class DDIMConfig:
    """DDIM sampling: ``steps`` of the T-step chain (uniform, as LDM), ``eta`` (1: the
    paper's stochastic sampler, 0: deterministic)."""

    steps: int = 250
    eta: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.steps, bool) or int(self.steps) != self.steps or self.steps < 1:
            raise GenbenchError(f"DDIM steps must be a whole number >= 1, got {self.steps}")
        if not 0.0 <= self.eta <= 1.0 or math.isnan(self.eta):
            raise GenbenchError(f"DDIM eta must be in [0, 1], got {self.eta}")

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        return f"DDIM {self.steps} steps, eta {self.eta:g}"


def ddim_timesteps(schedule: DDPMSchedule, steps: int) -> list[int]:
    """LDM's uniform sub-grid, ascending: 1, 1 + c, 1 + 2c, ..., T − c + 1 (c = T / steps).
    ``steps`` must divide T (LDM silently takes ceil(T / c) steps otherwise) and be below it
    (the shift by one would step past the chain's end)."""
    T = schedule.steps
    if steps >= T or T % steps:
        divisors = [d for d in range(1, T) if T % d == 0]
        near = sorted(divisors, key=lambda d: abs(d - steps))[:2]
        raise GenbenchError(f"DDIM steps must divide the chain's {T} steps and be below it, "
                            f"got {steps}; e.g. {' or '.join(map(str, sorted(near)))}")
    c = T // steps
    return [s + 1 for s in range(0, T, c)]


def ddim_coefficients(schedule: DDPMSchedule, config: DDIMConfig
                      ) -> tuple[list[int], torch.Tensor, torch.Tensor, torch.Tensor]:
    """(timesteps ascending, ᾱ at them, ᾱ of the previous sub-grid step, σ), float64."""
    ts = ddim_timesteps(schedule, config.steps)
    ac = schedule.alphas_cumprod
    a = ac[ts]
    a_prev = torch.cat([ac[:1], ac[ts[:-1]]])
    sigma = config.eta * ((1 - a_prev) / (1 - a) * (1 - a / a_prev)).sqrt()
    return ts, a, a_prev, sigma


def ddim_step(x: torch.Tensor, x0: torch.Tensor, a: float, a_prev: float, sigma: float,
              noise: torch.Tensor | None) -> torch.Tensor:
    """One DDIM update from the x₀ prediction ``x0`` (see the module docstring)."""
    eps = (x - math.sqrt(a) * x0) / math.sqrt(1 - a)
    out = math.sqrt(a_prev) * x0 + math.sqrt(max(1 - a_prev - sigma ** 2, 0.0)) * eps
    return out + sigma * noise if noise is not None and sigma > 0 else out


def seeded_noise(seeds: np.ndarray, count: int, dim: int) -> torch.Tensor:
    """float32 N×count×dim standard normals, row i from the stream of ``seeds[i]`` alone."""
    seeds = np.asarray(seeds, dtype=np.int64).reshape(-1)
    out = np.empty((len(seeds), count, dim), dtype=np.float32)
    for i, seed in enumerate(seeds.tolist()):
        if seed < 0:
            raise GenbenchError(f"seeds must be non-negative, got {seed}")
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, REP_STREAM])))
        out[i] = rng.standard_normal((count, dim), dtype=np.float32)
    return torch.from_numpy(out)


@torch.no_grad()
def ddim_sample(network: nn.Module, schedule: DDPMSchedule, config: DDIMConfig,
                seeds: np.ndarray, *, device: str | torch.device = "cpu") -> torch.Tensor:
    """Representations N×D (float32) for ``seeds`` by DDIM from x_T ~ N(0, I)."""
    dim = network.config.rep_dim
    ts, a, a_prev, sigma = ddim_coefficients(schedule, config)
    noise = seeded_noise(seeds, config.steps + 1, dim).to(device)
    x = noise[:, 0]
    for k, i in enumerate(reversed(range(len(ts)))):
        t = torch.full((len(x),), ts[i], dtype=torch.long, device=x.device)
        x0 = network(x, t).float()
        x = ddim_step(x, x0, float(a[i]), float(a_prev[i]), float(sigma[i]), noise[:, k + 1])
    return x


@torch.no_grad()
def ddim_invert(network: nn.Module, schedule: DDPMSchedule, steps: int,
                x: torch.Tensor) -> torch.Tensor:
    """The deterministic (η = 0) DDIM chain run from data towards x_T: the start that
    ``ddim_sample`` with η = 0 maps (approximately) back to ``x``."""
    ts, a, a_prev, _ = ddim_coefficients(schedule, DDIMConfig(steps, 0.0))
    for i in range(len(ts)):
        # step from ᾱ_prev (less noise) to ᾱ (more), the x₀ estimate taken at the start
        t_in = ts[i - 1] if i else 0
        t = torch.full((len(x),), t_in, dtype=torch.long, device=x.device)
        x0 = network(x, t).float()
        eps = (x - math.sqrt(float(a_prev[i])) * x0) / math.sqrt(1 - float(a_prev[i]))
        x = math.sqrt(float(a[i])) * x0 + math.sqrt(1 - float(a[i])) * eps
    return x


def rdm_loss(network: nn.Module, schedule: DDPMSchedule, x0: torch.Tensor, t: torch.Tensor,
             noise: torch.Tensor) -> torch.Tensor:
    """Per-example squared error of the x₀ prediction (mean over dimensions)."""
    pred = network(schedule.noised(x0, t, noise), t).float()
    return (pred - x0).pow(2).mean(dim=1)
