"""Pendulum: d²θ/dt² = -ω0² sin θ - α dθ/dt, the APHYNITY ODE benchmark.

APHYNITY's protocol uses ``ω0² = (2π/12)²`` (period 12 in the small-angle limit) and ``α = 0.2``;
its incomplete prior is the frictionless pendulum.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from hybrid.physics.parameters import Positive, log_parameter

# APHYNITY's ω0² = (2π/T0)²: the reference code's default since its commit 3030566 (December
# 2022, "Update default dataset parameter") is T0 = 6; the first protocol here used T0 = 12.
OMEGA0_SQ = (2 * math.pi / 6) ** 2
ALPHA = 0.2  # APHYNITY's α


def _frictionless_rhs(y: Tensor, omega0_sq: Tensor) -> tuple[Tensor, Tensor]:
    """``(dθ/dt, dω/dt)`` of the frictionless pendulum, each ``[...]``."""
    theta, omega = y.unbind(-1)
    return omega, -omega0_sq * torch.sin(theta)


class DampedPendulum(nn.Module):
    """Damped pendulum: dθ/dt = ω,  dω/dt = -ω0² sin θ - α ω.

    State ``y``: ``[..., 2]`` holding ``(θ, ω)`` on the last axis; ``t`` is unused (autonomous).

    Args:
        omega0_sq: squared natural frequency ω0² in 1/s² (learnable, positive, ``log_omega0_sq``).
        alpha: damping coefficient α in 1/s (learnable, positive, ``log_alpha``).

    Raises:
        ValueError: if ``omega0_sq`` or ``alpha`` is not positive.
    """

    state_names = ("theta", "omega")

    def __init__(self, omega0_sq: float = OMEGA0_SQ, alpha: float = ALPHA) -> None:
        super().__init__()
        self.log_omega0_sq = log_parameter(omega0_sq, "omega0_sq")
        self.log_alpha = log_parameter(alpha, "alpha")

    omega0_sq = Positive()
    alpha = Positive()

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        dtheta, domega = _frictionless_rhs(y, self.omega0_sq)
        return torch.stack((dtheta, domega - self.alpha * y[..., 1]), dim=-1)


class FrictionlessPendulum(nn.Module):
    """Frictionless pendulum: dθ/dt = ω,  dω/dt = -ω0² sin θ (APHYNITY's incomplete prior).

    State ``y``: ``[..., 2]`` holding ``(θ, ω)`` on the last axis; ``t`` is unused (autonomous).

    Args:
        omega0_sq: squared natural frequency ω0² in 1/s² (learnable, positive, ``log_omega0_sq``).

    Raises:
        ValueError: if ``omega0_sq`` is not positive.
    """

    state_names = ("theta", "omega")

    def __init__(self, omega0_sq: float = OMEGA0_SQ) -> None:
        super().__init__()
        self.log_omega0_sq = log_parameter(omega0_sq, "omega0_sq")

    omega0_sq = Positive()

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        return torch.stack(_frictionless_rhs(y, self.omega0_sq), dim=-1)


def pendulum_energy(y: Tensor, omega0_sq: float | Tensor) -> Tensor:
    """Energy per unit ``m l²``: ``ω²/2 + ω0² (1 - cos θ)``, conserved when α = 0.

    Args:
        y: ``[..., 2]`` states ``(θ, ω)``.
    Returns:
        ``[...]``.
    """
    theta, omega = y.unbind(-1)
    return 0.5 * omega**2 + omega0_sq * (1 - torch.cos(theta))


def small_angle_period(omega0_sq: float, alpha: float = 0.0) -> float:
    """Period ``2π / sqrt(ω0² - α²/4)`` of the linearised (under-damped) pendulum.

    Raises:
        ValueError: if the oscillator is not under-damped (``α² >= 4 ω0²``).
    """
    omega_d_sq = omega0_sq - alpha**2 / 4
    if not omega_d_sq > 0:
        raise ValueError(f"not under-damped: need alpha² < 4 omega0_sq, got {alpha=}, {omega0_sq=}")
    return 2 * math.pi / math.sqrt(omega_d_sq)


def small_angle_solution(t: Tensor, theta0: float, omega0_sq: float, alpha: float = 0.0) -> Tensor:
    """Exact ``θ(t)`` of the linearised pendulum from rest at ``θ0``:
    ``θ0 exp(-αt/2) (cos ω_d t + α/(2ω_d) sin ω_d t)`` with ``ω_d = 2π / small_angle_period``."""
    omega_d = 2 * math.pi / small_angle_period(omega0_sq, alpha)
    phase = omega_d * t
    return (
        theta0
        * torch.exp(-alpha * t / 2)
        * (torch.cos(phase) + alpha / (2 * omega_d) * torch.sin(phase))
    )
