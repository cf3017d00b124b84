"""Flow estimation: the regularisers against closed forms, the flow scores against known answers,
the FlowEstimator's contract, and the past-frames hook."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hybrid.dynamics import HybridField, rollout
from hybrid.flow import (
    divergence_sq,
    flow_penalty,
    flow_regularisation,
    flow_scores,
    gradient_mask,
    magnitude_sq,
    normal_flow,
    observe_past,
    smoothness_sq,
)
from hybrid.models.flow import FlowEstimator
from hybrid.physics.advection_diffusion import AdvectionDiffusion, ConstantVelocity
from hybrid.physics.grid import Grid

L = 320e3  # box side (m)


def box(n: int) -> Grid:
    return Grid.regular_box(n, n, L / n)


def coords(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    s = torch.arange(n) * (L / n)
    return s[None, :].expand(n, n), s[:, None].expand(n, n)  # x, y: [ny, nx]


def analytic_streamfunction_flow(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``ψ = sin(kx) cos(2ky)``, ``u = -∂ψ/∂y``, ``v = ∂ψ/∂x`` (exact derivatives)."""
    x, y = coords(n)
    k = 2 * math.pi / L
    u = 2 * k * torch.sin(k * x) * torch.sin(2 * k * y)
    v = k * torch.cos(k * x) * torch.cos(2 * k * y)
    return u, v


def test_divergence_of_incompressible_flow_vanishes_at_second_order(float64):
    errors, sizes = [], [16, 32, 64, 128]
    for n in sizes:
        u, v = analytic_streamfunction_flow(n)
        errors.append(float(divergence_sq(u, v, box(n)).sqrt()))  # RMS ∇·w, exactly 0
    slope = np.polyfit(np.log([L / n for n in sizes]), np.log(errors), 1)[0]
    assert abs(slope - 2) < 0.2  # not 1: the discrete divergence is second order


def test_divergence_of_discrete_streamfunction_velocity_is_zero(float64):
    from hybrid.physics.moving_flow import streamfunction_velocity

    x, y = coords(32)
    psi = torch.sin(2 * math.pi * x / L) * torch.cos(4 * math.pi * y / L) + 0.3 * torch.cos(
        6 * math.pi * (x + y) / L
    )
    u, v = streamfunction_velocity(psi, box(32))
    assert float(divergence_sq(u, v, box(32))) < 1e-30 * float(magnitude_sq(u, v, box(32))) + 1e-40
    assert float(magnitude_sq(u, v, box(32))) > 0


@pytest.mark.parametrize("n", [16, 64])
def test_smoothness_and_magnitude_of_a_sine_shear(n, float64):
    """``u = U sin(kx)``: mean ``u² = U²/2``; centred differences give ``U k' cos(kx)`` with
    ``k' = sin(kΔ)/Δ``, so mean ``|∇u|² = U² k'²/2`` exactly, ``U² k²/2`` as ``Δ → 0``."""
    x, _ = coords(n)
    speed, k, dx = 0.3, 2 * 2 * math.pi / L, L / n
    u, v = speed * torch.sin(k * x), torch.zeros(n, n)
    assert float(magnitude_sq(u, v, box(n))) == pytest.approx(speed**2 / 2, rel=1e-12)
    k_discrete = math.sin(k * dx) / dx
    assert float(smoothness_sq(u, v, box(n))) == pytest.approx(
        speed**2 * k_discrete**2 / 2, rel=1e-12
    )
    assert float(smoothness_sq(u, v, box(n))) == pytest.approx(
        speed**2 * k**2 / 2, rel=(k * dx) ** 2 / 3 * 1.01
    )


def test_regularisation_is_the_weighted_dimensionless_sum(float64):
    grid, speed = box(32), 0.5
    x, y = coords(32)
    u, v = 0.2 * torch.sin(2 * math.pi * x / L), 0.1 * torch.cos(2 * math.pi * x / L)
    dx2 = (L / 32) ** 2
    want = (
        2.0 * dx2 / speed**2 * divergence_sq(u, v, grid)
        + 3.0 * dx2 / speed**2 * smoothness_sq(u, v, grid)
        + 5.0 * magnitude_sq(u, v, grid) / speed**2
    )
    got = flow_regularisation(
        u, v, grid, speed=speed, divergence=2.0, smoothness=3.0, magnitude=5.0
    )
    assert float(got) == pytest.approx(float(want), rel=1e-12)
    assert float(flow_regularisation(u, v, grid, speed=speed)) == 0.0


