"""Trajectories of one system under several environments: simulation, NetCDF and windows.

A file holds dims ``environment, sample, time, *grid`` (an ``environment`` coordinate) and the
true parameters as variables ``true_<name>(environment)``. A batch is **environment-major**:
``b`` windows of every environment, stacked as ``[E*b, W, C, *grid]`` with rows ``e*b .. e*b+b-1``
from environment ``e`` (LEADS's layout), so that per-environment parts split the batch with one
reshape (:func:`hybrid.environments.layout.by_environment`) and the shared parts see a plain
batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import lightning.pytorch as pl
import numpy as np
import torch
import xarray as xr
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, default_collate

from hybrid.data.io import grid_from_dataset, open_netcdf, time_axis, trajectories_to_dataset
from hybrid.data.simulate import SimulationSpec, initial_states, simulate, true_parameters
from hybrid.data.symmetry import DihedralAugmented, symmetry_problem
from hybrid.physics.grid import Grid

DIM = "environment"
AUGMENTATIONS = ("none", "dihedral")


@dataclass
class EnvironmentSpec:
    """One protocol per environment, differing only in the true model; every environment
    starts from the same initial conditions (as LEADS's data sets do).

    Attributes:
        environments: one :class:`SimulationSpec` per environment (the first gives the names,
            units, times, sizes and initial conditions).
        description: the data set's title.
    """

    environments: list[SimulationSpec]
    description: str = ""


def simulate_environments(
    spec: EnvironmentSpec, split: str, *, seed: int = 0, n_samples: int | None = None
) -> xr.Dataset:
    """Trajectories of every environment of ``spec``: a CF dataset with dims
    ``environment, sample, time, *grid`` and ``true_<name>(environment)`` variables."""
    first = spec.environments[0]
    _, y0, t = initial_states(first, split, seed, n_samples)
    parts = []
    for env in spec.environments:
        y = simulate(env.model, y0, t, progress=False, **env.solver)  # [N, T, C, *grid]
        units = dict(zip(first.names, first.units, strict=True))
        ds = trajectories_to_dataset(y, t, first.names, coords=first.coords, units=units)
        parts.append(ds.assign({k: v for k, v in true_parameters(env.prior).items()}))
    out = xr.concat(parts, dim=DIM, data_vars="all", coords="minimal")
    out = out.assign_coords({DIM: np.arange(len(parts))})
    out.attrs.update(title=spec.description, split=split, seed=seed, source="hybrid simulate")
    return out


def first_environment(ds: xr.Dataset) -> xr.Dataset:
    """The first environment's trajectories as a single-environment dataset (for previews)."""
    true = [v for v in ds.data_vars if str(v).startswith("true_")]
    return ds.isel({DIM: 0}).drop_vars([*true, DIM])


def open_environments(
    path: str, variables: list[str], environments: list[int] | None
) -> xr.Dataset:
    """The file at ``path``, checked to have an ``environment`` dim and ``variables``, restricted
    to ``environments`` (indices) when given."""
    ds = open_netcdf(path)
    if DIM not in ds.dims:
        raise ValueError(
            f"{path} has no `{DIM}` dimension (dims: {dict(ds.sizes)}); write one with "
            "`hybrid simulate lotka_volterra` or stack one file per environment along `environment`"
        )
    missing = [v for v in variables if v not in ds]
    if missing:
        raise ValueError(f"{path} lacks variables {missing}; it has {list(ds.data_vars)}")
    if environments is not None:
        bad = [e for e in environments if not 0 <= e < ds.sizes[DIM]]
        if bad:
            raise ValueError(f"environments {bad} not in {path} (it has {ds.sizes[DIM]})")
        ds = ds.isel({DIM: list(environments)})
    return ds


def to_array(ds: xr.Dataset, variables: list[str]) -> Tensor:
    """``[E, N, T, C, *grid]`` float32 from the variables of an environment dataset."""
    arrays = [ds[v].transpose(DIM, "sample", "time", ...).values for v in variables]
    return torch.from_numpy(np.stack(arrays, axis=3)).float()


class EnvironmentWindows(Dataset):
    """Item ``i``: ``t``: ``[E, W]`` (relative, s) and ``y``: ``[E, W, C, *grid]``, the same
    window (trajectory ``n``, start ``s``) of every environment.

    Args:
        y: ``[E, N, T, C, *grid]``; t: ``[T]`` (s); window: frames ``W``; stride: between starts.
    """

    def __init__(self, y: Tensor, t: Tensor, window: int, stride: int = 1) -> None:
        if not 2 <= window <= y.shape[2]:
            raise ValueError(f"window must be in [2, {y.shape[2]}] frames, got {window}")
        self.y, self.t, self.window = y, (t - t[0]).float(), window
        self.starts = range(0, y.shape[2] - window + 1, stride)

    def __len__(self) -> int:
        return self.y.shape[1] * len(self.starts)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        n, s = divmod(i, len(self.starts))
        s = self.starts[s]
        e = self.y.shape[0]
        t = (self.t[s : s + self.window] - self.t[s]).expand(e, self.window)
        return t, self.y[:, n, s : s + self.window]


def environment_major(batch: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """Collate items ``([E, W], [E, W, ...])`` to ``[E*b, W]`` and ``[E*b, W, ...]``."""
    t, y = default_collate(batch)  # [b, E, W], [b, E, W, C, *grid]
    return t.transpose(0, 1).flatten(0, 1), y.transpose(0, 1).flatten(0, 1)


class EnvironmentDataModule(pl.LightningDataModule):
    """Windows of several environments, batched environment-major (see the module docstring).

    Training windows come from ``path``; validation from held-out trajectories when there are
    several per environment (``val_fraction``), from ``val_path`` when given, else from the
    training trajectories themselves (LEADS trains on one trajectory per environment); the test
    split is ``test_path``, scored on whole trajectories from their first frame by default.
    ``val_path: <the test file>`` is the reference code's model selection (it keeps the
    checkpoint of lowest *test* MSE, evaluated every 50 steps): ``best-*.ckpt`` is then
    selected on the test set, which this project does not do by default.

    Args:
        path: NetCDF file with an ``environment`` dim.
        variables: state variables, one channel each.
        window: frames per training window.
        eval_window: frames per validation/test window (default: whole trajectories).
        stride: frames between training window starts.
        batch_size: windows per environment in a batch.
        val_fraction: share of each environment's trajectories held out for validation.
        test_path: NetCDF file of test trajectories of the same environments.
        val_path: NetCDF file of validation trajectories (whole ones), instead of a fraction.
        environments: indices of the environments to use (default all), e.g. a held-out one.
        seed: shuffling seed (and of the augmentation's draws).
        augment: ``"dihedral"`` maps each training window by a random symmetry of the square
            (:mod:`hybrid.data.symmetry`; a square, evenly spaced, fully active box only, and
            right only for an isotropic equation); validation and test windows are never
            mapped. ``"none"`` (default) is LEADS's protocol.
    """

    def __init__(
        self,
        path: str,
        variables: list[str],
        window: int = 10,
        eval_window: int | None = None,
        stride: int = 1,
        batch_size: int = 1,
        val_fraction: float = 0.0,
        test_path: str | None = None,
        environments: list[int] | None = None,
        seed: int = 0,
        val_path: str | None = None,
        augment: str = "none",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if augment not in AUGMENTATIONS:
            raise ValueError(f"augment must be one of {AUGMENTATIONS}, got {augment!r}")
        self.augment = augment
        if not 0 <= val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        if val_path and val_fraction:
            raise ValueError("give val_fraction or val_path, not both")
        self.val_path = val_path
        self.path, self.variables, self.environments = path, list(variables), environments
        self.window, self.eval_window, self.stride = window, eval_window, stride
        self.batch_size, self.val_fraction, self.seed = batch_size, val_fraction, seed
        self.test_path = test_path
        self.splits: dict[str, EnvironmentWindows] = {}

    @cached_property
    def dataset(self) -> xr.Dataset:
        return open_environments(self.path, self.variables, self.environments).load()

    @property
    def n_environments(self) -> int:
        return self.dataset.sizes[DIM]

    @cached_property
    def grid(self) -> Grid | None:
        return grid_from_dataset(self.dataset.isel({DIM: 0}), self.variables)

    @cached_property
    def dt(self) -> float:
        return float(np.diff(time_axis(self.dataset["time"]))[0])

    def true_parameters(self) -> dict[str, Tensor]:
        """``{name: [E]}`` from the file's ``true_<name>`` variables."""
        return {
            k[len("true_") :]: torch.as_tensor(v.values)
            for k, v in self.dataset.data_vars.items()
            if k.startswith("true_")
        }

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        y, t = to_array(self.dataset, self.variables), torch.as_tensor(time_axis(self.dataset.time))
        n_val = round(y.shape[1] * self.val_fraction)
        order = np.random.default_rng(self.seed).permutation(y.shape[1])
        train, val = order[n_val:], order[:n_val] if n_val else order
        whole = self.eval_window or y.shape[2]
        if self.augment == "dihedral" and (problem := symmetry_problem(self.grid, y.shape)):
            raise ValueError(f"augment: dihedral needs the square's symmetries: {problem}")
        self.splits["train"] = EnvironmentWindows(y[:, np.sort(train)], t, self.window, self.stride)
        self.splits["val"] = EnvironmentWindows(y[:, np.sort(val)], t, whole, whole)
        for split, path in (("val", self.val_path), ("test", self.test_path)):
            if path:
                other = to_array(
                    open_environments(path, self.variables, self.environments), self.variables
                )
                self.splits[split] = EnvironmentWindows(other, t, whole, whole)

    def statistics(self) -> dict[str, Tensor]:
        """Per-channel ``mean``, ``std`` and ``tendency_std`` (``Δy/Δt``) of the training
        trajectories of all environments, each ``[C]``."""
        self.setup()
        y = self.splits["train"].y.movedim(3, 0).flatten(1)  # [C, E*N*T*cells]
        dy = self.splits["train"].y.diff(dim=2).movedim(3, 0).flatten(1) / self.dt
        floor = 1e-12
        return {
            "mean": y.mean(1),
            "std": y.std(1).clamp_min(floor),
            "tendency_std": dy.square().mean(1).sqrt().clamp_min(floor),
        }

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        if split not in self.splits:
            raise ValueError(f"no {split} windows: set test_path")
        windows: Dataset = self.splits[split]
        if split == "train" and self.augment == "dihedral":
            windows = DihedralAugmented(windows, self.seed)
        return DataLoader(
            windows,
            batch_size=self.batch_size,
            shuffle=shuffle,
            collate_fn=environment_major,
            generator=torch.Generator().manual_seed(self.seed) if shuffle else None,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", False)
