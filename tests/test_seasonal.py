"""The time of year as an input of the correction (:mod:`hybrid.models.seasonal`).

Known answers: the phase of the year of a date on the standard and ``360_day`` calendars; the
windows' dates following the model's time axis; an anomaly decaying at a seasonal rate,
``da/dt = -γ0 (1 + ε cos 2πf) a``, whose exact solution is
``a(t) = a0 exp(-γ0 [t + ε Y / 2π (sin 2πf(t) - sin 2πf(0))])``: a correction fed the phase of
the year learns the seasonal part of the rate and a state-only one cannot.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from torch import Tensor

from hybrid.cli import main
from hybrid.data.datamodule import DatedWindows, TrajectoryDataModule, frame_phases
from hybrid.data.io import time_axis, write_netcdf
from hybrid.dynamics import HybridField, rollout
from hybrid.models import ResNet
from hybrid.models.seasonal import Seasonal, annual_harmonics, give_dates, observe_dates
from hybrid.physics.decay import LinearDecay
from hybrid.physics.lag_decay import LagDecay
from hybrid.train import HybridModule

DAY = 86400.0
YEAR = 360 * DAY  # the 360_day calendar's year
GAMMA0, EPS = 1 / (60 * DAY), 0.8  # mean rate and its seasonal modulation


def exact_anomaly(a0: Tensor, f0: Tensor, t: Tensor) -> Tensor:
    """``a(t)`` of ``da/dt = -γ0 (1 + ε cos 2πf) a``, ``f = f0 + t / Y``: ``a0 [B, ...]``,
    ``f0 [B]``, ``t [T]`` -> ``[B, T, ...]``."""
    f = f0[:, None] + t[None] / YEAR  # [B, T]
    integral = t[None] + EPS * YEAR / (2 * math.pi) * (
        torch.sin(2 * math.pi * f) - torch.sin(2 * math.pi * f0[:, None])
    )
    decay = torch.exp(-GAMMA0 * integral)  # [B, T]
    return a0[:, None] * decay[(...,) + (None,) * (a0.ndim - 1)]


def monthly_360(path, years: int = 3) -> xr.Dataset:
    """A monthly ``360_day`` record of a 3 x 4 field (values: the frame index), dated mid-month."""
    n = 12 * years
    time = xr.date_range("2001-01-01", periods=n, freq="MS", calendar="360_day", use_cftime=True)
    time = [d.replace(day=16) for d in time]
    y = np.broadcast_to(np.arange(n, dtype=np.float32)[:, None, None], (n, 3, 4)).copy()
    ds = xr.Dataset(
        {"sst": (("time", "y", "x"), y, {"units": "K"})},
        coords={"time": time, "y": ("y", np.arange(3.0) * 1e5), "x": ("x", np.arange(4.0) * 1e5)},
    )
    write_netcdf(ds, path)
    return ds


def test_phase_of_the_year_on_standard_and_360_day_calendars():
    """2000-07-02 is the middle of the leap year 2000 (183 of 366 days), 2001-07-01 the middle
    of a 360-day year (180 of 360); a monthly value sits mid-month whatever its day; ``Y`` is
    the calendar's mean year."""
    leap = xr.DataArray(pd.date_range("2000-07-02", periods=2, freq="D"), dims="time")
    f, year = frame_phases(leap)
    np.testing.assert_allclose(f, [0.5, 184 / 366], atol=1e-12)
    assert year == 365.2425 * DAY
    f, _ = frame_phases(xr.DataArray(pd.date_range("2001-03-01", periods=2, freq="D"), dims="time"))
    np.testing.assert_allclose(f, [59 / 365, 60 / 365], atol=1e-12)
    days = xr.date_range("2001-07-01", periods=3, freq="D", calendar="360_day", use_cftime=True)
    f, year = frame_phases(xr.DataArray(days, dims="time"))
    np.testing.assert_allclose(f, np.array([180, 181, 182]) / 360, atol=1e-12)
    assert year == YEAR
    months = xr.date_range("2001-03-01", periods=2, freq="MS", calendar="360_day", use_cftime=True)
    f, _ = frame_phases(xr.DataArray(months, dims="time"))
    np.testing.assert_allclose(f, [2.5 / 12, 3.5 / 12], atol=1e-12)
    with pytest.raises(ValueError, match="calendar dates"):
        frame_phases(xr.DataArray(np.arange(3.0), dims="time"))


