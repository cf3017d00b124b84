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
        self._advective_flux = operators.advective_flux(scheme)
        components = getattr(velocity, "components", grid.ndim)
        if components != grid.ndim:
            raise ValueError(
                f"the velocity has {components} components for a {grid.ndim}-D grid: give one "
                "per axis (ConstantVelocity(u, v=None) on a 1-D grid, FlowEstimator(dims=1))"
            )
        self.grid, self.velocity, self.scheme = grid, velocity, scheme
        self.log_kappa = log_parameter(kappa, "kappa")

    kappa = Positive()

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        # Sum the face fluxes, then take one divergence: κ∇c - w c through every face.
        kappa = self.kappa  # one exp
        fluxes = [kappa * f for f in operators.diffusive_flux(y, self.grid)]
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


def _uniform_circle_step(grid: Grid) -> float:
    """The spacing of a periodic 1-D grid of equal cells (m); ValueError otherwise."""
    if grid.ndim != 1 or not grid.periodic[0]:
        raise ValueError(f"needs a periodic 1-D grid, got shape {grid.shape}, {grid.periodic}")
    dx = grid.dx_east
    if float((dx - dx[0]).abs().max()) > 1e-6 * float(dx[0].abs()):
        raise ValueError("needs equal cells (a line or a longitude circle)")
    return float(dx[0])


def shift_exactly(c: Tensor, distance: float | Tensor, grid: Grid) -> Tensor:
    """``c(x - d)`` on a periodic 1-D grid of equal cells by Fourier interpolation: the exact
    solution of ``∂c/∂t = -u ∂c/∂x`` after ``t = d/u`` for band-limited ``c`` (without the
    Nyquist mode, whose shift by part of a cell is not a real field).

    Args:
        c: ``[..., nx]``.
        distance: ``d`` in metres (eastward positive), a number or ``[...]`` broadcasting to ``c``'s
            leading axes.
    """
    n, dx = c.shape[-1], _uniform_circle_step(grid)
    k = 2 * math.pi * torch.fft.fftfreq(n, d=dx, dtype=torch.float64)  # rad/m, [nx]
    d = torch.as_tensor(distance, dtype=torch.float64)[..., None]
    phase = torch.exp(-1j * k * d)
    return torch.fft.ifft(torch.fft.fft(c.double()) * phase).real.to(c.dtype)


def best_constant_speed(y: Tensor, dt: float, grid: Grid, valid: Tensor | None = None) -> float:
    """The uniform speed ``u`` (m/s) whose exact transport best maps each frame to the next:
    ``argmin_u Σ_t ‖shift(y_t, u Δt) - y_{t+1}‖²`` over pairs of valid frames.

    With ``Y_t(k)`` the Fourier coefficients, the sum is a constant minus
    ``2 Re Σ_k e^{-ik s} Σ_t conj(Y_{t+1}(k)) Y_t(k)`` with ``s = u Δt``: that is maximised on a
    grid of ``s`` (1/20 cell, over the speeds that move less than half the circle per step),
    then twice on grids 100 times finer around the best.

    Args:
        y: ``[N, T, nx]`` (one channel), NaN-free where ``valid``.
        valid: ``[N, T]``, default all valid.
    """
    n = y.shape[-1]
    dx = _uniform_circle_step(grid)
    ok = torch.ones(y.shape[:2], dtype=torch.bool) if valid is None else valid.bool()
    pair = ok[:, 1:] & ok[:, :-1]  # [N, T-1]
    spec = torch.fft.fft(torch.where(ok[..., None], y, 0.0).double())  # [N, T, nx]
    cross = (spec[:, 1:].conj() * spec[:, :-1] * pair[..., None]).sum((0, 1))  # [nx]
    k = 2 * math.pi * torch.fft.fftfreq(n, d=dx, dtype=torch.float64)

    def best(s: Tensor) -> Tensor:
        score = (torch.exp(-1j * k[None] * s[:, None]) * cross).real.sum(-1)
        return s[score.argmax()]

    s = best(torch.linspace(-n / 2 * dx, n / 2 * dx, 20 * n + 1, dtype=torch.float64))
    for width in (dx / 20, dx / 2000):  # refine: 1/2000 then 1/200000 of a cell
        s = best(s + torch.linspace(-width, width, 201, dtype=torch.float64))
    return float(s) / dt
