"""The moving-flow data: the drifting incompressible flow against its discrete exact solution, the
tracer against the constant-velocity prior, and the protocol's file with the true velocity."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hybrid.data.protocols import build
from hybrid.data.simulate import simulate, simulate_dataset
from hybrid.dynamics import rollout
from hybrid.flow import divergence_sq, magnitude_sq
from hybrid.physics.advection_diffusion import AdvectionDiffusion, ConstantVelocity
from hybrid.physics.grid import Grid
from hybrid.physics.moving_flow import MovingFlowTracer

N, DX = 32, 10e3


def test_flow_drifts_at_the_centred_differences_phase_speed(float64):
    """``u = sin(kx)`` under ``∂u/∂t = -d ∂u/∂x`` with centred differences is exactly
    ``sin(k(x - d' t))``, ``d' = d sin(kΔ)/(kΔ)``; the tracer channel does not feed back."""
    grid = Grid.regular_box(N, N, DX)
    model = MovingFlowTracer(grid, kappa=100.0, drift=(0.2, 0.0))
    x = torch.arange(N) * DX
    k = 2 * math.pi * 3 / (N * DX)
    u0 = torch.sin(k * x).expand(N, N)
    y0 = torch.stack((torch.ones(N, N), u0, torch.zeros(N, N)))[None]  # [1, 3, N, N]
    t = torch.arange(5) * 6 * 3600.0
    y = rollout(model, y0, t, method="rk4", step_size=600.0)
    phase_speed = 0.2 * math.sin(k * DX) / (k * DX)
    want = torch.sin(k * (x - phase_speed * t[-1])).expand(N, N)
    assert torch.allclose(y[0, -1, 1], want, atol=1e-7)


def test_uniform_flow_transports_like_the_constant_velocity_prior(float64):
    grid = Grid.regular_box(N, N, DX)
    model = MovingFlowTracer(grid, kappa=100.0, drift=(0.1, 0.05))
    prior = AdvectionDiffusion(grid, kappa=100.0, velocity=ConstantVelocity(0.3, -0.2))
    c0 = 2 + torch.sin(2 * math.pi * torch.arange(N) * DX / (N * DX)).expand(N, N)
    y0 = torch.stack((c0, torch.full((N, N), 0.3), torch.full((N, N), -0.2)))[None]
    t = torch.arange(4) * 3 * 3600.0
    y = rollout(model, y0, t, method="rk4", step_size=900.0)
    want = rollout(prior, c0[None, None], t, method="rk4", step_size=900.0)
    assert torch.allclose(y[:, :, :1], want, atol=1e-12)


def test_protocol_flow_stays_incompressible_and_the_tracer_keeps_its_mass(float64):
    spec = build("moving_flow")
    y0 = spec.initial_condition(np.random.default_rng(0), 2)
    t = torch.arange(8) * spec.dt
    y = simulate(spec.model, y0, t, progress=False, **spec.solver)  # [2, 8, 3, N, N]
    grid = spec.model.grid
    u, v = y[:, :, 1], y[:, :, 2]
    speed_sq = magnitude_sq(u, v, grid)
    assert float(speed_sq.sqrt()) == pytest.approx(0.3, rel=0.02)
    assert float(divergence_sq(u, v, grid)) < 1e-24 * float(speed_sq) / DX**2
    mass = y[:, :, 0].sum((-2, -1))
    assert torch.allclose(mass, mass[:, :1].expand_as(mass), rtol=1e-12)
    assert float((u[:, -1] - u[:, 0]).abs().max()) > 0.02  # the flow moves


def test_protocol_file_holds_the_true_velocity_beside_the_tracer(tmp_path):
    spec = build("moving_flow")
    spec.n_times = {"train": 3, "test": 3}
    ds = simulate_dataset(spec, "test", n_samples=2, progress=False)
    assert set(ds.data_vars) == {"c", "u", "v"}
    assert ds.u.dims == ("sample", "time", "y", "x") and ds.u.attrs["units"] == "m s-1"
    assert ds.attrs["true_kappa"] == pytest.approx(200.0)
