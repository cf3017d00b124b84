"""The square's symmetries (the dihedral group D4) as data augmentation on a 2-D grid.

An isotropic equation on a square, evenly spaced grid, periodic (or walled) on both axes, such
as Gray-Scott ``∂u/∂t = D_u Δu − u v² + F (1 − u)`` with the 9-point Laplacian, commutes with
the eight maps of the square onto itself: if ``y(t)`` solves it, so does ``g·y(t)`` for every
``g`` in D4. A training window mapped by a random ``g`` is then another true trajectory of the
same environment, which a network without that symmetry built in would otherwise have to see in
data.

Element ``k`` in ``0..7``: a rotation by ``k mod 4`` quarter turns, preceded by a transpose of
the grid's two axes when ``k >= 4``; ``0`` is the identity. It acts on the last two axes of any
tensor (``[..., ny, nx]``), so a whole window ``[E, W, C, ny, nx]`` maps in one call. Scalar
fields only: the velocity components of a vector field would also have to be permuted and
negated, which :func:`dihedral` does not do.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import Dataset

from hybrid.physics.grid import Grid

ORDER = 8  # elements of D4


def dihedral(y: Tensor, k: int) -> Tensor:
    """Element ``k`` of D4 applied to the last two axes of ``y`` ``[..., n, n]`` (same shape)."""
    if not 0 <= k < ORDER:
        raise ValueError(f"D4 has elements 0..{ORDER - 1}, got {k}")
    if k >= 4:
        y = y.transpose(-1, -2)
    return torch.rot90(y, k % 4, dims=(-2, -1))


def inverse(k: int) -> int:
    """The element undoing ``k``: a rotation's opposite; a reflection is its own inverse."""
    return (-k) % 4 if k < 4 else k


def symmetry_problem(grid: Grid | None, shape: tuple[int, ...]) -> str | None:
    """Why D4 is not a symmetry of an isotropic equation on this grid, or ``None`` if it is.

    Needs two grid axes of equal length, a box (not lat-lon: the sphere's metric terms depend on
    latitude), both axes periodic or both walled, one spacing for every cell and both axes, and
    no inactive cells (a land mask would have to be symmetric itself)."""
    if len(shape) < 2 or shape[-1] != shape[-2]:
        return f"the grid must be square, got {tuple(shape[-2:])}"
    if grid is None:
        return None
    if grid.ndim != 2 or grid.kind != "box":
        return f"the grid must be a 2-D box, got a {grid.ndim}-D {grid.kind} grid"
    if grid.periodic[0] != grid.periodic[1]:
        return f"both axes must be periodic or neither, got {grid.periodic}"
    spacing = torch.cat([grid.dx_east.abs().flatten(), grid.dy_north.abs().flatten()])
    if not torch.allclose(spacing, spacing[0].expand_as(spacing), rtol=1e-6, atol=0.0):
        return "the spacing must be the same along both axes and in every cell"
    if not bool(grid.active.bool().all()):
        return "every cell must be active (a land mask breaks the symmetry)"
    return None


class DihedralAugmented(Dataset):
    """Items of ``base`` ``(t, y)`` with ``y`` ``[..., n, n]`` mapped by one random element of
    D4 each, drawn afresh at every access from a generator seeded with ``seed``.

    Args:
        base: a dataset of ``(t, y)`` pairs.
        seed: seed of the draws (the same seed gives the same sequence of elements).
    """

    def __init__(self, base: Dataset, seed: int = 0) -> None:
        self.base = base
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        t, y = self.base[i]
        k = int(torch.randint(ORDER, (), generator=self.generator))
        return t, dihedral(y, k)
