"""Differentiable physics priors: plain ``nn.Module``s with ``forward(t, y) -> dy/dt``.

The contract (no base class, no registry): a typed ``__init__`` whose arguments are the physical
parameters (named after the equation's symbols, positive ones stored as ``log_<symbol>``) and the
geometry, and ``forward(t, y)`` returning a tensor shaped like ``y``. A prior may define
``stable_dt() -> float`` so that fixed-step integration sub-steps within its stability limit.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from hybrid.physics.grid import EARTH_RADIUS, Grid
from hybrid.physics.parameters import log_parameter, physical_parameters

VectorField = Callable[[Tensor, Tensor], Tensor]

__all__ = ["EARTH_RADIUS", "Grid", "VectorField", "log_parameter", "physical_parameters"]
