"""Trajectories ``[N, T, C, *grid]`` read lazily from xarray, and statistics streamed over them.

Nothing here holds the whole archive in memory: indexing reads one window (dask or the NetCDF
backend fetch only those frames), and statistics and the climatology are accumulated block by block
of time in float64.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

BLOCK_BYTES = 4 * 2**20  # about this much is read at a time by the streaming reductions


class LazyTrajectories:
    """A ``[N, T, C, *grid]`` view of ``variables`` of ``ds``; indexing reads only what it needs
    and returns float32 NumPy with missing values as 0 (masked cells and gaps are tracked apart).

    Args:
        ds: dims ``([sample,] time, *grid)``; without ``sample`` there is one trajectory.
        variables: the channels, in order.
    """

    def __init__(self, ds: xr.Dataset, variables: Sequence[str]) -> None:
        self._hold(
            [
                (ds[v] if "sample" in ds[v].dims else ds[v].expand_dims("sample")).transpose(
                    "sample", "time", ...
                )
                for v in variables
            ]
        )

    def _hold(self, arrays: list[xr.DataArray]) -> None:
        """One ``[N, T, *grid]`` array per channel, and their ``shape``: ``(N, T, C, *grid)``."""
        self.arrays, first = arrays, arrays[0]
        self.shape = (first.sizes["sample"], first.sizes["time"], len(arrays), *first.shape[2:])
        self.ndim = len(self.shape)

    def isel(self, samples=slice(None), frames=slice(None)) -> LazyTrajectories:
        """A lazy subset of trajectories and frames."""
        out = object.__new__(LazyTrajectories)
        out._hold([a.isel(sample=samples, time=frames) for a in self.arrays])
        return out

    def raw(self, n: int, frames: slice) -> np.ndarray:
        """``[F, C, *grid]`` as stored (NaN where missing)."""
        return np.stack([np.asarray(a[n, frames].values, np.float32) for a in self.arrays], 1)

    def __getitem__(self, key: tuple[int, slice]) -> np.ndarray:
        n, frames = key
        return np.nan_to_num(self.raw(n, frames), nan=0.0)

    def load(self) -> np.ndarray:
        """Everything, ``[N, T, C, *grid]`` (missing as 0): for small sets and tests only."""
        return np.stack([self[n, slice(None)] for n in range(self.shape[0])])

    def blocks(self):
        """Yield ``(n, first_frame, raw block [F, C, *grid])`` over everything, about
        ``BLOCK_BYTES`` at a time, each block overlapping the next by one frame (tendencies)."""
        frame = 4 * int(np.prod(self.shape[2:]))
        block = max(1, BLOCK_BYTES // frame)
        for n in range(self.shape[0]):
            for s in range(0, max(self.shape[1] - 1, 1), block):
                yield n, s, self.raw(n, slice(s, min(s + block + 1, self.shape[1])))


def missing_masks(y: LazyTrajectories) -> tuple[np.ndarray, np.ndarray]:
    """``land``: ``[*grid]`` cells missing in every frame of every channel; ``valid``: ``[N, T]``
    frames with no missing value on any other cell (a frame with a gap is not valid)."""
    seen = np.zeros(y.shape[3:], bool)
    for _, _, block in y.blocks():
        seen |= np.isfinite(block).all(1).any(0)
    land = ~seen
    valid = np.ones(y.shape[:2], bool)
    for n, s, block in y.blocks():
        gaps = ~np.isfinite(block) & ~land  # [F, C, *grid]
        valid[n, s : s + block.shape[0]] &= ~gaps.reshape(block.shape[0], -1).any(1)
    return land, valid


def moments(y: LazyTrajectories, valid: np.ndarray, active: np.ndarray, dt: float) -> dict:
    """Per-channel ``mean``, ``std`` over valid frames and active cells, and ``tendency_std``,
    the RMS of ``Δy/Δt`` over pairs of consecutive valid frames, each ``[C]`` (float64)."""
    c = y.shape[2]
    sums = np.zeros((3, c))  # Σx, Σx², Σ(Δx/Δt)²
    counts = np.zeros(2)  # cells·frames, cells·pairs
    for n, s, block in y.blocks():
        ok = valid[n, s : s + block.shape[0]]
        x = np.where(active, np.nan_to_num(block.astype(np.float64)), 0.0)  # [F, C, *grid]
        own = ok.copy()
        own[-1] &= s + block.shape[0] == y.shape[1]  # the overlap frame is the next block's
        flat = x[own].reshape(own.sum(), c, -1)
        sums[0] += flat.sum((0, 2))
        sums[1] += (flat**2).sum((0, 2))
        counts[0] += own.sum() * active.sum()
        pair = ok[1:] & ok[:-1]
        d = ((x[1:] - x[:-1]) / dt)[pair].reshape(pair.sum(), c, -1)
        sums[2] += (d**2).sum((0, 2))
        counts[1] += pair.sum() * active.sum()
    mean = sums[0] / counts[0]
    std = np.sqrt(np.maximum(sums[1] / counts[0] - mean**2, 0.0))
    return {"mean": mean, "std": std, "tendency_std": np.sqrt(sums[2] / max(counts[1], 1))}
