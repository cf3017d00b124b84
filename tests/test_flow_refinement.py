"""The flow refined on the observed frames (``hybrid.flow_refinement``, ``FlowEstimator``'s
``refine_*`` options): known answers for its solver and for a tracer carried by a uniform flow."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hybrid.dynamics import HybridField, rollout
from hybrid.flow import observe_past
from hybrid.flow_refinement import conjugate_gradient, gauss_newton_step
from hybrid.models.flow import FlowEstimator
from hybrid.physics.advection_diffusion import AdvectionDiffusion, ConstantVelocity
from hybrid.physics.grid import Grid

N, DX, DT, KAPPA = 8, 10e3, 3 * 3600.0, 200.0
FRAMES, WINDOW = 4, 6
WELL_CONDITIONED = {"refine_smoothness": 10.0, "refine_divergence": 1.0}


def test_conjugate_gradient_solves_each_windows_system_exactly():
    """Batched CG on SPD systems of size 6 gives numpy's solution after 6 iterations, with each
    window's own step lengths (the systems differ by a factor of 1000 in scale)."""
    rng = np.random.default_rng(0)
    m = rng.normal(size=(3, 6, 6))
    a = m @ m.transpose(0, 2, 1) + 0.5 * np.eye(6) * np.array([1.0, 10.0, 1000.0])[:, None, None]
    b = rng.normal(size=(3, 6))
    x = conjugate_gradient(
        lambda v: torch.einsum("bij,bj->bi", torch.tensor(a), v), torch.tensor(b), steps=6
    )
    want = np.linalg.solve(a, b[..., None])[..., 0]
    np.testing.assert_allclose(x.numpy(), want, rtol=1e-8, atol=1e-10)


def test_gauss_newton_step_on_a_linear_problem_is_the_least_squares_solution():
    """For ``F(z) = A z - b`` one step (enough CG iterations) gives numpy's ``lstsq``."""
    rng = np.random.default_rng(1)
    a, b = torch.tensor(rng.normal(size=(2, 9, 4))), torch.tensor(rng.normal(size=(2, 9)))
    z0 = torch.zeros(2, 4, dtype=torch.float64)
    z = gauss_newton_step(lambda z: torch.einsum("bij,bj->bi", a, z) - b, z0, 4)
    want = [np.linalg.lstsq(a[i].numpy(), b[i].numpy(), rcond=None)[0] for i in range(2)]
    np.testing.assert_allclose(z.numpy(), np.stack(want), rtol=1e-8, atol=1e-10)


def tracer(grid: Grid, kx: int, ky: int) -> torch.Tensor:
    """``[1, 1, N, N]``: ``2 + sin(2π kx x/L) + 0.5 cos(2π ky y/L)`` (``ky = 0``: no y term)."""
    i = torch.arange(N, dtype=torch.float64)
    x, y = (2 * math.pi * i / N)[None, :], (2 * math.pi * i / N)[:, None]
    c = 2 + torch.sin(kx * x) + (0.5 * torch.cos(ky * y) if ky else 0 * y)
    return c[None, None]


def carried(grid: Grid, c0: torch.Tensor, u: float, v: float) -> torch.Tensor:
    """``[1, WINDOW, 1, N, N]``: ``c0`` carried by the uniform ``(u, v)`` with the prior itself
    (upwind, rk4 at the data step)."""
    prior = AdvectionDiffusion(grid, KAPPA, ConstantVelocity(u, v), scheme="upwind").double()
    with torch.no_grad():
        return rollout(prior, c0, torch.arange(WINDOW, dtype=torch.float64) * DT, method="rk4")


def flow_model(grid: Grid, **refine) -> HybridField:
    """An untrained estimator (it gives no flow) in the prior; refinement options ``refine``."""
    estimator = FlowEstimator(frames=FRAMES, hidden=4, levels=1, speed=0.3, **refine)
    prior = AdvectionDiffusion(grid, KAPPA, estimator, scheme="upwind")
    return HybridField(prior).double().eval()


