"""Advection-diffusion prior: exact Fourier modes, Gaussian spreading, gradients, stable steps."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.func import functional_call

from hybrid.dynamics import rollout
from hybrid.physics.advection_diffusion import (
    AdvectionDiffusion,
    ConstantVelocity,
    VelocityField,
    fourier_mode,
    gaussian_variance,
)
from hybrid.physics.grid import Grid

MODE = dict(kx=2 * math.pi, ky=2 * math.pi, u=0.2, v=-0.1, kappa=0.002)  # on the unit box
T_END = 0.5


def _mode_error(n: int, scheme: str) -> float:
    """Relative max error at ``T_END`` of a Fourier mode on an ``n x n`` periodic unit box."""
    grid = Grid.regular_box(n, n, 1.0 / n)
    x = torch.arange(n) / n
    xx, yy = x[None, :], x[:, None]  # broadcast to [ny, nx]
    kw = {k: MODE[k] for k in ("kx", "ky", "u", "v", "kappa")}
    model = AdvectionDiffusion(
        grid, MODE["kappa"], ConstantVelocity(MODE["u"], MODE["v"]), scheme=scheme
    )
    c0 = fourier_mode(xx, yy, 0.0, **kw)[None, None]  # [B=1, C=1, ny, nx]
    with torch.no_grad():  # default sub-steps at the stable step (time error << space error)
        c = rollout(model, c0, torch.tensor([0.0, T_END / 2, T_END]), method="rk4")
    exact = fourier_mode(xx, yy, T_END, **kw)
    return float((c[0, -1, 0] - exact).abs().max() / exact.abs().max())


@pytest.mark.parametrize(("scheme", "order", "tol_64"), [("centred", 2, 1e-3), ("upwind", 1, 0.1)])
def test_fourier_mode_is_advected_and_damped_at_the_exact_rate(float64, scheme, order, tol_64):
    sizes = [16, 32, 64, 128]
    errors = [_mode_error(n, scheme) for n in sizes]
    slope = np.polyfit(np.log(1.0 / np.array(sizes)), np.log(errors), 1)[0]
    assert abs(slope - order) < (0.2 if order == 2 else 0.25), (slope, errors)
    assert errors[2] < tol_64, errors


@pytest.mark.parametrize("kappa", [0.5, 2.0])
def test_gaussian_spreads_at_the_exact_variance(float64, kappa):
    """Pure diffusion: the variance per axis grows as σ0² + 2κt (exact for the discrete Laplacian
    and for rk4, as long as the Gaussian does not reach round the periodic box)."""
    n, dx, sigma0, t_end = 128, 0.25, 1.0, 1.0
    grid = Grid.regular_box(n, n, dx)
    x = (torch.arange(n) - n / 2) * dx  # centred on the box
    r2 = x[None, :] ** 2 + x[:, None] ** 2
    c0 = torch.exp(-r2 / (2 * sigma0**2))[None, None]  # [1, 1, ny, nx]
    model = AdvectionDiffusion(grid, kappa=kappa, velocity=None)
    with torch.no_grad():
        c = rollout(model, c0, torch.linspace(0, t_end, 5), method="rk4")[0, :, 0]  # [T, ny, nx]
    mass = c.sum((-2, -1))
    var_x = (c * x[None, None, :] ** 2).sum((-2, -1)) / mass
    var_y = (c * x[None, :, None] ** 2).sum((-2, -1)) / mass
    t = torch.linspace(0, t_end, 5)
    want = torch.tensor([gaussian_variance(float(s), sigma0, kappa) for s in t])
    torch.testing.assert_close(var_x, want, rtol=1e-8, atol=0)
    torch.testing.assert_close(var_y, want, rtol=1e-8, atol=0)
    torch.testing.assert_close(mass, mass[:1].expand(5), rtol=1e-13, atol=0)
    # the peak drops as σ0²/σ² (2-D), to second order in dx/σ
    peak = c[-1].max() / c[0].max()
    assert float(peak) == pytest.approx(sigma0**2 / float(want[-1]), rel=5e-3)


def _velocity(kind: str, shape: tuple[int, int]):
    if kind == "none":
        return None
    if kind == "constant":
        return ConstantVelocity(0.7, -0.4)
    g = torch.Generator().manual_seed(0)
    u = 0.5 + torch.rand(shape, generator=g)  # away from 0: upwind is smooth there
    v = -0.5 - torch.rand(shape, generator=g)
    return VelocityField(u, v, learnable=True)


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("scheme", ["centred", "upwind"])
@pytest.mark.parametrize("velocity", ["none", "constant", "field"])
def test_gradcheck_state_and_parameters(float64, velocity, scheme, masked):
    active = np.ones((4, 5), dtype=bool)
    active[1, 2] = not masked
    grid = Grid.regular_box(5, 4, 0.5, 0.4, periodic=not masked, active=active)
    model = AdvectionDiffusion(grid, 0.3, _velocity(velocity, grid.shape), scheme=scheme)
    names = [name for name, _ in model.named_parameters()]
    assert names[0] == "log_kappa" and len(names) == {"none": 1}.get(velocity, 3)
    params = [p.detach().clone().requires_grad_() for p in model.parameters()]
    y = torch.randn(2, 2, 4, 5, generator=torch.Generator().manual_seed(1)).requires_grad_()
    t = torch.tensor(0.0)

    def forward(y, *params):
        return functional_call(model, dict(zip(names, params, strict=True)), (t, y))

    assert torch.autograd.gradcheck(forward, (y, *params))


def test_stable_dt_matches_the_stated_limit(float64):
    grid = Grid.regular_box(8, 8, 0.5, 0.25)
    assert AdvectionDiffusion(grid, kappa=0.1).stable_dt() == pytest.approx(2 / (8 * 0.1 / 0.0625))
    with_flow = AdvectionDiffusion(grid, kappa=0.1, velocity=ConstantVelocity(1.0, -2.0))
    assert with_flow.stable_dt() == pytest.approx(2 / (8 * 0.1 / 0.0625 + 3.0 / 0.25))


def _noisy_problem(velocity: bool):
    """Random (checkerboard-rich) initial state: the stiffest modes decide stability."""
    grid = Grid.regular_box(32, 32, 1.0)
    model = AdvectionDiffusion(
        grid, kappa=0.5, velocity=ConstantVelocity(1.5, -1.0) if velocity else None
    )
    c0 = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    return model, c0


@pytest.mark.parametrize("velocity", [False, True])
def test_rk4_at_the_stable_step_stays_bounded(float64, velocity):
    model, c0 = _noisy_problem(velocity)
    dt = model.stable_dt()
    t = torch.arange(201) * dt
    with torch.no_grad():
        c = rollout(model, c0, t, method="rk4")  # [1, T, 1, ny, nx]
    norm = c.square().sum((-3, -2, -1)).sqrt()[0]  # L2 norm over time, [T]
    assert torch.isfinite(c).all()
    assert (norm[1:] <= norm[:-1] * (1 + 1e-12)).all()  # no growth (and c is non-constant)
    assert norm[-1] < 0.99 * norm[0]


def test_rk4_beyond_the_stable_step_blows_up(float64):
    """The check above can fail: 1.5x the stated step is outside rk4's stability region."""
    model, c0 = _noisy_problem(velocity=False)
    dt = 1.5 * model.stable_dt()
    with torch.no_grad():
        c = rollout(model, c0, torch.arange(201) * dt, method="rk4", options={"step_size": dt})
    assert not torch.isfinite(c).all() or c.abs().max() > 1e6


