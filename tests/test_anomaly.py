"""Forecasting in anomaly space: ``y = c + a`` with ``c`` the training climatology.

Synthetic truth: a known harmonic climatology plus an AR(1) anomaly per cell (coefficient φ per
month, the damped persistence's ideal case), on a regional lat-lon grid with land and a gap.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

from hybrid.cli import main
from hybrid.data.climatology import climatology_at
from hybrid.data.datamodule import TrajectoryDataModule
from hybrid.data.io import write_netcdf

PHI, YEARS, SHAPE = 0.7, 20, (6, 12)  # AR(1) coefficient per month, record, (lat, lon)
MONTH = 365.2425 * 86400 / 12  # s, the mean Gregorian month the data module steps by
GAP = (37, 2, 5)  # (frame, lat, lon) of one missing value


def synthetic_sst(path, years: int = YEARS, seed: int = 0) -> xr.Dataset:
    """``y = c + a``: ``c = 295 + 3 cos 2πf + sin 4πf`` (K, varying with latitude), ``a`` AR(1)
    with coefficient ``PHI`` and unit variance per cell; land at (0, 0), one gap ``GAP``."""
    rng = np.random.default_rng(seed)
    n = 12 * years
    time = pd.date_range("2000-01-01", periods=n, freq="MS") + pd.Timedelta(days=14)
    f = (time.month.values - 0.5) / 12
    lat, lon = np.linspace(-5.0, 5.0, SHAPE[0]), np.arange(SHAPE[1]) * 3.0 + 150.0
    c = (
        295
        + 3 * np.cos(2 * np.pi * f)[:, None, None] * (1 + lat[:, None] / 10)
        + np.sin(4 * np.pi * f)[:, None, None]
    )
    a = np.zeros((n, *SHAPE))
    a[0] = rng.normal(size=SHAPE)
    for t in range(1, n):
        a[t] = PHI * a[t - 1] + math.sqrt(1 - PHI**2) * rng.normal(size=SHAPE)
    y = (c + a).astype(np.float32)
    y[:, 0, 0] = np.nan
    if n > GAP[0]:
        y[GAP] = np.nan
    ds = xr.Dataset(
        {"sst": (("time", "lat", "lon"), y, {"units": "K"})},
        coords={
            "time": time.values,
            "lat": ("lat", lat, {"units": "degrees_north"}),
            "lon": ("lon", lon, {"units": "degrees_east"}),
        },
    )
    write_netcdf(ds, path)
    return ds


def _datamodule(path, **kw) -> TrajectoryDataModule:
    args = dict(window=4, eval_window=7, val_fraction=0.1, test_fraction=0.1, gap=1)
    return TrajectoryDataModule(str(path), ["sst"], **{**args, **kw})


def test_served_anomalies_plus_climatology_are_the_data_bit_for_bit(tmp_path):
    """On masked lat-lon data with a gap: every window of every split, ``c + (y - c) == y``
    exactly (values within a factor two of their climatology: Sterbenz), land reads 0, the
    windows touching the gap are left out as for the state, and the statistics are the
    anomalies' (over the training split's valid frames and active cells)."""
    ds = synthetic_sst(tmp_path / "sst.nc", years=4)
    plain, anomaly = (
        _datamodule(tmp_path / "sst.nc"),
        _datamodule(tmp_path / "sst.nc", anomaly=True),
    )
    plain.setup(), anomaly.setup()
    y = np.nan_to_num(ds["sst"].values)  # [T, lat, lon]
    for name, windows in anomaly.splits.items():
        assert windows.index == plain.splits[name].index
        times = anomaly.split_times[name]
        clim = climatology_at(anomaly.climatology, times).nan_to_num(0.0)  # [T, 1, lat, lon]
        first = int(np.searchsorted(ds["time"].values, times.values[0]))
        for i, (_, s) in enumerate(windows.index):
            _, a = windows[i]  # [W, 1, lat, lon]
            w = slice(s, s + windows.window)
            assert torch.equal(
                a + clim[w], torch.from_numpy(y[first + s : first + s + windows.window, None])
            )
            assert (a[:, 0, 0, 0] == 0).all()
    assert plain.splits["train"].n_dropped == anomaly.splits["train"].n_dropped > 0
    train = anomaly.splits["train"]
    a = train.y.load()[0, train.valid[0].numpy(), 0].astype(np.float64)  # [T, lat, lon]
    a = a[:, np.isfinite(ds["sst"].values).any(0)]  # active cells
    stats = anomaly.statistics()
    assert float(stats["mean"]) == pytest.approx(a.mean(), abs=1e-6)
    assert float(stats["std"]) == pytest.approx(a.std(), rel=1e-5)
    assert float(stats["std"]) < 1.1 < float(plain.statistics()["std"])  # not the seasonal cycle


def test_anomaly_needs_a_climatology(tmp_path):
    synthetic_sst(tmp_path / "sst.nc", years=1)  # a training split of 10 months: none
    dm = _datamodule(tmp_path / "sst.nc", anomaly=True)
    with pytest.raises(ValueError, match="anomaly=True needs the training climatology"):
        dm.setup()


CONFIG = """
seed_everything: 0
model:
  physics: {class_path: hybrid.physics.decay.LinearDecay, init_args: {gamma: 1.0e-7}}
  correction: {class_path: hybrid.models.ResNet, init_args: {channels: 1, hidden: 4, blocks: 1}}
  method: rk4
