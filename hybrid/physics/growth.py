"""Growth and decay that depend on where the tracer is: ∂c/∂t = σ(x) c."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class LocalGrowth(nn.Module):
    """∂c/∂t = σ(x) c: a fixed pattern of growth (σ > 0) and decay (σ < 0) rates, 1/s.

    The Hovmöller protocol's eastward waves grow over one half of the circle and decay over the
    other (as tropical convection strengthens over warm water). Carried at a uniform speed ``U``
    with a rate ``σ`` of zero mean, a wave returns to its amplitude after each circuit, and
    along its way it is multiplied by ``exp(∫ σ(x0 + U s) ds)``: no constant-speed transport can
    follow that, a network given the position can.

    Args:
        rate: ``σ`` on the grid, ``[*grid]`` (or broadcastable to the state), in 1/s.
    """

    def __init__(self, rate: Tensor) -> None:
        super().__init__()
        self.register_buffer("rate", torch.as_tensor(rate, dtype=torch.get_default_dtype()))

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        return self.rate * y

    def stable_dt(self) -> float:
        """``2 / max|σ|`` (rk4's real-axis limit, with a margin)."""
        peak = float(self.rate.abs().max())
        return 2.0 / peak if peak > 0 else float("inf")
