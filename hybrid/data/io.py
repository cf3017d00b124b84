"""The only place where xarray meets tensors: trajectories to CF NetCDF and back.

File convention: one variable per state component, dims
``(sample, time[, y, x | lat, lon | x | lon])``: a grid of two spatial dims, one (a line in
metres, or a circle of longitudes at the latitude of a scalar ``lat`` coordinate, the equator
without one: a time x longitude Hovmöller), or none (ODE states).
``time`` is CF-encoded (``seconds since ...``); true physical parameters are global attributes
``true_<name>``.
"""

from __future__ import annotations

import functools
import glob
import operator
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from torch import Tensor

from hybrid.physics.grid import Grid

TIME_UNITS = "seconds since 2000-01-01 00:00:00"


def grid_coords(
    kind: str,
    x: np.ndarray,
    y: np.ndarray | float | None = None,
    *,
    periodic: tuple[bool, ...] = (False, False),
) -> dict[str, xr.DataArray]:
    """CF coordinates of a grid (``Grid.kind``): ``y, x`` in m or ``lat, lon`` in degrees; on a
    1-D grid ``x`` alone (``y=None``), or ``lon`` with a scalar ``lat`` (``y`` a number).

    A box records periodic axes as the attribute ``periodic = 1`` on its coordinate (CF has no
    word for it); lat-lon periodicity is read from the longitudes themselves.
    """
    one_axis = np.ndim(y) == 0
    if kind == "latlon":  # on one axis, the circle at the scalar latitude ``y``
        values, dim = (float(y), ()) if one_axis else (y, "lat")
        lat = _coord(values, dim, "Y", "degrees_north", "latitude")
        return {"lat": lat, "lon": _coord(x, "lon", "X", "degrees_east", "longitude")}
    xs = _coord(x, "x", "X", "m", "projection_x_coordinate", periodic=int(periodic[-1]))
    if one_axis:
        return {"x": xs}
    ys = _coord(y, "y", "Y", "m", "projection_y_coordinate", periodic=int(periodic[0]))
    return {"y": ys, "x": xs}


def _coord(
    values: np.ndarray | float,
    dim: str | tuple,
    axis: str,
    units: str,
    standard_name: str,
    **extra: object,
) -> xr.DataArray:
    attrs = {"units": units, "axis": axis, "standard_name": standard_name, **extra}
    return xr.DataArray(values, dims=dim, attrs=attrs)


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
        coords: spatial coordinates in grid-axis order (``y, x``, ``lat, lon``, ``x`` or ``lon``),
            none for ODEs; a scalar one (the ``lat`` of a longitude circle) is kept as such.
        units: per-variable units.
        attrs: global attributes (e.g. ``true_kappa``).
    """
    coords = dict(coords or {})
    if len(names) != y.shape[2]:
        raise ValueError(f"got {len(names)} names for {y.shape[2]} channels")
    dims = ("sample", "time", *(name for name, c in coords.items() if c.ndim))
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


def refuse_to_replace(path: Path, overwrite: bool) -> None:
    """An existing ``path`` is replaced only when asked: checked before any work is done."""
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass --overwrite true to replace it")


@contextmanager
def replacing(path: str | os.PathLike, overwrite: bool, *, folder: bool = False) -> Iterator[Path]:
    """A temporary file (or ``folder``) beside ``path`` to write, renamed to ``path`` when the
    block succeeds and removed when it fails, so that nothing is ever half-written.

    Raises:
        FileExistsError: on entering, if ``path`` exists and ``overwrite`` is False.
    """
    path = Path(path)
    refuse_to_replace(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    target = tmp if folder else tmp / path.name
    try:
        yield target
        if path.is_dir():
            shutil.rmtree(path)
        os.replace(target, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_netcdf(ds: xr.Dataset, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write ``ds`` to ``path`` atomically (:func:`replacing`); an existing ``path`` is replaced
    only with ``overwrite`` (else ``FileExistsError``)."""
    with replacing(path, overwrite) as tmp:
        ds.to_netcdf(tmp, engine="netcdf4")
    return Path(path)


