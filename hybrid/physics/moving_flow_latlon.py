"""A tracer carried by an incompressible flow on a lat-lon band whose pattern turns with the sphere:

``∂c/∂t = -∇·(w c) + κ ∇²c``, ``∂w/∂t = -Ω ∂w/∂λ``  (``w = (u, v)``, a solid-body drift at
angular speed ``Ω``).

The lat-lon version of :mod:`hybrid.physics.moving_flow` (``hybrid simulate moving_flow_latlon``).
:func:`band_streamfunction_velocity` gives a flow whose discrete divergence on the sphere's metric
(:func:`hybrid.physics.operators.divergence`) is zero to round-off, walls included. The drift is a
uniform *angular* speed, so it is a centred difference along longitude with the same coefficient
on every row: it commutes with the divergence's stencil and the flow stays divergence-free (a
uniform speed in m/s would shear the pattern, and its ``1/cos φ`` would not commute).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from hybrid.physics import operators
from hybrid.physics.grid import Grid
from hybrid.physics.parameters import Positive, log_parameter


def _check_band(grid: Grid) -> None:
    if grid.kind != "latlon" or grid.ndim != 2 or grid.periodic != (False, True):
        raise ValueError(
            "a lat-lon band needs a 2-D lat-lon grid that closes in longitude (periodic "
            f"(False, True)), got kind={grid.kind!r}, shape {grid.shape}, periodic {grid.periodic}"
        )
    if float(grid.active.min()) < 1:
        raise ValueError("band_streamfunction_velocity is exact without land only: got a mask")


def band_streamfunction_velocity(psi: Tensor, grid: Grid) -> tuple[Tensor, Tensor]:
    """``v = (1/(R cos φ)) ∂ψ/∂λ``, ``u = -(1/R) ∂ψ/∂φ`` at cell centres, discretised so that
    ``operators.divergence(u, v, grid)`` is zero to round-off on a lat-lon band without land.

    ``v`` is the centred ``∂ψ/∂x`` (:func:`operators.gradient`). With ``L_j`` the open length of
    the face north of row ``j`` and ``q = ψ / (2 Δx_j)``, ``P_j = L_j (q_j + q_{j+1})`` and
    ``u_j = -(P_j - P_{j-1}) / L_e``: the meridional net outflow of the face-averaged ``v`` is
    then minus the zonal one of ``u``, identically (closed walls have ``L = 0``, so no flow
    crosses them). Second-order accurate: ``P_j - P_{j-1} ≈ Δφ ∂ψ/∂φ``.

    Args:
        psi: ``[..., ny, nx]`` streamfunction (m²/s).
        grid: a lat-lon band periodic in longitude, without land.
    Returns:
        ``(u, v)``, eastward and northward (m/s), each ``[..., ny, nx]``.
    Raises:
        ValueError: for a grid that is not such a band.
    """
    _check_band(grid)
    v = operators.gradient(psi, grid)[0]
    q = psi / (2 * grid.faces(0)[0])  # ψ / (2 Δx), Δx = R cos φ Δλ
    p = grid.faces(1)[2] * (q + operators.north(q))  # at north faces, zero at walls
    u = -(p - torch.roll(p, 1, dims=-2)) / grid.faces(0)[2]
    return u, v


class TurningFlowTracer(nn.Module):
    """``∂c/∂t = -∇·(w c) + κ∇²c``, ``∂w/∂t = -Ω ∂w/∂λ`` on ``[..., 3, ny, nx]`` = ``(c, u, v)``.

    The tracer's tendency is :class:`~hybrid.physics.moving_flow.MovingFlowTracer`'s (flux form:
    the area-weighted mass is conserved exactly); the flow's pattern turns eastward at ``Ω``
    (rad/s), ``Ω R cos φ`` m/s, by centred differences in longitude.

    Args:
        grid: a lat-lon band periodic in longitude.
        kappa: tracer diffusivity κ (m²/s).
        omega: angular speed Ω of the flow pattern (rad/s, eastward positive).
        max_speed: a bound on ``|u| + |v|`` (m/s) of the flows simulated, for the stable step.
        scheme: the tracer's face values, ``"centred"`` or ``"upwind"``.
    """

    def __init__(
        self,
        grid: Grid,
        kappa: float = 100.0,
        omega: float = 0.0,
        max_speed: float = 1.0,
        scheme: Literal["centred", "upwind"] = "centred",
    ) -> None:
        super().__init__()
        if grid.kind != "latlon" or grid.ndim != 2 or not grid.periodic[-1]:
            raise ValueError(
                "TurningFlowTracer needs a 2-D lat-lon grid that closes in longitude, got "
                f"kind={grid.kind!r}, shape {grid.shape}, periodic {grid.periodic}"
            )
        if not max_speed > 0:
            raise ValueError(f"max_speed must be positive (m/s), got {max_speed}")
        self._advective_flux = operators.advective_flux(scheme)
        self.grid, self.omega, self.max_speed = grid, float(omega), max_speed
        self.log_kappa = log_parameter(kappa, "kappa")
        self.dlam = 2 * math.pi / grid.shape[-1]  # the longitude step Δλ (rad): a closed circle

    kappa = Positive()

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        c, w = y[..., :1, :, :], y[..., 1:3, :, :]  # [..., 1, ny, nx], [..., 2, ny, nx]
        fe, fn = operators.diffusive_flux(c, self.grid)
        ae, an = self._advective_flux(c, w[..., :1, :, :], w[..., 1:, :, :], self.grid)
        dc = operators.net_outflow(self.kappa * fe - ae, self.kappa * fn - an, self.grid)
        dw = -self.omega * (operators.east(w) - torch.roll(w, 1, dims=-1)) / (2 * self.dlam)
        return torch.cat((dc, dw), dim=-3)

    def stable_dt(self) -> float:
        """The tracer's explicit-RK limit with the pattern's fastest speed ``|Ω| R`` added."""
        dx = self.grid.min_spacing()
        speed = self.max_speed + abs(self.omega) * self.grid.radius
        return 2.0 / (8 * float(self.kappa.detach()) / dx**2 + speed / dx)
