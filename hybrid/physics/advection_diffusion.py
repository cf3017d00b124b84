"""Advection-diffusion of tracers: ∂c/∂t = -∇·(u c) + κ ∇²c."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from hybrid.physics import operators
from hybrid.physics.grid import Grid
from hybrid.physics.parameters import Positive, log_parameter


class ConstantVelocity(nn.Module):
    """A uniform, learnable velocity ``(u, v)`` in m/s (eastward, northward)."""

    def __init__(self, u: float = 0.0, v: float = 0.0) -> None:
        super().__init__()
        self.u = nn.Parameter(torch.tensor(float(u)))
        self.v = nn.Parameter(torch.tensor(float(v)))

    def forward(self) -> tuple[Tensor, Tensor]:
        return self.u, self.v


class VelocityField(nn.Module):
    """A velocity field ``(u, v)``, each ``[ny, nx]`` in m/s: given (e.g. currents or winds from the
    data, a buffer) or, with ``learnable=True``, a parameter per cell initialised from it."""

    def __init__(self, u: Tensor, v: Tensor, learnable: bool = False) -> None:
        super().__init__()
        u = torch.as_tensor(u, dtype=torch.get_default_dtype())
        v = torch.as_tensor(v).to(u)
        if u.ndim != 2 or u.shape != v.shape:
            raise ValueError(
                f"u and v must both be [ny, nx], got {tuple(u.shape)}, {tuple(v.shape)}"
            )
        if learnable:
            self.u, self.v = nn.Parameter(u.clone()), nn.Parameter(v.clone())
        else:
            self.register_buffer("u", u.clone())
            self.register_buffer("v", v.clone())

    def forward(self) -> tuple[Tensor, Tensor]:
        return self.u, self.v


class AdvectionDiffusion(nn.Module):
    """∂c/∂t = -∇·(u c) + κ ∇²c for each tracer channel, in flux form (mass-conserving).

    State ``y``: ``[..., C, ny, nx]`` tracer concentrations; ``t`` is unused (autonomous).
    Walls and inactive cells are no-flux.

    Args:
        grid: the geometry (from the data, or :meth:`Grid.regular_box`).
        kappa: diffusivity κ in m²/s (learnable, positive, stored as ``log_kappa``).
        velocity: a module returning ``(u, v)`` in m/s, e.g. :class:`ConstantVelocity` (learnable
            uniform) or :class:`VelocityField` (given or learnable field); None for pure diffusion.
        scheme: face values of the advective flux, ``"centred"`` (2nd order) or ``"upwind"``.
    """

    def __init__(
        self,
        grid: Grid,
        kappa: float = 1.0,
        velocity: nn.Module | None = None,
        scheme: Literal["centred", "upwind"] = "centred",
    ) -> None:
        super().__init__()
        schemes = {
            "centred": operators.advective_flux_centred,
            "upwind": operators.advective_flux_upwind,
        }
        if scheme not in schemes:
            raise ValueError(f"scheme must be one of {sorted(schemes)}, got {scheme!r}")
        self.grid, self.velocity, self.scheme = grid, velocity, scheme
        self._advective_flux = schemes[scheme]
        self.log_kappa = log_parameter(kappa, "kappa")

    kappa = Positive()

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        # Sum the face fluxes, then take one divergence: κ∇c - u c through every face.
        fe, fn = operators.diffusive_flux(y, self.grid)
        fe, fn = self.kappa * fe, self.kappa * fn
        if self.velocity is not None:
            ae, an = self._advective_flux(y, *self.velocity(), self.grid)
            fe, fn = fe - ae, fn - an
        return operators.net_outflow(fe, fn, self.grid)

    def stable_dt(self) -> float:
        """Explicit-RK limit ``2 / (λ_d + λ_a)`` with ``λ_d = 8κ/Δ²``, ``λ_a = (|u| + |v|)/Δ``."""
        dx = self.grid.min_spacing()
        rate = 8 * float(self.kappa.detach()) / dx**2
        if self.velocity is not None:
            u, v = self.velocity()
            rate += float(u.detach().abs().max() + v.detach().abs().max()) / dx
        return 2.0 / rate if rate > 0 else math.inf


def fourier_mode(
    x: Tensor, y: Tensor, t: float, *, kx: float, ky: float, u: float, v: float, kappa: float
) -> Tensor:
    """Exact solution on a periodic box for ``c(x, y, 0) = sin(kx x + ky y)``, uniform ``(u, v)``:

    ``exp(-κ (kx² + ky²) t) sin(kx (x - u t) + ky (y - v t))``; ``x``, ``y`` broadcast to the grid.
    """
    return math.exp(-kappa * (kx**2 + ky**2) * t) * torch.sin(kx * (x - u * t) + ky * (y - v * t))


def gaussian_variance(t: float, sigma0: float, kappa: float) -> float:
    """Variance per axis of a diffusing Gaussian in free space: ``σ² = σ0² + 2κt``."""
    return sigma0**2 + 2 * kappa * t
