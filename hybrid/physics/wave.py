"""Damped wave: ∂²w/∂t² = c² Δw - k ∂w/∂t, as a first-order system in ``(w, ∂w/∂t)``.

APHYNITY's protocol: ``c = 330``, ``k = 50`` on a 64 x 64 grid with ``dx = 1`` and the
fourth-order Laplacian, zero on the two outermost rows/columns (non-periodic); its incomplete prior
drops the damping. ``dims=1`` gives the same equation on a line (a string).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from hybrid.physics import operators
from hybrid.physics.parameters import Positive, log_parameter

# Largest eigenvalue of -Δ4 on a grid times dx², per axis: the symbol
# (30 - 32 cos θ + 2 cos 2θ) / 12 peaks at θ = π with 64/12 = 16/3; axes add.
_LAMBDA_MAX_DX2_PER_AXIS = 16 / 3


def _check_grid(size: int, dx: float, dims: int = 2) -> None:
    if size < 5:  # the fourth-order stencil reaches two points each side
        raise ValueError(f"size must be at least 5, got {size}")
    if not dx > 0:
        raise ValueError(f"dx must be positive, got {dx}")
    if dims not in (1, 2):
        raise ValueError(f"dims must be 1 (a line) or 2 (a square), got {dims}")


def _stable_dt(c: float, k: float, dx: float, dims: int = 2) -> float:
    """rk4 step ``2 / (c sqrt(λmax) / dx + k)`` for the eigenvalues ``-k/2 ± i c sqrt(λ)/dx``,
    ``λmax = 16 d / 3`` on ``d`` axes.

    rk4 is stable up to ``|λ dt| ≈ 2.83`` on the imaginary axis; 2 leaves a margin for damping.
    """
    return 2.0 / (c * math.sqrt(dims * _LAMBDA_MAX_DX2_PER_AXIS) / dx + k)


class DampedWave(nn.Module):
    """Damped wave: ∂w/∂t = w_t,  ∂w_t/∂t = c² Δ4 w - k w_t.

    State ``y``: ``[..., 2, size, size]`` (``[..., 2, size]`` when ``dims=1``) holding
    ``(w, w_t)``; ``t`` is unused (autonomous).
    ``Δ4`` is :func:`~hybrid.physics.operators.laplacian_fourth_order`; without periodicity its
    second derivative along an axis is zero on that axis' two outermost rows/columns at each end.

    Args:
        c: wave speed (learnable, positive, ``log_c``).
        k: damping rate (learnable, positive, ``log_k``).
        size: grid points per axis.
        dx: grid spacing.
        periodic: wrap both axes round instead of zeroing the border.
        dims: 2 (a square) or 1 (a line).

    Raises:
        ValueError: if ``c``, ``k`` or ``dx`` is not positive, or ``size < 5``.
    """

    state_names = ("w", "w_t")

    def __init__(
        self,
        c: float = 330.0,
        k: float = 50.0,
        size: int = 64,
        dx: float = 1.0,
        periodic: bool = False,
        dims: int = 2,
    ) -> None:
        super().__init__()
        _check_grid(size, dx, dims)
        self.size, self.dx, self.periodic, self.dims = size, dx, periodic, dims
        self.log_c = log_parameter(c, "c")
        self.log_k = log_parameter(k, "k")

    c = Positive()
    k = Positive()

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        w, w_t = y.unbind(-1 - self.dims)
        lap = operators.laplacian_fourth_order(w, self.dx, periodic=self.periodic, ndim=self.dims)
        return torch.stack((w_t, self.c**2 * lap - self.k * w_t), dim=-1 - self.dims)

    def stable_dt(self) -> float:
        """rk4 step ``2 / (c sqrt(16 d/3) / dx + k)`` on ``d`` axes."""
        return _stable_dt(float(self.c.detach()), float(self.k.detach()), self.dx, self.dims)


class UndampedWave(nn.Module):
    """Undamped wave: ∂w/∂t = w_t,  ∂w_t/∂t = c² Δ4 w (APHYNITY's incomplete prior).

    State ``y``: ``[..., 2, size, size]`` (``[..., 2, size]`` when ``dims=1``) holding
    ``(w, w_t)``; ``t`` is unused (autonomous).

    Args:
        c: wave speed (learnable, positive, ``log_c``).
        size: grid points per axis.
        dx: grid spacing.
        periodic: wrap both axes round instead of zeroing the border.
        dims: 2 (a square) or 1 (a line).

    Raises:
        ValueError: if ``c`` or ``dx`` is not positive, or ``size < 5``.
    """

    state_names = ("w", "w_t")

    def __init__(
        self,
        c: float = 330.0,
        size: int = 64,
        dx: float = 1.0,
        periodic: bool = False,
        dims: int = 2,
    ) -> None:
        super().__init__()
        _check_grid(size, dx, dims)
        self.size, self.dx, self.periodic, self.dims = size, dx, periodic, dims
        self.log_c = log_parameter(c, "c")

    c = Positive()

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        w, w_t = y.unbind(-1 - self.dims)
        lap = operators.laplacian_fourth_order(w, self.dx, periodic=self.periodic, ndim=self.dims)
        return torch.stack((w_t, self.c**2 * lap), dim=-1 - self.dims)

    def stable_dt(self) -> float:
        """rk4 step ``2 / (c sqrt(16 d/3) / dx)`` on ``d`` axes."""
        return _stable_dt(float(self.c.detach()), 0.0, self.dx, self.dims)


def wave_energy(y: Tensor, c: float | Tensor, dx: float, dims: int = 2) -> Tensor:
    """``E = ½ Σ w_t² + ½ c² Σ w (-Δ4 w)``, conserved by :class:`UndampedWave` on a periodic grid
    (where ``-Δ4`` is symmetric positive semi-definite).

    Args:
        y: ``[..., 2, n, n]`` states ``(w, w_t)`` (``[..., 2, n]`` when ``dims=1``).
    Returns:
        ``[...]``.
    """
    w, w_t = y.unbind(-1 - dims)
    minus_lap = -operators.laplacian_fourth_order(w, dx, periodic=True, ndim=dims)
    axes = tuple(range(-dims, 0))
    return 0.5 * (w_t**2).sum(axes) + 0.5 * c**2 * (w * minus_lap).sum(axes)


def wave_dispersion(c: float, k: float, kx: float, ky: float, dx: float | None = None) -> float:
    """Angular frequency ``ω = sqrt(c² K² - k²/4)`` of the periodic mode ``cos(kx x + ky y)``
    (``ky = 0`` for the mode ``cos(kx x)`` on a line).

    The mode evolves as ``exp(-k t/2) (A cos ωt + B sin ωt)``. ``K²`` is the symbol of ``-Δ4``,
    ``Σ (30 - 32 cos(κ dx) + 2 cos(2κ dx)) / (12 dx²) = Σ (16 sin²(κ dx/2) - sin²(κ dx)) / (3 dx²)``
    over ``κ = kx, ky`` (the sine form avoids cancellation at small ``κ dx``), which tends to
    ``|k|² = kx² + ky²`` at fourth order as ``dx -> 0``; ``dx=None`` gives that continuous limit
    (``ω = c|k|`` when undamped).

    Raises:
        ValueError: if the mode is not under-damped (``c² K² <= k²/4``).
    """
    if dx is None:
        k_sq = kx**2 + ky**2
    else:
        k_sq = sum(16 * math.sin(q * dx / 2) ** 2 - math.sin(q * dx) ** 2 for q in (kx, ky))
        k_sq /= 3 * dx**2
    omega_sq = c**2 * k_sq - k**2 / 4
    if not omega_sq > 0:
        raise ValueError(
            f"mode is not under-damped: c² K² = {c**2 * k_sq:.4g} <= k²/4 = {k**2 / 4:.4g}"
        )
    return math.sqrt(omega_sq)
