"""FitzHugh-Nagumo priors against exact Fourier-mode decay, the uniform ODE and invariants."""

from __future__ import annotations

import math

import pytest
import torch
from torch.func import functional_call

from hybrid.dynamics import rollout
from hybrid.physics.reaction_diffusion import (
    DiffusionOnly,
    ReactionDiffusion,
    laplacian_eigenvalue,
    uniform_steady_state,
)


def fourier_mode(m: int, n: int, size: int) -> torch.Tensor:
    """``cos(2π (m j + n i) / N)`` on the ``[N, N]`` grid (``j`` rows, ``i`` columns)."""
    j, i = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    return torch.cos(2 * math.pi * (m * j + n * i) / size)


@pytest.mark.parametrize(("m", "n"), [(1, 0), (0, 3), (2, 3), (5, 7)])
def test_fourier_mode_decays_at_discrete_rate(float64, m, n):
    field = DiffusionOnly()  # a = 1e-3, b = 5e-3, 32 x 32 on [-1, 1]²
    lam = laplacian_eigenvalue(m, n, 32, 2.0)
    mode = fourier_mode(m, n, 32)
    y0 = torch.stack((mode, -0.5 * mode))[None]  # [1, 2, 32, 32]
    t = torch.linspace(0, 2, 5)
    with torch.no_grad():
        y = rollout(field, y0, t, method="rk4", step_size=0.01)  # [1, 5, 2, 32, 32]
    decay = torch.stack((torch.exp(-1e-3 * lam * t), torch.exp(-5e-3 * lam * t)), dim=-1)  # [5, 2]
    exact = decay[:, :, None, None] * y0  # [5, 2, 32, 32]
    assert (y[0] - exact).abs().max() < 1e-8


def test_largest_eigenvalue_is_checkerboard(float64):
    """The 5-point Laplacian maps the checkerboard to ``-8/dx²`` times itself (see stable_dt)."""
    field = DiffusionOnly(a=1.0, b=1.0, size=8, length=2.0)
    board = fourier_mode(4, 4, 8)
    dydt = field(0.0, torch.stack((board, board)))
    torch.testing.assert_close(dydt, -8 / 0.25**2 * torch.stack((board, board)))
    assert field.stable_dt() == pytest.approx(2 / (8 / 0.25**2))
    assert ReactionDiffusion().stable_dt() == pytest.approx(2 / (8 * 5e-3 * 16**2 + 3))


@pytest.mark.parametrize("seed", [0, 1])
def test_uniform_state_follows_reaction_ode(float64, seed):
    torch.manual_seed(seed)
    field = ReactionDiffusion()
    u, v = torch.randn(2)
    y = torch.stack((u * torch.ones(32, 32), v * torch.ones(32, 32)))  # [2, 32, 32]
    expected = torch.stack((u - u**3 - 5e-3 - v, u - v))  # [2]
    torch.testing.assert_close(field(0.0, y), expected[:, None, None].expand(2, 32, 32))


@pytest.mark.parametrize("k", [5e-3, 0.1, 2.0])
def test_uniform_steady_state_is_a_fixed_point(float64, k):
    field = ReactionDiffusion(k=k)
    u, v = uniform_steady_state(k)
    assert u == pytest.approx(-(k ** (1 / 3)), rel=1e-15)
    y = torch.tensor([u, v])[:, None, None].expand(2, 32, 32)
    assert field(0.0, y).abs().max() < 1e-14


@pytest.mark.parametrize("cls", [ReactionDiffusion, DiffusionOnly])
@pytest.mark.parametrize("shift", [(3, 5), (-7, 1)])
def test_commutes_with_periodic_shift(float64, cls, shift):
    torch.manual_seed(0)
    field = cls()
    y = torch.randn(2, 2, 32, 32)
    rolled = field(0.0, torch.roll(y, shift, dims=(-2, -1)))
    torch.testing.assert_close(rolled, torch.roll(field(0.0, y), shift, dims=(-2, -1)))


def test_diffusion_only_conserves_mass(float64):
    torch.manual_seed(0)
    field = DiffusionOnly()
    y0 = torch.rand(3, 2, 32, 32)
    assert field(0.0, y0).sum((-2, -1)).abs().max() < 1e-10
    with torch.no_grad():
        y = rollout(field, y0, torch.linspace(0, 5, 6), method="rk4")  # [3, 6, 2, 32, 32]
    mass = y.sum((-2, -1))  # [3, 6, 2]
    assert ((mass - mass[:, :1]).abs() / mass[:, :1]).max() < 1e-13


@pytest.mark.parametrize("cls", [ReactionDiffusion, DiffusionOnly])
def test_gradcheck_state_and_parameters(float64, cls):
    torch.manual_seed(0)
    field = cls(a=0.02, b=0.05, size=6) if cls is DiffusionOnly else cls(0.02, 0.05, 0.1, size=6)
    names = [name for name, _ in field.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for p in field.parameters())
    y = torch.randn(2, 6, 6, requires_grad=True)

    def f(y, *params):
        return functional_call(field, dict(zip(names, params, strict=True)), (torch.tensor(0.0), y))

    assert torch.autograd.gradcheck(f, (y, *params))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"a": 0.0}, "a must be positive, got 0.0"),
        ({"b": -1.0}, "b must be positive, got -1.0"),
        ({"k": -5e-3}, "k must be positive, got -0.005"),
        ({"length": 0.0}, "length must be positive, got 0.0"),
        ({"size": 2}, "size must be at least 3, got 2"),
    ],
)
def test_reaction_diffusion_rejects_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ReactionDiffusion(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"a": -1e-3}, "a must be positive, got -0.001"),
        ({"b": 0.0}, "b must be positive, got 0.0"),
        ({"length": -2.0}, "length must be positive, got -2.0"),
    ],
)
def test_diffusion_only_rejects_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DiffusionOnly(**kwargs)
