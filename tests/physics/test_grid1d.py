"""One-dimensional grids (a line in metres, a longitude circle) and their operators, against known
answers: convergence orders, the semi-discrete solution of a Fourier mode, conservation."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch

from hybrid.dynamics import rollout
from hybrid.physics import operators
from hybrid.physics.advection_diffusion import (
    AdvectionDiffusion,
    ConstantVelocity,
    VelocityField,
    line_fourier_mode,
)
from hybrid.physics.grid import EARTH_RADIUS, Grid

LENGTH = 2 * math.pi * 1e5  # m: a periodic line on which sin(x/1e5) is one wave


@pytest.fixture(autouse=True)
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _line(n: int) -> tuple[Grid, torch.Tensor]:
    grid = Grid.regular_line(n, LENGTH / n)
    return grid, torch.arange(n) * (LENGTH / n)


# --- geometry ---------------------------------------------------------------------------------


def test_a_line_has_one_axis_cells_of_its_spacing_and_unit_faces():
    grid = Grid.regular_line(10, 250.0, periodic=False)
    assert (grid.ndim, grid.shape, grid.periodic, grid.kind) == (1, (10,), (False,), "box")
    assert torch.allclose(grid.area, torch.full((10,), 250.0))
    assert torch.allclose(grid.w_east[:-1], torch.full((9,), 1 / 250.0))
    assert grid.open_east[-1] == 0 and grid.min_spacing() == 250.0
    assert not hasattr(grid, "dy_north")


def test_a_longitude_circle_has_cells_of_length_r_cos_lat_dlon_and_wraps():
    lon = np.arange(144) * 2.5
    grid = Grid.latlon(60.0, lon)
    assert (grid.ndim, grid.kind, grid.periodic) == (1, "latlon", (True,))
    want = EARTH_RADIUS * math.cos(math.radians(60)) * math.radians(2.5)
    assert torch.allclose(grid.dx_east, torch.full((144,), want))
    assert float(grid.area.sum()) == pytest.approx(2 * math.pi * EARTH_RADIUS * 0.5, rel=1e-12)
    assert Grid.latlon(0.0, lon[:40]).periodic == (False,)  # an arc: walls at its ends


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: Grid.latlon(90.0, np.arange(10.0)), "latitude in \\(-90, 90\\)"),
        (lambda: Grid.box(np.arange(5.0), periodic=(True, True)), "one axis"),
        (lambda: Grid.box(np.arange(5.0), active=np.ones((5, 5), bool)), "grid shape"),
        (lambda: Grid.regular_line(1, 1.0), "at least 2"),
    ],
)
def test_bad_1d_grids_are_refused_with_one_message(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_a_1d_grid_comes_back_from_its_description_and_a_weights_only_checkpoint():
    active = np.ones(36, bool)
    active[5:9] = False
    grid = Grid.latlon(-10.0, np.arange(36) * 10.0, active=active)
    buffer = io.BytesIO()
    torch.save({"grid": grid.description(), "state": grid.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    back = Grid.from_description(saved["grid"])
    back.load_state_dict(saved["state"])
    assert (back.ndim, back.shape, back.periodic, back.kind) == (1, (36,), (True,), "latlon")
    for name, value in grid.state_dict().items():
        assert torch.equal(back.get_buffer(name), value), name
    assert back.min_spacing() == grid.min_spacing()


# --- operators: order of accuracy --------------------------------------------------------------

# name: (operator on (f, u, grid), exact on x), f = sin(x/s) + cos(2x/s)/2, u = 1 + sin(x/s)/2
SMOOTH = {
    "gradient": (
        lambda f, u, g: operators.gradient(f, g)[0],
        lambda x, s: (torch.cos(x / s) - torch.sin(2 * x / s)) / s,
    ),
    "laplacian": (
        lambda f, u, g: operators.laplacian(f, g),
        lambda x, s: (-torch.sin(x / s) - 2 * torch.cos(2 * x / s)) / s**2,
    ),
    "divergence": (
        lambda f, u, g: operators.divergence(u, g),
        lambda x, s: 0.5 * torch.cos(x / s) / s,
    ),
    "advection_centred": (
        lambda f, u, g: operators.advection_centred(f, u, g),
        lambda x, s: (
            -(
                0.5 * torch.cos(x / s) / s * (torch.sin(x / s) + 0.5 * torch.cos(2 * x / s))
                + (1 + 0.5 * torch.sin(x / s)) * (torch.cos(x / s) - torch.sin(2 * x / s)) / s
            )
        ),
    ),
}


def _error(name: str, n: int) -> float:
    grid, x = _line(n)
    s = 1e5
    f, u = torch.sin(x / s) + 0.5 * torch.cos(2 * x / s), 1 + 0.5 * torch.sin(x / s)
    op, exact = SMOOTH[name]
    return float((op(f, u, grid) - exact(x, s)).abs().max() / exact(x, s).abs().max())


@pytest.mark.parametrize("name", sorted(SMOOTH))
def test_1d_operators_converge_at_second_order(name):
    errors = [_error(name, n) for n in (32, 64, 128)]
    slopes = np.diff(np.log(errors)) / np.log(0.5)
    assert slopes == pytest.approx([2.0, 2.0], abs=0.05), errors


def test_upwind_advection_on_a_line_converges_at_first_order():
    def error(n: int) -> float:
        grid, x = _line(n)
        f = torch.sin(x / 1e5)
        got = operators.advection_upwind(f, torch.tensor(2.0), grid)
        return float((got + 2 * torch.cos(x / 1e5) / 1e5).abs().max() * 1e5)

    slopes = np.diff(np.log([error(n) for n in (64, 128, 256)])) / np.log(0.5)
    assert slopes == pytest.approx([1.0, 1.0], abs=0.05)


def test_a_vector_with_the_wrong_number_of_components_is_refused():
    grid, x = _line(16)
    with pytest.raises(ValueError, match="one component per grid axis.*2 components for a 1-D"):
        operators.divergence(x, x, grid)


# --- advection-diffusion on a line: the exact semi-discrete solution ----------------------------


@pytest.mark.parametrize("scheme_k", [1, 5, 12])
def test_a_fourier_mode_moves_and_decays_as_the_semi_discrete_dispersion_relation_says(scheme_k):
    """``sin(kx)`` under centred transport: phase speed ``u sin(kΔ)/(kΔ)``, decay ``κ K²`` with
    ``K = 2 sin(kΔ/2)/Δ``; dopri5 at 1e-11 leaves only the scheme's own (exact) answer."""
    n, u, kappa = 48, 3.0, 2e3
    grid, x = _line(n)
    k, dx = scheme_k / 1e5, LENGTH / n
    prior = AdvectionDiffusion(grid, kappa=kappa, velocity=ConstantVelocity(u, v=None))
    t = torch.tensor([0.0, 2e4, 6e4])
    with torch.no_grad():
        y = rollout(prior, torch.sin(k * x)[None, None], t, method="dopri5", rtol=1e-11, atol=1e-13)
    for i, ti in enumerate(t.tolist()):
        exact = line_fourier_mode(x, ti, k=k, u=u, kappa=kappa, dx=dx)
        assert torch.allclose(y[0, i, 0], exact, atol=1e-9), (
            i,
            float((y[0, i, 0] - exact).abs().max()),
        )
    # ... and that answer is not the PDE's for short waves: the test can tell them apart
    pde = line_fourier_mode(x, 6e4, k=k, u=u, kappa=kappa)
    assert float((y[0, -1, 0] - pde).abs().max()) > 1e-6


