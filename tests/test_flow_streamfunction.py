"""The flow from a streamfunction (``hybrid.flow.streamfunction_flow``, ``FlowEstimator(output=
"streamfunction")``): the closed form of the centred difference on a periodic box, second-order
convergence on a lat-lon band, zero discrete divergence where every zonal face is open, zero
velocity on land, and 1-D grids refused."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hybrid.flow import streamfunction_flow
from hybrid.models.flow import FlowEstimator
from hybrid.physics import operators
from hybrid.physics.grid import Grid

LAT_S, LAT_N = -30.0, 30.0  # band edges (degrees)


def periodic_box(n: int) -> tuple[Grid, torch.Tensor, torch.Tensor]:
    """A periodic box of side 2π (m) and its cell centres ``x, y``: ``[n, n]`` each."""
    s = torch.arange(n) * (2 * math.pi / n)
    return Grid.regular_box(n, n, 2 * math.pi / n), s[None, :].expand(n, n), s[:, None].expand(n, n)


def test_sin_cos_gives_the_centred_difference_closed_form_converging_at_order_2(float64):
    """``ψ = sin x cos y``: exact ``u = -∂ψ/∂y = sin x sin y``, ``v = ∂ψ/∂x = cos x cos y``; the
    centred difference of a sine is the sine times ``sin h / h``, so the largest error is
    ``1 - sin h / h ≈ h²/6`` exactly."""
    errors, sizes = [], [16, 32, 64, 128]
    for n in sizes:
        grid, x, y = periodic_box(n)
        u, v = streamfunction_flow(torch.sin(x) * torch.cos(y), grid)
        h = 2 * math.pi / n
        err_u = (u - torch.sin(x) * torch.sin(y)).abs().max()
        err_v = (v - torch.cos(x) * torch.cos(y)).abs().max()
        assert float(err_u) == pytest.approx(1 - math.sin(h) / h, rel=1e-9)
        assert float(err_v) == pytest.approx(1 - math.sin(h) / h, rel=1e-9)
        errors.append(float(err_u))
    slope = np.polyfit(np.log(sizes), np.log(errors), 1)[0]
    assert abs(slope + 2) < 0.02


def band(n: int, descending: bool = False) -> Grid:
    """A lat-lon band ``LAT_S..LAT_N`` of ``n/2 x n`` cells, closed in longitude."""
    dphi = (LAT_N - LAT_S) / (n // 2)
    lat = LAT_S + dphi * (np.arange(n // 2) + 0.5)
    return Grid.latlon(lat[::-1].copy() if descending else lat, np.arange(n) * 360 / n)


def test_latlon_band_converges_at_order_2_to_the_metric_form(float64):
    """``ψ = R U sin λ sin(π s)``, ``s = (φ - φ_s)/(φ_n - φ_s)`` (zero on both walls):
    ``u = -(1/R) ∂ψ/∂φ = -U sin λ cos(π s) π/(φ_n - φ_s)``, ``v = (1/(R cos φ)) ∂ψ/∂λ = U
    cos λ sin(π s) / cos φ``. The largest error falls as ``h²`` off the walls, as ``h`` in the
    rows next to them (their ghost ``P`` is the wall's 0)."""
    errors, walls, sizes, speed = [], [], [32, 64, 128, 256], 0.3
    width = math.radians(LAT_N - LAT_S)
    for n in sizes:
        grid = band(n)
        phi = torch.asin(grid.sin_lat)
        lam = torch.arange(n) * (2 * math.pi / n)
        s = (phi - math.radians(LAT_S)) / width
        psi = grid.radius * speed * torch.sin(lam) * torch.sin(math.pi * s)
        u, v = streamfunction_flow(psi, grid)
        u_true = -speed * torch.sin(lam) * torch.cos(math.pi * s) * math.pi / width
        v_true = speed * torch.cos(lam) * torch.sin(math.pi * s) / torch.cos(phi)
        err = torch.maximum((u - u_true).abs(), (v - v_true).abs())  # [ny, nx]
        errors.append(float(err[1:-1].max()))
        walls.append(float(err[[0, -1]].max()))
    slope = np.polyfit(np.log(sizes), np.log(errors), 1)[0]
    assert abs(slope + 2) < 0.1 and errors[-1] < 1e-3 * speed
    slope = np.polyfit(np.log(sizes), np.log(walls), 1)[0]
    assert abs(slope + 1) < 0.25 and walls[-1] < 1e-2 * speed


@pytest.mark.parametrize(
    "grid",
    [
        Grid.regular_box(24, 16, 1e4),
        Grid.regular_box(24, 16, 1e4, 2e4, periodic=(False, True)),  # walls north and south
        band(32),
        band(32, descending=True),
    ],
    ids=["periodic box", "walls north and south", "band", "band, latitude descending"],
)
def test_divergence_is_zero_to_round_off_where_every_zonal_face_is_open(grid, float64):
    torch.manual_seed(0)
    psi = 1e5 * torch.randn(3, *grid.shape)  # m²/s: speeds of ~10 m/s over 10 km cells
    u, v = streamfunction_flow(psi, grid.double())
    scale = float(torch.hypot(u, v).max()) / grid.min_spacing()  # s⁻¹: a term of the sum
    assert float(operators.divergence(u, v, grid.double()).abs().max()) < 1e-13 * scale
    assert scale > 0


def test_land_gets_zero_velocity_and_divergence_is_zero_away_from_it(float64):
    """Next to land (its 3x3 neighbourhood) a cell's divergence is not zero: the construction
    needs every zonal face open; everywhere else it is, to round-off."""
    active = np.ones((16, 32), bool)
    active[6:9, 10:14] = False
    grid = Grid.latlon(np.arange(-18.75, 20, 2.5), np.arange(0, 360, 360 / 32), active=active)
    torch.manual_seed(0)
    u, v = streamfunction_flow(1e5 * torch.randn(2, 16, 32), grid.double())
    land = torch.from_numpy(~active)
    assert not u[..., land].any() and not v[..., land].any()
    near = torch.nn.functional.max_pool2d(land[None].double(), 3, 1, 1)[0] > 0  # land's ring
    div = operators.divergence(u, v, grid.double()).abs()
    scale = float(torch.hypot(u, v).max()) / grid.min_spacing()
    assert float(div[..., ~near].max()) < 1e-13 * scale
    assert float(div[..., near & ~land].max()) > 1e-3 * scale  # not exact there (documented)


def test_a_line_has_no_streamfunction():
    with pytest.raises(ValueError, match="needs a 2-D grid"):
        streamfunction_flow(torch.zeros(8), Grid.regular_line(8, 1.0))
    with pytest.raises(ValueError, match="no streamfunction; use output='velocity'"):
        FlowEstimator(dims=1, output="streamfunction")
    with pytest.raises(ValueError, match="no streamfunction; use output='velocity'"):
        FlowEstimator(dims=1, output="both")
    with pytest.raises(ValueError, match="must be one of"):
        FlowEstimator(output="psi")
    with pytest.raises(ValueError, match="smooths a streamfunction only"):
        FlowEstimator(smoothing=1)


def estimator(**kwargs: object) -> FlowEstimator:
    torch.manual_seed(0)
    kwargs = {
        "frames": 3,
        "hidden": 4,
        "levels": 2,
        "speed": 0.5,
        "output": "streamfunction",
        **kwargs,
    }
    return FlowEstimator(**kwargs)


@pytest.mark.parametrize("passes", [0, 2])
def test_estimator_output_unit_is_the_streamfunction_of_speed_U_at_the_longest_wave(passes):
    """A network output ``sin(2π x / L)`` (``L = n Δ``, the box) is ``ψ = U L/2π sin(2π x/L)``:
    ``v = U cos(2π x / L) sin h / h`` with ``h = 2π/n``, and ``u = 0``; one head channel. Each
    pass of the binomial filter multiplies it by ``cos²(h/2)``."""
    n, f = 16, estimator(smoothing=passes)
    assert f.head.out_channels == 1
    x = torch.arange(n) * (2 * math.pi / n)
    f.net = lambda z, periodic: torch.sin(x).expand(2, 1, n, n)
    f.observe(torch.randn(2, 3, 1, n, n), Grid.regular_box(n, n, 1e4))
    u, v = f()
    h = 2 * math.pi / n
    assert u.shape == v.shape == (2, 1, n, n) and float(u.abs().max()) < 1e-7
    gain = math.sin(h) / h * math.cos(h / 2) ** (2 * passes)
    assert torch.allclose(v, f.speed * gain * torch.cos(x) * torch.ones_like(v), atol=1e-6)


@pytest.mark.parametrize("passes", [0, 2])
def test_estimated_flow_is_divergence_free_shift_equivariant_and_zero_on_land(passes):
    f = estimator(divergence=1.0, smoothing=passes)
    with torch.no_grad():
        f.head.weight.normal_()
    grid, past = Grid.regular_box(16, 16, 1e4), torch.randn(1, 3, 1, 16, 16)
    f.observe(past, grid)
    u, v = f()
    speed = float(torch.hypot(u, v).detach().max())
    div = operators.divergence(u, v, grid).abs().max()
    assert speed > 0 and float(div.detach()) < 1e-5 * speed / 1e4  # float32 round-off
    assert float(f.penalty().detach()) < 1e-9  # so the divergence penalty is idle
    f.observe(past.roll((4, 8), dims=(-2, -1)), grid)  # shifts by multiples of 2**levels
    assert torch.allclose(f()[0], u.roll((4, 8), dims=(-2, -1)), atol=1e-5 * speed)
    active = torch.ones(16, 16, dtype=torch.bool)
    active[5:9, 3:7] = False
    land = Grid.regular_box(16, 16, 1e4, periodic=(False, True), active=active.numpy())
    f.observe(past, land)
    assert not f()[0][..., ~active].any() and not f()[1][..., ~active].any()
    assert f()[0][..., active].abs().max() > 0


def test_both_adds_the_velocity_channels_to_the_curl():
    """``output="both"``: channel 0 is ``ψ`` (as above), channels 1-2 a velocity in units of
    ``U`` added to its curl: ``sin(2π x/L)`` and ``(0.2, -0.4)`` give ``v = U (cos(2π x/L) sin h
    / h - 0.4)``, ``u = 0.2 U``; three head channels."""
    n, f = 16, estimator(output="both")
    assert f.head.out_channels == 3
    x = torch.arange(n) * (2 * math.pi / n)
    psi = torch.sin(x).expand(2, 1, n, n)
    f.net = lambda z, periodic: torch.cat((psi, 0.2 + 0 * psi, -0.4 + 0 * psi), 1)
    f.observe(torch.randn(2, 3, 1, n, n), Grid.regular_box(n, n, 1e4))
    u, v = f()
    h = 2 * math.pi / n
    assert torch.allclose(u, torch.full_like(u, 0.2 * f.speed), atol=1e-6)
    want = f.speed * (math.sin(h) / h * torch.cos(x) - 0.4) * torch.ones_like(v)
    assert torch.allclose(v, want, atol=1e-6)
