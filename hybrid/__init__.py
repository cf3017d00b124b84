"""hybrid: forecast physical dynamics with known physics plus a learned correction."""

import os

# OpenMP threads that spin while waiting stall badly when another process shares the cores (a
# training step measured 2.8x slower on a loaded 2-core machine, scripts/bench_train.py); let them
# sleep instead, unless the user chose. Must be set before torch starts OpenMP.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from hybrid.dynamics import HybridField, rollout
from hybrid.physics.grid import Grid

__all__ = ["Grid", "HybridField", "rollout"]
__version__ = "0.1.0"