def test_flow_scores_against_known_answers(float64):
    grid = box(32)
    x, y = coords(32)
    k = 2 * math.pi / L
    u, v = torch.sin(k * x) * torch.cos(k * y), -torch.cos(k * x) * torch.sin(k * y)
    assert flow_scores(u, v, u, v, grid)["correlation"] == pytest.approx(1.0)
    assert flow_scores(u, v, u, v, grid)["rmse"] == pytest.approx(0.0, abs=1e-15)
    # correlation ignores scale and a uniform drift; RMSE sees both
    scaled = flow_scores(2 * u + 0.3, 2 * v - 0.1, u, v, grid)
    assert scaled["correlation"] == pytest.approx(1.0)
    assert flow_scores(-u, -v, u, v, grid)["correlation"] == pytest.approx(-1.0)
    assert flow_scores(u + 0.1, v, u, v, grid)["rmse"] == pytest.approx(0.1)
    # a flow orthogonal to the truth (the other modes' field) scores zero
    other_u, other_v = torch.sin(2 * k * y), torch.zeros_like(u)
    assert flow_scores(other_u, other_v, u, v, grid)["correlation"] == pytest.approx(0.0, abs=1e-12)


def test_flow_scores_errors(float64):
    grid = box(8)
    z = torch.zeros(8, 8)
    with pytest.raises(ValueError, match="one shape"):
        flow_scores(z, z, z, torch.zeros(4, 4), grid)
    with pytest.raises(ValueError, match="selects no active cell"):
        flow_scores(z, z, z, z, grid, mask=torch.zeros(8, 8, dtype=torch.bool))


def test_gradient_mask_selects_cells_with_a_gradient(float64):
    grid = box(32)
    x, _ = coords(32)
    c = torch.sin(2 * math.pi * x / L)
    mask = gradient_mask(c, grid, threshold=0.5)  # |cos| > 0.5/√2 ≈ 0.354
    kx = 2 * math.pi * x / L
    assert torch.equal(mask, torch.cos(kx).abs() > 0.5 / math.sqrt(2))
    assert not gradient_mask(torch.ones(32, 32), grid).any()


# --- FlowEstimator -------------------------------------------------------------------------------


@pytest.mark.parametrize("m", [(1, 0), (1, 1), (-2, 1)])
def test_normal_flow_of_a_moving_wave_is_its_speed_along_the_gradient(m, float64):
    """A plane wave ``sin(2π m·x/n - ω j)`` (``x`` in cells, frame ``j``) moving at ``s = 0.3``
    cells per frame along ``m``: with the exact time difference and centred gradients the
    feature is ``2 tan(ω/2) sin(k) cos²φ / (|sin k|² (cos²φ + η²/2))`` at every cell (``k`` the
    wavevector per cell, ``φ`` the phase midway, ``⟨cos²φ⟩ = 1/2``), computed here in numpy;
    undamped, that is the true speed to 1 % (the scheme's ``O(k²)``) where ``cos²φ > 1/2``."""
    n, s, eta = 64, 0.3, 0.1
    kv = 2 * math.pi * np.array(m, dtype=float) / n  # per cell, (x, y)
    omega = np.hypot(*kv) * s  # phase per frame
    x, y = np.meshgrid(np.arange(n), np.arange(n))  # [ny, nx]
    phase = kv[0] * x + kv[1] * y
    frames = np.stack([np.sin(phase - omega * j) for j in range(3)])  # [3, ny, nx]
    grid = Grid.regular_box(n, n, 10e3)  # spacing in m; the feature is in cells per frame
    w = normal_flow(torch.tensor(frames)[None, :, None], grid, eta)  # [1, 2, 1, 2, ny, nx]
    assert w.shape == (1, 2, 1, 2, n, n)
    sin_k = np.sin(kv)
    cos2 = np.cos(phase - omega / 2) ** 2  # the first pair's midway phase
    factor = 2 * np.tan(omega / 2) * cos2 / ((sin_k**2).sum() * (cos2 + eta**2 / 2))
    assert np.allclose(w[0, 0, 0, 0].numpy(), factor * sin_k[0], atol=1e-12)
    assert np.allclose(w[0, 0, 0, 1].numpy(), factor * sin_k[1], atol=1e-12)
    e = kv / np.hypot(*kv)
    along = (e[0] * w[0, 0, 0, 0] + e[1] * w[0, 0, 0, 1]).numpy()
    undamped = (along * (cos2 + eta**2 / 2) / cos2.clip(1e-30))[cos2 > 0.5]
    assert np.abs(undamped / s - 1).max() < 0.01


