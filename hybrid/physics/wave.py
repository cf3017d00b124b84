"""Damped wave: ∂²w/∂t² = c² Δw - k ∂w/∂t, as a first-order system in ``(w, ∂w/∂t)``.

APHYNITY's protocol: ``c = 330``, ``k = 50`` on a 64 x 64 grid with ``dx = 1`` and the
fourth-order Laplacian, zero on the two outermost rows/columns (non-periodic); its incomplete prior
drops the damping.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from hybrid.physics import operators
from hybrid.physics.parameters import Positive, log_parameter

# Largest eigenvalue of -Δ4 on a square grid times dx²: per axis the symbol
# (30 - 32 cos θ + 2 cos 2θ) / 12 peaks at θ = π with 64/12 = 16/3; two axes add.
_LAMBDA_MAX_DX2 = 2 * 16 / 3


def _check_grid(size: int, dx: float) -> None:
    if size < 5:  # the fourth-order stencil reaches two points each side
        raise ValueError(f"size must be at least 5, got {size}")
    if not dx > 0:
        raise ValueError(f"dx must be positive, got {dx}")


def _stable_dt(c: float, k: float, dx: float) -> float:
    """rk4 step ``2 / (c sqrt(λmax) / dx + k)`` for the eigenvalues ``-k/2 ± i c sqrt(λ)/dx``.

    rk4 is stable up to ``|λ dt| ≈ 2.83`` on the imaginary axis; 2 leaves a margin for damping.
    """
    return 2.0 / (c * math.sqrt(_LAMBDA_MAX_DX2) / dx + k)


class DampedWave(nn.Module):
    """Damped wave: ∂w/∂t = w_t,  ∂w_t/∂t = c² Δ4 w - k w_t.

    State ``y``: ``[..., 2, size, size]`` holding ``(w, w_t)``; ``t`` is unused (autonomous).
    ``Δ4`` is :func:`~hybrid.physics.operators.laplacian_fourth_order`; without periodicity its
    second derivative along an axis is zero on that axis' two outermost rows/columns at each end.

    Args:
        c: wave speed (learnable, positive, ``log_c``).
        k: damping rate (learnable, positive, ``log_k``).
        size: grid points per axis.
        dx: grid spacing.
        periodic: wrap both axes round instead of zeroing the border.

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
    ) -> None:
        super().__init__()
        _check_grid(size, dx)
        self.size, self.dx, self.periodic = size, dx, periodic
        self.log_c = log_parameter(c, "c")
        self.log_k = log_parameter(k, "k")

    c = Positive()
    k = Positive()

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        w, w_t = y.unbind(-3)
        lap = operators.laplacian_fourth_order(w, self.dx, periodic=self.periodic)
        return torch.stack((w_t, self.c**2 * lap - self.k * w_t), dim=-3)

    def stable_dt(self) -> float:
        """rk4 step ``2 / (c sqrt(32/3) / dx + k)``."""
        return _stable_dt(float(self.c.detach()), float(self.k.detach()), self.dx)


class UndampedWave(nn.Module):
    """Undamped wave: ∂w/∂t = w_t,  ∂w_t/∂t = c² Δ4 w (APHYNITY's incomplete prior).

    State ``y``: ``[..., 2, size, size]`` holding ``(w, w_t)``; ``t`` is unused (autonomous).

    Args:
        c: wave speed (learnable, positive, ``log_c``).
        size: grid points per axis.
        dx: grid spacing.
        periodic: wrap both axes round instead of zeroing the border.

    Raises:
        ValueError: if ``c`` or ``dx`` is not positive, or ``size < 5``.
    """

    state_names = ("w", "w_t")

    def __init__(
        self, c: float = 330.0, size: int = 64, dx: float = 1.0, periodic: bool = False
    ) -> None:
        super().__init__()
        _check_grid(size, dx)
        self.size, self.dx, self.periodic = size, dx, periodic
        self.log_c = log_parameter(c, "c")

    c = Positive()

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        w, w_t = y.unbind(-3)
        lap = operators.laplacian_fourth_order(w, self.dx, periodic=self.periodic)
        return torch.stack((w_t, self.c**2 * lap), dim=-3)

    def stable_dt(self) -> float:
        """rk4 step ``2 / (c sqrt(32/3) / dx)``."""
        return _stable_dt(float(self.c.detach()), 0.0, self.dx)


def wave_energy(y: Tensor, c: float | Tensor, dx: float) -> Tensor:
    """``E = ½ Σ w_t² + ½ c² Σ w (-Δ4 w)``, conserved by :class:`UndampedWave` on a periodic grid
    (where ``-Δ4`` is symmetric positive semi-definite).

    Args:
        y: ``[..., 2, n, n]`` states ``(w, w_t)``.
    Returns:
        ``[...]``.
    """
    w, w_t = y.unbind(-3)
    minus_lap = -operators.laplacian_fourth_order(w, dx, periodic=True)
    return 0.5 * (w_t**2).sum((-2, -1)) + 0.5 * c**2 * (w * minus_lap).sum((-2, -1))


def wave_dispersion(c: float, k: float, kx: float, ky: float, dx: float | None = None) -> float:
    """Angular frequency ``ω = sqrt(c² K² - k²/4)`` of the periodic mode ``cos(kx x + ky y)``.

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
