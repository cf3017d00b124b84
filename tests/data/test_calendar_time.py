"""Regular time in calendar terms, masks from all variables, and files that are not NetCDF."""

from __future__ import annotations

import datetime

import netCDF4
import numpy as np
import pytest
import torch
import xarray as xr

from hybrid.data.datamodule import TrajectoryDataModule
from hybrid.data.io import grid_from_dataset, open_trajectories, time_axis, time_step
from hybrid.data.trajectories import LazyTrajectories, missing_masks

DAY = 86400.0
LAT, LON = np.array([-10.0, 10.0]), np.array([0.0, 90.0, 180.0, 270.0])
COORD_ATTRS = {
    "lat": {"standard_name": "latitude", "units": "degrees_north"},
    "lon": {"standard_name": "longitude", "units": "degrees_east"},
}


def _days(dates: list[str], calendar: str = "standard") -> np.ndarray:
    """Days since 2000-01-01 of ISO dates, computed by cftime in ``calendar``."""
    import cftime

    stamps = [cftime.datetime(*map(int, d.split("-")), calendar=calendar) for d in dates]
    return np.asarray(cftime.date2num(stamps, "days since 2000-01-01", calendar=calendar))


def _file(path, days, calendar="standard", variables=("sst",), values=None) -> str:
    """A ``(time, lat, lon)`` file; each variable 280 + frame index unless ``values`` given."""
    time = xr.DataArray(
        np.asarray(days, float),
        dims="time",
        attrs={"units": "days since 2000-01-01", "calendar": calendar, "standard_name": "time"},
    )
    frames = 280.0 + np.arange(len(days))[:, None, None] + np.zeros((1, LAT.size, LON.size))
    data = {
        v: (("time", "lat", "lon"), frames if values is None else values[v], {"units": "K"})
        for v in variables
    }
    coords = {"time": time, **{d: (d, c, COORD_ATTRS[d]) for d, c in (("lat", LAT), ("lon", LON))}}
    xr.Dataset(data, coords=coords).to_netcdf(path)
    return str(path)


def _yearly(day: str = "01-15", years=range(2000, 2012)) -> list[str]:
    return [f"{y}-{day}" for y in years]


# --- regular steps in calendar terms -------------------------------------------------------------


def test_yearly_dates_through_leap_years_are_regular(tmp_path):
    ds = open_trajectories(_file(tmp_path / "y.nc", _days(_yearly())), ["sst"])
    steps = np.diff(_days(_yearly()))
    assert set(steps) == {365.0, 366.0}  # the record does cross leap years
    assert time_step(ds["time"]) == (12.0, "month")
    # evenly at the mean Gregorian year, 365.2425 days
    np.testing.assert_allclose(time_axis(ds["time"]), np.arange(12) * 365.2425 * DAY, rtol=1e-12)


@pytest.mark.parametrize(
    "dates, calendar, n, step_days",
    [
        (["2001-01-15", "2001-04-15", "2001-07-15", "2001-10-15", "2002-01-15"], "standard", 3, 0),
        ([f"2000-{m:02d}-16" for m in range(1, 13)], "noleap", 1, 365 / 12),
        ([f"2000-{m:02d}-15" for m in range(1, 13)], "360_day", 1, 30),
        ([f"{y}-02-29" for y in range(2000, 2005)], "all_leap", 12, 366),
        ([f"{y}-07-02" for y in range(2000, 2005)], "julian", 12, 365.25),
    ],
    ids=["seasonal", "monthly-noleap", "monthly-360", "yearly-all-leap", "yearly-julian"],
)
def test_calendar_month_steps(tmp_path, dates, calendar, n, step_days):
    ds = open_trajectories(_file(tmp_path / "c.nc", _days(dates, calendar), calendar), ["sst"])
    assert time_step(ds["time"]) == (float(n), "month")
    expected = step_days or n * 365.2425 / 12
    np.testing.assert_allclose(np.diff(time_axis(ds["time"])), expected * DAY, rtol=1e-12)


def test_mid_month_dates_of_a_standard_year_are_monthly(tmp_path):
    # CF monthly means dated at the middle of their bounds: 16 Jan 12:00, 15 Feb 12:00 (leap), …
    starts = np.array([f"2000-{m:02d}-01" for m in range(1, 13)] + ["2001-01-01"], "datetime64[s]")
    middle = starts[:-1] + (starts[1:] - starts[:-1]) / 2
    days = (middle - np.datetime64("2000-01-01")) / np.timedelta64(1, "D")
    ds = open_trajectories(_file(tmp_path / "m.nc", days), ["sst"])
    assert time_step(ds["time"]) == (1.0, "month")


