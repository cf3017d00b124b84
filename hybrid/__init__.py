"""hybrid: forecast physical dynamics with known physics plus a learned correction."""

from hybrid.dynamics import HybridField, rollout
from hybrid.physics.grid import Grid

__all__ = ["Grid", "HybridField", "rollout"]
__version__ = "0.1.0"
