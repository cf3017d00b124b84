"""Rotating shallow water: ∂η/∂t = -∇·(h u),  ∂u/∂t = -(u·∇)u - f̃ k×u - g∇η - r u."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hybrid.physics import operators
from hybrid.physics.grid import Grid
from hybrid.physics.parameters import Positive, Scaled, log_parameter, register_scaled

F0, BETA, OMEGA, DRAG = 1e-4, 1.6e-11, 7.292e-5, 1e-6  # typical sizes (1/s, 1/(m s), 1/s, 1/s)


class FPlane(nn.Module):
    """Constant Coriolis parameter ``f = f0`` (1/s, learnable, stored scaled: ``scaled_f0``)."""

    def __init__(self, f0: float = F0) -> None:
        super().__init__()
        register_scaled(self, "f0", f0, F0)

    f0 = Scaled()

    def forward(self, grid: Grid) -> Tensor:
        return self.f0


class BetaPlane(nn.Module):
    """``f = f0 + β y``, ``y`` northward from the grid's mid-row (learnable ``f0``, ``beta``,
    stored scaled)."""

    def __init__(self, f0: float = F0, beta: float = BETA) -> None:
        super().__init__()
        register_scaled(self, "f0", f0, F0)
        register_scaled(self, "beta", beta, BETA)

    f0 = Scaled()
    beta = Scaled()

    def forward(self, grid: Grid) -> Tensor:
        return self.f0 + self.beta * grid.y_north


class SphereCoriolis(nn.Module):
    """``f = 2Ω sin φ`` with the planet's rotation rate Ω in rad/s (learnable ``omega``, stored
    scaled)."""

    def __init__(self, omega: float = OMEGA) -> None:
        super().__init__()
        register_scaled(self, "omega", omega, OMEGA)

    omega = Scaled()

    def forward(self, grid: Grid) -> Tensor:
        return 2 * self.omega * grid.sin_lat


class ShallowWater(nn.Module):
    """∂η/∂t = -∇·((H+η) u),  ∂u/∂t = -(u·∇)u + f̃ v - g ∂η/∂x - r u,
    ∂v/∂t = -(u·∇)v - f̃ u - g ∂η/∂y - r v,  with f̃ = f + u tanφ / R.

    State ``y``: ``[..., 3, ny, nx]`` holding ``(η, u, v)``: surface elevation anomaly (m; the
    depth is ``H + η``) and eastward, northward velocity (m/s); ``t`` is unused. Collocated
    (A-grid) finite volumes: the mass flux goes through faces (:func:`operators.advection_centred`),
    so the area-weighted sum of ∂η/∂t is zero to round-off on every geometry; walls and land are
    closed faces and velocity tendencies are zero on inactive cells. The metric term ``u tanφ/R``
    vanishes on a box.

    Global lat-lon grids must exclude the polar caps (e.g. keep ``|lat| <= 80``): the first and
    last rows are then walls, since :meth:`Grid.latlon` is not periodic in latitude. There is no
    polar filter, so the zonal spacing ``R Δλ cos φ`` of the highest row sets :meth:`stable_dt`.

    Args:
        grid: the geometry (from the data, or :meth:`Grid.regular_box`).
        g: gravity in m/s² (learnable, positive, stored as ``log_g``).
        H: mean depth in m (learnable, positive, stored as ``log_H``).
        r: linear (Rayleigh) drag in 1/s (learnable, ``>= 0`` at construction; stored scaled by
            ``r``, or by 1e-6 when ``r = 0``, so that Adam moves it by a fraction of its size).
        coriolis: a module ``coriolis(grid) -> f`` in 1/s broadcastable to ``[ny, nx]``:
            :class:`FPlane`, :class:`BetaPlane` or :class:`SphereCoriolis`; None for no rotation.

    Raises:
        ValueError: if ``g`` or ``H`` is not positive, ``r`` is negative, or the grid is 1-D.
    """

    state_names = ("eta", "u", "v")

    def __init__(
        self,
        grid: Grid,
        g: float = 9.81,
        H: float = 100.0,
        r: float = 0.0,
        coriolis: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if not r >= 0:
            raise ValueError(f"r must be non-negative, got {r}")
        if grid.ndim != 2:
            raise ValueError(f"ShallowWater needs a 2-D grid, got shape {grid.shape}")
        self.grid, self.coriolis = grid, coriolis
        self.log_g, self.log_H = log_parameter(g, "g"), log_parameter(H, "H")
        register_scaled(self, "r", r, DRAG)

    g = Positive()
    H = Positive()
    r = Scaled()

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        grid = self.grid
        eta, u, v = y.unbind(-3)
        detadt = operators.advection_centred(self.H + eta, u, v, grid)
        (ux, uy), (vx, vy) = operators.gradient(u, grid), operators.gradient(v, grid)
        eta_x, eta_y = operators.gradient(eta, grid)
        f = u * grid.tan_lat / grid.radius  # metric term; 0 on a box (tan_lat = 0, R = inf)
        if self.coriolis is not None:
            f = f + self.coriolis(grid)
        dudt = -(u * ux + v * uy) + f * v - self.g * eta_x - self.r * u
        dvdt = -(u * vx + v * vy) - f * u - self.g * eta_y - self.r * v
        return torch.stack((detadt, dudt * grid.active, dvdt * grid.active), dim=-3)

    def stable_dt(self) -> float:
        """Explicit-RK limit ``2 / (2c/Δ + |f|max + r)`` with ``c = √(gH)``, ``Δ`` the min spacing.

        Centred A-grid gravity waves have imaginary rates up to ``c √(1/Δx² + 1/Δy²) <= √2 c/Δ``;
        ``2c/Δ`` leaves room for subcritical advection ``|u| + |v| < 1.4 c`` (unknown in advance)
        within rk4's reach of 2.8 along the imaginary axis (rk3: 1.7, still above √2).
        Euler and midpoint are unstable for undamped waves at any step.
        """
        with torch.no_grad():
            f = 0.0 if self.coriolis is None else self.coriolis(self.grid) * self.grid.active
            rate = 2 * gravity_wave_speed(self.g, self.H) / self.grid.min_spacing()
            rate = rate + torch.as_tensor(f).abs().max() + self.r.abs()
        return 2.0 / float(rate)


def geostrophic_velocity(
    eta: Tensor, grid: Grid, g: float | Tensor, f: float | Tensor
) -> tuple[Tensor, Tensor]:
    """``(u, v) = (-g/f ∂η/∂y, g/f ∂η/∂x)`` with the prior's own discrete gradient, so that a
    balanced state is discretely steady (exactly, for η varying along ``y`` only and no drag).

    Args:
        eta: ``[..., ny, nx]`` elevation (m); ``f`` must be non-zero and broadcast to it.
    Returns:
        ``(u, v)``, each ``[..., ny, nx]`` (m/s).
    """
    eta_x, eta_y = operators.gradient(eta, grid)
    return -g / f * eta_y, g / f * eta_x


def total_mass(eta: Tensor, grid: Grid) -> Tensor:
    """Volume anomaly ``Σ area · η`` over active cells (m³), ``[..., ny, nx] -> [...]``."""
    return (eta * grid.area * grid.active).sum(dim=(-2, -1))


def gravity_wave_speed(g: float | Tensor, H: float | Tensor) -> float | Tensor:
    """Phase speed ``c = √(gH)`` of long gravity waves (m/s)."""
    return (g * H) ** 0.5
