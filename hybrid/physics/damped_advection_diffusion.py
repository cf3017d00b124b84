"""Transport of an anomaly that relaxes to zero: ∂a/∂t = -∇·(u a) + κ ∇²a - γ a."""

from __future__ import annotations

import math
from typing import Literal

from torch import Tensor, nn

from hybrid.physics.advection_diffusion import AdvectionDiffusion
from hybrid.physics.decay import LinearDecay
from hybrid.physics.grid import Grid


class DampedAdvectionDiffusion(nn.Module):
    """∂a/∂t = -∇·(u a) + κ ∇²a - γ a: :class:`AdvectionDiffusion` plus :class:`LinearDecay`.

    The prior of an anomaly ``a = y - c`` from a climatology (sea-surface temperature: the
    anomaly is carried by currents, mixed, and damped towards the climatology by the air-sea heat
    flux at the rate γ, e-folding time ``1/γ``). With ``κ = 0``, ``u = 0`` its forecast is the
    damped persistence ``a(t0) exp(-γ l)``. State ``[..., C, ny, nx]``; ``t`` is unused.
    Parameters read ``transport.kappa``, ``transport.velocity.u``, ``decay.gamma``.

    Args:
        grid: the geometry (from the data).
        kappa: diffusivity κ in m²/s (positive).
        velocity: ``(u, v)`` module as for :class:`AdvectionDiffusion`; None for none.
        gamma: damping rate γ in 1/s (positive).
        scheme: ``"centred"`` or ``"upwind"`` advective fluxes.
    """

    def __init__(
        self,
        grid: Grid,
        kappa: float = 1.0,
        velocity: nn.Module | None = None,
        gamma: float = 1e-7,
        scheme: Literal["centred", "upwind"] = "centred",
    ) -> None:
        super().__init__()
        self.transport = AdvectionDiffusion(grid, kappa, velocity, scheme)
        self.decay = LinearDecay(gamma)

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        return self.transport(t, y) + self.decay(t, y)

    def stable_dt(self) -> float:
        """``2 / (λ_transport + γ)``: the rates of the two terms add."""
        rate = 2.0 / self.transport.stable_dt() + 2.0 / self.decay.stable_dt()
        return 2.0 / rate if rate > 0 else math.inf