def test_windows_carry_their_date_and_follow_the_time_axis(tmp_path):
    """Each window's ``date = (f(0), Y)``: ``f(0) + t_k / Y`` is the phase of frame ``k`` of
    the window (mod 1) on a monthly 360-day record; without ``dates`` windows stay ``(t, y)``."""
    ds = monthly_360(tmp_path / "m.nc")
    dm = TrajectoryDataModule(str(tmp_path / "m.nc"), ["sst"], window=7, dates=True)
    dm.setup()
    windows = dm.splits["train"]
    assert isinstance(windows, DatedWindows) and len(windows) == 23  # 29 frames, windows of 7
    months = ds["time"].dt.month.values
    for i in (0, 5, 22):
        t, y, date = windows[i]
        s = int(y[0, 0, 0, 0])  # the frame index
        assert date.dtype == torch.float64 and float(date[1]) == YEAR
        phase = (date[0] + t.double() / date[1]) % 1  # [W]
        np.testing.assert_allclose(phase, (months[s : s + 7] - 0.5) / 12, atol=1e-6)
    np.testing.assert_allclose(time_axis(ds["time"])[1], YEAR / 12)
    plain = TrajectoryDataModule(str(tmp_path / "m.nc"), ["sst"], window=7)
    plain.setup()
    assert len(plain.splits["train"][0]) == 2


def test_annual_harmonics():
    f = torch.tensor([0.0, 0.25, 0.125], dtype=torch.float64)
    h = annual_harmonics(f, 2)  # [3, 4]: cos 2πf, sin 2πf, cos 4πf, sin 4πf
    s = math.sqrt(0.5)
    expected = [[1, 0, 1, 0], [0, 1, -1, 0], [s, s, 0, 1]]
    np.testing.assert_allclose(h, expected, atol=1e-12)


def test_untrained_seasonal_is_its_prior_and_needs_dates():
    net = Seasonal(channels=1, harmonics=2)
    y = torch.randn(3, 1, 4, 4)
    with pytest.raises(ValueError, match="observe_dates"):
        net(torch.zeros(()), y)
    t = torch.arange(3.0)[None].expand(3, -1)
    with pytest.raises(ValueError, match="data.dates"):
        observe_dates(net, (t, y), t)
    observe_dates(net, (t, y, torch.tensor([[0.1, YEAR]] * 3)), t)
    assert torch.equal(net(torch.zeros(()), y), torch.zeros_like(y))
    with pytest.raises(ValueError, match="holds dates for states"):
        net(torch.zeros(()), torch.randn(2, 1, 4, 4))


def _fit_tendency(net: torch.nn.Module, steps: int) -> None:
    """Regress ``net`` on the prior's missing tendency ``-γ0 ε cos 2πf a`` at random ``(a, f)``."""
    net.scaler.set_statistics(torch.zeros(1), torch.ones(1), torch.tensor([GAMMA0]))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(steps):
        a, f = torch.randn(64, 1, 4, 4), torch.rand(64, dtype=torch.float64)
        give_dates(net, f, torch.full_like(f, YEAR), torch.zeros(1))
        target = -GAMMA0 * EPS * torch.cos(2 * math.pi * f).float()[:, None, None, None] * a
        loss = ((net(torch.zeros(()), a) - target) / GAMMA0).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def _rollout_error(correction: torch.nn.Module | None) -> float:
    """Largest error, relative to the largest ``|a0|``, of 6 monthly rk4 steps (4 sub-steps each) of
    ``-γ0 a + correction`` against the exact seasonal decay, from 12 starts through the year."""
    f0 = torch.arange(12, dtype=torch.float64) / 12
    a0 = torch.linspace(-2, 2, 12 * 16).reshape(12, 1, 4, 4)
    t = torch.arange(7.0) * YEAR / 12
    if correction is not None:
        give_dates(correction, f0, torch.full_like(f0, YEAR), t)
    field = HybridField(LinearDecay(GAMMA0).requires_grad_(False), correction)
    with torch.no_grad():
        pred = rollout(field, a0, t, method="rk4", step_size=YEAR / 48)
    exact = exact_anomaly(a0.double(), f0, t.double()).float()
    return float((pred - exact).abs().max() / a0.abs().max())