def test_normal_flow_on_a_line_and_zero_where_there_is_no_gradient(float64):
    """A 1-D bump moved by whole cells: where the frames are flat the feature is 0 (no 0/0);
    on land too."""
    active = np.ones(32, dtype=bool)
    active[28:] = False
    grid = Grid.regular_line(32, 10e3, periodic=False, active=active)
    x = np.arange(32)
    frames = np.stack([np.exp(-((x - 10 - j) ** 2) / 8.0) for j in range(3)])
    w = normal_flow(torch.tensor(frames)[None, :, None], grid, 0.1)[0, :, 0, 0]  # [2, nx]
    assert w.shape == (2, 32)
    assert torch.isfinite(w).all() and w[:, 25:].abs().max() < 1e-6 and not w[:, 28:].any()
    slope = np.abs(np.gradient(frames[1])) > 0.5 * np.abs(np.gradient(frames[1])).max()
    assert ((w[0][torch.tensor(slope)] - 1).abs() < 0.2).all()  # a cell per frame


def estimator(**kwargs) -> FlowEstimator:
    torch.manual_seed(0)
    return FlowEstimator(**{"frames": 3, "hidden": 4, "levels": 2, "speed": 0.5, **kwargs})


def test_untrained_estimator_gives_no_flow_and_the_prior_is_pure_diffusion():
    grid, f = box(16), estimator()
    past = torch.randn(2, 3, 1, 16, 16)
    f.observe(past, grid)
    u, v = f()
    assert u.shape == v.shape == (2, 1, 16, 16)
    assert not u.any() and not v.any()
    prior = AdvectionDiffusion(grid, kappa=100.0, velocity=f)
    diffusion = AdvectionDiffusion(grid, kappa=100.0)
    y = past[:, -1]
    assert torch.allclose(prior(None, y), diffusion(None, y))


def test_a_uniform_estimate_transports_like_a_constant_velocity():
    """Plugged in through ``velocity``, the estimator drives the unchanged prior: a head giving
    a uniform (u, v) forecasts exactly what ConstantVelocity(u, v) does."""
    grid, f = box(16), estimator()
    with torch.no_grad():
        f.head.bias.copy_(torch.tensor([0.4, -0.2]) / f.speed)
    past = torch.randn(2, 3, 1, 16, 16)
    t = torch.arange(4) * 3600.0
    observed_t, observed = observe_past(
        HybridField(AdvectionDiffusion(grid, 100.0, f)),
        grid,
        t.expand(2, 4),
        torch.cat((past, past[:, :1]), 1),
    )
    assert observed.shape == (2, 2, 1, 16, 16) and torch.equal(observed_t[0], t[:2])
    flow = AdvectionDiffusion(grid, 100.0, velocity=f)
    const = AdvectionDiffusion(grid, 100.0, velocity=ConstantVelocity(0.4, -0.2))
    got = rollout(flow, past[:, -1], t, method="rk4")
    want = rollout(const, past[:, -1], t, method="rk4")
    assert torch.allclose(got, want, atol=1e-6)


@pytest.mark.parametrize("normal", [0.0, 0.1])
def test_estimate_ignores_the_tracer_units_and_offset(normal):
    grid, f = box(16), estimator(normal_flow=normal)
    with torch.no_grad():
        f.head.weight.normal_()
    past = torch.randn(2, 3, 1, 16, 16)
    f.observe(past, grid)
    u, v = f()
    f.observe(273.15 + 5.0 * past, grid)
    assert torch.allclose(f()[0], u, atol=1e-4) and torch.allclose(f()[1], v, atol=1e-4)


