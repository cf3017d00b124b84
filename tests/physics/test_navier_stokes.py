"""Navier-Stokes vorticity: exact decay of one wavenumber shell, the nonlinear term by hand."""

from __future__ import annotations

import math

import pytest
import torch

from hybrid.dynamics import rollout
from hybrid.physics.navier_stokes import NavierStokes, leads_forcing, single_shell_decay


def _xy(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.arange(n, dtype=torch.float64) / n
    return x[None, :].expand(n, n), x[:, None].expand(n, n)


def test_taylor_green_decays_exactly(float64):
    n, nu = 32, 1e-2
    x, y = _xy(n)
    w0 = (torch.sin(2 * math.pi * x) * torch.sin(2 * math.pi * y))[None, None]  # |k|² = 2
    t = torch.linspace(0, 2, 21)
    with torch.no_grad():
        w = rollout(NavierStokes(nu=nu, size=n).double(), w0, t, method="rk4", step_size=0.01)
    exact = single_shell_decay(w0, nu, 2.0, t).movedim(0, 1)
    assert float((w - exact).abs().max()) < 1e-9
    assert float(w[0, -1].abs().max()) < 0.5  # it does decay


def test_nonlinear_term_by_hand(float64):
    """``w = sin 2πx + sin 4πy``: ``u·∇w = −1.5 cos 2πx cos 4πy`` (worked in the docstring's
    convention ``u = ∂ψ/∂y``, ``v = −∂ψ/∂x``, ``−Δψ = w``)."""
    n, nu = 32, 1e-3
    x, y = _xy(n)
    w = torch.sin(2 * math.pi * x) + torch.sin(4 * math.pi * y)
    f = leads_forcing(n, (1, 1), (1, 2))
    prior = NavierStokes(forcing=f, nu=nu).double()
    lap_w = -4 * math.pi**2 * (torch.sin(2 * math.pi * x) + 4 * torch.sin(4 * math.pi * y))
    expected = 1.5 * torch.cos(2 * math.pi * x) * torch.cos(4 * math.pi * y) + nu * lap_w + f
    assert torch.allclose(prior(None, w[None, None])[0, 0], expected, atol=1e-10)


def test_forcing_shape_checked():
    with pytest.raises(ValueError, match="forcing must be"):
        NavierStokes(forcing=torch.zeros(31, 31))