def refined(field: HybridField, grid: Grid, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
    t = (torch.arange(y.shape[1], dtype=torch.float64) * DT).expand(y.shape[0], -1)
    with torch.no_grad():
        observe_past(field, grid, t, y)
    return field.physics.velocity()


@pytest.fixture(scope="module")
def grid() -> Grid:
    return Grid.regular_box(N, N, DX).double()


def test_refinement_from_no_flow_recovers_a_uniform_flow(grid):
    """Frames carried at (0.3, -0.2) m/s by the prior itself: from the untrained estimator's
    zero flow, 3 Gauss-Newton steps on the last observed transition give the flow to 1e-4 of
    it at every cell (measured 1.5e-5). The truth is the exact minimum for any weights (no
    misfit, no gradient, no divergence); these (smoothness 10, divergence 1) make CG converge
    in 30 iterations, the config's (1e-2, 100) need about 10 steps of 200 (measured 1e-8)."""
    field = flow_model(grid, refine_steps=3, refine_iterations=30, **WELL_CONDITIONED)
    u, v = refined(field, grid, carried(grid, tracer(grid, 1, 1), 0.3, -0.2))
    assert float((u - 0.3).abs().max()) < 0.3 * 1e-4
    assert float((v + 0.2).abs().max()) < 0.3 * 1e-4


def test_refinement_gives_the_along_gradient_velocity_only(grid):
    """A tracer varying along x alone shows only ``u``: recovered to 1e-6 relative with the
    default weights (measured 1.8e-7: the problem is one-dimensional); ``v`` (the aperture
    problem: nothing constrains it) stays at the start, 0, to 1e-9 m/s."""
    field = flow_model(grid, refine_steps=3)
    u, v = refined(field, grid, carried(grid, tracer(grid, 1, 0), 0.25, 0.15))
    assert float((u - 0.25).abs().max()) < 0.25 * 1e-6
    assert float(v.abs().max()) < 1e-9


def test_refinement_reads_no_future_frame_and_no_other_window(grid):
    """Changing the frames after the last observed one, or the other windows of the batch,
    leaves a window's refined flow unchanged (to round-off)."""
    field = flow_model(grid, refine_steps=2, refine_iterations=20, refine_pairs=3,
                       **WELL_CONDITIONED)  # fmt: skip
    y = torch.cat([carried(grid, tracer(grid, 1, 1), 0.3, 0.1),
                   carried(grid, tracer(grid, 1, 1), -0.2, 0.2)])  # fmt: skip
    first = refined(field, grid, y)
    future = y.clone()
    future[:, FRAMES:] = torch.rand_like(future[:, FRAMES:])
    again = refined(field, grid, future)
    alone = refined(field, grid, y[:1])
    for a, b, c in zip(first, again, alone, strict=True):
        assert torch.equal(a, b)
        torch.testing.assert_close(a[:1], c, rtol=1e-9, atol=1e-12)
    assert float((first[0][0] - 0.3).abs().max()) < 0.01  # from 0.3: it did move


def test_refinement_runs_under_inference_mode(grid):
    """Lightning's predict (``hybrid evaluate``) runs under ``torch.inference_mode``: the
    refinement still takes its gradients there, and gives what it gives under ``no_grad``."""
    field = flow_model(grid, refine_steps=1, refine_iterations=10)
    y = carried(grid, tracer(grid, 1, 1), 0.3, -0.2)
    t = (torch.arange(WINDOW, dtype=torch.float64) * DT).expand(1, -1)
    with torch.inference_mode():
        observe_past(field, grid, t, y)
        u, v = field.physics.velocity()
    for a, b in zip((u, v), refined(field, grid, y), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-15)
    assert float((u - 0.3).abs().mean()) < 0.2  # from 0.3: it moved


def test_no_refinement_in_a_training_step_or_when_off(grid):
    """In training mode with gradients recorded (a training step), and with ``refine_steps=0``
    (the default), the estimate is the network's: the untrained estimator's zero flow. In
    training mode without gradients (``hybrid evaluate`` scores the flow so) it is refined."""
    y = carried(grid, tracer(grid, 1, 1), 0.3, -0.2)
    t = (torch.arange(WINDOW, dtype=torch.float64) * DT).expand(1, -1)
    training = flow_model(grid, refine_steps=1, refine_iterations=10).train()
    observe_past(training, grid, t, y)
    assert all(float(w.detach().abs().max()) == 0 for w in training.physics.velocity())
    assert all(float(w.abs().max()) == 0 for w in refined(flow_model(grid), grid, y))
    assert float(refined(training, grid, y)[0].mean()) > 0.1  # from 0: refined


@pytest.mark.parametrize(
    "options",
    [{"refine_steps": -1}, {"refine_steps": 1, "refine_pairs": 4}, {"refine_iterations": 0},
     {"refine_divergence": -1.0}],
)  # fmt: skip
def test_bad_refinement_options_are_refused(options):
    with pytest.raises(ValueError, match="refine"):
        FlowEstimator(frames=4, **options)


def test_refinement_on_a_line_recovers_the_speed():
    """A 1-D estimator (``dims=1``) on a periodic line: a sine carried at 0.4 m/s by the prior
    itself is refined from no flow (3 steps, default weights) to 0.4 m/s to 1e-5 relative at
    every cell (measured 5e-7)."""
    line = Grid.regular_line(N, DX).double()
    c0 = 2 + torch.sin(2 * math.pi * torch.arange(N, dtype=torch.float64) / N)[None, None]
    prior = AdvectionDiffusion(line, KAPPA, ConstantVelocity(0.4, None), scheme="upwind")
    with torch.no_grad():
        y = rollout(
            prior.double(), c0, torch.arange(WINDOW, dtype=torch.float64) * DT, method="rk4"
        )
    estimator = FlowEstimator(frames=FRAMES, hidden=4, levels=1, speed=0.3, dims=1, refine_steps=3)
    field = HybridField(AdvectionDiffusion(line, KAPPA, estimator, scheme="upwind")).double().eval()
    (u,) = refined(field, line, y)
    assert float((u - 0.4).abs().max()) < 0.4 * 1e-5
