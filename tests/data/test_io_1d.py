"""Time x longitude (Hovmöller) and time x x files: read as 1-D grids, missing days included."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import xarray as xr

from hybrid.data.datamodule import TrajectoryDataModule
from hybrid.data.io import (
    grid_coords,
    grid_from_dataset,
    open_trajectories,
    trajectories_to_dataset,
    write_netcdf,
)
from hybrid.physics.grid import EARTH_RADIUS, Grid

LON_ATTRS = {"standard_name": "longitude", "units": "degrees_east"}
TIME_ATTRS = {"units": "days since 2001-01-01", "calendar": "standard", "standard_name": "time"}


def _hovmoller(path, *, days=40, missing=(7, 8, 23), lat: float | None = 5.0, lon=None) -> str:
    """A daily ``(time, longitude)`` field as users have it: longitudes -180..177.5, a scalar
    latitude (a band's centre), missing days as NaN frames."""
    lon = np.arange(-180.0, 180.0, 2.5) if lon is None else lon
    t = np.arange(days, dtype=float)
    olr = 200 + 20 * np.sin(np.deg2rad(lon)[None, :] * 3 - 2 * np.pi * t[:, None] / 30)
    olr[list(missing)] = np.nan
    coords = {
        "time": ("time", t, TIME_ATTRS),
        "longitude": ("longitude", lon, LON_ATTRS),
    }
    if lat is not None:
        coords["latitude"] = ((), lat, {"standard_name": "latitude", "units": "degrees_north"})
    ds = xr.Dataset({"olr": (("time", "longitude"), olr, {"units": "W m-2"})}, coords=coords)
    ds.to_netcdf(path)
    return str(path)


def test_a_daily_hovmoller_with_missing_days_is_read_as_a_longitude_circle(tmp_path):
    ds = open_trajectories(_hovmoller(tmp_path / "h.nc"), ["olr"])
    assert ds["olr"].dims == ("time", "lon")
    grid = grid_from_dataset(ds, "olr")
    assert (grid.ndim, grid.kind, grid.periodic, grid.shape) == (1, "latlon", (True,), (144,))
    want = EARTH_RADIUS * math.cos(math.radians(5.0)) * math.radians(2.5)
    assert torch.allclose(grid.dx_east.double(), torch.full((144,), want, dtype=torch.float64))
    assert bool(grid.active.all())  # a missing day is a gap in time, not land


def test_the_data_module_leaves_out_the_windows_that_touch_a_missing_day(tmp_path):
    dm = TrajectoryDataModule(_hovmoller(tmp_path / "h.nc"), ["olr"], window=5, val_fraction=0.25)
    dm.setup()
    train = dm.splits["train"]  # frames 0..29; days 7, 8 and 23 are missing
    starts = [s for _, s in train.index]
    assert starts == [s for s in range(26) if not ({7, 8, 23} & set(range(s, s + 5)))]
    t, y = train[0]
    assert y.shape == (5, 1, 144) and dm.grid.ndim == 1


def test_without_a_latitude_the_circle_is_the_equator_and_says_so(tmp_path):
    ds = open_trajectories(_hovmoller(tmp_path / "h.nc", lat=None), ["olr"])
    with pytest.warns(UserWarning, match="placed on the equator"):
        grid = grid_from_dataset(ds, "olr")
    assert float(grid.dx_east[0]) == pytest.approx(EARTH_RADIUS * math.radians(2.5), rel=1e-6)


def test_an_arc_of_longitudes_is_walled_and_a_region_cuts_one(tmp_path):
    path = _hovmoller(tmp_path / "h.nc")
    ds = open_trajectories(path, ["olr"], region={"lon": (40, 180)})
    grid = grid_from_dataset(ds, "olr")
    assert grid.periodic == (False,) and grid.shape == (57,)


def test_a_line_in_km_is_a_1d_box_in_metres(tmp_path):
    x = np.arange(16) * 5.0
    coords = {"time": ("time", np.arange(4.0), TIME_ATTRS), "x": ("x", x, {"units": "km"})}
    coords["x"][2]["periodic"] = 1
    xr.Dataset({"c": (("time", "x"), np.ones((4, 16)))}, coords=coords).to_netcdf(tmp_path / "x.nc")
    grid = grid_from_dataset(open_trajectories(tmp_path / "x.nc", ["c"]), "c")
    assert (grid.kind, grid.periodic, float(grid.dx_east[0])) == ("box", (True,), 5000.0)


def test_a_time_x_latitude_file_is_refused_with_one_message(tmp_path):
    coords = {
        "time": ("time", np.arange(4.0), TIME_ATTRS),
        "lat": ("lat", np.arange(-10.0, 10.0, 2.5), {"units": "degrees_north"}),
    }
    xr.Dataset({"c": (("time", "lat"), np.ones((4, 8)))}, coords=coords).to_netcdf(
        tmp_path / "y.nc"
    )
    with pytest.raises(ValueError, match=r"spatial dims \('lat',\) .* one dim along lon or x"):
        open_trajectories(tmp_path / "y.nc", ["c"])


def test_a_1d_grid_survives_a_netcdf_round_trip(tmp_path):
    lon = np.arange(48) * 7.5
    y = torch.randn(2, 3, 1, 48)
    coords = grid_coords("latlon", lon, -12.5)
    ds = trajectories_to_dataset(y, torch.arange(3) * 86400.0, ["c"], coords=coords)
    path = write_netcdf(ds, tmp_path / "c.nc")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the latitude is in the file: no equator warning
        back = open_trajectories(path, ["c"])
        grid = grid_from_dataset(back, "c")
    want = Grid.latlon(-12.5, lon)
    for name, value in want.state_dict().items():
        assert torch.allclose(grid.get_buffer(name), value, rtol=1e-6), name
    assert np.allclose(back["c"].values, y[:, :, 0].numpy())


def test_left_out_days_are_refused_with_how_to_give_them_as_missing_frames(tmp_path):
    path = _hovmoller(tmp_path / "h.nc", missing=())
    ds = xr.open_dataset(path).load()
    ds.close()
    gappy = ds.drop_sel(time=ds["time"].values[[7, 8, 23]])  # three days absent, not NaN
    gappy.to_netcdf(tmp_path / "gappy.nc")
    with pytest.raises(ValueError, match=r"index 6\) is 3 days.*3 dates seem left out.*asfreq"):
        open_trajectories(tmp_path / "gappy.nc", ["olr"])
    gappy.resample(time="1D").asfreq().to_netcdf(tmp_path / "filled.nc")  # as the message says
    dm = TrajectoryDataModule(str(tmp_path / "filled.nc"), ["olr"], window=5, val_fraction=0.25)
    dm.setup()
    assert [s for _, s in dm.splits["train"].index] == [
        s for s in range(26) if not ({7, 8, 23} & set(range(s, s + 5)))
    ]
