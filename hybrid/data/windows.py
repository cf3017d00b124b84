"""Fixed-length windows cut from trajectories, the training examples of a forecaster."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset


class TrajectoryWindows(Dataset):
    """Windows ``(t, y)`` of ``window`` frames from trajectories ``y``: ``[N, T, C, *grid]``.

    Item ``i`` is ``t``: ``[W]`` time relative to the window's first frame (s) and
    ``y``: ``[W, C, *grid]``, with ``y[0]`` the initial condition. All windows share the same
    relative ``t`` (the data are evenly spaced), which torchdiffeq needs: a batch integrates
    along one 1-D ``t``. Windows touching an invalid frame (``valid[n, k]`` False: a gap, a
    missing value) are left out.

    Args:
        y: ``[N, T, C, *grid]`` (a tensor, or an array sliced lazily, e.g. from dask).
        t: ``[T]`` times in seconds.
        window: frames per window ``W`` (at least 2).
        stride: frames between the starts of consecutive windows.
        valid: ``[N, T]`` boolean, default all valid.
    """

    def __init__(self, y, t: Tensor, window: int, stride: int = 1, valid: Tensor | None = None):
        n, length = y.shape[:2]
        if window < 2 or window > length:
            raise ValueError(f"window must be in [2, {length}] frames, got {window}")
        if stride < 1:
            raise ValueError(f"stride must be at least 1, got {stride}")
        self.y, self.t, self.window = y, torch.as_tensor(t), window
        ok = np.ones((n, length), bool) if valid is None else np.asarray(valid, bool)
        self.valid = torch.from_numpy(ok)  # [N, T]
        bad = np.cumsum(~ok, axis=1)  # [N, T] invalid frames so far
        bad = np.concatenate([np.zeros((n, 1), int), bad], axis=1)
        starts = np.arange(0, length - window + 1, stride)
        clean = bad[:, starts + window] - bad[:, starts] == 0  # [N, S]
        rows, cols = np.nonzero(clean)
        # (trajectory, first frame) of each window
        self.index = list(zip(rows.tolist(), starts[cols].tolist(), strict=True))
        self.n_dropped = int((~clean).sum())

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        n, s = self.index[i]
        t = self.t[s : s + self.window]
        y = torch.as_tensor(np.asarray(self.y[n, s : s + self.window]))
        return (t - t[0]).float(), y.float()  # [W], [W, C, *grid]