data:
  path: PATH
  variables: [sst]
  anomaly: true
  window: 4
  eval_window: 7
  val_fraction: 0.1
  test_fraction: 0.1
  gap: 1
  batch_size: 64
trainer:
  max_steps: 2
  logger: false
  enable_progress_bar: false
  enable_model_summary: false
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Two training steps on 20 years of synthetic SST anomalies, after the warm start."""
    tmp = tmp_path_factory.mktemp("anomaly")
    ds = synthetic_sst(tmp / "sst.nc")
    (tmp / "anomaly.yaml").write_text(CONFIG.replace("PATH", str(tmp / "sst.nc")))
    main(["fit", "--config", str(tmp / "anomaly.yaml"), "--trainer.default_root_dir", str(tmp)])
    return {"ckpt": next(tmp.rglob("last.ckpt")), "tmp": tmp, "ds": ds}


def test_the_warm_start_recovers_the_damping_time_of_the_anomalies(run):
    """AR(1) anomalies, ``a(t + Δt) = φ a(t) + noise``: the prior ``da/dt = -γ a`` fitted to them
    has ``γ = -ln φ / Δt``. Tolerance from theory: least squares over ``n`` cell-pairs has
    ``sd(φ̂) = sqrt((1 - φ²) / n)``; removing each cell's fitted climatology biases ``φ̂`` down by
    about ``(1 + 3φ) / T`` (Kendall) over ``T`` training frames; ``dγ/γ = dφ / (φ |ln φ|)``."""
    checkpoint = torch.load(run["ckpt"], map_location="cpu", weights_only=True)
    gamma = checkpoint["warm_start"]["found"]["gamma"]
    true = -math.log(PHI) / MONTH
    frames = round(0.8 * 12 * YEARS)  # the training split
    cells = SHAPE[0] * SHAPE[1] - 1
    sd = math.sqrt((1 - PHI**2) / (frames * cells))
    bias = (1 + 3 * PHI) / frames
    tolerance = (3 * sd + bias) / (PHI * abs(math.log(PHI)))
    assert gamma == pytest.approx(true, rel=tolerance), (gamma / true - 1, tolerance)
    assert checkpoint["datamodule_hyper_parameters"]["anomaly"] is True  # loaded weights_only


def test_evaluate_writes_climatology_plus_anomaly_in_the_datas_units(run):
    """``forecast.nc`` is ``c + â``: at lead 0 the data themselves (bit for bit), at every lead
    the restored model's anomaly forecast plus the climatology; persistence is the state's own
    ``y(t0)``, and on AR(1) anomalies the hybrid, warm-started at ``γ = -ln φ / Δt``, scores as
    the damped persistence, the optimal forecast (``φ^l a(t0)``), within 2 % at every lead."""
    from hybrid.evaluate import restore

    out = run["tmp"] / "eval"
    main(["evaluate", "--ckpt_path", str(run["ckpt"]), "--output", str(out)])
    report = json.loads((out / "metrics.json").read_text())
    fc = xr.open_dataset(out / "forecast.nc")
    data = run["ds"]["sst"].sel(time=fc["time"])  # [N, lat, lon] at each initialisation
    first = fc["sst"].isel(prediction_timedelta=0)
    ocean = np.isfinite(data.values)
    assert np.array_equal(first.values[ocean], data.values[ocean])
    assert fc["sst"].attrs["units"] == "K" and 290 < float(fc["sst"].mean()) < 300
    # independently: the restored model's rollout of the served anomalies, plus c
    model, dm = restore(run["ckpt"], None, None, 64)
    dm.setup("predict")
    windows = dm.splits["test"]
    t, a = (torch.stack(x) for x in zip(*[windows[i] for i in range(len(windows))], strict=True))
    with torch.no_grad():
        pred = model(a[:, 0], t[0])  # [N, W, 1, lat, lon]
    times = dm.split_times["test"]
    clim = torch.stack(
        [climatology_at(dm.climatology, times[s : s + windows.window]) for _, s in windows.index]
    ).nan_to_num(0.0)
    np.testing.assert_allclose(fc["sst"].values, (pred + clim)[:, :, 0].numpy(), rtol=0, atol=1e-4)
    rmse = report["rmse"]
    assert rmse["persistence"][0] == 0 and rmse["persistence"][1] > rmse["model"][1]
    np.testing.assert_allclose(rmse["model"][1:], rmse["damped_persistence"][1:], rtol=0.02)


def test_predict_on_another_file_uses_the_checkpoints_climatology(run):
    """``hybrid predict --data_path`` reads only that file: its anomalies come from the saved
    training climatology, and the forecast starts from the file's own values (bit for bit)."""
    out = run["tmp"] / "other.nc"
    main(["predict", "--ckpt_path", str(run["ckpt"]), "--output", str(out),
          "--data_path", str(run["tmp"] / "sst.nc")])  # fmt: skip
    fc = xr.open_dataset(out)
    data = run["ds"]["sst"].sel(time=fc["time"])
    ocean = np.isfinite(data.values)
    first = fc["sst"].isel(prediction_timedelta=0).values
    assert fc.sizes["time"] > 100 and np.array_equal(first[ocean], data.values[ocean])