def test_seasonal_correction_learns_a_seasonal_decay_a_state_only_one_cannot():
    """The prior ``-γ0 a`` misses ``-γ0 ε cos 2πf a`` (ε = 0.8): over 6 months from 12 starts
    its largest error is 0.197 of the largest ``|a0|`` (against the exact solutions); a
    state-only ResNet regressed on the missing tendency learns its mean over the year, 0, and
    keeps that error; the same net fed one annual harmonic learns it: under a quarter of it
    (0.013 to 0.020 over seeds 0-2 in 300 steps)."""
    prior_error = _rollout_error(None)
    assert 0.18 < prior_error < 0.21
    torch.manual_seed(0)
    state_only, seasonal = ResNet(channels=1, hidden=8, blocks=1), Seasonal(1, 1, 8, 1)
    _fit_tendency(state_only, 150)
    _fit_tendency(seasonal, 300)
    assert _rollout_error(state_only) > 0.9 * prior_error
    assert _rollout_error(seasonal) < 0.25 * prior_error


def test_dates_leave_a_state_only_model_unchanged(tmp_path):
    """A batch with dates gives a ResNet hybrid the same loss as without (the date is read only
    by parts that read it); the old data settings (no ``dates``) load and serve ``(t, y)``."""
    monthly_360(tmp_path / "m.nc")
    model = HybridModule(LinearDecay(GAMMA0), ResNet(channels=1, hidden=4, blocks=1))
    torch.nn.init.normal_(model.correction.head.conv.weight)
    dm = TrajectoryDataModule(str(tmp_path / "m.nc"), ["sst"], window=4, dates=True)
    dm.setup()
    items = [dm.splits["train"][i] for i in range(3)]
    batch = [torch.stack(x) for x in zip(*items, strict=True)]
    with torch.no_grad():
        dated, plain = model._shared_step(batch), model._shared_step(batch[:2])
    assert torch.equal(dated["loss"], plain["loss"])
    old = {k: v for k, v in dm.hparams.items() if k != "dates"}
    again = TrajectoryDataModule(**old)
    again.setup()
    assert len(again.splits["train"][0]) == 2


def test_lag_decay_is_the_damped_persistence():
    """From ``a(0)``, rk4 sub-steps of ``LagDecay`` at its stable step give ``ρ_l a(0)`` at
    each lag ``l`` (OSTIA's training lag regression) to 0.1 % (5.7e-4 measured, 3 sub-steps a
    month), and the last rate beyond."""
    rho = [0.815, 0.698, 0.559, 0.374, 0.213, 0.049]
    month = 365.2425 * DAY / 12
    a0 = torch.randn(3, 2, dtype=torch.float64)
    t = torch.arange(8, dtype=torch.float64) * month
    with torch.no_grad():
        pred = rollout(HybridField(LagDecay(rho, month).double()), a0, t, method="rk4")
    expected = torch.tensor([1.0, *rho, rho[-1] ** 2 / rho[-2]], dtype=torch.float64)
    np.testing.assert_allclose(
        pred / a0[:, None], expected[None, :, None].expand(3, 8, 2), rtol=1e-3
    )
    with pytest.raises(ValueError, match="positive"):
        LagDecay([0.8, -0.1], month)


def test_fit_and_evaluate_a_seasonal_model_from_the_command_line(tmp_path):
    """`hybrid fit` with `data.dates` and a `Seasonal` correction, then `hybrid evaluate`: the
    forecasts' dates reach the correction (its norm along the truth is reported)."""
    monthly_360(tmp_path / "m.nc")
    config = tmp_path / "c.yaml"
    config.write_text(
        "model:\n  warm_start: false\n"
        "  physics: {class_path: hybrid.physics.decay.LinearDecay, init_args: {gamma: 1.0e-7}}\n"
        "  correction: {class_path: hybrid.models.seasonal.Seasonal,"
        " init_args: {channels: 1, harmonics: 2, hidden: 4, blocks: 1}}\n"
        f"data: {{path: {tmp_path / 'm.nc'}, variables: [sst], dates: true, window: 3,"
        " eval_window: 4, val_fraction: 0.2, test_fraction: 0.2, batch_size: 4}\n"
        f"trainer: {{max_steps: 2, logger: false, enable_progress_bar: false,"
        f" default_root_dir: {tmp_path}}}\n"
    )
    main(["fit", "--config", str(config)])
    ckpt = next(tmp_path.rglob("last.ckpt"))
    main(["evaluate", "--ckpt_path", str(ckpt), "--output", str(tmp_path / "eval")])
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert report["n_forecasts"] == 4 and math.isfinite(report["correction_norm"])
