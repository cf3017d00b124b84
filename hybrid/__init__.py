"""hybrid: forecast physical dynamics with known physics plus a learned correction.

The re-exports are resolved on first use (PEP 562), so ``import hybrid.cli`` does not load torch
before the command has set up its environment.
"""

import importlib

_EXPORTS = {
    "Grid": "hybrid.physics.grid",
    "HybridField": "hybrid.dynamics",
    "rollout": "hybrid.dynamics",
}

__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'hybrid' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
