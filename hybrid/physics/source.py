"""A steady source and sink pattern: ∂c/∂t = S(x, y)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class SteadySource(nn.Module):
    """∂c/∂t = S(x, y), a fixed pattern of emission (S > 0) and deposition (S < 0).

    State-independent, yet not orthogonal to transport: the tracer's response to ``S`` correlates
    with ``S``, so a transport prior fitted by least norm shifts its κ and velocity by an amount
    growing as ``|S|²`` (:func:`hybrid.identifiability.least_norm_parameters` measures it). The
    default advection-diffusion dataset keeps ``S`` small enough for that shift to stay below 1.5 %.

    Args:
        source: ``[ny, nx]`` (or broadcastable to the state) rate in state units per second.
    """

    def __init__(self, source: Tensor) -> None:
        super().__init__()
        self.register_buffer("source", torch.as_tensor(source, dtype=torch.get_default_dtype()))

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        return self.source.expand_as(y)
