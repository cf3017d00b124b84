"""The Lightning DataModule for trajectory files: splits that never leak, windows, statistics."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
import xarray as xr
from torch import Tensor
from torch.utils.data import DataLoader, DistributedSampler

from hybrid.data.io import grid_from_dataset, open_trajectories, time_in_seconds
from hybrid.data.windows import TrajectoryWindows
from hybrid.physics.grid import Grid


def load_trajectories(ds: xr.Dataset, variables: list[str]) -> tuple[Tensor, Tensor]:
    """``y``: ``[N, T, C, *grid]`` with missing values set to 0, and ``valid``: ``[N, T]``,
    False on frames with a missing value on a cell that is not always missing (a gap)."""
    arrays = [
        ds[v].transpose("sample", "time", ...)
        if "sample" in ds[v].dims
        else ds[v].expand_dims("sample")
        for v in variables
    ]
    y = np.stack([np.asarray(a.values, dtype=np.float32) for a in arrays], axis=2)
    finite = np.isfinite(y)
    always_missing = ~finite.any(axis=(0, 1))  # [C, *grid]: land
    gaps = ~(finite | always_missing)
    valid = ~gaps.reshape(*gaps.shape[:2], -1).any(-1)
    return torch.from_numpy(np.nan_to_num(y, nan=0.0)), torch.from_numpy(valid)


class TrajectoryDataModule(pl.LightningDataModule):
    """Windows of trajectory files for training, validation and test, split without leakage.

    A file with a ``sample`` dim of at least two independent trajectories (simulated sets) is split
    by trajectory; a single record (climate series) is split by time into consecutive blocks.
    The test split is ``test_path`` when given. Statistics (per-channel mean and std of the state,
    std of its tendency) come from the training split only.

    Args:
        path: training NetCDF file.
        variables: state variables, one channel each, in the prior's order.
        window: frames per training window (the first is the initial condition).
        eval_window: frames per validation/test window (default ``window``).
        stride: frames between training window starts.
        batch_size: windows per batch (per process under DDP).
        val_fraction: share of trajectories (or of the record) held out for validation.
        test_fraction: share held out for test when there is no ``test_path``.
        test_path: NetCDF file of test trajectories.
        seed: shuffling and split seed.
        num_workers: DataLoader workers.
    """

    def __init__(
        self,
        path: str,
        variables: list[str],
        window: int = 20,
        eval_window: int | None = None,
        stride: int = 1,
        batch_size: int = 32,
        val_fraction: float = 0.2,
        test_fraction: float = 0.0,
        test_path: str | None = None,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()  # recorded in checkpoints: `hybrid evaluate` re-reads the data
        if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1:
            raise ValueError(f"fractions must be in [0, 1), got {val_fraction}, {test_fraction}")
        self.path, self.variables = Path(path), list(variables)
        self.window, self.eval_window = window, eval_window or window
        self.stride, self.batch_size, self.seed = stride, batch_size, seed
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.test_path, self.num_workers = test_path, num_workers
        self.dataset = open_trajectories(self.path, self.variables)
        self.grid: Grid | None = grid_from_dataset(self.dataset, self.variables[0])
        self.channels = len(self.variables)
        self.dt = float(np.diff(time_in_seconds(self.dataset["time"]))[0])
        self.splits: dict[str, TrajectoryWindows] = {}

    def _split_indices(self, n: int, length: int) -> dict[str, tuple[slice | np.ndarray, slice]]:
        """Per split, (trajectories, frames) of the training file."""
        test = 0.0 if self.test_path else self.test_fraction
        if n >= 2:  # by trajectory
            order = np.random.default_rng(self.seed).permutation(n)
            n_val, n_test = round(n * self.val_fraction), round(n * test)
            whole = slice(None)
            return {
                "val": (order[:n_val], whole),
                "test": (order[n_val : n_val + n_test], whole),
                "train": (np.sort(order[n_val + n_test :]), whole),
            }
        a = round(length * (1 - self.val_fraction - test))
        b = round(length * (1 - test))
        return {
            "train": (slice(None), slice(0, a)),
            "val": (slice(None), slice(a, b)),
            "test": (slice(None), slice(b, length)),
        }

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        y, valid = load_trajectories(self.dataset, self.variables)
        t = torch.as_tensor(time_in_seconds(self.dataset["time"]))
        for name, (rows, frames) in self._split_indices(*y.shape[:2]).items():
            w = self.window if name == "train" else self.eval_window
            yy, vv, tt = y[rows][:, frames], valid[rows][:, frames], t[frames]
            if yy.shape[0] and yy.shape[1] >= w:
                self.splits[name] = TrajectoryWindows(
                    yy, tt, w, self.stride if name == "train" else 1, vv
                )
        if self.test_path:
            ds = open_trajectories(self.test_path, self.variables)
            yt, vt = load_trajectories(ds, self.variables)
            tt = torch.as_tensor(time_in_seconds(ds["time"]))
            self.splits["test"] = TrajectoryWindows(yt, tt, self.eval_window, 1, vt)
        if "train" not in self.splits or len(self.splits["train"]) == 0:
            raise ValueError(f"{self.path}: no training window of {self.window} frames remains")

    def statistics(self) -> dict[str, Tensor]:
        """``mean``, ``std`` of the state and ``tendency_std`` of ``Δy/Δt``, each ``[C]``,
        over the training windows' trajectories (active cells and valid frames only)."""
        self.setup()
        train = self.splits["train"]
        y = train.y  # [N, T, C, *grid]
        active = torch.ones(y.shape[3:]) if self.grid is None else self.grid.active.float().cpu()
        frames = train.valid.to(y.dtype)  # [N, T]: gap frames are left out
        pairs = frames[:, 1:] * frames[:, :-1]  # tendencies across a gap too
        cells = [1] * (y.ndim - 2)
        weight = frames.view(*frames.shape, *cells) * active  # [N, T, 1, *grid]
        weight_dt = pairs.view(*pairs.shape, *cells) * active
        dims = [0, 1, *range(3, y.ndim)]
        mean = (y * weight).sum(dims) / weight.sum()
        std = (
            ((y - mean.view(-1, *[1] * (y.ndim - 3))) ** 2 * weight).sum(dims) / weight.sum()
        ).sqrt()
        dydt = (y[:, 1:] - y[:, :-1]) / self.dt
        tendency = ((dydt**2 * weight_dt).sum(dims) / weight_dt.sum()).sqrt()
        return {
            "mean": mean,
            "std": std.clamp_min(1e-12),
            "tendency_std": tendency.clamp_min(1e-12),
        }

    def train_dataloader(self) -> DataLoader:
        data = self.splits["train"]
        world, rank = (
            (self.trainer.world_size, self.trainer.global_rank) if self.trainer else (1, 0)
        )
        # A DistributedSampler also in one process: the order depends only on (seed, epoch), so a
        # run resumed from a checkpoint replays exactly the batches of an uninterrupted run.
        sampler = DistributedSampler(
            data, num_replicas=world, rank=rank, shuffle=True, seed=self.seed
        )
        return DataLoader(
            data, batch_size=self.batch_size, sampler=sampler, num_workers=self.num_workers
        )

    def _eval_loader(self, split: str) -> DataLoader:
        if split not in self.splits:
            raise ValueError(f"no {split} windows: set {split}_fraction (or test_path)")
        return DataLoader(
            self.splits[split], batch_size=self.batch_size, num_workers=self.num_workers
        )

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._eval_loader("test")