@pytest.mark.parametrize("normal", [0.0, 0.1])
def test_estimate_commutes_with_periodic_shifts_and_vanishes_on_land(normal):
    f = estimator(normal_flow=normal)
    with torch.no_grad():
        f.head.weight.normal_()
        f.head.bias.fill_(0.1)
    past = torch.randn(1, 3, 1, 16, 16)
    f.observe(past, box(16))
    u = f()[0]
    f.observe(past.roll((4, 8), dims=(-2, -1)), box(16))  # shifts by multiples of 2**levels
    assert torch.allclose(f()[0], u.roll((4, 8), dims=(-2, -1)), atol=1e-5)
    active = torch.ones(16, 16, dtype=torch.bool)
    active[5:9, 3:7] = False
    land = Grid.regular_box(16, 16, L / 16, periodic=(False, True), active=active.numpy())
    f.observe(past, land)
    assert not f()[0][..., ~active].any() and f()[0][..., active].abs().min() > 0


def test_estimator_gets_gradients_and_its_penalty_reaches_the_loss():
    grid = box(16)
    f = estimator(divergence=1.0, smoothness=1.0, magnitude=1.0)
    with torch.no_grad():
        f.head.weight.normal_(std=0.1)
    field = HybridField(AdvectionDiffusion(grid, 100.0, velocity=f))
    t = (torch.arange(5) * 3600.0).expand(2, 5)
    t, y = observe_past(field, grid, t, torch.randn(2, 5, 1, 16, 16))
    pred = rollout(field, y[:, 0], t[0], method="rk4")
    loss = (pred - y).square().mean() + flow_penalty(field)
    assert float(flow_penalty(field).detach()) > 0
    loss.backward()
    unused = [n for n, p in field.named_parameters() if p.grad is None or not p.grad.any()]
    assert unused == []


def test_observe_past_leaves_other_fields_alone_and_needs_long_enough_windows():
    grid = box(16)
    t, y = torch.zeros(2, 4), torch.zeros(2, 4, 1, 16, 16)
    plain = HybridField(AdvectionDiffusion(grid, 100.0))
    assert observe_past(plain, grid, t, y)[1] is y
    assert flow_penalty(plain) == 0.0
    with pytest.raises(ValueError, match="at least 4 frames"):
        observe_past(
            HybridField(AdvectionDiffusion(grid, 100.0, estimator())), grid, t[:, :3], y[:, :3]
        )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"frames": 0}, "frames must be positive"),
        ({"speed": 0.0}, "speed must be positive"),
        ({"smoothness": -1.0}, "smoothness weight must be non-negative"),
        ({"levels": -1}, "levels must be non-negative"),
        ({"normal_flow": -0.1}, "normal_flow must be non-negative"),
    ],
)
def test_bad_estimator_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FlowEstimator(**kwargs)


def test_estimator_errors_name_what_was_expected():
    f = estimator()
    with pytest.raises(ValueError, match="not seen any past frames"):
        f()
    with pytest.raises(ValueError, match=r"\[B, 3, 1, 16, 16\]"):
        f.observe(torch.zeros(1, 2, 1, 16, 16), box(16))
    with pytest.raises(ValueError, match="divisible by 4"):
        f.observe(torch.zeros(1, 3, 1, 18, 18), box(18))
    with pytest.raises(ValueError, match="needs the data's grid"):
        f.observe(torch.zeros(1, 3, 1, 16, 16), None)


def test_estimator_on_a_latlon_band_with_land():
    """A lat-lon band (walls north and south, periodic in longitude) with land: the flow is
    zero on land, and the regularisers are finite with the sphere's spacings."""
    lat, lon = np.arange(-18.75, 20, 2.5), np.arange(0, 360, 360 / 32)
    active = np.ones((16, 32), bool)
    active[6:9, 10:14] = False
    grid = Grid.latlon(lat, lon, active=active)
    f = estimator(divergence=1.0, smoothness=1.0, magnitude=1.0)
    with torch.no_grad():
        f.head.weight.normal_()
    f.observe(torch.randn(2, 3, 1, 16, 32), grid)
    u, v = f()
    assert u.shape == (2, 1, 16, 32) and not u[..., ~torch.from_numpy(active)].any()
    assert torch.isfinite(f.penalty()) and float(f.penalty().detach()) > 0