@pytest.mark.parametrize("calendar", ["360_day", "noleap", "julian", "standard"])
def test_daily_steps_on_any_calendar_are_real_seconds(tmp_path, calendar):
    dates = ["2000-02-27", "2000-02-28", "2000-03-01", "2000-03-02"]  # 29/30 Feb where they exist
    if calendar == "360_day":
        dates[2:2] = ["2000-02-29", "2000-02-30"]
    elif calendar != "noleap":
        dates[2:2] = ["2000-02-29"]
    ds = open_trajectories(_file(tmp_path / "d.nc", _days(dates, calendar), calendar), ["sst"])
    assert time_step(ds["time"]) == (DAY, "s")
    np.testing.assert_array_equal(time_axis(ds["time"]), np.arange(len(dates)) * DAY)


@pytest.mark.parametrize(
    "dates, calendar, message",
    [
        (
            _yearly(years=[2000, 2001, 2002, 2004, 2005]),
            "standard",
            r"y\.nc: time is not evenly spaced \(steps 3\d+\.0\.\.\d+\.0 s\): "
            r"2002-01-15 00:00:00 to 2004-01-15 00:00:00 "
            r"\(index 2\) is 24\.00 months, where the record steps by 12 months",
        ),
        (
            _yearly(years=[2000, 2001, 2002]) + ["2002-07-01"] + _yearly(years=[2003, 2004]),
            "standard",
            r"2002-01-15 00:00:00 to 2002-07-01 00:00:00 \(index 2\) is 5\.55 months",
        ),
        (
            ["2000-02-28", "2000-02-29", "2000-03-02", "2000-03-03"],
            "standard",
            r"2000-02-29 00:00:00 to 2000-03-02 00:00:00 \(index 1\) is 2 days, where the "
            r"record steps by 1 day",
        ),
        (
            ["2000-02-29", "2000-02-30", "2000-03-02", "2000-03-03"],
            "360_day",
            r"2000-02-30 00:00:00 to 2000-03-02 00:00:00 \(index 1\) is 2 days",
        ),
    ],
    ids=["missing-year", "odd-date", "missing-day", "missing-day-360"],
)
def test_irregular_records_name_the_odd_dates(tmp_path, dates, calendar, message):
    path = _file(tmp_path / "y.nc", _days(dates, calendar), calendar)
    with pytest.raises(ValueError, match=message):
        open_trajectories(path, ["sst"])


@pytest.mark.parametrize(
    "dates, calendar, window, dt_days",
    [
        (_yearly(), "standard", 3, 365.2425),
        ([f"2000-{m:02d}-{d:02d}" for m in (1, 2, 3) for d in range(1, 31)], "360_day", 5, 1.0),
    ],
    ids=["yearly", "daily-360"],
)
def test_the_datamodule_windows_calendar_files(tmp_path, dates, calendar, window, dt_days):
    path = _file(tmp_path / "f.nc", _days(dates, calendar), calendar)
    dm = TrajectoryDataModule(path=path, variables=["sst"], window=window, batch_size=2)
    dm.setup()
    t, y = dm.splits["train"][1]
    np.testing.assert_allclose(t.numpy(), np.arange(window) * dt_days * DAY, rtol=1e-6)
    np.testing.assert_array_equal(y[:, 0, 0, 0].numpy(), 281.0 + np.arange(window))
    assert dm.dt == pytest.approx(dt_days * DAY, rel=1e-12)
    assert len(dm.splits["train"]) == round(len(dates) * 0.8) - window + 1


# --- masks from all variables --------------------------------------------------------------------


