"""The Lightning DataModule for trajectory files: splits that never leak, windows, statistics."""

from __future__ import annotations

import logging
from functools import cached_property

import lightning.pytorch as pl
import numpy as np
import torch
import xarray as xr
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from hybrid.data.climatology import (
    Anomalies,
    climatology_kind,
    fit_climatology,
    lag_regression,
    year_fraction,
)
from hybrid.data.io import (
    YEAR_DAYS,
    calendar_of,
    grid_from_dataset,
    open_trajectories,
    spatial_dims,
    time_axis,
    time_step,
)
from hybrid.data.trajectories import (
    LazyTrajectories,
    missing_masks,
    moments,
)
from hybrid.data.windows import TrajectoryWindows
from hybrid.physics.grid import Grid

log = logging.getLogger(__name__)


def load_trajectories(ds: xr.Dataset, variables: list[str]) -> tuple[LazyTrajectories, Tensor]:
    """Lazy trajectories ``[N, T, C, *grid]`` (missing values read as 0) and ``valid``: ``[N, T]``,
    False on frames with a missing value on a cell that is not always missing (a gap)."""
    y = LazyTrajectories(ds, variables)
    _, valid = missing_masks(y)
    return y, torch.from_numpy(valid)


def _in_memory(ds: xr.Dataset, variables: list[str], limit_bytes: float) -> xr.Dataset:
    """Load small selections into memory (fast windows); leave large archives lazy."""
    size = sum(ds[v].size * ds[v].dtype.itemsize for v in variables)
    return ds[variables].load() if size <= limit_bytes else ds


def frame_phases(time: xr.DataArray) -> tuple[np.ndarray, float]:
    """The phase of the year of each frame, ``f``: ``[T]`` in ``[0, 1)``, and the calendar's mean
    year ``Y`` (s), so that ``f(0) + t / Y`` is the phase at relative model time ``t``.

    Monthly (or coarser) records: ``f = (month - 1/2) / 12``, which :func:`time_axis`'s even
    months ``Y / 12`` apart follow exactly; finer steps: the day of the year over the days of
    that year (365 or 366 on the standard calendar, 360 on ``360_day``).

    Raises:
        ValueError: times that are not calendar dates, or an unknown calendar.
    """
    calendar = calendar_of(time)
    if calendar not in YEAR_DAYS:
        raise ValueError(
            f"dates=True needs calendar dates of a known calendar, got {time.dtype} times "
            f"(calendar {calendar!r})"
        )
    kind = "month" if time.size > 1 and time_step(time)[1] == "month" else "dayofyear"
    return year_fraction(time, kind), YEAR_DAYS[calendar] * 86400.0


class WindowsWith(Dataset):
    """A split's windows with something added to each item; every other attribute is the
    wrapped ``windows``' (its ``index``, ``window``, ...)."""

    windows: Dataset

    def __len__(self) -> int:
        return len(self.windows)

    def __getattr__(self, name: str):
        if name == "windows":  # not set yet (unpickling)
            raise AttributeError(name)
        return getattr(self.windows, name)


class DatedWindows(WindowsWith):
    """``windows`` whose item ``i`` is ``(t, y, date)``, ``date = (f(0), Y)``: ``[2]`` float64,
    the phase of the year of the window's first frame and the calendar's year (s)
    (:func:`frame_phases`).

    Args:
        windows: the windows ``(t, y)`` of a split.
        time: ``[T]`` calendar dates of the split's frames.
    """

    def __init__(self, windows: TrajectoryWindows, time: xr.DataArray) -> None:
        self.windows = windows
        phase, self.year = frame_phases(time)
        self.phase = torch.from_numpy(np.asarray(phase, np.float64))  # [T]

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor, Tensor]:
        _, s = self.windows.index[i]
        date = torch.tensor([float(self.phase[s]), self.year], dtype=torch.float64)
        return (*self.windows[i], date)  # [W], [W, C, *grid], [2]


