"""Shallow water against known answers: geostrophic balance, wave speed, mass, gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.autograd import gradcheck
from torch.func import functional_call

from hybrid.dynamics import rollout
from hybrid.physics.grid import Grid
from hybrid.physics.shallow_water import (
    BetaPlane,
    FPlane,
    ShallowWater,
    SphereCoriolis,
    geostrophic_velocity,
    gravity_wave_speed,
    total_mass,
)

G, H = 9.81, 100.0


def periodic_box() -> ShallowWater:
    return ShallowWater(Grid.regular_box(16, 12, 1e4), G, H, coriolis=FPlane(1e-4))


def walled_box_with_island() -> ShallowWater:
    active = np.ones((12, 16), dtype=bool)
    active[4:7, 5:9] = False
    grid = Grid.regular_box(16, 12, 1e4, periodic=False, active=active)
    return ShallowWater(grid, G, H, r=1e-5, coriolis=BetaPlane(1e-4, 1.6e-11))


def regional_latlon_with_land() -> ShallowWater:
    lat, lon = np.arange(20.0, 52.0, 2.0), np.arange(0.0, 40.0, 2.0)
    active = np.ones((lat.size, lon.size), dtype=bool)
    active[5:9, 3:6] = active[-3:, -4:] = False
    grid = Grid.latlon(lat, lon, active=active)
    return ShallowWater(grid, G, H, r=1e-5, coriolis=SphereCoriolis())


GEOMETRIES = [periodic_box, walled_box_with_island, regional_latlon_with_land]


def smooth_state(grid: Grid, seed: int = 0) -> torch.Tensor:
    """``[1, 3, ny, nx]``: η ≈ 0.1 ± 0.05 m and u, v ≈ ±0.1 m/s, smoothed by box averages."""
    f = torch.randn(3, *grid.shape, generator=torch.Generator().manual_seed(seed))
    for _ in range(4):
        f = (f + sum(torch.roll(f, s, d) for s in (1, -1) for d in (-1, -2))) / 5
    f = f / f.abs().amax(dim=(-2, -1), keepdim=True)
    scale = torch.tensor([0.05, 0.1, 0.1])[:, None, None]
    offset = torch.tensor([0.1, 0.0, 0.0])[:, None, None]
    return ((offset + scale * f) * grid.active)[None]


@pytest.mark.parametrize("coriolis", [lambda: FPlane(1e-4), lambda: BetaPlane(1e-4, 1e-11)])
def test_geostrophic_balance_is_steady(float64, coriolis):
    grid = Grid.regular_box(8, 32, 1e4)
    model = ShallowWater(grid, G, H, coriolis=coriolis())
    y = torch.arange(32.0)[:, None].expand(32, 8) * 1e4
    eta = 0.1 * torch.sin(2 * math.pi * y / (32 * 1e4))
    u, v = geostrophic_velocity(eta, grid, G, model.coriolis(grid))
    state = torch.stack((eta, u, v))[None]  # [1, 3, ny, nx]
    with torch.no_grad():
        dydt = model(torch.tensor(0.0), state)
        term = G * eta.diff(dim=0).abs().max() / 1e4  # size of the pressure gradient force
        assert dydt.abs().max() < 1e-13 * term
        t = torch.tensor([0.0, 200 * model.stable_dt()])
        end = rollout(model, state, t, method="rk4")[:, -1]
    assert (end - state).abs().max() < 1e-12 * state.abs().max()


@pytest.mark.parametrize("axis", ["x", "y"])
@pytest.mark.parametrize("mode", [1, 3])
def test_gravity_waves_travel_at_sqrt_gh(float64, axis, mode):
    n, dx = 128, 1e4
    grid = Grid.regular_box(n, 4, dx) if axis == "x" else Grid.regular_box(4, n, dx)
    model = ShallowWater(grid, G, H)
    c, k = gravity_wave_speed(G, H), 2 * math.pi * mode / (n * dx)
    s = torch.arange(n) * dx
    eta = 1e-3 * torch.sin(k * s)  # η/H = 1e-5: linear regime
    eta = eta.expand(4, n) if axis == "x" else eta[:, None].expand(n, 4)
    speed = c / H * eta  # right-going (or north-going) wave
    zero = torch.zeros_like(eta)
    state = torch.stack((eta, speed, zero) if axis == "x" else (eta, zero, speed))[None]
    T = 0.3 * n * dx / (mode * c)  # phase shift 0.6π: no unwrapping ambiguity
    with torch.no_grad():
        end = rollout(model, state, torch.tensor([0.0, T]), method="rk4")[0, -1, 0]
    avg = -2 if axis == "x" else -1  # average across the wave, FFT along it
    ratio = torch.fft.fft(end.mean(avg))[mode] / torch.fft.fft(eta.mean(avg))[mode]
    c_fit = -float(torch.angle(ratio)) / (k * T)
    c_discrete = c * math.sin(k * dx) / (k * dx)  # dispersion of centred differences
    assert abs(c_fit / c - 1) < 1e-2
    assert abs(c_fit / c_discrete - 1) < 1e-4
    assert abs(float(ratio.abs()) - 1) < 1e-4  # no spurious damping of a resolved wave


@pytest.mark.parametrize("make", GEOMETRIES)
def test_mass_is_conserved_to_round_off(float64, make):
    model = make()
    state = smooth_state(model.grid)
    with torch.no_grad():
        t = torch.tensor([0.0, 20 * model.stable_dt()])
        eta = rollout(model, state, t, method="rk4")[:, :, 0]  # [B, T, ny, nx]
    mass = total_mass(eta, model.grid)
    assert torch.isfinite(eta).all()
    assert abs(float(mass[0, 1] / mass[0, 0]) - 1) < 1e-12
    assert (eta[:, -1] - eta[:, 0]).abs().max() > 1e-4  # the state did move


def tiny_box() -> ShallowWater:
    active = np.ones((6, 5), dtype=bool)
    active[2, 2] = False
    grid = Grid.regular_box(5, 6, 1.0, periodic=(False, True), active=active)
    return ShallowWater(grid, g=2.0, H=1.5, r=0.1, coriolis=BetaPlane(0.5, 0.2))


def tiny_sphere() -> ShallowWater:
    grid = Grid.latlon(np.linspace(-50, 50, 6), np.arange(0, 360, 72), radius=3.0)
    return ShallowWater(grid, g=2.0, H=1.5, r=0.1, coriolis=SphereCoriolis(0.7))


@pytest.mark.parametrize("make", [tiny_box, tiny_sphere])
def test_gradcheck_wrt_state_and_parameters(float64, make):
    model = make()
    names = [name for name, _ in model.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for p in model.parameters())
    state = (0.3 * torch.randn(3, *model.grid.shape)).requires_grad_()

    def f(y, *ps):
        return functional_call(model, dict(zip(names, ps, strict=True)), (torch.tensor(0.0), y))

    assert {"log_g", "log_H", "scaled_r"} < set(names)
    assert gradcheck(f, (state, *params))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"g": -9.81}, "g must be positive, got -9.81"),
        ({"H": 0.0}, "H must be positive, got 0.0"),
        ({"r": -0.1}, "r must be non-negative, got -0.1"),
    ],
)
def test_invalid_parameters_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ShallowWater(Grid.regular_box(4, 4, 1.0), **kwargs)


@pytest.mark.parametrize("make", GEOMETRIES)
def test_rest_state_is_steady(float64, make):
    model = make()
    zero = torch.zeros(2, 3, *model.grid.shape)
    assert torch.equal(model(torch.tensor(0.0), zero), zero)


def test_stable_dt_is_finite_and_shrinks_with_the_grid(float64):
    dts = [
        ShallowWater(Grid.regular_box(8, 8, dx), G, H, coriolis=FPlane()).stable_dt()
        for dx in (4e4, 2e4, 1e4)
    ]
    assert all(0 < dt < math.inf for dt in dts)
    assert dts[0] > dts[1] > dts[2]
    assert dts[-1] == pytest.approx(2 / (2 * math.sqrt(G * H) / 1e4 + 1e-4))


def test_stable_dt_shrinks_towards_the_poles(float64):
    def dt(lat_max: float) -> float:
        grid = Grid.latlon(np.arange(-lat_max, lat_max + 1, 2.0), np.arange(0.0, 360.0, 2.0))
        return ShallowWater(grid, G, H, coriolis=SphereCoriolis()).stable_dt()

    spacing = 6.371e6 * math.radians(2.0) * math.cos(math.radians(80.0))
    assert dt(80.0) < dt(60.0) / 2
    assert dt(80.0) == pytest.approx(
        2 / (2 * math.sqrt(G * H) / spacing + 2 * 7.292e-5 * math.sin(math.radians(80)))
    )
