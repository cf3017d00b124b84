"""Climate NetCDF as users have it: calendars, CF dims, longitudes, files, regions, errors."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import xarray as xr

from hybrid.data.io import grid_from_dataset, open_trajectories, time_in_seconds
from hybrid.physics.grid import EARTH_RADIUS as R
from hybrid.physics.grid import Grid

DAY = 86400.0
LAT = np.array([-30.0, -10.0, 10.0, 30.0])  # cell centres, 20° apart
LON = np.arange(8) * 45.0 + 22.5  # a global ring of 8 cells, 0..360
LAT_ATTRS = {"standard_name": "latitude", "units": "degrees_north"}
LON_ATTRS = {"standard_name": "longitude", "units": "degrees_east"}


def _time(days, calendar: str = "standard", name: str = "time") -> xr.DataArray:
    attrs = {"units": "days since 2000-01-01", "calendar": calendar, "standard_name": "time"}
    return xr.DataArray(np.asarray(days, float), dims=name, attrs=attrs)


def _sst(days, lat=LAT, lon=LON) -> np.ndarray:
    """``[time, lat, lon]`` values naming their cell: frame·1000 + lat + (lon mod 360)/1000."""
    k = np.arange(len(days))[:, None, None]
    return 1000.0 * k + np.asarray(lat)[:, None] + np.mod(lon, 360.0)[None, None, :] / 1000.0


def _write(path, sst, coords: dict, dims=("time", "lat", "lon"), **extra) -> str:
    ds = xr.Dataset({"sst": (dims, sst, {"units": "K"}), **extra}, coords=coords)
    ds.to_netcdf(path)
    return str(path)


def _latlon_file(path, days=range(6), lat=LAT, lon=LON, calendar="standard", sst=None) -> str:
    coords = {
        "time": _time(days, calendar),
        "lat": ("lat", np.asarray(lat, float), LAT_ATTRS),
        "lon": ("lon", np.asarray(lon, float), LON_ATTRS),
    }
    return _write(path, _sst(days, lat, lon) if sst is None else sst, coords)


# --- time ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("calendar", ["standard", "noleap", "360_day"])
def test_daily_data_in_any_calendar(tmp_path, calendar):
    days = np.arange(58.0, 64.0)  # across 29 February, which noleap and 360_day treat differently
    ds = open_trajectories(_latlon_file(tmp_path / "d.nc", days, calendar=calendar), ["sst"])
    np.testing.assert_array_equal(np.diff(time_in_seconds(ds["time"])), DAY)
    assert ds["sst"].dims == ("time", "lat", "lon")
    if calendar != "standard":
        assert ds["time"].values[0].calendar == calendar  # cftime dates


def test_calendar_monthly_means_count_as_evenly_spaced(tmp_path):
    mid_month = [15, 45, 74, 105, 135, 166, 196, 227, 258, 288, 319, 349, 380]  # 2000-01-16 …
    ds = open_trajectories(_latlon_file(tmp_path / "m.nc", mid_month), ["sst"])
    steps = np.diff(time_in_seconds(ds["time"])) / DAY
    assert steps.min() == 29 and steps.max() == 31 and ds.sizes["time"] == 13


def test_a_missing_month_is_not_evenly_spaced(tmp_path):
    path = _latlon_file(tmp_path / "m.nc", [15, 45, 74, 135, 166])
    with pytest.raises(ValueError, match=r"m\.nc: time is not evenly spaced"):
        open_trajectories(path, ["sst"])


@pytest.mark.parametrize("calendar", ["standard", "noleap"])
def test_time_range_selects_dates(tmp_path, calendar):
    path = _latlon_file(tmp_path / "d.nc", range(10), calendar=calendar)
    ds = open_trajectories(path, ["sst"], time_range=("2000-01-03", "2000-01-06"))
    assert ds.sizes["time"] == 4
    np.testing.assert_array_equal(np.round(ds["sst"].values[:, 0, 0] / 1000), [2, 3, 4, 5])


# --- dims, latitude and longitude ----------------------------------------------------------------


def test_descending_latitude_keeps_its_order(tmp_path):
    up = open_trajectories(_latlon_file(tmp_path / "up.nc"), ["sst"])
    down = open_trajectories(_latlon_file(tmp_path / "down.nc", lat=LAT[::-1]), ["sst"])
    np.testing.assert_array_equal(down["lat"].values, LAT[::-1])
    np.testing.assert_array_equal(down["sst"].values, up["sst"].values[:, ::-1])
    g_up, g_down = grid_from_dataset(up, "sst"), grid_from_dataset(down, "sst")
    np.testing.assert_allclose(g_down.area.numpy(), g_up.area.flip(0).numpy(), rtol=1e-6)


@pytest.mark.parametrize(
    "lon",
    [LON, LON - 180.0, np.roll(LON, 3), LON[::-1]],
    ids=["0..360", "-180..180", "rolled", "descending"],
)
def test_a_global_ring_is_ordered_eastward_and_periodic(tmp_path, lon):
    ds = open_trajectories(_latlon_file(tmp_path / "g.nc", lon=lon), ["sst"])
    east = np.rad2deg(np.unwrap(np.deg2rad(ds["lon"].values)))
    np.testing.assert_allclose(np.diff(east), 45.0)
    # the data moved with its longitudes
    np.testing.assert_allclose(ds["sst"].values[0, 0] % 1 * 1000, np.mod(ds["lon"].values, 360))
    grid = grid_from_dataset(ds, "sst")
    assert grid.periodic == (False, True)
    reference = Grid.latlon(LAT, LON)
    np.testing.assert_allclose(grid.area.numpy(), reference.area.numpy(), rtol=1e-6)


@pytest.mark.parametrize(
    "lon",
    [[-177.5, -172.5, 172.5, 177.5], [172.5, 177.5, 182.5, 187.5], [187.5, 182.5, 177.5, 172.5]],
    ids=["-180..180 sorted", "0..360", "descending"],
)
def test_a_box_across_the_dateline_is_ordered_eastward(tmp_path, lon):
    ds = open_trajectories(_latlon_file(tmp_path / "b.nc", lon=lon), ["sst"])
    np.testing.assert_allclose(np.mod(ds["lon"].values, 360), [172.5, 177.5, 182.5, 187.5])
    np.testing.assert_allclose(ds["sst"].values[0, 0] % 1 * 1000, [172.5, 177.5, 182.5, 187.5])
    grid = grid_from_dataset(ds, "sst")
    assert grid.periodic == (False, False)
    np.testing.assert_allclose(grid.dx_east[0].numpy(), grid.dx_east[0, 0].item(), rtol=1e-6)


@pytest.mark.parametrize(
    "names, attrs, kind",
    [
        (("Y", "X"), (LAT_ATTRS, LON_ATTRS), "latlon"),
        (("nav_lat", "nav_lon"), ({"units": "degrees_N"}, {"units": "degree_east"}), "latlon"),
        (("latitude", "longitude"), ({}, {}), "latlon"),
        (("yc", "xc"), ({"axis": "Y", "units": "km"}, {"axis": "X", "units": "km"}), "box"),
        (
            ("rows", "cols"),
            (
                {"standard_name": "projection_y_coordinate"},
                {"standard_name": "projection_x_coordinate"},
            ),
            "box",
        ),
    ],
)
def test_dims_are_found_by_cf_attributes(tmp_path, names, attrs, kind):
    values = (LAT, LON) if kind == "latlon" else (np.arange(4) * 2.0, np.arange(8) * 2.0)
    coords = {
        "valid_time": _time(range(3), name="valid_time"),
        names[0]: (names[0], values[0], {**attrs[0], "long_name": "first"}),
        names[1]: (names[1], values[1], attrs[1]),
    }
    sst = np.arange(3 * 4 * 8, dtype=float).reshape(3, 4, 8)
    ds = open_trajectories(_write(tmp_path / "c.nc", sst, coords, ("valid_time", *names)), ["sst"])
    canonical = ("lat", "lon") if kind == "latlon" else ("y", "x")
    assert ds["sst"].dims == ("time", *canonical)
    np.testing.assert_array_equal(ds["sst"].values, sst)
    assert ds[canonical[0]].attrs["long_name"] == "first"
    assert grid_from_dataset(ds, "sst").kind == kind
    if names[0] == "yc":  # km became m
        np.testing.assert_array_equal(ds["y"].values, values[0] * 1000)
        assert ds["y"].attrs["units"] == "m"


def test_transposed_spatial_dims_come_out_lat_lon(tmp_path):
    coords = {"time": _time(range(3)), "lat": ("lat", LAT), "lon": ("lon", LON)}
    sst = _sst(range(3)).transpose(0, 2, 1)  # [time, lon, lat]
    ds = open_trajectories(_write(tmp_path / "t.nc", sst, coords, ("time", "lon", "lat")), ["sst"])
    np.testing.assert_array_equal(ds["sst"].values, _sst(range(3)))


def test_a_singleton_height_is_squeezed_with_a_warning(tmp_path):
    coords = {"time": _time(range(3)), "height": ("height", [2.0]), "lat": LAT, "lon": LON}
    sst = _sst(range(3))[:, None]
    path = _write(tmp_path / "h.nc", sst, coords, ("time", "height", "lat", "lon"))
    with pytest.warns(UserWarning, match=r"singleton dims \['height'\] squeezed"):
        ds = open_trajectories(path, ["sst"])
    assert ds["sst"].dims == ("time", "lat", "lon") and float(ds["height"]) == 2.0


def test_several_levels_are_an_error(tmp_path):
    coords = {"time": _time(range(3)), "level": ("level", [850.0, 500.0, 250.0]), "lat": LAT}
    sst = np.zeros((3, 3, 4, 8))
    path = _write(tmp_path / "l.nc", sst, {**coords, "lon": LON}, ("time", "level", "lat", "lon"))
    with pytest.raises(ValueError, match=r"l\.nc: dims 'level' \(3 levels\).*select one level"):
        open_trajectories(path, ["sst"])


# --- several files -------------------------------------------------------------------------------


def test_files_split_along_time_equal_the_single_file(tmp_path):
    single = open_trajectories(_latlon_file(tmp_path / "all.nc", range(9)), ["sst"])
    sst = _sst(range(9))
    parts = tmp_path / "parts"
    parts.mkdir()
    paths = [
        _latlon_file(parts / f"sst_{i}.nc", range(3 * i, 3 * i + 3), sst=sst[3 * i : 3 * i + 3])
        for i in range(3)
    ]
    for given in (paths[::-1], str(parts / "sst_*.nc")):  # any order; a glob
        multi = open_trajectories(given, ["sst"])
        assert multi["sst"].chunks is not None  # still lazy
        xr.testing.assert_equal(multi.load(), single.load())


def test_overlapping_files_name_the_file_with_duplicate_times(tmp_path):
    a = _latlon_file(tmp_path / "a.nc", range(4))
    b = _latlon_file(tmp_path / "b.nc", range(3, 6))
    with pytest.raises(ValueError, match=r"b\.nc: time is not strictly increasing.*duplicate"):
        open_trajectories([a, b], ["sst"])


# --- masks, areas, periodicity, regions ----------------------------------------------------------


def test_land_missing_at_every_time_is_inactive(tmp_path):
    sst = _sst(range(4))
    sst[:, 1, 2:5] = np.nan  # land
    sst[2, 3, 0] = np.nan  # a gap, not land
    ds = open_trajectories(_latlon_file(tmp_path / "land.nc", range(4), sst=sst), ["sst"])
    expected = np.ones((4, 8), bool)
    expected[1, 2:5] = False
    np.testing.assert_array_equal(grid_from_dataset(ds, "sst").active.bool().numpy(), expected)


@pytest.mark.parametrize(
    "lat, lon, south, north, lon_fraction, periodic",
    [
        (np.arange(-85.0, 90.0, 10.0), LON, -90, 90, 1.0, True),
        (LAT, LON, -40, 40, 1.0, True),
        (LAT[::-1], LON[:2], -40, 40, 0.25, False),
    ],
    ids=["globe", "band", "box"],
)
def test_cell_areas_sum_to_the_covered_sphere(
    tmp_path, float64, lat, lon, south, north, lon_fraction, periodic
):
    ds = open_trajectories(_latlon_file(tmp_path / "a.nc", range(2), lat=lat, lon=lon), ["sst"])
    grid = grid_from_dataset(ds, "sst")
    sin = math.sin(math.radians(north)) - math.sin(math.radians(south))
    exact = R**2 * 2 * math.pi * lon_fraction * sin
    assert grid.area.sum().item() == pytest.approx(exact, rel=1e-9)
    assert grid.periodic == (False, periodic)


@pytest.mark.parametrize("lat", [LAT, LAT[::-1]], ids=["ascending", "descending"])
def test_region_selects_latitudes_and_longitudes_across_the_dateline(tmp_path, lat):
    lon = np.arange(36) * 10.0 + 5.0  # 5..355
    path = _latlon_file(tmp_path / "r.nc", range(2), lat=lat, lon=lon)
    ds = open_trajectories(path, ["sst"], region={"lat": (0, 40), "lon": (160, -160)})
    np.testing.assert_array_equal(ds["lat"].values, [x for x in lat if x > 0])
    np.testing.assert_array_equal(ds["lon"].values, [165, 175, 185, 195])
    assert grid_from_dataset(ds, "sst").periodic == (False, False)
    whole = open_trajectories(path, ["sst"], region={"lon": [-180, 180]})
    assert whole.sizes["lon"] == 36


def test_region_in_metres_on_a_box(tmp_path):
    coords = {
        "time": _time(range(2)),
        "y": ("y", np.arange(4) * 1000.0, {"units": "m"}),
        "x": ("x", np.arange(8) * 1000.0, {"units": "m"}),
    }
    path = _write(tmp_path / "box.nc", np.zeros((2, 4, 8)), coords, ("time", "y", "x"))
    ds = open_trajectories(path, ["sst"], region={"y": (1000, 2000), "x": (2500, 7000)})
    assert dict(ds["sst"].sizes) == {"time": 2, "y": 2, "x": 5}


# --- bad inputs ----------------------------------------------------------------------------------


def _bad_time(path, days) -> str:
    return _latlon_file(path, days)


def _truncated(path) -> str:
    _latlon_file(path)
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)
    return str(path)


def _all_missing(path) -> str:
    return _latlon_file(path, sst=np.full((6, 4, 8), np.nan))


def _no_time(path) -> str:
    return _write(path, np.zeros((4, 8)), {"lat": LAT, "lon": LON}, ("lat", "lon"))


@pytest.mark.parametrize(
    "make, kwargs, message",
    [
        (lambda p: str(p / "nothere.nc"), {}, r"nothere\.nc: no such file"),
        (lambda p: str(p / "none_*.nc"), {}, r"none_\*\.nc: no files match"),
        (
            lambda p: p.joinpath("x.nc").write_text("a,b\n") and str(p / "x.nc"),
            {},
            r"x\.nc: cannot be read",
        ),
        (lambda p: _truncated(p / "half.nc"), {}, r"half\.nc: cannot be read as NetCDF"),
        (_no_time, {}, r"no `time` dimension in \('lat', 'lon'\)"),
        (lambda p: _bad_time(p / "t.nc", [0, 2, 1]), {}, r"t\.nc: time is not strictly increasing"),
        (lambda p: _bad_time(p / "t.nc", [0, 1, 1, 2]), {}, r"\(at index 1\): duplicate times"),
        (lambda p: _bad_time(p / "t.nc", [0, 1, 2, 4, 5]), {}, r"not evenly spaced.*index 2"),
        (_all_missing, {}, r"'sst' is all missing"),
        (_latlon_file, {"region": {"lat": (50, 60)}}, r"region .* selects no cells"),
        (_latlon_file, {"region": {"y": (0, 1)}}, r"region keys \['y'\] are not spatial dims"),
        (_latlon_file, {"time_range": ("2001-01-01", "2001-02-01")}, "selects no times"),
    ],
    ids=[
        "missing",
        "glob",
        "text",
        "truncated",
        "no-time",
        "decreasing",
        "duplicate",
        "uneven",
        "all-missing",
        "empty-region",
        "region-key",
        "empty-time-range",
    ],
)
def test_bad_inputs_are_named(tmp_path, make, kwargs, message):
    target = tmp_path / "f.nc" if make in (_latlon_file, _all_missing, _no_time) else tmp_path
    path = make(target)
    with pytest.raises(ValueError, match=message):
        open_trajectories(path, ["sst"], **kwargs)


def test_a_missing_variable_lists_those_present(tmp_path):
    path = _latlon_file(tmp_path / "f.nc")
    with pytest.raises(ValueError, match=r"f\.nc: variables \['u'\] not found; present: \['sst'\]"):
        open_trajectories(path, ["sst", "u"])


def test_good_files_open_without_warnings(tmp_path):
    path = _latlon_file(tmp_path / "f.nc", calendar="noleap")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        open_trajectories(path, ["sst"])