@pytest.mark.parametrize("velocity", [False, True])
def test_data_step_beyond_the_stable_step_is_sub_stepped(float64, velocity):
    model, c0 = _noisy_problem(velocity)
    dt_data = 10 * model.stable_dt()
    t = torch.arange(6) * dt_data
    with torch.no_grad():
        c = rollout(model, c0, t, method="rk4")  # default: sub-steps of the stable step
        fine = rollout(model, c0, t, method="rk4", step_size=model.stable_dt() / 8)
        raw = rollout(model, c0, t, method="rk4", options={"step_size": dt_data})
    assert torch.isfinite(c).all()
    torch.testing.assert_close(c, fine, rtol=0, atol=1e-3 * float(c0.abs().max()))
    assert not torch.isfinite(raw).all() or raw.abs().max() > 1e3  # without sub-steps: unstable


@pytest.mark.parametrize("kappa", [0.0, -1.0, float("nan")])
def test_non_positive_kappa_raises(kappa):
    with pytest.raises(ValueError, match="kappa must be positive"):
        AdvectionDiffusion(Grid.regular_box(4, 4, 1.0), kappa=kappa)


def test_unknown_scheme_raises():
    with pytest.raises(ValueError, match=r"scheme must be one of \['centred', 'upwind'\]"):
        AdvectionDiffusion(Grid.regular_box(4, 4, 1.0), scheme="weno")


@pytest.mark.parametrize(
    ("u", "v"),
    [
        (torch.zeros(4), torch.zeros(4)),
        (torch.zeros(4, 5), torch.zeros(5, 4)),
        (torch.zeros(2, 4, 5), torch.zeros(2, 4, 5)),
    ],
)
def test_bad_velocity_field_shapes_raise(u, v):
    with pytest.raises(ValueError, match=r"u and v must both be \[ny, nx\]"):
        VelocityField(u, v)
