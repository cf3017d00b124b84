"""FitzHugh-Nagumo reaction-diffusion: ∂u/∂t = a Δu + u - u³ - k - v,  ∂v/∂t = b Δv + u - v.

APHYNITY's protocol: ``a = 1e-3``, ``b = 5e-3``, ``k = 5e-3`` on a 32 x 32 periodic grid covering
``[-1, 1]²`` (``dx = 2/32``) with the 5-point Laplacian; its incomplete prior keeps only the
diffusion terms. ``dims=1`` gives the same equations on a periodic line (3-point Laplacian).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from hybrid.physics import operators
from hybrid.physics.grid import Grid
from hybrid.physics.parameters import Positive, log_parameter


def _periodic_square(size: int, length: float, dims: int = 2) -> Grid:
    """A periodic ``size x size`` box of side ``length`` (``dims=2``) or line of ``size`` cells."""
    if size < 3:
        raise ValueError(f"size must be at least 3, got {size}")
    if not length > 0:
        raise ValueError(f"length must be positive, got {length}")
    if dims not in (1, 2):
        raise ValueError(f"dims must be 1 (a line) or 2 (a square), got {dims}")
    if dims == 1:
        return Grid.regular_line(size, length / size, periodic=True)
    return Grid.regular_box(size, size, length / size, periodic=True)


def _diffusion(y: Tensor, a: Tensor, b: Tensor, dx: float, dims: int = 2) -> Tensor:
    """``(a Δu, b Δv)`` for ``y = (u, v)``: ``[..., 2, *grid]`` -> ``[..., 2, *grid]``.

    The grid is a periodic square (line), so the flux-form Laplacian is the 5-point (3-point)
    stencil, applied as one depthwise convolution
    (:func:`~hybrid.physics.operators.laplacian_periodic`).
    """
    field = y.shape[-1 - dims :]  # (2, n, n) or (2, n)
    lap = operators.laplacian_periodic(y.reshape(-1, *field), dx)  # [N, 2, *grid]
    return (lap * torch.stack((a, b)).view(2, *[1] * dims)).view(y.shape)


def _stable_dt(diffusivity: float, dx: float, reaction_rate: float, dims: int = 2) -> float:
    """Explicit-RK step ``2 / (4 d D / dx² + r)``: the 5-point (d = 2) or 3-point (d = 1)
    Laplacian's largest eigenvalue is ``4d/dx²``; 2 leaves a margin below rk4's real-axis limit
    of about 2.79."""
    return 2.0 / (4 * dims * diffusivity / dx**2 + reaction_rate)


class ReactionDiffusion(nn.Module):
    """FitzHugh-Nagumo: ∂u/∂t = a Δu + u - u³ - k - v,  ∂v/∂t = b Δv + u - v (periodic).

    State ``y``: ``[..., 2, size, size]`` (``[..., 2, size]`` when ``dims=1``) holding ``(u, v)``;
    ``t`` is unused (autonomous).

    Args:
        a: diffusivity of ``u`` (learnable, positive, ``log_a``).
        b: diffusivity of ``v`` (learnable, positive, ``log_b``).
        k: reaction threshold (learnable, positive, ``log_k``).
        size: grid points per axis.
        length: side of the square domain, so ``dx = length / size``.
        dims: 2 (a periodic square) or 1 (a periodic line of length ``length``).

    Raises:
        ValueError: if a parameter or ``length`` is not positive, or ``size < 3``.
    """

    state_names = ("u", "v")

    def __init__(
        self,
        a: float = 1e-3,
        b: float = 5e-3,
        k: float = 5e-3,
        size: int = 32,
        length: float = 2.0,
        dims: int = 2,
    ) -> None:
        super().__init__()
        self.grid, self.dims = _periodic_square(size, length, dims), dims
        self.dx = length / size
        self.log_a = log_parameter(a, "a")
        self.log_b = log_parameter(b, "b")
        self.log_k = log_parameter(k, "k")

    a = Positive()
    b = Positive()
    k = Positive()

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        u, v = y.unbind(-1 - self.dims)
        reaction = torch.stack((u - u**3 - self.k - v, u - v), dim=-1 - self.dims)
        return _diffusion(y, self.a, self.b, self.dx, self.dims) + reaction

    def stable_dt(self) -> float:
        """Step ``2 / (4 d max(a, b) / dx² + 3)``; 3 bounds the reaction's O(1) rates near
        |u| ≤ 1."""
        d = float(torch.maximum(self.a, self.b).detach())
        return _stable_dt(d, self.grid.min_spacing(), reaction_rate=3.0, dims=self.dims)


class DiffusionOnly(nn.Module):
    """Diffusion part of FitzHugh-Nagumo: ∂u/∂t = a Δu,  ∂v/∂t = b Δv (APHYNITY's incomplete prior).

    State ``y``: ``[..., 2, size, size]`` (``[..., 2, size]`` when ``dims=1``) holding ``(u, v)``;
    ``t`` is unused (autonomous).

    Args:
        a: diffusivity of ``u`` (learnable, positive, ``log_a``).
        b: diffusivity of ``v`` (learnable, positive, ``log_b``).
        size: grid points per axis.
        length: side of the square domain, so ``dx = length / size``.
        dims: 2 (a periodic square) or 1 (a periodic line of length ``length``).

    Raises:
        ValueError: if a parameter or ``length`` is not positive, or ``size < 3``.
    """

    state_names = ("u", "v")

    def __init__(
        self, a: float = 1e-3, b: float = 5e-3, size: int = 32, length: float = 2.0, dims: int = 2
    ):
        super().__init__()
        self.grid, self.dims = _periodic_square(size, length, dims), dims
        self.dx = length / size
        self.log_a = log_parameter(a, "a")
        self.log_b = log_parameter(b, "b")

    a = Positive()
    b = Positive()

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        return _diffusion(y, self.a, self.b, self.dx, self.dims)

    def stable_dt(self) -> float:
        """Step ``2 / (4 d max(a, b) / dx²)``."""
        d = float(torch.maximum(self.a, self.b).detach())
        return _stable_dt(d, self.grid.min_spacing(), reaction_rate=0.0, dims=self.dims)


def uniform_steady_state(k: float) -> tuple[float, float]:
    """The spatially uniform fixed point ``u = v = -k^(1/3)``: ``v = u``, then ``-u³ - k = 0``."""
    u = -(k ** (1 / 3))
    return u, u


def laplacian_eigenvalue(m: int, n: int, size: int, length: float) -> float:
    """``λ = (4/dx²)(sin²(πm/N) + sin²(πn/N))``: ``-Δ`` of the 5-point stencil maps the periodic
    mode ``cos(2π(m i + n j)/N)`` to ``λ`` times itself (``dx = length / N``, ``N = size``); with
    ``n = 0`` it is also the 3-point stencil's eigenvalue for ``cos(2π m i/N)`` on a line."""
    dx = length / size
    return 4 / dx**2 * (math.sin(math.pi * m / size) ** 2 + math.sin(math.pi * n / size) ** 2)
