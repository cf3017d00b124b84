"""The harmonic climatology: exact recovery, unseen days of the year, any calendar, checkpoints."""

from __future__ import annotations

import calendar as pycalendar
import datetime

import numpy as np
import pytest
import torch
import xarray as xr

import hybrid.data.trajectories as trajectories
from hybrid.data.climatology import (
    climatology_at,
    climatology_kind,
    fit_climatology,
    lag_regression,
    year_fraction,
)
from hybrid.data.io import open_trajectories
from hybrid.data.trajectories import LazyTrajectories

SHAPE = (2, 3)  # lat, lon


def _phi(f: np.ndarray, k: int) -> np.ndarray:
    """``[1, cos 2πf, sin 2πf, …]`` written out term by term (independent of the package)."""
    cols = [np.ones_like(f)]
    for j in range(1, k + 1):
        cols += [np.cos(2 * np.pi * j * f), np.sin(2 * np.pi * j * f)]
    return np.stack(cols, 1)


def _gregorian_fraction(dates: list[datetime.date]) -> np.ndarray:
    """Day of year minus one over the days of that year, from the standard library."""
    return np.array(
        [(d.timetuple().tm_yday - 1) / (366 if pycalendar.isleap(d.year) else 365) for d in dates]
    )


def _days(start: datetime.date, n: int) -> list[datetime.date]:
    return [start + datetime.timedelta(days=i) for i in range(n)]


def _dataset(time, values: np.ndarray) -> xr.Dataset:
    """``values``: ``[T, C, lat, lon]`` as variables ``v0, v1, …`` on ``time``."""
    data = {f"v{c}": (("time", "lat", "lon"), values[:, c]) for c in range(values.shape[1])}
    coords = {"time": time, "lat": [-10.0, 10.0], "lon": [0.0, 120.0, 240.0]}
    return xr.Dataset(data, coords=coords)


def _fit(ds: xr.Dataset, **kwargs) -> dict:
    names = list(ds.data_vars)
    return fit_climatology(LazyTrajectories(ds, names), ds["time"], **kwargs)


def _datetime64(dates) -> np.ndarray:
    return np.array(dates, dtype="datetime64[ns]")