class ForcingFrames:
    """Forcing variables as a lazy ``[N, T, n, *grid]`` array beside the state's trajectories,
    normalised: ``(x - mean) / std`` per variable, missing values read as 0 (the mean).

    A variable with no grid dims (a series in time alone) is broadcast over the grid, and one
    with no ``sample`` dim over the trajectories.

    Args:
        parts: one ``[N or 1, T, 1, *grid or nothing]`` view per variable.
        grid_shape: the state's grid.
    """

    def __init__(self, parts: list[LazyTrajectories], grid_shape: tuple[int, ...]) -> None:
        self.parts, self.grid_shape = parts, tuple(grid_shape)
        self.mean, self.std = np.zeros(len(parts)), np.ones(len(parts))

    def isel(self, samples=slice(None), frames=slice(None)) -> ForcingFrames:
        """The forcing of a subset of trajectories and frames (the same cut as the state's)."""
        parts = [p.isel(samples if p.shape[0] > 1 else slice(None), frames) for p in self.parts]
        out = ForcingFrames(parts, self.grid_shape)
        out.mean, out.std = self.mean, self.std
        return out

    def raw(self, n: int, frames: slice) -> np.ndarray:
        """``[F, n, *grid]`` float64 as stored (NaN where missing), broadcast over the grid."""
        out = []
        for p in self.parts:
            x = p.raw(n if p.shape[0] > 1 else 0, frames).astype(np.float64)  # [F, 1, *g]
            if x.ndim == 2:  # a series in time alone: [F, 1] -> [F, 1, 1, ...]
                x = x.reshape(*x.shape, *[1] * len(self.grid_shape))
            out.append(np.broadcast_to(x, (x.shape[0], 1, *self.grid_shape)))
        return np.concatenate(out, 1)

    def __getitem__(self, key: tuple[int, slice]) -> np.ndarray:
        n, frames = key
        z = (self.raw(n, frames) - self._along(self.mean)) / self._along(self.std)
        return np.nan_to_num(z, nan=0.0).astype(np.float32)  # [F, n, *grid]

    def _along(self, v: np.ndarray) -> np.ndarray:
        return np.asarray(v).reshape(-1, *[1] * len(self.grid_shape))  # [n, 1, ...]

    def moments(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-variable mean and spread over every present value (before broadcasting), ``[n]``
        each, streamed one trajectory and block of frames at a time."""
        mean, std = [], []
        for p in self.parts:
            total = np.zeros(3)  # count, Σx, Σx²
            for _, s, block in p.blocks():  # consecutive blocks share a frame: count it once
                x = block if s + block.shape[0] == p.shape[1] else block[:-1]
                x = x[np.isfinite(x)].astype(np.float64)
                total += (x.size, x.sum(), (x**2).sum())
            m = total[1] / max(total[0], 1)
            mean.append(m)
            std.append(np.sqrt(max(total[2] / max(total[0], 1) - m**2, 0.0)))
        return np.array(mean), np.maximum(np.array(std), 1e-12)


class ForcedWindows(WindowsWith):
    """``windows`` whose item ``i`` ends with the window's forcing frames ``[W, n, *grid]``
    (float32, normalised): ``(t, y[, date], F)``.

    Args:
        windows: the windows of a split (:class:`TrajectoryWindows` or :class:`DatedWindows`).
        forcing: the split's forcing, cut like its trajectories.
    """

    def __init__(self, windows: Dataset, forcing: ForcingFrames) -> None:
        self.windows, self.forcing = windows, forcing

    def __getitem__(self, i: int) -> tuple[Tensor, ...]:
        n, s = self.windows.index[i]
        f = torch.from_numpy(self.forcing[n, slice(s, s + self.windows.window)])
        return (*self.windows[i], f)  # ..., [W, n, *grid]


def forcing_on_grid(ds: xr.Dataset, name: str, like: xr.Dataset, state: str) -> xr.Dataset:
    """Forcing ``name`` of ``ds`` at the cells and times of ``like``'s variable ``state``.

    Raises:
        ValueError: the forcing lies on another grid, misses some of the data's cells, or has
            other times.
    """
    grid, own = spatial_dims(like[state]), spatial_dims(ds[name])
    if own and set(own) != set(grid):
        raise ValueError(
            f"forcing {name!r} has dims {own}: a forcing lies on the data's grid {grid} or is a "
            "series in time alone"
        )
    try:
        ds = ds.sel({d: like[d].values for d in own})  # the data's region and order
    except KeyError as err:
        raise ValueError(f"forcing {name!r} misses cells of the data's grid ({err})") from None
    if not np.array_equal(ds["time"].values, like["time"].values):
        raise ValueError(
            f"forcing {name!r} has {ds.sizes['time']} times from {ds['time'].values[0]}, the "
            f"data {like.sizes['time']} from {like['time'].values[0]}: they must be the same"
        )
    dims = [d for d in ("sample", "time") if d in ds[name].dims]
    return ds.transpose(*dims, *[d for d in grid if d in own])


class TrajectoryDataModule(pl.LightningDataModule):
    """Windows of trajectory files for training, validation and test, split without leakage.

    A file with a ``sample`` dim of at least two independent trajectories (simulated sets) is split
    by trajectory; a single record (climate series) is split by time into consecutive blocks.
    The test split is ``test_path`` when given. Statistics (per-channel mean and std of the state,
    std of its tendency) and, for records of two years or more, a month- or day-of-year
    climatology come from the training split only and are saved with checkpoints.
    Files are read lazily: a selection larger than ``max_memory_mb`` stays on disk and each window
    reads only its frames, so no process (no DDP rank) holds the whole archive.

    With ``anomaly=True`` every split serves the anomalies ``a(t) = y(t) - c(t)`` from the
    training climatology ``c`` (:class:`hybrid.data.climatology.Anomalies`), and the statistics
    are the anomalies'; the model forecasts ``a`` and ``hybrid evaluate`` scores ``c + a``.
    With ``dates=True`` each window also carries its date (:class:`DatedWindows`): batches are
    ``(t, y, date)``, for a correction that reads the time of year
    (:class:`hybrid.models.seasonal.Seasonal`). With ``forcings`` each window also carries the
    frames of those variables of the same files (:class:`ForcedWindows`), never forecast: batches
    end with ``F``: ``[B, W, n, *grid]``, normalised by the training mean and spread (saved with
    checkpoints), for a correction that reads them (:class:`hybrid.models.forced.Forced`); the
    test windows read the test file's forcing, so forecasts are driven by prescribed forcing.

    Args:
        path: training NetCDF file, a list of files or a glob, concatenated along time.
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
        region: cells to keep, e.g. ``{"lat": [-10, 10], "lon": [120, 280]}``.
        time_range: ``[start, end]`` dates to keep.
        gap: frames left out between consecutive time splits of a single record.
        max_memory_mb: selections up to this size are loaded into memory.
        anomaly: serve anomalies from the training climatology instead of the state (needs a
            training record of a year or more).
        dates: serve ``(t, y, date)`` windows, ``date = (phase of the year at the window's
            start, year length in s)`` (needs calendar dates).
        forcings: variables of the same files served beside each window as inputs of the
            correction, on the data's grid or series in time alone (broadcast over it).
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
        region: dict[str, list[float]] | None = None,
        time_range: list[str] | None = None,
        gap: int = 0,
        max_memory_mb: float = 1024.0,
        anomaly: bool = False,
        dates: bool = False,
        forcings: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()  # recorded in checkpoints: `hybrid evaluate` re-reads the data
        if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1:
            raise ValueError(f"fractions must be in [0, 1), got {val_fraction}, {test_fraction}")
        if gap < 0:
            raise ValueError(f"gap must be non-negative, got {gap}")
        self.path, self.variables = path, list(variables)
        self.window, self.eval_window = window, eval_window or window
        self.stride, self.batch_size, self.seed = stride, batch_size, seed
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.test_path, self.num_workers = test_path, num_workers
        self.region, self.time_range, self.gap = region, time_range, gap
        self.max_bytes = max_memory_mb * 2**20
        self.anomaly, self.dates = anomaly, dates
        self.channels = len(self.variables)
        self.splits: dict[str, TrajectoryWindows] = {}
        self.split_times: dict[str, xr.DataArray] = {}  # the dates of each split's frames
        self.climatology: dict[str, object] = {}
        self.forcings = list(forcings or [])
        self.split_forcing: dict[str, ForcingFrames] = {}  # each split's forcing, cut alike
        self.forcing_stats: dict[str, Tensor] = {}  # training mean, std [n]; in checkpoints

    @cached_property
    def dataset(self) -> xr.Dataset:
        """The training file(s), opened on first use (lazily: large archives stay on disk)."""
        return self._open(self.path)

    @cached_property
    def grid(self) -> Grid | None:
        """The data's grid (``None`` for ODE states); in a test-only ``predict`` setup, the test
        file's."""
        return grid_from_dataset(self.dataset, self.variables)

    @cached_property
    def dt(self) -> float:
        """The data step (s)."""
        return float(np.diff(time_axis(self.dataset["time"]))[0])

    def _open(self, path: str | list[str]) -> xr.Dataset:
        ds = open_trajectories(path, self.variables, region=self.region, time_range=self.time_range)
        return _in_memory(ds, self.variables, self.max_bytes)

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
        g = self.gap
        return {
            "train": (slice(None), slice(0, a)),
            "val": (slice(None), slice(a + g, b)),
            "test": (slice(None), slice(b + g, length)),
        }

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        if stage == "predict" and self.test_path:  # forecasts on a test file: nothing else read
            self._setup_test()
            self.grid = grid_from_dataset(self.test_dataset, self.variables)
            self._serve_anomalies()
            self._serve_dates()
            self._serve_forcings()
            return
        y, valid = load_trajectories(self.dataset, self.variables)
        forcing = self._open_forcing(self.path, self.dataset)
        t = torch.as_tensor(time_axis(self.dataset["time"]))
        for name, (rows, frames) in self._split_indices(*y.shape[:2]).items():
            w = self.window if name == "train" else self.eval_window
            yy, vv, tt = y.isel(rows, frames), valid[rows][:, frames], t[frames]
            if yy.shape[0] and yy.shape[1] >= w:
                stride = self.stride if name == "train" else 1
                self.splits[name] = TrajectoryWindows(yy, tt, w, stride, vv)
                self.split_times[name] = self.dataset["time"][frames]
                if forcing is not None:
                    self.split_forcing[name] = forcing.isel(rows, frames)
        if self.test_path:
            self._setup_test()
        if "train" not in self.splits or len(self.splits["train"]) == 0:
            raise ValueError(f"{self.path}: no training window of {self.window} frames remains")
        dropped = {k: w.n_dropped for k, w in self.splits.items() if w.n_dropped}
        if dropped:
            log.info(
                "windows left out because they touch a gap (missing frame or value): %s", dropped
            )
        self._fit_climatology(self._split_indices(*y.shape[:2])["train"][1])
        self._serve_anomalies()
        self._serve_dates()
        self._serve_forcings()

    def _setup_test(self) -> None:
        """The test split: every window of ``test_path``."""
        ds = self.test_dataset = self._open(self.test_path)
        yt, vt = load_trajectories(ds, self.variables)
        tt = torch.as_tensor(time_axis(ds["time"]))
        self.splits["test"] = TrajectoryWindows(yt, tt, self.eval_window, 1, vt)
        self.split_times["test"] = ds["time"]
        forcing = self._open_forcing(self.test_path, ds)
        if forcing is not None:
            self.split_forcing["test"] = forcing

    def _open_forcing(self, path: str | list[str], like: xr.Dataset) -> ForcingFrames | None:
        """The ``forcings`` of the file(s) ``path``, at the cells and times of ``like`` (the
        state read from the same files); None without forcings."""
        if not self.forcings:
            return None
        parts = []
        for name in self.forcings:
            try:
                ds = open_trajectories(path, [name], time_range=self.time_range)
                ds = forcing_on_grid(ds, name, like, self.variables[0])
            except ValueError as err:
                raise ValueError(f"data.forcings: {err}") from None
            parts.append(LazyTrajectories(_in_memory(ds, [name], self.max_bytes), [name]))
        grid_shape = tuple(like.sizes[d] for d in spatial_dims(like[self.variables[0]]))
        return ForcingFrames(parts, grid_shape)

    def test_source(self) -> xr.Dataset:
        """The dataset the test windows come from: ``test_path``'s, else the training file's."""
        return self.test_dataset if self.test_path else self.dataset

    def _fit_climatology(self, frames: slice) -> None:
        """A smoothed seasonal climatology of the training period (mean + annual harmonics,
        :func:`hybrid.data.climatology.fit_climatology`), when it spans a year."""
        times = self.dataset["time"].isel(time=frames)
        if climatology_kind(times) is None:
            return
        train, valid = self.splits["train"], self.splits["train"].valid.numpy()
        self.climatology = fit_climatology(train.y, times, valid=valid)
        lags = max(self.window, self.eval_window) - 1
        self.climatology["damping"] = lag_regression(train.y, times, self.climatology, valid, lags)

    def _serve_anomalies(self) -> None:
        """With ``anomaly``, every split's windows read ``y - c`` (same windows, same order)."""
        if not self.anomaly:
            return
        if not self.climatology:
            raise ValueError(
                f"{self.path}: anomaly=True needs the training climatology, which needs a "
                "training record of calendar dates spanning a year; this one has none"
            )
        for name, w in self.splits.items():
            a = Anomalies(w.y, self.split_times[name], self.climatology)
            stride = self.stride if name == "train" else 1
            self.splits[name] = TrajectoryWindows(a, w.t, w.window, stride, w.valid)

    def _serve_forcings(self) -> None:
        """With ``forcings``, every split's windows also give their forcing frames, normalised by
        the training statistics (fitted once; those of a checkpoint are kept)."""
        if not self.forcings:
            return
        if not self.forcing_stats:
            if "train" not in self.split_forcing:
                raise ValueError("data.forcings: no training statistics (not in the checkpoint)")
            mean, std = self.split_forcing["train"].moments()
            self.forcing_stats = {"mean": torch.from_numpy(mean), "std": torch.from_numpy(std)}
        for name, w in self.splits.items():
            forcing = self.split_forcing[name]
            forcing.mean = self.forcing_stats["mean"].double().numpy()
            forcing.std = self.forcing_stats["std"].double().numpy()
            self.splits[name] = ForcedWindows(w, forcing)

    def _serve_dates(self) -> None:
        """With ``dates``, every split's windows also give their date (:class:`DatedWindows`)."""
        if self.dates:
            for name, w in self.splits.items():
                self.splits[name] = DatedWindows(w, self.split_times[name])

    def statistics(self) -> dict[str, Tensor]:
        """``mean``, ``std`` of the state (of its anomaly with ``anomaly``) and ``tendency_std``
        of ``Δy/Δt``, each ``[C]``, over the training split (active cells and valid frames
        only), streamed block by block."""
        self.setup()
        train = self.splits["train"]
        active = (
            np.ones(train.y.shape[3:], bool)
            if self.grid is None
            else (self.grid.active.cpu().numpy() > 0.5)
        )
        m = moments(train.y, train.valid.numpy(), active, self.dt)
        floor = 1e-12  # a constant channel must not divide by zero
        return {
            k: torch.from_numpy(v).float().clamp_min(floor if k != "mean" else -np.inf)
            for k, v in m.items()
        }

    def state_dict(self) -> dict:
        """Saved in checkpoints: the training climatology and the forcing's mean and spread,
        reused by ``hybrid evaluate``."""
        forcing = {f"forcing_{k}": v for k, v in self.forcing_stats.items()}
        return {**self.climatology, **forcing}

    def load_state_dict(self, state: dict) -> None:
        state = dict(state)
        self.forcing_stats = {
            k: state.pop(f"forcing_{k}") for k in ("mean", "std") if f"forcing_{k}" in state
        }
        self.climatology = state

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
