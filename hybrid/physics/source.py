"""A steady source and sink pattern: ∂c/∂t = S(x, y)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class SteadySource(nn.Module):
    """∂c/∂t = S(x, y), a fixed pattern of emission (S > 0) and deposition (S < 0).

    State-independent, so over many trajectories it is orthogonal to transport: the default
    advection-diffusion dataset adds it so that an incomplete (transport-only) prior keeps its
    parameters identifiable while the correction learns ``S``.

    Args:
        source: ``[ny, nx]`` (or broadcastable to the state) rate in state units per second.
    """

    def __init__(self, source: Tensor) -> None:
        super().__init__()
        self.register_buffer("source", torch.as_tensor(source, dtype=torch.get_default_dtype()))

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        return self.source.expand_as(y)
