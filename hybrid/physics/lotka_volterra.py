"""Lotka-Volterra predator-prey: dx/dt = α x − β x y,  dy/dt = δ x y − γ y.

LEADS's benchmark (Yin et al., NeurIPS 2021): β = δ = 0.5, environments of (α, γ) in
{0.25, 0.5, 0.75, 1}², one trajectory of 20 frames at 0.5 each. Along an exact trajectory
``V = δ x − γ ln x + β y − α ln y`` is constant (:func:`lotka_volterra_invariant`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hybrid.physics.parameters import Positive, log_parameter


class LotkaVolterra(nn.Module):
    """dx/dt = α x − β x y,  dy/dt = δ x y − γ y (prey ``x``, predator ``y``; ``t`` unused).

    State: ``[..., 2]`` holding ``(x, y)``. Every parameter is positive, stored as ``log_<name>``;
    a parameter may be given per leading index (``[E, 1]`` against ``[E, b, 2]``), which is how
    :class:`hybrid.environments.PerEnvironment` gives one value per environment.

    Args:
        alpha: prey growth rate α.
        beta: predation rate β.
        gamma: predator death rate γ.
        delta: predator growth per prey δ.
    """

    state_names = ("x", "y")
    alpha, beta, gamma, delta = Positive(), Positive(), Positive(), Positive()

    def __init__(
        self, alpha: float = 0.5, beta: float = 0.5, gamma: float = 0.5, delta: float = 0.5
    ) -> None:
        super().__init__()
        self.log_alpha = log_parameter(alpha, "alpha")
        self.log_beta = log_parameter(beta, "beta")
        self.log_gamma = log_parameter(gamma, "gamma")
        self.log_delta = log_parameter(delta, "delta")

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        prey, predator = y.unbind(-1)
        both = prey * predator
        return torch.stack(
            (self.alpha * prey - self.beta * both, self.delta * both - self.gamma * predator), -1
        )


def lotka_volterra_invariant(
    y: Tensor, alpha: float, beta: float, gamma: float, delta: float
) -> Tensor:
    """``V = δ x − γ ln x + β y − α ln y`` of states ``[..., 2]`` -> ``[...]``; constant in time."""
    prey, predator = y.unbind(-1)
    return delta * prey - gamma * prey.log() + beta * predator - alpha * predator.log()
