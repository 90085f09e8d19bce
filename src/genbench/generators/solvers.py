"""ODE solvers for flows with velocity v(x, t) (t = 0 data, t = 1 noise; dx/dt = v), as the
2-rectified flow++ code samples (``sample_ode_generative``):

* time grid: uniform, descending from t₀ = 1 − 1e-5 to 0 (or any custom grid), and the
  start x(t₀) = t₀·z;
* Euler: x_{t'} = x_t + (t' − t)·v(x_t, t); 1 NFE is one step, x = x̂ = z' − t₀·v(z', t₀);
* Heun: odd NFE N, (N + 1)/2 steps, Heun's correction on all but the last step (Euler);
* the "new" update rule: x_{t'} = (1 − t')·x̂ + t'·z with x̂ = x_t − t·v and z the initial
  noise (for Heun the averaged velocity, its intermediate point built the same way);
* inversion x → z (t from 1e-3 to 1 with Euler, z-prediction z = x_t + (1 − t)·v);
* straightness S = ∫ E‖(z − x₀) − v(x_t, t)‖² dt along the sampled path (Liu et al. 2023).

A velocity is a callable ``velocity(x, t)`` with ``t`` one time per sample (shape N).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import torch

from genbench.errors import GenbenchError
from genbench.generators.rectified_flow.objective import T_EPS

Velocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
SOLVERS = ("euler", "heun")
RULES = ("standard", "new")


def uniform_grid(steps: int, t0: float = 1 - T_EPS) -> torch.Tensor:
    """``steps`` + 1 descending times: t₀, (steps−1)/steps, ..., 1/steps, 0."""
    if steps < 1:
        raise GenbenchError(f"a time grid needs at least 1 step, got {steps}")
    grid = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    grid[0] = t0
    return grid


def _check_grid(grid: torch.Tensor | Sequence[float]) -> torch.Tensor:
    grid = torch.as_tensor(grid, dtype=torch.float64)
    if grid.ndim != 1 or len(grid) < 2 or not bool((grid[1:] < grid[:-1]).all()) \
            or grid[0] > 1 or grid[-1] < 0:
        raise GenbenchError("a time grid must descend strictly within [1, 0], e.g. "
                            "[0.99999, 0.5, 0]")
    return grid


def _at(t: float, x: torch.Tensor) -> torch.Tensor:
    return torch.full((x.shape[0],), float(t), dtype=x.dtype, device=x.device)


def _step(x: torch.Tensor, v: torch.Tensor, t: float, t_next: float, z: torch.Tensor,
          rule: str) -> torch.Tensor:
    if rule == "new":
        x_hat = x - t * v
        return (1 - t_next) * x_hat + t_next * z
    return x + (t_next - t) * v


def time_grid(solver: str = "euler", nfe: int = 1,
              grid: torch.Tensor | Sequence[float] | None = None,
              rule: str = "standard") -> list[float]:
    """The descending times a solver visits (checking every setting): ``grid`` when given,
    else the uniform grid of ``nfe`` evaluations (Euler: nfe steps; Heun: odd nfe,
    (nfe + 1)/2 steps)."""
    if solver not in SOLVERS:
        raise GenbenchError(f"unknown solver {solver!r}; choose from {', '.join(SOLVERS)}")
    if rule not in RULES:
        raise GenbenchError(f"unknown update rule {rule!r}; choose from {', '.join(RULES)}")
    if grid is None:
        if isinstance(nfe, bool) or int(nfe) != nfe or nfe < 1:
            raise GenbenchError(f"--nfe must be a whole number of at least 1, got {nfe}")
        if solver == "heun" and nfe % 2 == 0:
            raise GenbenchError(f"Heun takes an odd number of evaluations ((steps · 2) − 1), "
                                f"got --nfe {nfe}; use {nfe - 1 or 1} or {nfe + 1}, or euler")
        grid = uniform_grid(nfe if solver == "euler" else (nfe + 1) // 2)
    return _check_grid(grid).tolist()


def evaluations(solver: str, steps: int) -> int:
    """Network evaluations of ``steps`` steps: Euler 1 each, Heun 2 each but the last."""
    return steps if solver == "euler" else 2 * steps - 1


def sample(velocity: Velocity, z: torch.Tensor, *, solver: str = "euler", nfe: int = 1,
           grid: torch.Tensor | Sequence[float] | None = None,
           rule: str = "standard") -> torch.Tensor:
    """Integrate from noise ``z`` (t ≈ 1) to data (t = 0) with ``nfe`` network evaluations
    (Euler: nfe steps; Heun: odd nfe, (nfe + 1)/2 steps) or along ``grid``."""
    times = time_grid(solver, nfe, grid, rule)
    x = times[0] * z
    for i, (t, t_next) in enumerate(itertools.pairwise(times)):
        v = velocity(x, _at(t, x))
        last = i == len(times) - 2
        if solver == "heun" and not last:
            x_pred = _step(x, v, t, t_next, z, rule)
            v = 0.5 * (v + velocity(x_pred, _at(t_next, x)))
        x = _step(x, v, t, t_next, z, rule)
    return x


def invert(velocity: Velocity, x: torch.Tensor, *, nfe: int = 100,
           t_start: float = 1e-3) -> torch.Tensor:
    """The noise z that the flow maps to ``x``: Euler from t = ``t_start`` to 1 in ``nfe``
    steps, the last one by z-prediction z = x_t + (1 − t)·v."""
    if nfe < 1:
        raise GenbenchError(f"inversion needs at least 1 step, got {nfe}")
    times = torch.linspace(t_start, 1.0, nfe + 1, dtype=torch.float64).tolist()
    xt = x
    for i, (t, t_next) in enumerate(itertools.pairwise(times)):
        v = velocity(xt, _at(t, xt))
        xt = xt + (1 - t) * v if i == nfe - 1 else xt + (t_next - t) * v
    return xt


def straightness(velocity: Velocity, z: torch.Tensor, *, steps: int = 100) -> float:
    """S = Σ Δt · E‖(z − x₀) − v(x_t, t)‖² (per dimension) along the Euler path from ``z``:
    0 for a straight flow."""
    times = uniform_grid(steps).tolist()
    x, velocities, widths = times[0] * z, [], []
    for t, t_next in itertools.pairwise(times):
        v = velocity(x, _at(t, x))
        velocities.append(v)
        widths.append(t - t_next)
        x = x + (t_next - t) * v
    chord = z - x
    total = sum(w * float((chord - v).flatten(1).pow(2).mean())
                for w, v in zip(widths, velocities, strict=True))
    return total / sum(widths)
