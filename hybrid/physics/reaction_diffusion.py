"""FitzHugh-Nagumo reaction-diffusion: ∂u/∂t = a Δu + u - u³ - k - v,  ∂v/∂t = b Δv + u - v.

APHYNITY's protocol: ``a = 1e-3``, ``b = 5e-3``, ``k = 5e-3`` on a 32 x 32 periodic grid covering
``[-1, 1]²`` (``dx = 2/32``) with the 5-point Laplacian; its incomplete prior keeps only the
diffusion terms.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from hybrid.physics import operators
from hybrid.physics.grid import Grid
from hybrid.physics.parameters import Positive, log_parameter


def _periodic_square(size: int, length: float) -> Grid:
    """A periodic ``size x size`` box of side ``length``."""
    if size < 3:
        raise ValueError(f"size must be at least 3, got {size}")
    if not length > 0:
        raise ValueError(f"length must be positive, got {length}")
    return Grid.regular_box(size, size, length / size, periodic=True)


def _diffusion(y: Tensor, a: Tensor, b: Tensor, dx: float) -> Tensor:
    """``(a Δu, b Δv)`` for ``y = (u, v)``: ``[..., 2, n, n]`` -> ``[..., 2, n, n]``.

    The grid is a periodic square, so the flux-form Laplacian is the 5-point stencil, applied as
    one depthwise convolution (:func:`~hybrid.physics.operators.laplacian_periodic`).
    """
    lap = operators.laplacian_periodic(y.reshape(-1, *y.shape[-3:]), dx)  # [N, 2, n, n]
    return (lap * torch.stack((a, b)).view(2, 1, 1)).view(y.shape)


def _stable_dt(diffusivity: float, dx: float, reaction_rate: float) -> float:
    """Explicit-RK step ``2 / (8 D / dx² + r)``: the 5-point Laplacian's largest eigenvalue is
    ``8/dx²``; 2 leaves a margin below rk4's real-axis limit of about 2.79."""
    return 2.0 / (8 * diffusivity / dx**2 + reaction_rate)


class ReactionDiffusion(nn.Module):
    """FitzHugh-Nagumo: ∂u/∂t = a Δu + u - u³ - k - v,  ∂v/∂t = b Δv + u - v (periodic).

    State ``y``: ``[..., 2, size, size]`` holding ``(u, v)``; ``t`` is unused (autonomous).

    Args:
        a: diffusivity of ``u`` (learnable, positive, ``log_a``).
        b: diffusivity of ``v`` (learnable, positive, ``log_b``).
        k: reaction threshold (learnable, positive, ``log_k``).
        size: grid points per axis.
        length: side of the square domain, so ``dx = length / size``.

    Raises:
        ValueError: if a parameter or ``length`` is not positive, or ``size < 3``.
    """

    state_names = ("u", "v")

    def __init__(
        self, a: float = 1e-3, b: float = 5e-3, k: float = 5e-3, size: int = 32, length: float = 2.0
    ) -> None:
        super().__init__()
        self.grid = _periodic_square(size, length)
        self.dx = length / size
        self.log_a = log_parameter(a, "a")
        self.log_b = log_parameter(b, "b")
        self.log_k = log_parameter(k, "k")

    a = Positive()
    b = Positive()
    k = Positive()

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        u, v = y.unbind(-3)
        reaction = torch.stack((u - u**3 - self.k - v, u - v), dim=-3)
        return _diffusion(y, self.a, self.b, self.dx) + reaction

    def stable_dt(self) -> float:
        """Step ``2 / (8 max(a, b) / dx² + 3)``; 3 bounds the reaction's O(1) rates near |u| ≤ 1."""
        d = float(torch.maximum(self.a, self.b).detach())
        return _stable_dt(d, self.grid.min_spacing(), reaction_rate=3.0)


class DiffusionOnly(nn.Module):
    """Diffusion part of FitzHugh-Nagumo: ∂u/∂t = a Δu,  ∂v/∂t = b Δv (APHYNITY's incomplete prior).

    State ``y``: ``[..., 2, size, size]`` holding ``(u, v)``; ``t`` is unused (autonomous).

    Args:
        a: diffusivity of ``u`` (learnable, positive, ``log_a``).
        b: diffusivity of ``v`` (learnable, positive, ``log_b``).
        size: grid points per axis.
        length: side of the square domain, so ``dx = length / size``.

    Raises:
        ValueError: if a parameter or ``length`` is not positive, or ``size < 3``.
    """

    state_names = ("u", "v")

    def __init__(self, a: float = 1e-3, b: float = 5e-3, size: int = 32, length: float = 2.0):
        super().__init__()
        self.grid = _periodic_square(size, length)
        self.dx = length / size
        self.log_a = log_parameter(a, "a")
        self.log_b = log_parameter(b, "b")

    a = Positive()
    b = Positive()

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        return _diffusion(y, self.a, self.b, self.dx)

    def stable_dt(self) -> float:
        """Step ``2 / (8 max(a, b) / dx²)``."""
        d = float(torch.maximum(self.a, self.b).detach())
        return _stable_dt(d, self.grid.min_spacing(), reaction_rate=0.0)


def uniform_steady_state(k: float) -> tuple[float, float]:
    """The spatially uniform fixed point ``u = v = -k^(1/3)``: ``v = u``, then ``-u³ - k = 0``."""
    u = -(k ** (1 / 3))
    return u, u


def laplacian_eigenvalue(m: int, n: int, size: int, length: float) -> float:
    """``λ = (4/dx²)(sin²(πm/N) + sin²(πn/N))``: ``-Δ`` of the 5-point stencil maps the periodic
    mode ``cos(2π(m i + n j)/N)`` to ``λ`` times itself (``dx = length / N``, ``N = size``)."""
    dx = length / size
    return 4 / dx**2 * (math.sin(math.pi * m / size) ** 2 + math.sin(math.pi * n / size) ** 2)
