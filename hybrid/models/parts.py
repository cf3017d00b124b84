"""Parts of a model that await the data's grid: a prior or network given as its class (a factory
from a config's ``class_path``) is built once the data module knows the grid."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

from torch import nn

from hybrid.physics.grid import Grid

# A prior or network given as a module, or as a class awaiting the data's grid (what the CLI and
# a checkpoint give: ``class_path`` + ``init_args``; a ``grid`` argument is filled from the data).
Part = Callable[[Grid], nn.Module] | nn.Module | None


def awaits_grid(part: Part) -> bool:
    """``part`` is a factory still to be built, not a module."""
    return part is not None and not isinstance(part, nn.Module)


def build_part(part: Part, grid: Grid | None) -> nn.Module | None:
    """A part as given, or built from its class, with ``grid`` when the class takes one."""
    if not awaits_grid(part):
        return part
    takes_grid = "grid" in inspect.signature(factory_target(part)).parameters
    return part(grid=grid) if takes_grid else part()


def factory_target(factory: Callable) -> Callable:
    """The class a factory builds (jsonargparse's factories are partials holding the class)."""
    if isinstance(factory, functools.partial):
        return next((a for a in factory.args if isinstance(a, type)), factory.func)
    return factory
