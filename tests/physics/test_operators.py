"""Finite-volume operators: convergence order against analytic derivatives, conservation, masks,
shift equivariance and monotonicity of upwind advection."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hybrid.dynamics import rollout
from hybrid.physics import operators
from hybrid.physics.advection_diffusion import AdvectionDiffusion, VelocityField
from hybrid.physics.grid import EARTH_RADIUS, Grid

# --- analytic operators in orthogonal coordinates (a, b) with scale factors (h_a, h_b) -----------
# box: (a, b) = (x, y), h = (1, 1); sphere: (a, b) = (λ, φ), h = (R cos φ, R).


def _d(expr, wrt):
    """Pointwise partial derivative of a pointwise expression (autograd of the sum)."""
    (g,) = torch.autograd.grad(
        expr.sum(), wrt, create_graph=True, allow_unused=True, materialize_grads=True
    )
    return g


class Analytic:
    def __init__(self, a, b, sphere: bool):
        self.a, self.b = a.requires_grad_(), b.requires_grad_()
        one = torch.ones_like(a)
        self.ha = EARTH_RADIUS * torch.cos(self.b) if sphere else one
        self.hb = EARTH_RADIUS * one if sphere else one

    def grad(self, f):
        return _d(f, self.a) / self.ha, _d(f, self.b) / self.hb

    def div(self, u, v):
        return (_d(self.hb * u, self.a) + _d(self.ha * v, self.b)) / (self.ha * self.hb)

    def lap(self, f):
        return self.div(*self.grad(f))


def field_f(a, b):
    return torch.sin(2 * b) * torch.cos(3 * a) + torch.cos(a - b)


def field_u(a, b):
    return 1.0 + 0.5 * torch.sin(3 * a) * torch.cos(b)  # > 0


def field_v(a, b):
    return 0.8 + 0.3 * torch.cos(2 * a) * torch.sin(2 * b)  # > 0


OPERATORS = {  # name: (numerical, exact, order)
    "grad_x": (lambda f, u, v, g: operators.gradient(f, g)[0], lambda f, u, v, A: A.grad(f)[0], 2),
    "grad_y": (lambda f, u, v, g: operators.gradient(f, g)[1], lambda f, u, v, A: A.grad(f)[1], 2),
    "divergence": (
        lambda f, u, v, g: operators.divergence(u, v, g),
        lambda f, u, v, A: A.div(u, v),
        2,
    ),
    "laplacian": (lambda f, u, v, g: operators.laplacian(f, g), lambda f, u, v, A: A.lap(f), 2),
    "advection_centred": (operators.advection_centred, lambda f, u, v, A: -A.div(u * f, v * f), 2),
    "advection_upwind": (operators.advection_upwind, lambda f, u, v, A: -A.div(u * f, v * f), 1),
}


def _box_case(n: int):
    grid = Grid.regular_box(n, n, 2 * math.pi / n)  # periodic [0, 2π)²
    x = torch.arange(n) * (2 * math.pi / n)
    return grid, x[None, :].expand(n, n).clone(), x[:, None].expand(n, n).clone(), False, 0


def _sphere_case(n: int):
    """lat 10..50, lon 0..60 with n x 1.5n cells; compare 2 or more cells away from the walls."""
    lat = 10 + 40 / n * (torch.arange(n) + 0.5)
    lon = 60 / (1.5 * n) * (torch.arange(int(1.5 * n)) + 0.5)
    grid = Grid.latlon(lat.numpy(), lon.numpy())
    phi, lam = torch.meshgrid(torch.deg2rad(lat), torch.deg2rad(lon), indexing="ij")
    return grid, lam.clone(), phi.clone(), True, 2


CASES = {"periodic_box": (_box_case, [16, 32, 64, 128]), "latlon": (_sphere_case, [8, 16, 32, 64])}


def _error(name: str, case: str, n: int) -> tuple[float, float]:
    build, _ = CASES[case]
    grid, a, b, sphere, margin = build(n)
    numerical, exact, _ = OPERATORS[name]
    A = Analytic(a, b, sphere)
    f, u, v = field_f(A.a, A.b), field_u(A.a, A.b), field_v(A.a, A.b)
    want = exact(f, u, v, A).detach()
    got = numerical(f.detach(), u.detach(), v.detach(), grid)
    inner = (slice(margin, n - margin if margin else None),) * 2
    err = (got - want)[inner].abs().max() / want[inner].abs().max()
    return float(err), float(grid.min_spacing())


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("name", list(OPERATORS))
def test_convergence_order(float64, name, case):
    errors, spacings = zip(*(_error(name, case, n) for n in CASES[case][1]), strict=True)
    slope = np.polyfit(np.log(spacings), np.log(errors), 1)[0]
    order = OPERATORS[name][2]
    assert abs(slope - order) < (0.25 if order == 1 else 0.2), (slope, errors)
    assert errors[-1] < (0.1 if order == 1 else 1e-2)  # consistent, not just ordered


# --- conservation, masks and symmetry on several geometries ------------------------------------


def _island() -> np.ndarray:
    active = np.ones((12, 16), dtype=bool)
    active[4:7, 5:9] = False
    active[0, :3] = False
    return active


def _land(ny: int, nx: int) -> np.ndarray:
    active = np.random.default_rng(1).random((ny, nx)) > 0.25
    active[:, 10:14] = False  # a continent cutting the zonal channel
    return active


GEOMETRIES = {
    "periodic_box": lambda: Grid.regular_box(16, 12, 1.0, 0.5),
    "walled_box_with_island": lambda: Grid.regular_box(
        16, 12, 2.0, periodic=False, active=_island()
    ),
    "masked_global_latlon": lambda: Grid.latlon(
        np.arange(-70.0, 71.0, 10.0), np.arange(0.0, 360.0, 10.0), active=_land(15, 36)
    ),
    "masked_regional_latlon_descending": lambda: Grid.latlon(
        np.arange(60.0, 9.0, -5.0), np.arange(-20.0, 40.0, 4.0), active=_land(11, 15)
    ),
}

TENDENCIES = {
    "laplacian": lambda f, u, v, g: operators.laplacian(f, g),
    "divergence": lambda f, u, v, g: operators.divergence(u, v, g),
    "advection_centred": operators.advection_centred,
    "advection_upwind": operators.advection_upwind,
}


def _random_fields(grid: Grid, rng: np.random.Generator):
    shape = grid.shape
    f = torch.tensor(rng.random((3, *shape)))  # [B=3, ny, nx]
    u, v = (torch.tensor(rng.standard_normal(shape)) for _ in range(2))
    return f, u, v


@pytest.mark.parametrize("geometry", list(GEOMETRIES))
@pytest.mark.parametrize("name", list(TENDENCIES))
def test_area_weighted_sum_is_zero(float64, rng, name, geometry):
    grid = GEOMETRIES[geometry]()
    f, u, v = _random_fields(grid, rng)
    out = TENDENCIES[name](f, u, v, grid) * grid.area
    scale = out.abs().sum((-2, -1))
    assert (scale > 0).all()
    assert (out.sum((-2, -1)).abs() / scale).max() < 1e-12


@pytest.mark.parametrize("geometry", [g for g in GEOMETRIES if g != "periodic_box"])
@pytest.mark.parametrize("name", [*TENDENCIES, "grad_x", "grad_y"])
def test_masked_cells_get_zero_tendency_and_do_not_leak(float64, rng, name, geometry):
    grid = GEOMETRIES[geometry]()
    op = TENDENCIES.get(name) or OPERATORS[name][0]
    f, u, v = _random_fields(grid, rng)
    inactive = grid.active == 0
    out = op(f, u, v, grid)
    assert (out[..., inactive] == 0).all()
    assert (out[..., ~inactive] != 0).any()
    # values on inactive cells (land, missing) must not change anything on active cells
    junk = torch.where(inactive, torch.tensor(1e6), 0.0)
    torch.testing.assert_close(op(f + junk, u + junk, v - junk, grid), out, rtol=0, atol=0)


@pytest.mark.parametrize("scheme", ["centred", "upwind"])
def test_rk4_rollout_conserves_tracer_mass_on_masked_latlon(float64, rng, scheme):
    grid = GEOMETRIES["masked_global_latlon"]()
    u, v = (torch.tensor(10 * rng.standard_normal(grid.shape)) for _ in range(2))
    model = AdvectionDiffusion(grid, kappa=1e4, velocity=VelocityField(u, v), scheme=scheme)
    c0 = torch.tensor(rng.random((2, 1, *grid.shape))) * grid.active  # [B, C, ny, nx]
    t = torch.linspace(0, 2 * 86400.0, 3)
    assert model.stable_dt() < 86400 / 2  # the rollout sub-steps
    c = rollout(model, c0, t, method="rk4")  # [B, T, C, ny, nx]
    mass = (c * grid.area).sum((-2, -1))
    assert torch.isfinite(c).all()
    assert ((mass - mass[:, :1]).abs() / mass[:, :1]).max() < 1e-12
    assert (c[:, -1] - c0).abs().max() > 1e-3  # it did move


SHIFTABLE = {
    **TENDENCIES,
    "grad_x": lambda f, u, v, g: operators.gradient(f, g)[0],
    "grad_y": lambda f, u, v, g: operators.gradient(f, g)[1],
}


@pytest.mark.parametrize("name", list(SHIFTABLE))
def test_periodic_shift_equivariance(float64, rng, name):
    grid = GEOMETRIES["periodic_box"]()
    f, u, v = _random_fields(grid, rng)
    op = SHIFTABLE[name]

    def shift(x):
        return torch.roll(x, shifts=(3, -5), dims=(-2, -1))

    torch.testing.assert_close(
        op(shift(f), shift(u), shift(v), grid), shift(op(f, u, v, grid)), rtol=1e-12, atol=1e-13
    )


@pytest.mark.parametrize(("u", "v"), [(1.0, 0.5), (-0.7, 0.3), (0.2, -1.0), (-0.4, -0.4)])
def test_upwind_creates_no_new_extrema(float64, rng, u, v):
    grid = Grid.regular_box(24, 20, 1.0, 0.8)
    c0 = torch.tensor(rng.random(grid.shape))
    u_, v_ = torch.tensor(u), torch.tensor(v)
    dt = 0.9 / (abs(u) / 1.0 + abs(v) / 0.8)  # Courant number 0.9

    def step(c, advect):
        return c + dt * advect(c, u_, v_, grid)

    c = c0
    for _ in range(20):
        c = step(c, operators.advection_upwind)
        assert c.min() >= c0.min() - 1e-14 and c.max() <= c0.max() + 1e-14
    # the test discriminates: centred advection over- and undershoots on the same data
    centred = step(c0, operators.advection_centred)
    assert centred.min() < c0.min() - 1e-3 or centred.max() > c0.max() + 1e-3


# -- fused stencils -------------------------------------------------------------------------


def _pad_by_cat(x, periodic, width):
    """The old padding: circular by ``torch.cat`` of slices, zeros along walls."""
    for axis, wraps in zip((-2, -1), periodic, strict=True):
        if wraps:
            n = x.shape[axis]
            x = torch.cat((x.narrow(axis, n - width, width), x, x.narrow(axis, 0, width)), axis)
        else:
            x = torch.nn.functional.pad(
                x, (width, width, 0, 0) if axis == -1 else (0, 0, width, width)
            )
    return x


@pytest.mark.parametrize("periodic", [(True, True), (True, False), (False, True), (False, False)])
@pytest.mark.parametrize("width", [1, 2])
@pytest.mark.parametrize("channels_last", [False, True])
def test_pad_equals_cat_padding_and_passes_gradcheck(float64, periodic, width, channels_last):
    x = torch.randn(2, 3, 5, 6)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    out = operators.pad(x, periodic, width)
    assert torch.equal(out, _pad_by_cat(x, periodic, width))
    assert out.is_contiguous(memory_format=torch.channels_last) == channels_last
    x.requires_grad_()
    assert torch.autograd.gradcheck(lambda f: operators.pad(f, periodic, width), (x,))


@pytest.mark.parametrize("dx", [1.0, 2 / 32])
def test_laplacian_periodic_equals_the_flux_form_to_rounding(dx):
    grid = Grid.regular_box(16, 16, dx, periodic=True)
    f = torch.rand(3, 2, 16, 16)
    torch.testing.assert_close(
        operators.laplacian_periodic(f, dx),
        operators.laplacian(f, grid),
        rtol=1e-5,
        atol=1e-6 / dx**2,
    )


@pytest.mark.parametrize("shape", [(2, 3, 6, 5), (2, 3, 7)])
def test_laplacian_periodic_is_symmetric_in_its_gradients(float64, shape):
    """``Lᵀ = L``: the backward is the same stencil; gradcheck (reverse) and gradgradcheck, and
    forward-mode AD equals the operator applied to the tangent (it is linear)."""
    f = torch.randn(*shape, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: operators.laplacian_periodic(x, 0.5), (f,))
    assert torch.autograd.gradgradcheck(lambda x: operators.laplacian_periodic(x, 0.5), (f,))
    tangent = torch.randn(*shape)
    _, jvp = torch.func.jvp(
        lambda x: operators.laplacian_periodic(x, 0.5), (f.detach(),), (tangent,)
    )
    torch.testing.assert_close(jvp, operators.laplacian_periodic(tangent, 0.5))


def test_laplacian_periodic_on_a_line_is_the_three_point_stencil(float64):
    f = torch.randn(2, 3, 9)
    want = (f.roll(1, -1) - 2 * f + f.roll(-1, -1)) / 0.3**2
    torch.testing.assert_close(operators.laplacian_periodic(f, 0.3), want)


def test_laplacian_periodic_of_a_fourier_mode_is_its_symbol(float64):
    """``L e^{i k x} = -(4/dx²) sin²(k dx / 2) e^{i k x}`` per axis: the 5-point symbol."""
    n, dx = 16, 0.25
    x = torch.arange(n) * dx
    ky, kx = 2 * math.pi * 3 / (n * dx), 2 * math.pi * 5 / (n * dx)
    f = (torch.cos(ky * x)[:, None] * torch.cos(kx * x)[None, :]).expand(1, 1, n, n)
    symbol = -4 / dx**2 * (math.sin(ky * dx / 2) ** 2 + math.sin(kx * dx / 2) ** 2)
    torch.testing.assert_close(operators.laplacian_periodic(f, dx), symbol * f)
