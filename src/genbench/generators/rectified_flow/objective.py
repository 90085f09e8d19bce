"""Rectified-flow objectives, with the conventions of the 2-rectified flow++ code
(sangyun884/rfpp): t = 0 is data x, t = 1 is noise z ~ N(0, I),

    x_t = (1 − t)·x + t·z,    target velocity v = z − x,    x̂ = x_t − t·v_θ(x_t, t).

Time distributions: uniform (1-rectified flow, config A) and the U-shaped density
∝ e^{a t} + e^{a(1−t)} (config C, a = 4), sampled as the official ``sample_t`` does. Premetrics
per sample: squared L2 (mean over pixels, configs A–C) and pseudo-Huber with
c = 0.00054·d, d = C·H·W (config D).
"""

from __future__ import annotations

import math

import torch

from genbench.errors import GenbenchError

T_EPS = 1e-5  # the official code keeps t inside [1e-5, 1 - 1e-5]


def interpolate(x: torch.Tensor, z: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor,
                                                                            torch.Tensor]:
    """(x_t, target velocity z − x) for per-sample times ``t`` (shape N)."""
    tt = t.reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype)
    return (1 - tt) * x + tt * z, z - x


def sample_uniform_t(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """t ~ U(0, 1), rescaled into [1e-5, 1 − 1e-5] as the official code does."""
    return torch.rand(n, generator=generator, dtype=torch.float64) * (1 - 2 * T_EPS) + T_EPS


def sample_u_shaped_t(n: int, a: float = 4.0,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """t with density ∝ e^{a t} + e^{a(1−t)} on [0, 1], as ``t_dist.sample_t``: n draws of
    the exponential truncated to [0, 1] (pdf a·e^{a t}/(e^a − 1), by inverse CDF), their
    mirrors 1 − t appended, a random n of the 2n kept, then rescaled into
    [1e-5, 1 − 1e-5]."""
    if a <= 0:
        raise GenbenchError(f"the U-shaped time distribution needs a > 0, got {a}")
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    t = torch.log1p(u * math.expm1(a)) / a
    both = torch.cat([t, 1 - t])
    keep = torch.randperm(2 * n, generator=generator)[:n]
    return both[keep] * (1 - 2 * T_EPS) + T_EPS


def u_shaped_cdf(t: torch.Tensor, a: float = 4.0) -> torch.Tensor:
    """CDF of the U-shaped density before the [1e-5, 1 − 1e-5] rescaling:
    F(t) = (e^{a t} − e^{a(1−t)} + e^a − 1) / (2 (e^a − 1))."""
    t = torch.as_tensor(t, dtype=torch.float64)
    return (torch.exp(a * t) - torch.exp(a * (1 - t)) + math.exp(a) - 1) / (2 * math.expm1(a))


def squared_l2(v: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample mean squared error (the code's ``l2-squared``), shape N."""
    return (v - target).flatten(1).pow(2).mean(1)


def pseudo_huber(v: torch.Tensor, target: torch.Tensor, c: float | None = None) -> torch.Tensor:
    """Per-sample pseudo-Huber premetric of the 2-RF++ code, shape N:
    (sqrt(‖v − target‖² + c²) − c) / d with d = C·H·W and c = 0.00054·d by default."""
    d = v[0].numel()
    c = 0.00054 * d if c is None else c
    sq = (v - target).flatten(1).pow(2).sum(1)
    return (torch.sqrt(sq + c * c) - c) / d
