"""Rectified-flow objectives and solvers against flows whose velocity is known exactly:
Gaussian to Gaussian, straight (the 2-rectified flow of a Gaussian: one Euler step is exact)
and curved (the 1-rectified flow of an independent coupling)."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from genbench.errors import GenbenchError
from genbench.generators.rectified_flow.objective import (
    interpolate,
    pseudo_huber,
    sample_u_shaped_t,
    sample_uniform_t,
    squared_l2,
    u_shaped_cdf,
)
from genbench.generators.solvers import invert, sample, straightness, uniform_grid

MU, SIGMA = 1.5, 0.4  # the data: N(MU, SIGMA²) in every coordinate


def straight_velocity(x, t):
    """The flow along the deterministic coupling x₀ = MU + SIGMA·z: v = z − x₀ on lines."""
    tt = t[:, None]
    z = (x - (1 - tt) * MU) / ((1 - tt) * SIGMA + tt)
    return (1 - SIGMA) * z - MU


def curved_velocity(x, t):
    """E[z − x₀ | x_t] for x₀ ~ N(MU, SIGMA²) and z ~ N(0, 1) independent."""
    tt = t[:, None]
    var = (1 - tt) ** 2 * SIGMA ** 2 + tt ** 2
    return -MU + (tt - (1 - tt) * SIGMA ** 2) / var * (x - (1 - tt) * MU)


@pytest.fixture
def z():
    return torch.randn(4000, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def test_one_euler_step_of_a_straight_flow_is_exact(z):
    exact = MU + SIGMA * z
    for rule in ("standard", "new"):
        out = sample(straight_velocity, z, solver="euler", nfe=1, rule=rule)
        torch.testing.assert_close(out, exact, atol=1e-4, rtol=0)
    two = sample(straight_velocity, z, solver="euler", nfe=2)
    torch.testing.assert_close(two, exact, atol=1e-4, rtol=0)
    assert straightness(straight_velocity, z, steps=20) < 1e-8


def test_curved_flow_needs_steps_and_heun_gets_there(z):
    exact = MU + SIGMA * z  # the monotone transport of N(0,1) to N(MU, SIGMA²)
    one = sample(curved_velocity, z, solver="euler", nfe=1)
    errors = {n: float((sample(curved_velocity, z, solver="heun", nfe=n) - exact).abs().max())
              for n in (31, 61)}
    assert float((one - exact).abs().max()) > 0.5
    assert errors[61] < 1e-2 and errors[61] < 0.5 * errors[31]  # Heun converges
    # 1 NFE gives E[x₀ | z]-like averages: the mean is right, the spread collapses
    assert abs(float(one.mean()) - MU) < 0.05 and float(one.std()) < SIGMA
    assert straightness(curved_velocity, z, steps=50) > 0.05


def test_heun_counts_and_grids(z):
    calls = []

    def counting(x, t):
        calls.append(float(t[0]))
        return straight_velocity(x, t)

    sample(counting, z, solver="heun", nfe=5)
    assert len(calls) == 5  # 3 steps, Heun on the first two
    np.testing.assert_allclose(uniform_grid(3).numpy(), [1 - 1e-5, 2 / 3, 1 / 3, 0])
    calls.clear()
    sample(counting, z, solver="euler", grid=[0.99999, 0.3, 0.0])
    assert calls == pytest.approx([0.99999, 0.3])
    with pytest.raises(GenbenchError, match="odd number"):
        sample(straight_velocity, z, solver="heun", nfe=4)
    with pytest.raises(GenbenchError, match="at least 1"):
        sample(straight_velocity, z, nfe=0)
    with pytest.raises(GenbenchError, match="descend strictly"):
        sample(straight_velocity, z, grid=[0.2, 0.5, 0.0])


def test_inversion_round_trip(z):
    x = MU + SIGMA * z
    back = invert(straight_velocity, x, nfe=50)
    # the official start at t = 1e-3 (not 0) costs about 1e-3 · |z − x| / SIGMA; from 1e-7
    # the round trip is exact up to that start
    assert float((back - z).abs().mean()) < 1e-2
    exact = invert(straight_velocity, x, nfe=50, t_start=1e-7)
    assert float((exact - z).abs().max()) < 1e-5


def test_u_shaped_times_follow_their_density():
    t = sample_u_shaped_t(20000, a=4.0, generator=torch.Generator().manual_seed(1))
    assert float(t.min()) >= 1e-5 and float(t.max()) <= 1 - 1e-5
    unscaled = (t - 1e-5) / (1 - 2e-5)
    result = stats.kstest(unscaled.numpy(), lambda s: u_shaped_cdf(torch.as_tensor(s)).numpy())
    assert result.pvalue > 0.01
    uniform = stats.kstest(unscaled.numpy(), "uniform")
    assert uniform.pvalue < 1e-6  # and it really is not uniform
    assert float(u_shaped_cdf(torch.tensor(0.5))) == pytest.approx(0.5)
    u = sample_uniform_t(20000, generator=torch.Generator().manual_seed(2))
    assert stats.kstest(((u - 1e-5) / (1 - 2e-5)).numpy(), "uniform").pvalue > 0.01
    with pytest.raises(GenbenchError, match="a > 0"):
        sample_u_shaped_t(3, a=0)


def test_objectives_by_hand():
    x = torch.zeros(2, 1, 2, 2)
    z = torch.ones(2, 1, 2, 2)
    xt, target = interpolate(x, z, torch.tensor([0.25, 1.0]))
    torch.testing.assert_close(xt[0], torch.full((1, 2, 2), 0.25))
    torch.testing.assert_close(target, z)
    v = torch.zeros(2, 1, 2, 2)
    v[1] = 3.0
    torch.testing.assert_close(squared_l2(v, target), torch.tensor([1.0, 4.0]))
    d, c = 4, 0.00054 * 4
    expected = [(math.sqrt(4 * 1.0 + c * c) - c) / d, (math.sqrt(4 * 4.0 + c * c) - c) / d]
    torch.testing.assert_close(pseudo_huber(v, target), torch.tensor(expected))
    torch.testing.assert_close(pseudo_huber(v, target, c=1.0),
                               torch.tensor([(math.sqrt(5) - 1) / 4, (math.sqrt(17) - 1) / 4]))