def time_in_seconds(time: xr.DataArray) -> np.ndarray:
    """Seconds since the first time, from a CF-decoded (datetime64/cftime) or numeric ``time``."""
    values = time.values
    if values.size == 0:
        return np.zeros(0)
    if np.issubdtype(values.dtype, np.number):
        return (values - values[0]).astype(np.float64)
    if np.issubdtype(values.dtype, np.datetime64):
        return ((values - values[0]) / np.timedelta64(1, "s")).astype(np.float64)
    # cftime objects (noleap, 360_day, ...): differences are datetime.timedelta
    return np.array([(v - values[0]).total_seconds() for v in values], dtype=np.float64)


def to_tensor(ds: xr.Dataset, variables: Sequence[str]) -> Tensor:
    """Stack ``variables`` as channels: ``[sample, time, C, *grid]`` (float32)."""
    missing = [v for v in variables if v not in ds.data_vars]
    if missing:
        raise ValueError(f"variables {missing} not in the dataset; it has {list(ds.data_vars)}")
    return torch.from_numpy(np.stack([ds[v].values for v in variables], axis=2).astype(np.float32))


# --- reading: CF NetCDF as users have it ----------------------------------------------------------

LAT_NAMES, LON_NAMES = ("lat", "latitude"), ("lon", "longitude")
LAT_UNITS = ("degrees_north", "degree_north", "degrees_n", "degree_n")
LON_UNITS = ("degrees_east", "degree_east", "degrees_e", "degree_e")
ORDER = ("sample", "time", "lat", "lon", "y", "x")  # canonical dim names, in axis order
SPATIAL = ORDER[2:]
GRIDS = {(), ("lat", "lon"), ("lon", "lat"), ("y", "x"), ("x", "y"), ("lon",), ("x",)}  # in a file


def open_trajectories(
    path: str | os.PathLike | Sequence[str | os.PathLike],
    variables: Sequence[str],
    *,
    region: Mapping[str, Sequence[float]] | None = None,
    time_range: Sequence[str] | None = None,
) -> xr.Dataset:
    """Open NetCDF lazily (dask), check it against the file convention, give canonical dims.

    Dims are recognised by their CF attributes (``standard_name``, ``units``, ``axis``) or by
    name, and renamed ``time``, ``lat``/``lon`` (degrees) or ``y``/``x`` (m; km converted);
    the variables come out as ``([sample,] time[, lat, lon | y, x])``. Latitude keeps its order;
    longitude is ordered eastward (contiguous across the dateline). Singleton extra dims
    (``height``, ``level``, ...) are squeezed with a warning. Times may use any CF calendar;
    steps of a fixed number of calendar months (monthly, seasonal, yearly) count as evenly spaced
    though their lengths in seconds differ (:func:`time_step`).

    Args:
        path: one file, a list of files, or a glob (``"data/*.nc"``); several files are
            concatenated along time in order of their first time.
        variables: the state variables to keep.
        region: cells to keep, ``{"lat": (south, north), "lon": (west, east)}`` in degrees
            (``lon=(170, -170)`` goes east across 180°) or ``{"y": ..., "x": ...}`` in metres.
        time_range: ``(start, end)`` ISO dates, both included.

    Raises:
        ValueError: naming the file and what is wrong: missing file or no glob match, not
            NetCDF (or truncated), missing variables (listing those present), no ``time`` dim,
            time not strictly increasing, duplicate or unevenly spaced (naming the dates of the
            odd step), an extra dim of more than
            one level, a variable all missing, or a ``region``/``time_range`` selecting nothing.
    """
    parts = sorted(
        ((p, _open_file(p, variables)) for p in _resolve_paths(path)),
        key=lambda part: part[1]["time"].values[0],
    )
    ds = _concat(parts)
    _check_time(ds["time"], np.concatenate([[str(p)] * d.sizes["time"] for p, d in parts]))
    label = str(parts[0][0]) + (f" (+{len(parts) - 1} files)" if len(parts) > 1 else "")
    ds = _squeeze_extra_dims(ds, variables, label)
    ds = _select_times(_select_region(ds, region or {}, label), time_range, label)
    ds = _order_eastward(ds)
    _check_not_all_missing(ds, variables, label)
    return ds.transpose(*[d for d in ORDER if d in ds.dims], ...)


