"""The only place where xarray meets tensors: trajectories to CF NetCDF and back.

File convention: one variable per state component, dims ``(sample, time[, y, x | lat, lon])``.
``time`` is CF-encoded (``seconds since ...``); true physical parameters are global attributes
``true_<name>``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from torch import Tensor

TIME_UNITS = "seconds since 2000-01-01 00:00:00"


def grid_coords(kind: str, x: np.ndarray, y: np.ndarray) -> dict[str, xr.DataArray]:
    """CF coordinates of a grid (``Grid.kind``): ``y, x`` in m or ``lat, lon`` in degrees."""
    if kind == "latlon":
        return {
            "lat": xr.DataArray(
                y,
                dims="lat",
                attrs={"units": "degrees_north", "axis": "Y", "standard_name": "latitude"},
            ),
            "lon": xr.DataArray(
                x,
                dims="lon",
                attrs={"units": "degrees_east", "axis": "X", "standard_name": "longitude"},
            ),
        }
    return {
        "y": xr.DataArray(
            y,
            dims="y",
            attrs={"units": "m", "axis": "Y", "standard_name": "projection_y_coordinate"},
        ),
        "x": xr.DataArray(
            x,
            dims="x",
            attrs={"units": "m", "axis": "X", "standard_name": "projection_x_coordinate"},
        ),
    }


def trajectories_to_dataset(
    y: Tensor,
    t: Tensor,
    names: Sequence[str],
    *,
    coords: Mapping[str, xr.DataArray] | None = None,
    units: Mapping[str, str] | None = None,
    attrs: Mapping[str, object] | None = None,
) -> xr.Dataset:
    """A CF-1.8 dataset from trajectories ``y``: ``[N, T, C, *grid]`` at times ``t``: ``[T]`` (s).

    Args:
        names: one variable name per channel ``C``.
        coords: spatial coordinates in grid-axis order (``y, x`` or ``lat, lon``), none for ODEs.
        units: per-variable units.
        attrs: global attributes (e.g. ``true_kappa``).
    """
    coords = dict(coords or {})
    if len(names) != y.shape[2]:
        raise ValueError(f"got {len(names)} names for {y.shape[2]} channels")
    dims = ("sample", "time", *coords)
    seconds = np.asarray(t.detach().cpu(), dtype=np.float64)
    time = xr.DataArray(
        np.datetime64("2000-01-01") + (seconds * 1e9).astype("timedelta64[ns]"),
        dims="time",
        attrs={"axis": "T", "standard_name": "time"},
    )
    data = y.detach().cpu().float().numpy()
    variables = {
        name: xr.DataArray(data[:, :, c], dims=dims, attrs={"units": (units or {}).get(name, "1")})
        for c, name in enumerate(names)
    }
    ds = xr.Dataset(variables, coords={"time": time, "sample": np.arange(y.shape[0]), **coords})
    ds.attrs = {"Conventions": "CF-1.8", **(attrs or {})}
    ds["time"].encoding = {"units": TIME_UNITS, "dtype": "float64"}
    return ds


def write_netcdf(ds: xr.Dataset, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write ``ds`` to ``path`` atomically: to a temporary name beside it, then renamed.

    Raises:
        FileExistsError: if ``path`` exists and ``overwrite`` is False.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite (--overwrite) to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".nc.tmp", dir=path.parent)
    os.close(fd)
    try:
        ds.to_netcdf(tmp, engine="netcdf4")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def time_in_seconds(time: xr.DataArray) -> np.ndarray:
    """Seconds since the first time, from a CF-decoded (datetime/cftime) or numeric ``time``."""
    values = time.values
    if np.issubdtype(values.dtype, np.number):
        return (values - values[0]).astype(np.float64)
    return np.array(
        [
            (v - values[0]) / np.timedelta64(1, "s")
            if isinstance(v, np.datetime64)
            else (v - values[0]).total_seconds()
            for v in values
        ],
        dtype=np.float64,
    )


def to_tensor(ds: xr.Dataset, variables: Sequence[str]) -> Tensor:
    """Stack ``variables`` as channels: ``[sample, time, C, *grid]`` (float32)."""
    missing = [v for v in variables if v not in ds.data_vars]
    if missing:
        raise ValueError(f"variables {missing} not in the dataset; it has {list(ds.data_vars)}")
    return torch.from_numpy(np.stack([ds[v].values for v in variables], axis=2).astype(np.float32))
