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

from hybrid.physics.grid import Grid

TIME_UNITS = "seconds since 2000-01-01 00:00:00"


def grid_coords(
    kind: str, x: np.ndarray, y: np.ndarray, *, periodic: tuple[bool, bool] = (False, False)
) -> dict[str, xr.DataArray]:
    """CF coordinates of a grid (``Grid.kind``): ``y, x`` in m or ``lat, lon`` in degrees.

    A box records periodic axes as the attribute ``periodic = 1`` on its coordinate (CF has no
    word for it); lat-lon periodicity is read from the longitudes themselves.
    """
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
            attrs={
                "units": "m",
                "axis": "Y",
                "periodic": int(periodic[0]),
                "standard_name": "projection_y_coordinate",
            },
        ),
        "x": xr.DataArray(
            x,
            dims="x",
            attrs={
                "units": "m",
                "axis": "X",
                "periodic": int(periodic[1]),
                "standard_name": "projection_x_coordinate",
            },
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


LAT_NAMES, LON_NAMES = ("lat", "latitude"), ("lon", "longitude")


def open_trajectories(path: str | os.PathLike, variables: Sequence[str]) -> xr.Dataset:
    """Open a NetCDF file lazily and check it against the file convention.

    Raises:
        ValueError: naming the file and what is wrong: missing file, not NetCDF, missing
            variables (listing those present), no ``time`` dim, time not strictly increasing or
            not evenly spaced, or variables with different dims.
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such file")
    try:
        ds = xr.open_dataset(path, chunks={})
    except Exception as err:  # xarray raises many types for a bad file; name it once
        raise ValueError(f"{path}: cannot be read as NetCDF ({type(err).__name__}: {err})") from err
    missing = [v for v in variables if v not in ds.data_vars]
    if missing:
        raise ValueError(f"{path}: variables {missing} not found; present: {list(ds.data_vars)}")
    dims = {ds[v].dims for v in variables}
    if len(dims) != 1:
        raise ValueError(f"{path}: variables {list(variables)} have different dims {dims}")
    if "time" not in ds.dims or "time" not in next(iter(dims)):
        raise ValueError(f"{path}: no `time` dimension in {next(iter(dims))}")
    _check_time(ds["time"], path)
    return ds


def _check_time(time: xr.DataArray, path: Path) -> None:
    seconds = time_in_seconds(time)
    steps = np.diff(seconds)
    if steps.size and not np.all(steps > 0):
        raise ValueError(f"{path}: time is not strictly increasing (at index {np.argmin(steps)})")
    if steps.size and np.ptp(steps) > 1e-6 * steps.max():
        raise ValueError(
            f"{path}: time is not evenly spaced (steps {steps.min()}..{steps.max()} s)"
        )


def spatial_dims(da: xr.DataArray) -> tuple[str, ...]:
    """The grid dims of ``da`` in order (``y, x`` or ``lat, lon``), ``()`` for ODE states."""
    return tuple(d for d in da.dims if d not in ("sample", "time"))


def grid_from_dataset(ds: xr.Dataset, variable: str) -> Grid | None:
    """The :class:`Grid` of ``variable``'s spatial dims, with inactive cells where it is missing
    at every time (land); None for ODE states."""
    dims = spatial_dims(ds[variable])
    if not dims:
        return None
    if len(dims) != 2:
        raise ValueError(f"{variable} must have 0 or 2 spatial dims, got {dims}")
    ydim, xdim = dims
    other = [d for d in ds[variable].dims if d not in dims]
    active = ds[variable].notnull().any(other).values if other else None
    if ydim in LAT_NAMES and xdim in LON_NAMES:
        return Grid.latlon(ds[ydim].values, ds[xdim].values, active=active)
    periodic = tuple(bool(ds[d].attrs.get("periodic", 0)) for d in (ydim, xdim))
    return Grid.box(ds[xdim].values, ds[ydim].values, periodic=periodic, active=active)
