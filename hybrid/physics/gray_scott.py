"""Gray-Scott reaction-diffusion:

``∂u/∂t = D_u Δu − u v² + F (1 − u)``,  ``∂v/∂t = D_v Δv + u v² − (F + k) v``.

LEADS's benchmark: D_u = 0.2097, D_v = 0.105, environments of (F, k) in {(0.037, 0.060),
(0.030, 0.062), (0.039, 0.058)}, a 32² periodic grid of unit spacing, and the reference code's
9-point Laplacian ``(−3 a + ½ Σ_edges + ¼ Σ_corners) / dx²`` (:func:`laplacian_9`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hybrid.physics.parameters import Positive, log_parameter

RK4_REAL_LIMIT = 2.5  # below rk4's stability limit of about 2.79 on the negative real axis


def laplacian_9(a: Tensor, dx: float) -> Tensor:
    """Isotropic 9-point Laplacian on a periodic grid, ``[..., ny, nx]`` -> same shape.

    Second order; its most negative eigenvalue is ``−4/dx²`` (the checkerboard mode)."""
    edges = sum(a.roll(s, d) for s in (1, -1) for d in (-1, -2))
    corners = sum(a.roll((s, r), (-2, -1)) for s in (1, -1) for r in (1, -1))
    return (-3 * a + 0.5 * edges + 0.25 * corners) / dx**2


class GrayScott(nn.Module):
    """∂u/∂t = D_u Δu − u v² + F (1 − u),  ∂v/∂t = D_v Δv + u v² − (F + k) v (periodic).

    State ``[..., 2, ny, nx]`` holding ``(u, v)``; ``t`` unused. Every parameter is positive,
    stored as ``log_<name>``; one may be given per leading index (``[E, 1, 1, 1]`` against
    ``[E, b, 2, ny, nx]``: :class:`hybrid.environments.PerEnvironment`).

    Args:
        D_u, D_v: diffusivities of ``u`` and ``v``.
        F: feed rate.
        k: kill rate.
        dx: grid spacing.
    """

    state_names = ("u", "v")
    D_u, D_v, F, k = Positive(), Positive(), Positive(), Positive()

    def __init__(
        self,
        D_u: float = 0.2097,  # noqa: N803 (the equation's symbols)
        D_v: float = 0.105,  # noqa: N803
        F: float = 0.037,  # noqa: N803
        k: float = 0.060,
        dx: float = 1.0,
    ) -> None:
        super().__init__()
        if not dx > 0:
            raise ValueError(f"dx must be positive, got {dx}")
        self.log_D_u, self.log_D_v = log_parameter(D_u, "D_u"), log_parameter(D_v, "D_v")
        self.log_F, self.log_k = log_parameter(F, "F"), log_parameter(k, "k")
        self.dx = dx

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        u, v = y[..., 0, :, :], y[..., 1, :, :]
        uv2 = u * v.square()
        du = self.D_u * laplacian_9(u, self.dx) - uv2 + self.F * (1 - u)
        dv = self.D_v * laplacian_9(v, self.dx) + uv2 - (self.F + self.k) * v
        return torch.stack((du, dv), -3)

    def stable_dt(self) -> float:
        """``2.5 dx² / (4 max(D))``: the 9-point Laplacian's largest eigenvalue is ``4/dx²``."""
        d = float(torch.maximum(self.D_u.max(), self.D_v.max()).detach())
        return RK4_REAL_LIMIT * self.dx**2 / (4 * d)
