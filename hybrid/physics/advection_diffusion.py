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
    """A uniform, learnable velocity ``(u, v)`` in m/s (eastward, northward); ``v=None`` for a
    1-D grid, whose velocity is ``(u,)``."""

    def __init__(self, u: float = 0.0, v: float | None = 0.0) -> None:
        super().__init__()
        self.u = nn.Parameter(torch.tensor(float(u)))
        self.v = None if v is None else nn.Parameter(torch.tensor(float(v)))
        self.components = 1 if v is None else 2

    def forward(self) -> tuple[Tensor, ...]:
        return (self.u,) if self.v is None else (self.u, self.v)


class VelocityField(nn.Module):
    """A velocity field ``(u, v)``, each ``[ny, nx]`` in m/s, or ``u`` alone, ``[nx]``, on a 1-D
    grid (``v=None``): given (e.g. currents or winds from the data, a buffer) or, with
    ``learnable=True``, a parameter per cell initialised from it."""

    def __init__(self, u: Tensor, v: Tensor | None = None, learnable: bool = False) -> None:
        super().__init__()
        u = torch.as_tensor(u, dtype=torch.get_default_dtype())
        parts = {"u": u} if v is None else {"u": u, "v": torch.as_tensor(v).to(u)}
        shapes = [tuple(c.shape) for c in parts.values()]
        if len(set(shapes)) != 1 or u.ndim != len(parts):
            raise ValueError(
                "u and v must both be [ny, nx] (or u alone [nx], v=None, on a 1-D grid), "
                f"got shapes {shapes}"
            )
        for name, value in parts.items():
            if learnable:
                setattr(self, name, nn.Parameter(value.clone()))
            else:
                self.register_buffer(name, value.clone())
        self.components = len(parts)

    def forward(self) -> tuple[Tensor, ...]:
        return (self.u,) if self.components == 1 else (self.u, self.v)


class AdvectionDiffusion(nn.Module):
    """∂c/∂t = -∇·(w c) + κ ∇²c for each tracer channel, in flux form (mass-conserving).

    State ``y``: ``[..., C, ny, nx]`` on a 2-D grid, ``[..., C, nx]`` on a 1-D one (a line or a
    longitude circle, where the equation reads ∂c/∂t = -∂(u c)/∂x + κ ∂²c/∂x²); ``t`` is unused
    (autonomous). Walls and inactive cells are no-flux.

    Args:
        grid: the geometry (from the data, or :meth:`Grid.regular_box`); it gives the rank.
        kappa: diffusivity κ in m²/s (learnable, positive, stored as ``log_kappa``).
        velocity: a module returning the velocity's components in m/s, one per grid axis
            (``(u, v)`` in 2-D, ``(u,)`` in 1-D), e.g. :class:`ConstantVelocity` (learnable
            uniform; ``v=None`` in 1-D), :class:`VelocityField` or
            :class:`~hybrid.models.flow.FlowEstimator`; None for pure diffusion.
        scheme: face values of the advective flux, ``"centred"`` (2nd order) or ``"upwind"``.

    Raises:
        ValueError: an unknown scheme, or a velocity whose ``components`` differ from the rank.
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
        components = getattr(velocity, "components", grid.ndim)
        if components != grid.ndim:
            raise ValueError(
                f"the velocity has {components} components for a {grid.ndim}-D grid: give one "
                "per axis (ConstantVelocity(u, v=None) on a 1-D grid, FlowEstimator(dims=1))"
            )
        self.grid, self.velocity, self.scheme = grid, velocity, scheme
        self._advective_flux = schemes[scheme]
        self.log_kappa = log_parameter(kappa, "kappa")

    kappa = Positive()

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        # Sum the face fluxes, then take one divergence: κ∇c - w c through every face.
        fluxes = [self.kappa * f for f in operators.diffusive_flux(y, self.grid)]
        if self.velocity is not None:
            advective = self._advective_flux(y, *self.velocity(), self.grid)
            fluxes = [f - a for f, a in zip(fluxes, advective, strict=True)]
        return operators.net_outflow(*fluxes, self.grid)

    def stable_dt(self) -> float:
        """Explicit-RK limit ``2 / (λ_d + λ_a)`` with ``λ_d = 4 d κ/Δ²`` (``d`` the rank),
        ``λ_a = Σ_k max|w_k| / Δ``."""
        dx = self.grid.min_spacing()
        rate = 4 * self.grid.ndim * float(self.kappa.detach()) / dx**2
        if self.velocity is not None:
            rate += sum(float(w.detach().abs().max()) for w in self.velocity()) / dx
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


def line_fourier_mode(
    x: Tensor, t: float, *, k: float, u: float, kappa: float, dx: float | None = None
) -> Tensor:
    """Solution on a periodic line for ``c(x, 0) = sin(k x)``, uniform ``u``:
    ``exp(-κ K² t) sin(k x - ω t)``.

    ``dx=None``: the PDE, ``K = k``, ``ω = u k``. With ``dx``, the semi-discrete (exact in time)
    solution of the centred flux-form scheme: ``ω = u sin(k Δ)/Δ`` (centred advection) and
    ``K = 2 sin(k Δ/2)/Δ`` (3-point Laplacian), which tend to ``u k`` and ``k`` at 2nd order.
    """
    if dx is None:
        big_k, omega = k, u * k
    else:
        big_k, omega = 2 * math.sin(k * dx / 2) / dx, u * math.sin(k * dx) / dx
    return math.exp(-kappa * big_k**2 * t) * torch.sin(k * x - omega * t)
