"""A tracer carried by a drifting incompressible flow, with the flow in the state:

``∂c/∂t = -∇·(w c) + κ ∇²c``, ``∂w/∂t = -d·∇w``  (``w = (u, v)`` drifts at the uniform ``d``).

The true model of the moving-flow protocol (``hybrid simulate moving_flow``): the velocity at
each point changes with time, and is saved beside the tracer. A flow made by
:func:`streamfunction_velocity` has zero discrete divergence, and it stays so: on a periodic box
the drift's centred differences commute with those of the divergence.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from hybrid.physics import operators
from hybrid.physics.grid import Grid
from hybrid.physics.parameters import Positive, log_parameter


def streamfunction_velocity(psi: Tensor, grid: Grid) -> tuple[Tensor, Tensor]:
    """``u = -∂ψ/∂y``, ``v = ∂ψ/∂x`` by centred differences (:func:`operators.gradient`), whose
    discrete divergence is zero to round-off on a periodic box.

    Args:
        psi: ``[..., ny, nx]`` streamfunction (m²/s).
    """
    dpsi_dx, dpsi_dy = operators.gradient(psi, grid)
    return -dpsi_dy, dpsi_dx


class MovingFlowTracer(nn.Module):
    """``∂c/∂t = -∇·(w c) + κ∇²c``, ``∂w/∂t = -d·∇w`` on state ``[..., 3, ny, nx]`` = ``(c, u, v)``.

    Args:
        grid: the geometry (a periodic box keeps the flow divergence-free).
        kappa: tracer diffusivity κ (m²/s).
        drift: ``(d_x, d_y)``, the uniform speed (m/s) at which the flow pattern moves.
        max_speed: a bound on ``|u| + |v|`` (m/s) of the flows simulated, for the stable step.
        scheme: the tracer's face values, ``"centred"`` or ``"upwind"`` (monotone: no grid-scale
            ripples where the cell Péclet number ``|w|Δ/κ`` exceeds 2), as in the prior.
    """

    def __init__(
        self,
        grid: Grid,
        kappa: float = 100.0,
        drift: tuple[float, float] = (0.0, 0.0),
        max_speed: float = 1.0,
        scheme: Literal["centred", "upwind"] = "centred",
    ) -> None:
        super().__init__()
        if not max_speed > 0:
            raise ValueError(f"max_speed must be positive (m/s), got {max_speed}")
        if grid.ndim != 2:
            raise ValueError(f"MovingFlowTracer needs a 2-D grid, got shape {grid.shape}")
        self._advective_flux = operators.advective_flux(scheme)
        self.grid, self.max_speed = grid, max_speed
        self.log_kappa = log_parameter(kappa, "kappa")
        self.register_buffer("drift", torch.tensor([float(d) for d in drift]))

    kappa = Positive()

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        c, u, v = y[..., :1, :, :], y[..., 1:2, :, :], y[..., 2:3, :, :]
        fe, fn = operators.diffusive_flux(c, self.grid)
        ae, an = self._advective_flux(c, u, v, self.grid)
        dc = operators.net_outflow(self.kappa * fe - ae, self.kappa * fn - an, self.grid)
        grads = (operators.gradient(f, self.grid) for f in (u, v))
        dw = [-(self.drift[0] * gx + self.drift[1] * gy) for gx, gy in grads]
        return torch.cat((dc, *dw), dim=-3)

    def stable_dt(self) -> float:
        """Explicit-RK limit ``2 / (8κ/Δ² + (max_speed + |d_x| + |d_y|)/Δ)``."""
        dx = self.grid.min_spacing()
        speed = self.max_speed + float(self.drift.abs().sum())
        return 2.0 / (8 * float(self.kappa.detach()) / dx**2 + speed / dx)
