"""The anomaly prior: transport plus linear damping, against its exact Fourier mode."""

from __future__ import annotations

import math

import pytest
import torch

from hybrid.dynamics import rollout
from hybrid.physics.advection_diffusion import ConstantVelocity, fourier_mode
from hybrid.physics.damped_advection_diffusion import DampedAdvectionDiffusion
from hybrid.physics.grid import Grid
from hybrid.physics.parameters import physical_parameters

MODE = dict(kx=2 * math.pi, ky=2 * math.pi, u=0.2, v=-0.1, kappa=0.002)  # on the unit box
GAMMA, T_END = 1.5, 0.5


def test_fourier_mode_decays_at_the_transport_rate_plus_gamma(float64):
    """``exp(-γt)`` times the advected, diffused mode, to the centred scheme's error at 64²."""
    n = 64
    grid = Grid.regular_box(n, n, 1.0 / n)
    x = torch.arange(n) / n
    xx, yy = x[None, :], x[:, None]
    velocity = ConstantVelocity(MODE["u"], MODE["v"])
    model = DampedAdvectionDiffusion(grid, MODE["kappa"], velocity, gamma=GAMMA)
    with torch.no_grad():
        c = rollout(
            model,
            fourier_mode(xx, yy, 0.0, **MODE)[None, None],
            torch.tensor([0, T_END]),
            method="rk4",
        )
    exact = math.exp(-GAMMA * T_END) * fourier_mode(xx, yy, T_END, **MODE)
    assert float((c[0, -1, 0] - exact).abs().max() / exact.abs().max()) < 1e-3
    # without the damping the same rollout would be off by the factor exp(-γT) = 0.47
    assert float(c[0, -1, 0].abs().max()) < 0.5


def test_stable_step_adds_the_rates_and_parameters_read_by_name():
    grid = Grid.regular_box(8, 8, 1.0)
    model = DampedAdvectionDiffusion(grid, kappa=0.25, gamma=0.5)  # 8κ/Δ² = 2, γ = 0.5
    assert model.stable_dt() == pytest.approx(2 / 2.5)
    names = {k: float(v) for k, v in physical_parameters(model).items()}
    assert names == pytest.approx({"transport.kappa": 0.25, "decay.gamma": 0.5})
    with pytest.raises(ValueError, match="gamma must be positive, got 0"):
        DampedAdvectionDiffusion(grid, gamma=0.0)