def _resolve_paths(path: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    if isinstance(path, str) and glob.has_magic(path):
        found = sorted(glob.glob(os.path.expanduser(path)))
        if not found:
            raise ValueError(f"{path}: no files match")
        paths = [Path(p) for p in found]
    elif isinstance(path, str | os.PathLike):
        paths = [Path(path)]
    else:
        paths = [Path(p) for p in path]
    if not paths:
        raise ValueError("no files given (an empty list)")
    return paths  # each checked to exist by open_netcdf


def open_netcdf(path: str | os.PathLike) -> xr.Dataset:
    """The one place the package opens a NetCDF file: lazily, with one clear ``ValueError``
    naming the file when it is missing, a directory, not NetCDF, truncated or empty."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such file")
    _check_signature(path)
    try:  # decode_timedelta=False: a state in seconds stays a number; no dask yet (see below)
        ds = xr.open_dataset(path, decode_timedelta=False)
    except Exception as err:  # xarray raises many types for a bad file; name it once
        raise ValueError(f"{path}: cannot be read as NetCDF ({type(err).__name__}: {err})") from err
    if not ds.variables:  # an HDF5 file that is not NetCDF data, or one keeping it in groups
        raise ValueError(
            f"{path}: cannot be read as NetCDF: it opens but holds no variables or dimensions "
            "(an HDF5 file of another kind, or NetCDF-4 with its data in groups)"
        )
    return ds


def _open_file(path: Path, variables: Sequence[str]) -> xr.Dataset:
    """One file, lazily: ``variables`` only, dims renamed to canonical names, checked."""
    ds = open_netcdf(path)
    missing = [v for v in variables if v not in ds.data_vars]
    if missing:
        raise ValueError(f"{path}: variables {missing} not found; present: {list(ds.data_vars)}")
    ds = _canonical_dims(ds[list(variables)], path)
    dims = {ds[v].dims for v in variables}
    if len(dims) != 1:
        raise ValueError(f"{path}: variables {list(variables)} have different dims {dims}")
    if "time" not in next(iter(dims)):
        raise ValueError(f"{path}: no `time` dimension in {next(iter(dims))}")
    if ds.sizes["time"] == 0:
        raise ValueError(f"{path}: `time` is empty")
    return _chunk_by_time(ds, variables)


# classic, 64-bit offset, 64-bit data (CDF-5), HDF5 (NetCDF-4)
NETCDF_MAGIC = (b"CDF\x01", b"CDF\x02", b"CDF\x05", b"\x89HDF\r\n\x1a\n")


def _check_signature(path: Path) -> None:
    """A NetCDF file starts with ``CDF`` (classic formats) or the HDF5 signature (NetCDF-4), which
    HDF5 may also place after a user block of 512·2^k bytes."""
    if path.is_dir():
        raise ValueError(f"{path}: cannot be read as NetCDF: it is a directory")
    with open(path, "rb") as f:
        head = f.read(8)
        offsets = [512 * 2**k for k in range(12)]
        hdf5 = any(f.seek(o) == o and f.read(8) == NETCDF_MAGIC[-1] for o in offsets)
    if not (hdf5 or any(head.startswith(m) for m in NETCDF_MAGIC)):
        raise ValueError(
            f"{path}: cannot be read as NetCDF: not a NetCDF file (it starts with {head!r}; "
            "NetCDF starts with b'CDF' or b'\\x89HDF')"
        )


CHUNK_BYTES = 16 * 2**20


def _chunk_by_time(ds: xr.Dataset, variables: Sequence[str]) -> xr.Dataset:
    """Dask chunks of about ``CHUNK_BYTES`` along time, cut from the still-unread file, so that a
    reduction or a window reads a few frames at a time (a NetCDF stored contiguously would
    otherwise be one chunk: the whole variable)."""
    frame = max(ds[v].dtype.itemsize * ds[v].size // ds.sizes["time"] for v in variables)
    return ds.chunk({"time": max(1, CHUNK_BYTES // max(frame, 1))})


def _dim_kind(ds: xr.Dataset, dim: str) -> str | None:
    """``time``, ``lat``, ``lon``, ``y``, ``x`` from the CF attributes of ``dim``'s coordinate,
    else from its name; None for any other dim."""
    attrs = ds[dim].attrs if dim in ds.coords else {}
    name, axis = str(attrs.get("standard_name", "")).lower(), str(attrs.get("axis", "")).upper()
    units, low = str(attrs.get("units", "")).lower(), dim.lower()
    metres = units in ("m", "km")
    rules = {
        "time": name == "time" or axis == "T" or low == "time",
        "lat": name == "latitude" or units in LAT_UNITS or low in LAT_NAMES,
        "lon": name == "longitude" or units in LON_UNITS or low in LON_NAMES,
        "y": name == "projection_y_coordinate" or (axis == "Y" and metres) or low == "y",
        "x": name == "projection_x_coordinate" or (axis == "X" and metres) or low == "x",
    }
    return next((kind for kind, match in rules.items() if match), None)


def _canonical_dims(ds: xr.Dataset, path: Path) -> xr.Dataset:
    kinds = {d: k for d in ds.dims if d != "sample" and (k := _dim_kind(ds, str(d)))}
    clash = [k for k in set(kinds.values()) if list(kinds.values()).count(k) > 1]
    if clash:
        raise ValueError(f"{path}: several dims look like {clash[0]}: {sorted(map(str, kinds))}")
    rename = {d: k for d, k in kinds.items() if d != k}
    # a non-dim variable already holding a canonical name (a 2-D `lat`, say) would clash
    ds = ds.drop_vars([k for k in rename.values() if k in ds.variables])
    ds = ds.rename(rename)
    for d in ("y", "x"):
        if d in ds.coords and str(ds[d].attrs.get("units", "")).lower() == "km":
            attrs = {**ds[d].attrs, "units": "m"}
            ds = ds.assign_coords({d: (d, ds[d].values * 1000.0, attrs)})
    return ds


def _concat(parts: list[tuple[Path, xr.Dataset]]) -> xr.Dataset:
    if len(parts) == 1:
        return parts[0][1]
    try:
        return xr.concat(
            [ds for _, ds in parts],
            dim="time",
            data_vars="all",
            coords="minimal",
            compat="override",
            join="exact",
            combine_attrs="override",
        )
    except ValueError as err:
        files = [str(p) for p, _ in parts]
        raise ValueError(f"{files}: cannot be joined along time ({err})") from err


def _check_time(time: xr.DataArray, files: np.ndarray) -> None:
    """Strictly increasing and regular (:func:`time_step`); ``files[k]`` holds time ``k``."""
    steps = np.diff(time_in_seconds(time))
    if np.any(steps <= 0):
        i = int(np.argmax(steps <= 0))
        duplicate = f": duplicate times {time.values[i]}" if steps[i] == 0 else ""
        raise ValueError(
            f"{files[i + 1]}: time is not strictly increasing (at index {i}){duplicate}"
        )
    try:
        time_step(time)
    except IrregularTime as err:
        raise ValueError(f"{files[err.index + 1]}: {err}") from None


def _squeeze_extra_dims(ds: xr.Dataset, variables: Sequence[str], label: str) -> xr.Dataset:
    dims = ds[variables[0]].dims
    extra = [d for d in dims if d not in ORDER]
    wide = [f"{d!r} ({ds.sizes[d]} levels)" for d in extra if ds.sizes[d] != 1]
    if wide:
        raise ValueError(
            f"{label}: dims {', '.join(wide)} are not time, sample, lat/lon or y/x; select one "
            f"level first (e.g. ds.isel({extra[0]}=0))"
        )
    spatial = tuple(d for d in dims if d in SPATIAL)
    if spatial not in GRIDS:
        raise ValueError(
            f"{label}: spatial dims {spatial} must be (lat, lon) or (y, x), or one dim along "
            "lon or x (a 1-D grid: a longitude circle or a line)"
        )
    if extra:  # stacklevel 3: the caller of open_trajectories
        warnings.warn(f"{label}: singleton dims {extra} squeezed", stacklevel=3)
    return ds.squeeze(extra)


def _select_region(ds: xr.Dataset, region: Mapping[str, Sequence[float]], label: str) -> xr.Dataset:
    spatial = [d for d in ds.dims if d in SPATIAL]
    unknown = [k for k in region if k not in spatial]
    if unknown:
        raise ValueError(f"{label}: region keys {unknown} are not spatial dims {spatial}")
    for dim, bounds in region.items():
        lo, hi = (float(b) for b in bounds)
        c = ds[dim].values.astype(np.float64)
        keep = _east_of(c, lo, hi) if dim == "lon" else (c >= min(lo, hi)) & (c <= max(lo, hi))
        if not keep.any():
            raise ValueError(
                f"{label}: region {dict(region)} selects no cells ({dim} spans "
                f"{c.min()}..{c.max()})"
            )
        ds = ds.isel({dim: np.flatnonzero(keep)})
    return ds


def _east_of(lon: np.ndarray, west: float, east: float) -> np.ndarray:
    """Longitudes on the arc going east from ``west`` to ``east`` (degrees, any convention)."""
    width = (east - west) % 360.0
    if width == 0 and east != west:  # (0, 360), (-180, 180): the whole circle
        return np.ones(lon.shape, bool)
    return (lon - west) % 360.0 <= width + 1e-9


def _select_times(ds: xr.Dataset, time_range: Sequence[str] | None, label: str) -> xr.Dataset:
    if time_range is None:
        return ds
    start, end = time_range
    try:
        out = ds.sel(time=slice(start, end))
    except (TypeError, KeyError, ValueError) as err:
        raise ValueError(f"{label}: cannot select time_range {list(time_range)} ({err})") from err
    if out.sizes["time"] == 0:
        times = ds["time"].values
        raise ValueError(
            f"{label}: time_range {list(time_range)} selects no times "
            f"(the data run {times[0]}..{times[-1]})"
        )
    return out


def _order_eastward(ds: xr.Dataset) -> xr.Dataset:
    """Longitudes contiguous and increasing eastward (possibly across the dateline)."""
    if "lon" not in ds.dims or ds.sizes["lon"] < 2:
        return ds
    lon = ds["lon"].values.astype(np.float64)
    if np.all(np.diff(np.rad2deg(np.unwrap(np.deg2rad(lon)))) > 0):
        return ds
    wrapped = np.mod(lon, 360.0)
    order = np.argsort(wrapped, kind="stable")
    gaps = np.diff(wrapped[order], append=wrapped[order[0]] + 360.0)
    return ds.isel(lon=np.roll(order, -(int(np.argmax(gaps)) + 1)))  # start after the widest gap


def _check_not_all_missing(ds: xr.Dataset, variables: Sequence[str], label: str) -> None:
    try:  # one dask pass over all variables; a damaged file may only fail here
        present = xr.Dataset({v: ds[v].notnull().any() for v in variables}).compute()
    except (OSError, RuntimeError) as err:
        raise ValueError(
            f"{label}: cannot be read as NetCDF ({type(err).__name__}: {err})"
        ) from err
    empty = [v for v in variables if not bool(present[v])]
    if empty:
        raise ValueError(f"{label}: variable {empty[0]!r} is all missing (NaN or _FillValue)")


def spatial_dims(da: xr.DataArray) -> tuple[str, ...]:
    """The grid dims of ``da`` in order (``y, x`` or ``lat, lon``), ``()`` for ODE states."""
    return tuple(d for d in da.dims if d not in ("sample", "time"))


def grid_from_dataset(ds: xr.Dataset, variables: str | Sequence[str]) -> Grid | None:
    """The :class:`Grid` of the spatial dims of ``variables`` (one name or several on one grid);
    None for ODE states.

    Two dims give a box (``y, x``) or a lat-lon grid; one gives a line (``x``) or the circle of
    longitudes (``lon``) at the latitude of a scalar ``lat`` coordinate (:func:`circle_latitude`).
    A cell is inactive (land) where no frame has all ``variables`` present at once, so a cell
    always missing in any one variable is inactive: the same rule as
    :func:`hybrid.data.trajectories.missing_masks`. The mask is reduced by dask, chunk by chunk.

    Raises:
        ValueError: a variable not in ``ds``, variables on different grids, or a grid of other
            than 0, 1 or 2 spatial dims.
    """
    names = [variables] if isinstance(variables, str) else list(variables)
    missing = [v for v in names if v not in ds.data_vars]
    if missing or not names:
        raise ValueError(f"variables {missing or names} not in the dataset {list(ds.data_vars)}")
    grids = {spatial_dims(ds[v]) for v in names}
    if len(grids) != 1:
        raise ValueError(f"variables {names} lie on different grids {sorted(grids)}")
    dims = grids.pop()
    if not dims:
        return None
    if len(dims) not in (1, 2):
        raise ValueError(f"{names} must have 0, 1 or 2 spatial dims, got {dims}")
    present = functools.reduce(operator.and_, [ds[v].notnull() for v in names])
    other = [d for d in present.dims if d not in dims]
    active = present.any(other).transpose(*dims).values if other else None  # [*grid]
    if len(dims) == 1:
        return _line_grid(ds, dims[0], active)
    ydim, xdim = dims
    if ydim in LAT_NAMES and xdim in LON_NAMES:
        return Grid.latlon(ds[ydim].values, ds[xdim].values, active=active)
    periodic = tuple(bool(ds[d].attrs.get("periodic", 0)) for d in (ydim, xdim))
    return Grid.box(ds[xdim].values, ds[ydim].values, periodic=periodic, active=active)


def _line_grid(ds: xr.Dataset, dim: str, active: np.ndarray | None) -> Grid:
    """The 1-D grid along ``dim``: longitudes at :func:`circle_latitude`, or a line in metres."""
    if dim in LON_NAMES:
        return Grid.latlon(circle_latitude(ds), ds[dim].values, active=active)
    if dim != "x":
        raise ValueError(f"a 1-D grid runs along lon or x, got the dim {dim!r}")
    periodic = bool(ds[dim].attrs.get("periodic", 0))
    return Grid.box(ds[dim].values, periodic=periodic, active=active)


def circle_latitude(ds: xr.Dataset) -> float:
    """The latitude (degrees) of a time x longitude record: its scalar latitude coordinate
    (found by CF attributes or name), else the equator, with a warning (a Hovmöller of a band
    average, 15°S-15°N say, is usually meant to sit on the equator; a scalar ``lat`` says
    otherwise)."""
    for name, coord in ds.coords.items():
        if coord.ndim == 0 and _dim_kind(ds, str(name)) == "lat":
            return float(coord.values)
    warnings.warn(
        "a time x longitude record without a scalar latitude coordinate: its longitudes are "
        "placed on the equator (add a scalar `lat` to say otherwise)",
        stacklevel=2,
    )
    return 0.0


# --- regular time in calendar terms ---------------------------------------------------------------

MONTH_POSITION_TOL = 0.1  # of a month, either side (about 3 days): mid-month dates drift by 1-2
YEAR_DAYS = {  # mean length of a year in each CF calendar, days
    "standard": 365.2425,
    "gregorian": 365.2425,
    "proleptic_gregorian": 365.2425,
    "julian": 365.25,
    "noleap": 365.0,
    "365_day": 365.0,
    "all_leap": 366.0,
    "366_day": 366.0,
    "360_day": 360.0,
}


class IrregularTime(ValueError):
    """Time that is neither a fixed step nor a fixed number of calendar months; ``index`` is the
    first odd step (from time ``index`` to ``index + 1``)."""

    def __init__(self, message: str, index: int) -> None:
        super().__init__(message)
        self.index = index


def calendar_of(time: xr.DataArray) -> str | None:
    """The CF calendar of decoded dates (``"standard"`` for datetime64), None for numbers."""
    values = time.values
    if values.size == 0 or np.issubdtype(values.dtype, np.number):
        return None
    if np.issubdtype(values.dtype, np.datetime64):
        return "standard"
    return str(values.flat[0].calendar)


def time_step(time: xr.DataArray) -> tuple[float, str]:
    """The regular step of ``time``, in calendar terms.

    Returns ``(n, "month")`` when every step is ``n`` calendar months (monthly ``n=1``, seasonal
    ``n=3``, yearly ``n=12``) at the same place in the month (within ``MONTH_POSITION_TOL`` of a
    month, so mid-month dates of months of 28..31 days qualify), on any CF calendar, even though
    those steps differ in seconds (leap years, month lengths). Otherwise ``(Δ, "s")`` when every
    step is ``Δ`` seconds (hours, days and n-day steps: a day is 86400 s on every CF calendar).
    A single time gives ``(0.0, "s")``.

    Raises:
        IrregularTime (a ValueError): naming the first odd step by its dates and lengths.
    """
    seconds = np.diff(time_in_seconds(time))
    if not seconds.size:
        return 0.0, "s"
    months = _month_steps(time) if calendar_of(time) else None
    if months is not None and months[1] is None:
        return float(months[0]), "month"
    if np.ptp(seconds) <= 1e-6 * np.abs(seconds).max():
        return float(seconds[0]), "s"
    if months is not None and np.median(seconds) >= 27 * 86400:  # meant to be monthly or longer
        i, typical, got = months[1], f"{months[0]} months", _months_between(time, months[1])
    else:
        i = int(np.argmax(np.abs(seconds - np.median(seconds))))
        typical, got = _duration(float(np.median(seconds))), _duration(float(seconds[i]))
    raise IrregularTime(
        f"time is not evenly spaced (steps {seconds.min()}..{seconds.max()} s): "
        f"{_date(time.values[i])} to {_date(time.values[i + 1])} (index {i}) is "
        f"{got}, where the record steps by {typical}{_missing_dates_hint(seconds)}",
        i,
    )


def _missing_dates_hint(seconds: np.ndarray) -> str:
    """When every step is a whole number of the shortest (dates left out of a regular record),
    how to give them as missing frames, which are read (the windows touching them left out)."""
    ratio = seconds / seconds.min()
    if not np.allclose(ratio, np.round(ratio), atol=1e-6):
        return ""
    return (
        f"; {int(np.round(ratio).sum() - ratio.size)} dates seem left out: give them as "
        "missing (NaN) frames, e.g. ds.resample(time=STEP).asfreq() in xarray"
    )


def _month_index(time: xr.DataArray) -> tuple[np.ndarray, np.ndarray]:
    """Months since year 0 ``12·year + month - 1`` and the place in the month in [0, 1):
    ``(day - 1 + time of day) / days in the month``."""
    dt = time.dt
    month = 12 * dt.year.values.astype(np.int64) + dt.month.values - 1
    seconds = dt.hour.values * 3600 + dt.minute.values * 60 + dt.second.values
    day = (dt.day.values - 1) + seconds / 86400
    return month, day / dt.days_in_month.values


def _month_steps(time: xr.DataArray) -> tuple[int, int | None] | None:
    """``(n, None)`` when every step is ``n >= 1`` months at the same place in the month;
    ``(n, i)`` with ``n`` the commonest month step and ``i`` the first step that differs;
    None when no step is a whole month or more (sub-monthly data)."""
    month, place = _month_index(time)
    steps = np.diff(month)
    values, counts = np.unique(steps, return_counts=True)
    n = int(values[np.argmax(counts)])
    if n < 1:
        return None
    off = np.abs(place - np.median(place)) > MONTH_POSITION_TOL
    odd = (steps != n) | off[1:] | off[:-1]
    return n, (int(np.argmax(odd)) if odd.any() else None)


def _months_between(time: xr.DataArray, i: int) -> str:
    month, place = _month_index(time.isel(time=[i, i + 1]))
    return f"{month[1] - month[0] + place[1] - place[0]:.2f} months"


def _date(value: object) -> str:
    """``YYYY-MM-DD hh:mm:ss`` of a datetime64 or cftime date (a number as it is)."""
    if isinstance(value, np.datetime64):
        return str(np.datetime_as_string(value, unit="s")).replace("T", " ")
    return str(value)


def _duration(seconds: float) -> str:
    for unit, length in (("days", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= length and seconds % length == 0:
            return f"{seconds / length:g} {unit if seconds != length else unit.rstrip('s')}"
    return f"{seconds:g} s"


def time_axis(time: xr.DataArray) -> np.ndarray:
    """Model time of each frame in seconds from the first, as the solver sees it: ``[T]``.

    A fixed step in seconds gives the real times. A step of ``n`` calendar months (monthly,
    seasonal, yearly: :func:`time_step`) is placed evenly at ``n`` mean months of the calendar
    (``YEAR_DAYS[calendar] / 12`` days; 30.436875 days on the standard calendar, 30 on
    ``360_day``), the same for every file of that calendar, so that every window shares one
    relative time axis as torchdiffeq needs, and a train and a test file share one step.

    Raises:
        ValueError: irregular time (see :func:`time_step`) or an unknown calendar.
    """
    n, unit = time_step(time)
    if unit == "s":
        return time_in_seconds(time)
    calendar = calendar_of(time)
    if calendar not in YEAR_DAYS:
        raise ValueError(f"unknown calendar {calendar!r}; known: {sorted(YEAR_DAYS)}")
    return np.arange(time.size) * n * YEAR_DAYS[calendar] / 12 * 86400.0