def test_a_harmonic_signal_is_recovered_exactly_despite_gaps(rng):
    dates = _days(datetime.date(2001, 1, 1), 730)
    coef = rng.normal(size=(7, 2, *SHAPE))  # [P, C, lat, lon]
    coef[0] = 280.0 + 10 * coef[0]
    y = np.einsum("tp,pcij->tcij", _phi(_gregorian_fraction(dates), 3), coef)  # [T, C, lat, lon]
    y[rng.random(y.shape) < 0.1] = np.nan  # gaps here and there
    y[:, 1, 0, 2] = np.nan  # a cell never observed in channel 1 (land)
    state = _fit(_dataset(_datetime64(dates), y), harmonics=3)
    got = state["coefficients"].double().numpy()
    assert state["kind"] == "dayofyear" and state["harmonics"] == 3 and got.shape == (7, 2, *SHAPE)
    assert np.isnan(got[:, 1, 0, 2]).all()
    got[:, 1, 0, 2] = coef[:, 1, 0, 2]
    np.testing.assert_allclose(got, coef, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("block_bytes", [4 * 2**20, 200], ids=["one-block", "many-blocks"])
def test_streamed_fit_is_least_squares_per_cell(rng, monkeypatch, block_bytes):
    """Noisy data with gaps and invalid frames: each cell's own ``np.linalg.lstsq`` answer."""
    monkeypatch.setattr(trajectories, "BLOCK_BYTES", block_bytes)  # 200 B: blocks of 4 frames
    dates = _days(datetime.date(2001, 3, 1), 500)
    y = rng.normal(size=(500, 2, *SHAPE)) + 280.0
    y[rng.random(y.shape) < 0.2] = np.nan
    valid = rng.random((1, 500)) > 0.1
    ds = _dataset(_datetime64(dates), y)
    state = fit_climatology(LazyTrajectories(ds, ["v0", "v1"]), ds["time"], valid=valid)
    phi = _phi(_gregorian_fraction(dates), 3)
    for c, i, j in np.ndindex(2, *SHAPE):
        seen = np.isfinite(y[:, c, i, j]) & valid[0]
        a, *_ = np.linalg.lstsq(phi[seen], y[seen, c, i, j], rcond=None)
        np.testing.assert_allclose(state["coefficients"][:, c, i, j].numpy(), a, atol=2e-5)


def test_31_december_of_a_leap_year_after_two_common_years(tmp_path):
    """The issue's case: train on 2001-2002, score 31 December 2004 (day 366, never seen)."""
    dates = _days(datetime.date(2001, 1, 1), 730)
    f = _gregorian_fraction(dates)
    truth = 288.0 - 10.0 * np.cos(2 * np.pi * (f - 0.04)) + 0.3 * np.sin(6 * np.pi * f) ** 3
    y = np.broadcast_to(truth[:, None, None, None], (730, 1, *SHAPE)).copy()
    _dataset(_datetime64(dates), y).to_netcdf(tmp_path / "sst.nc")
    ds = open_trajectories(tmp_path / "sst.nc", ["v0"])
    state = _fit(ds)
    test_dates = _days(datetime.date(2004, 1, 1), 366)
    clim = climatology_at(state, xr.DataArray(_datetime64(test_dates), dims="time"))
    assert clim.shape == (366, 1, *SHAPE) and torch.isfinite(clim).all()
    # independently: least squares on the same 7 harmonics, evaluated at 365/366
    a, *_ = np.linalg.lstsq(_phi(f, 3), truth, rcond=None)
    expected = _phi(_gregorian_fraction(test_dates), 3) @ a  # [366]
    np.testing.assert_allclose(clim[:, 0, 0, 0].numpy(), expected, rtol=1e-6)
    assert expected[-1] == pytest.approx(288 - 10 * np.cos(2 * np.pi * (365 / 366 - 0.04)), abs=0.3)


def test_a_360_day_calendar_at_a_day_no_other_calendar_has(rng):
    time = xr.date_range("2001-01-01", periods=720, freq="D", calendar="360_day", use_cftime=True)
    doy = np.array([30 * (d.month - 1) + d.day for d in time])  # 360_day: 30-day months
    coef = rng.normal(size=(5, 1, *SHAPE))
    y = np.einsum("tp,pcij->tcij", _phi((doy - 1) / 360.0, 2), coef)
    state = _fit(_dataset(time, y), harmonics=2)
    when = xr.DataArray(xr.date_range("2003-02-30", periods=1, calendar="360_day"), dims="time")
    expected = np.einsum("p,pcij->cij", _phi(np.array([(30 + 30 - 1) / 360.0]), 2)[0], coef)
    np.testing.assert_allclose(climatology_at(state, when)[0].numpy(), expected, atol=1e-5)


def test_monthly_data_take_the_middle_of_the_month(rng):
    time = xr.date_range("2000-01-16", periods=36, freq="MS", use_cftime=False) + np.timedelta64(
        15, "D"
    )
    coef = rng.normal(size=(5, 1, *SHAPE))
    y = np.einsum("tp,pcij->tcij", _phi((time.month.values - 0.5) / 12, 2), coef)
    state = _fit(_dataset(time, y), harmonics=8)  # 12 months support at most 5 harmonics
    assert state["kind"] == "month" and state["harmonics"] == 5
    any_day = xr.DataArray(_datetime64(["2010-03-01", "2010-03-31"]), dims="time")
    expected = np.einsum("p,pcij->cij", _phi(np.array([2.5 / 12]), 2)[0], coef)
    for frame in climatology_at(state, any_day):
        np.testing.assert_allclose(frame.numpy(), expected, atol=1e-5)


def test_yearly_data_give_their_mean(rng):
    years = _datetime64([f"{y}-01-15" for y in range(2000, 2010)])
    y = rng.normal(size=(10, 1, *SHAPE)) + 280.0
    state = _fit(_dataset(years, y))
    assert state["harmonics"] == 0
    clim = climatology_at(state, xr.DataArray(_datetime64(["2020-07-01"]), dims="time"))
    np.testing.assert_allclose(clim[0].numpy(), y.mean(0), rtol=1e-6)


def test_a_cell_seen_in_one_month_only_keeps_its_mean(rng):
    dates = _days(datetime.date(2001, 1, 1), 730)
    y = rng.normal(size=(730, 1, *SHAPE)) + 280.0
    y[31:, 0, 1, 1] = np.nan  # only January 2001
    state = _fit(_dataset(_datetime64(dates), y))
    coef = state["coefficients"][:, 0, 1, 1].double().numpy()
    np.testing.assert_allclose(coef, [y[:31, 0, 1, 1].mean(), 0, 0, 0, 0, 0, 0], atol=1e-4)


def test_the_state_loads_with_weights_only(tmp_path, rng):
    dates = _days(datetime.date(2001, 1, 1), 400)
    state = _fit(_dataset(_datetime64(dates), rng.normal(size=(400, 2, *SHAPE))))
    torch.save(state, tmp_path / "clim.pt")
    loaded = torch.load(tmp_path / "clim.pt", weights_only=True)
    when = xr.DataArray(_datetime64(["2024-02-29T12:00"]), dims="time")
    torch.testing.assert_close(climatology_at(loaded, when), climatology_at(state, when))


def test_year_fraction_counts_the_time_of_day():
    when = xr.DataArray(_datetime64(["2004-12-31T12:00", "2001-01-01T06:00"]), dims="time")
    np.testing.assert_allclose(year_fraction(when, "dayofyear"), [365.5 / 366, 0.25 / 365])


def test_a_record_shorter_than_a_year_has_no_kind():
    short = xr.DataArray(_datetime64(_days(datetime.date(2001, 1, 1), 300)), dims="time")
    assert climatology_kind(short) is None
    assert climatology_kind(xr.DataArray(np.arange(400.0), dims="time")) is None


@pytest.mark.parametrize(
    "change, message",
    [
        ({"frames": 300}, r"time has 300 dates for 400 frames"),
        ({"harmonics": -1}, r"harmonics must be non-negative, got -1"),
        ({"short": True}, r"no climatology: the record \(2001-01-01.*\) is not calendar dates"),
    ],
)
def test_bad_fits_are_errors(rng, change, message):
    n = 100 if change.get("short") else 400
    ds = _dataset(_datetime64(_days(datetime.date(2001, 1, 1), n)), rng.normal(size=(n, 1, 2, 3)))
    time = ds["time"][: change.get("frames", n)]
    with pytest.raises(ValueError, match=message):
        fit_climatology(LazyTrajectories(ds, ["v0"]), time, harmonics=change.get("harmonics", 3))


@pytest.mark.parametrize(
    "state, time, message",
    [
        ({"kind": "month"}, ["2001-01-01"], r"lacks \['harmonics', 'coefficients'\]"),
        (
            {"kind": "month", "harmonics": 2, "coefficients": torch.zeros(3, 1)},
            ["2001-01-01"],
            r"2 harmonics need 5 coefficients, got 3",
        ),
        (
            {"kind": "season", "harmonics": 0, "coefficients": torch.zeros(1, 1)},
            ["2001-01-01"],
            r"kind must be one of \('dayofyear', 'month'\), got 'season'",
        ),
        (
            {"kind": "month", "harmonics": 0, "coefficients": torch.zeros(1, 1)},
            [0.0, 1.0],
            r"needs calendar dates",
        ),
    ],
    ids=["keys", "size", "kind", "numbers"],
)
def test_bad_states_and_times_are_errors(state, time, message):
    values = np.array(time) if isinstance(time[0], float) else _datetime64(time)
    with pytest.raises(ValueError, match=message):
        climatology_at(state, xr.DataArray(values, dims="time"))


def test_the_issue_case_through_the_datamodule_splits(tmp_path):
    """Train on 2001-2002 (common years), test on 2004: the climatology of every test date is
    finite and follows the seasonal cycle (RMSE of a few hundredths of a kelvin, not 280 K)."""
    from hybrid.data.datamodule import TrajectoryDataModule

    def write(path, start, n):
        dates = _days(start, n)
        f = _gregorian_fraction(dates)
        truth = 288.0 - 10.0 * np.cos(2 * np.pi * (f - 0.04))  # [T]
        y = np.broadcast_to(truth[:, None, None, None], (n, 1, *SHAPE))
        _dataset(_datetime64(dates), y).to_netcdf(path)
        return str(path), truth

    train, _ = write(tmp_path / "train.nc", datetime.date(2001, 1, 1), 730)
    test, truth = write(tmp_path / "test.nc", datetime.date(2004, 1, 1), 366)
    dm = TrajectoryDataModule(train, ["v0"], window=5, val_fraction=0.0, test_path=test)
    dm.setup()
    split = dm.splits["train"]
    state = fit_climatology(split.y, dm.split_times["train"], valid=split.valid.numpy())
    clim = climatology_at(state, dm.split_times["test"])[:, 0, 0, 0].double().numpy()  # [366]
    assert np.isfinite(clim).all()
    assert np.sqrt(np.mean((clim - truth) ** 2)) < 0.05
    assert clim[-1] == pytest.approx(truth[-1], abs=0.05)  # 31 December 2004, day 366


def test_ode_states_with_several_samples(rng):
    """No grid: ``y`` is ``[N, T, C]``; every sample shares the dates and adds to the fit."""
    dates = _days(datetime.date(2001, 1, 1), 400)
    f = _gregorian_fraction(dates)
    a = np.stack([280.0 + np.cos(2 * np.pi * f), 3.0 + 0 * f])  # [C, T]
    y = a.T[None] + np.array([0.5, -0.5])[:, None, None]  # two samples, offsets cancel
    data = {n: (("sample", "time"), y[..., c]) for c, n in enumerate(["a", "b"])}
    ds = xr.Dataset(data, coords={"time": _datetime64(dates)})
    state = fit_climatology(LazyTrajectories(ds, ["a", "b"]), ds["time"], harmonics=1)
    expected = np.array([[280.0, 3.0], [1.0, 0.0], [0.0, 0.0]])  # [P, C]
    np.testing.assert_allclose(state["coefficients"].numpy(), expected, atol=1e-5)


def test_damped_persistence_regresses_anomalies_on_their_past(rng):
    """ρ_l equals the pooled regression of a(t+l) on a(t) computed in NumPy on the same
    anomalies, and for an AR(1) anomaly (φ = 0.8) it is φ^l within sampling error."""
    n, phi = 1200, 0.8
    a = np.zeros((n, 1, 2, 3))
    for t in range(1, n):
        a[t] = phi * a[t - 1] + rng.normal(size=(1, 2, 3))
    f = _gregorian_fraction(_days(datetime.date(2001, 1, 1), n))
    cycle = 5.0 * np.cos(2 * np.pi * f)[:, None, None, None]
    ds = _dataset(_datetime64(_days(datetime.date(2001, 1, 1), n)), cycle + a)
    y, valid = LazyTrajectories(ds, ["v0"]), np.ones((1, n), bool)
    valid[0, 500] = False  # a gap: no pair through it
    state = _fit(ds, valid=valid)
    rho = lag_regression(y, ds["time"], state, valid, max_lag=3).numpy()[:, 0]  # [4]
    anomaly = ds["v0"].values - climatology_at(state, ds["time"])[:, 0].numpy()
    ok = valid[0]
    for lag in range(4):
        pair = ok[: n - lag] & ok[lag:]
        x0, x1 = anomaly[: n - lag][pair], anomaly[lag:][pair]
        assert rho[lag] == pytest.approx((x0 * x1).sum() / (x0 * x0).sum(), rel=1e-5)
        assert rho[lag] == pytest.approx(phi**lag, abs=0.05)