def test_a_cell_always_missing_in_a_second_variable_is_inactive(tmp_path):
    t = 6
    u = 280.0 + np.zeros((t, LAT.size, LON.size))
    v = u.copy()
    u[:, 0, 0] = np.nan  # land in u
    v[:, 1, 2] = np.nan  # always missing in v only
    v[2, 0, 3] = np.nan  # a gap, not land
    path = _file(tmp_path / "uv.nc", range(t), variables=("u", "v"), values={"u": u, "v": v})
    ds = open_trajectories(path, ["u", "v"])
    active = grid_from_dataset(ds, ["u", "v"]).active.numpy() > 0.5
    expected = np.ones((LAT.size, LON.size), bool)
    expected[0, 0] = expected[1, 2] = False
    np.testing.assert_array_equal(active, expected)
    land, _ = missing_masks(LazyTrajectories(ds, ["u", "v"]))  # the data reader agrees
    np.testing.assert_array_equal(land, ~expected)
    only_u = grid_from_dataset(ds, "u").active.numpy() > 0.5  # one name: that variable alone
    assert only_u[1, 2] and not only_u[0, 0]


def test_variables_on_different_grids_are_refused(tmp_path):
    path = _file(tmp_path / "f.nc", range(3))
    ds = xr.open_dataset(path)
    ds["scalar"] = ("time", np.zeros(3))
    with pytest.raises(ValueError, match=r"lie on different grids"):
        grid_from_dataset(ds, ["sst", "scalar"])
    with pytest.raises(ValueError, match=r"variables \['w'\] not in the dataset"):
        grid_from_dataset(ds, ["sst", "w"])


# --- files that are not NetCDF -------------------------------------------------------------------


def _groups_only(path) -> str:
    with netCDF4.Dataset(path, "w") as f:  # valid NetCDF-4, but the data sit in a group
        g = f.createGroup("ocean")
        g.createDimension("time", 3)
        g.createVariable("sst", "f4", ("time",))
    return str(path)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64)), r"not a NetCDF file"),
        (lambda p: p.write_bytes(b""), r"not a NetCDF file \(it starts with b''"),
        (lambda p: p.write_text("time,sst\n0,280\n"), r"starts with b'time,sst'"),
        (_groups_only, r"holds no variables or dimensions"),
        (lambda p: p.mkdir(), r"it is a directory"),
    ],
    ids=["png", "empty", "csv", "groups-only", "directory"],
)
def test_a_file_that_is_not_netcdf_is_named_as_such(tmp_path, make, message):
    path = tmp_path / "data.nc"
    make(path)
    with pytest.raises(ValueError, match=rf"data\.nc: cannot be read as NetCDF.*{message}"):
        open_trajectories(str(path), ["sst"])


def test_netcdf_after_an_hdf5_user_block_is_read(tmp_path):
    path = _file(tmp_path / "f.nc", range(3))
    with open(path, "rb") as f:
        assert f.read(4) == b"\x89HDF"
    assert open_trajectories(path, ["sst"]).sizes["time"] == 3


def test_time_axis_of_a_single_frame_is_zero():
    time = xr.DataArray([datetime.datetime(2000, 1, 1)], dims="time")
    assert time_step(time) == (0.0, "s")
    np.testing.assert_array_equal(time_axis(time), [0.0])
    assert torch.as_tensor(time_axis(time)).shape == (1,)


@pytest.mark.parametrize(
    "dates, calendar, anomaly",
    [
        (_yearly(years=range(1980, 2020)), "standard", "true"),
        ([f"2000-{m:02d}-{d:02d}" for m in (1, 2) for d in range(1, 31)], "360_day", "false"),
    ],
    ids=["yearly-15-january", "daily-360_day"],
)
def test_calendar_files_train_from_the_cli(tmp_path, dates, calendar, anomaly):
    """One step of the SST example config on a yearly (leap years crossed) or 360_day file
    (two months: no climatology, so the state itself rather than its anomaly). On the yearly
    file the prior's monthly sub-steps make a step cost ~1080 evaluations of the correction
    (cProfile: 2161 for two steps)."""
    from hybrid.cli import main

    rng = np.random.default_rng(0)
    values = {"sst": 285.0 + rng.normal(size=(len(dates), LAT.size, LON.size))}
    path = _file(tmp_path / "sst.nc", _days(dates, calendar), calendar, values=values)
    args = ["--data.path", path, "--data.variables", "[sst]", "--data.eval_window", "4"]
    args += ["--trainer.max_steps", "1", "--data.anomaly", anomaly]
    quiet = ["--trainer.logger", "false", "--trainer.enable_progress_bar", "false"]
    where = ["--trainer.default_root_dir", str(tmp_path / "run")]
    main(["fit", "--config", "configs/sst_ostia.yaml", *args, *quiet, *where])
    assert next((tmp_path / "run").rglob("*.ckpt"))