def test_the_semi_discrete_solution_tends_to_the_pde_at_second_order():
    def gap(n: int) -> float:
        x = torch.arange(n) * (LENGTH / n)
        a = line_fourier_mode(x, 5e4, k=3e-5, u=3.0, kappa=2e3, dx=LENGTH / n)
        return float((a - line_fourier_mode(x, 5e4, k=3e-5, u=3.0, kappa=2e3)).abs().max())

    slopes = np.diff(np.log([gap(n) for n in (64, 128, 256)])) / np.log(0.5)
    assert slopes == pytest.approx([2.0, 2.0], abs=0.05)


@pytest.mark.parametrize("scheme", ["centred", "upwind"])
def test_periodic_and_walled_transport_on_a_line_conserve_the_mean(scheme):
    rng = np.random.default_rng(0)
    active = np.ones(40, bool)
    active[10:14] = False  # an island: walls on both sides
    for grid in (
        Grid.latlon(5.0, np.arange(40) * 9.0),
        Grid.latlon(5.0, np.arange(40) * 9.0, active=active),
    ):
        u = torch.as_tensor(rng.normal(5, 2, 40))
        prior = AdvectionDiffusion(grid, 1e5, VelocityField(u), scheme=scheme)
        c = torch.as_tensor(rng.random((3, 1, 40))) * grid.active
        with torch.no_grad():
            y = rollout(prior, c, torch.linspace(0, 5 * 86400, 6), method="rk4")
        mass = (y * grid.area).sum(-1)  # [3, 6, 1]
        assert torch.allclose(mass, mass[:, :1], rtol=1e-12)
        assert torch.all(y[..., grid.active == 0] == 0)  # land keeps no tracer


def test_a_1d_prior_refuses_a_two_component_velocity():
    grid, _ = _line(8)
    with pytest.raises(ValueError, match="2 components for a 1-D grid"):
        AdvectionDiffusion(grid, velocity=ConstantVelocity(1.0, 0.0))
    prior = AdvectionDiffusion(grid, kappa=100.0, velocity=ConstantVelocity(2.0, v=None))
    assert prior.stable_dt() == pytest.approx(
        2 / (4 * 100.0 / (LENGTH / 8) ** 2 + 2 / (LENGTH / 8))
    )


# --- padding on a line: the networks' halo -----------------------------------------------------


@pytest.mark.parametrize("periodic", [True, False])
def test_1d_padding_copies_across_the_seam_and_its_gradients_are_its_adjoint(periodic):
    f = torch.arange(6.0).view(1, 1, 6).requires_grad_()
    out = operators.pad(f, (periodic,), 2)
    want = [4, 5, 0, 1, 2, 3, 4, 5, 0, 1] if periodic else [0, 0, 0, 1, 2, 3, 4, 5, 0, 0]
    assert out[0, 0].tolist() == want
    assert torch.autograd.gradcheck(lambda z: operators.pad(z, (periodic,), 2), (f,))
    assert torch.autograd.gradcheck(
        lambda z: operators.pad(z, (periodic,), 2),
        (f,),
        check_forward_ad=True,
        check_backward_ad=False,
    )


def test_the_2d_only_priors_refuse_a_line_with_one_message():
    from hybrid.physics.moving_flow import MovingFlowTracer
    from hybrid.physics.shallow_water import ShallowWater

    grid, _ = _line(8)
    for build in (lambda: ShallowWater(grid), lambda: MovingFlowTracer(grid)):
        with pytest.raises(ValueError, match=r"needs a 2-D grid, got shape \(8,\)"):
            build()
