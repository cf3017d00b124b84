"""Pendulum priors against the small-angle solution, energy conservation and gradchecks."""

from __future__ import annotations

import math

import pytest
import torch
from torch.func import functional_call

from hybrid.dynamics import rollout
from hybrid.physics.pendulum import (
    OMEGA0_SQ,
    DampedPendulum,
    FrictionlessPendulum,
    pendulum_energy,
    small_angle_period,
    small_angle_solution,
)


def zero_crossings(t: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Times where ``theta`` changes sign, by linear interpolation (``θ'' ≈ 0`` there)."""
    i = torch.nonzero(theta[:-1] * theta[1:] < 0).squeeze(-1)
    return t[i] - theta[i] * (t[i + 1] - t[i]) / (theta[i + 1] - theta[i])


@pytest.mark.parametrize("omega0_sq", [OMEGA0_SQ, 1.0, 4.0])
def test_small_angle_period(float64, omega0_sq):
    field = FrictionlessPendulum(omega0_sq)
    period = small_angle_period(omega0_sq)
    t = torch.arange(0, 3.2 * period, 0.01)
    with torch.no_grad():
        theta = rollout(field, torch.tensor([[1e-3, 0.0]]), t, method="rk4")[0, :, 0]  # [T]
    crossings = zero_crossings(t, theta)
    assert len(crossings) >= 6
    measured = (crossings[2:] - crossings[:-2]).mean()  # every other crossing is one period
    assert float(measured) == pytest.approx(2 * math.pi / math.sqrt(omega0_sq), rel=1e-4)


@pytest.mark.parametrize("theta0", [0.5, 1.5, 3.0])
def test_frictionless_energy_conserved(float64, theta0):
    field = FrictionlessPendulum()
    with torch.no_grad():
        y = rollout(
            field,
            torch.tensor([[theta0, 0.3]]),
            torch.linspace(0, 10, 11),
            method="rk4",
            step_size=0.01,
        )  # [1, 11, 2]
    energy = pendulum_energy(y[0], OMEGA0_SQ)
    drift = ((energy - energy[0]).abs() / energy[0]).max()
    assert drift < 1e-8


@pytest.mark.parametrize("alpha", [0.05, 0.2, 0.5])
def test_damped_small_angle_decay(float64, alpha):
    field = DampedPendulum(OMEGA0_SQ, alpha)
    theta0 = 1e-3
    t = torch.linspace(0, 30, 31)
    with torch.no_grad():
        y = rollout(field, torch.tensor([[theta0, 0.0]]), t, method="rk4", step_size=0.01)
    theta = y[0, :, 0]  # [T]
    exact = small_angle_solution(t, theta0, OMEGA0_SQ, alpha)
    envelope = theta0 * torch.exp(-alpha * t / 2)
    assert ((theta - exact).abs() / envelope).max() < 1e-3


def test_frictionless_is_damped_without_friction(float64):
    damped, frictionless = DampedPendulum(0.7, 0.3), FrictionlessPendulum(0.7)
    y = torch.randn(4, 3, 2)
    friction = torch.stack((torch.zeros(4, 3), -0.3 * y[..., 1]), dim=-1)
    torch.testing.assert_close(frictionless(0.0, y), damped(0.0, y) - friction, rtol=1e-14, atol=0)


@pytest.mark.parametrize("cls", [DampedPendulum, FrictionlessPendulum])
def test_gradcheck_state_and_parameters(float64, cls):
    field = cls()
    names = [name for name, _ in field.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for p in field.parameters())
    y = torch.randn(3, 2, requires_grad=True)

    def f(y, *params):
        return functional_call(field, dict(zip(names, params, strict=True)), (torch.tensor(0.0), y))

    assert torch.autograd.gradcheck(f, (y, *params))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"omega0_sq": 0.0}, "omega0_sq must be positive, got 0.0"),
        ({"omega0_sq": -1.0}, "omega0_sq must be positive, got -1.0"),
        ({"alpha": 0.0}, "alpha must be positive, got 0.0"),
        ({"alpha": -0.2}, "alpha must be positive, got -0.2"),
    ],
)
def test_damped_rejects_non_positive(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DampedPendulum(**kwargs)


def test_frictionless_rejects_non_positive():
    with pytest.raises(ValueError, match="omega0_sq must be positive, got -2.0"):
        FrictionlessPendulum(-2.0)


def test_small_angle_period_rejects_overdamped():
    with pytest.raises(ValueError, match="not under-damped"):
        small_angle_period(1.0, alpha=2.0)
