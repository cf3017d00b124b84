"""Hovmöller data (daily time x longitude, eastward waves, noise, missing days): the baselines'
known answers, the hybrid against persistence and the best constant-speed advection at every
lead, the flow estimator's speed, and a checkpoint of a 1-D model."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import xarray as xr

from hybrid.data.datamodule import TrajectoryDataModule
from hybrid.data.io import write_netcdf
from hybrid.data.protocols import HOVMOLLER_SPEED, build
from hybrid.data.simulate import simulate_dataset
from hybrid.dynamics import HybridField, rollout
from hybrid.flow import flow_penalty, observe_past
from hybrid.models import ResNet
from hybrid.models.flow import FlowEstimator
from hybrid.physics.advection_diffusion import (
    AdvectionDiffusion,
    ConstantVelocity,
    best_constant_speed,
    shift_exactly,
)
from hybrid.physics.grid import Grid

DAY = 86400.0
LEADS = 10


@pytest.fixture(scope="module")
def hovmoller_files(tmp_path_factory):
    """The protocol's data, shortened: 240 training days, 120 test days (another draw)."""
    spec = build("hovmoller")
    spec.n_times = {"train": 240, "test": 120}
    folder = tmp_path_factory.mktemp("hovmoller")
    return tuple(
        str(write_netcdf(simulate_dataset(spec, s, progress=False), folder / f"{s}.nc"))
        for s in ("train", "test")
    )


def _data(files, window: int) -> TrajectoryDataModule:
    train, test = files
    dm = TrajectoryDataModule(
        train, ["olr"], window=window, eval_window=LEADS + 1, batch_size=16, test_path=test,
        val_fraction=0.0,
    )  # fmt: skip
    dm.setup()
    return dm


def _rmse_by_lead(pred: torch.Tensor, truth: torch.Tensor) -> np.ndarray:
    """``[N, L, nx]`` -> RMSE at leads 1..L-1 (the grid's cells are equal)."""
    return ((pred - truth) ** 2).mean((0, 2)).sqrt()[1:].numpy()


# --- the baselines' known answers ---------------------------------------------------------------


def test_an_exact_shift_moves_band_limited_waves_by_any_distance():
    grid = Grid.latlon(0.0, np.arange(72) * 5.0)
    x = torch.arange(72, dtype=torch.float64) * float(grid.dx_east[0])
    k = 3 / 6.371e6 * 1  # zonal wavenumber 3 on the equator, rad/m
    c = torch.sin(k * x) + 0.5 * torch.cos(2 * k * x)
    d = 1234.5e3  # m: not a whole number of cells
    want = torch.sin(k * (x - d)) + 0.5 * torch.cos(2 * k * (x - d))
    assert torch.allclose(shift_exactly(c, d, grid), want, atol=1e-12)


def test_the_best_constant_speed_of_exactly_shifted_noisy_waves_is_their_speed():
    grid = Grid.latlon(0.0, np.arange(144) * 2.5)
    rng = np.random.default_rng(0)
    spectrum = np.fft.rfft(rng.normal(size=144))
    spectrum[-1] = 0  # no Nyquist mode: its shift by a part of a cell is not a real field
    c0 = torch.as_tensor(np.fft.irfft(spectrum, 144))  # every other wavenumber
    t = torch.arange(30) * DAY
    y = shift_exactly(c0.expand(30, 144), 3.7 * t, grid)[None]  # [1, T, nx]
    assert best_constant_speed(y, DAY, grid) == pytest.approx(3.7, rel=1e-5)
    valid = torch.ones(1, 30, dtype=torch.bool)
    valid[0, 10] = False
    noisy = y + 0.1 * torch.as_tensor(rng.normal(size=y.shape))
    noisy[0, 10] = float("nan")  # a missing day is left out, not read
    assert best_constant_speed(torch.nan_to_num(noisy), DAY, grid, valid) == pytest.approx(
        3.7, rel=0.01
    )


# --- the hybrid against the baselines ------------------------------------------------------------


def test_the_hybrid_beats_persistence_and_the_best_constant_speed_advection_at_every_lead(
    hovmoller_files,
):
    """Transport prior (u, κ learnt) + a 1-D ResNet given the longitude, trained 3 epochs on
    3-step windows of 240 noisy days with gaps; scored on another draw's 120 days against the
    observations at leads 1..10 days."""
    torch.manual_seed(0)
    dm = _data(hovmoller_files, window=4)
    grid, stats, train = dm.grid, dm.statistics(), dm.splits["train"]
    speed = best_constant_speed(torch.as_tensor(train.y.load())[:, :, 0], DAY, grid, train.valid)
    prior = AdvectionDiffusion(grid, kappa=1e5, velocity=ConstantVelocity(speed, None))
    net = ResNet(1, hidden=8, blocks=1, grid=grid, coords=True)
    net.scaler.set_statistics(stats["mean"], stats["std"], stats["tendency_std"])
    field = HybridField(prior, net)
    groups = [{"params": net.parameters(), "lr": 3e-3}, {"params": prior.parameters(), "lr": 3e-2}]
    opt = torch.optim.Adam(groups)
    for _ in range(3):
        for t, y in dm.train_dataloader():
            loss = (rollout(field, y[:, 0], t[0], method="rk4") - y).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    test = dm.splits["test"]
    truth = torch.stack([test[i][1][:, 0] for i in range(len(test))])  # [N, L+1, nx]
    lead = torch.arange(LEADS + 1) * DAY
    with torch.no_grad():
        model = rollout(field, truth[:, :1], lead, method="rk4")[:, :, 0]
        alone = rollout(prior, truth[:, :1], lead, method="rk4")[:, :, 0]
    rmse = {
        "hybrid": _rmse_by_lead(model, truth),
        "prior_alone": _rmse_by_lead(alone, truth),
        "persistence": _rmse_by_lead(truth[:, :1].expand_as(truth), truth),
        "advection": _rmse_by_lead(shift_exactly(truth[:, :1], speed * lead, grid), truth),
    }
    assert speed == pytest.approx(HOVMOLLER_SPEED, rel=0.05)
    assert np.all(rmse["hybrid"] < rmse["persistence"]), rmse
    assert np.all(rmse["hybrid"] < rmse["advection"]), rmse
    # the network did the growth and decay: without it the same prior falls behind as waves grow
    assert np.all(rmse["hybrid"] < rmse["prior_alone"]), rmse
    assert rmse["hybrid"][-1] < 0.8 * rmse["prior_alone"][-1], rmse


# --- issue 17: the flow estimator's speed --------------------------------------------------------


def test_the_flow_estimator_finds_the_waves_speed_within_10_percent(hovmoller_files):
    """A 1-D FlowEstimator reads 4 days and gives the velocity the (centred) transport prior
    carries the last one with; trained 6 epochs on 4-day forecasts, its mean estimate over the
    test windows is the waves' 5 m/s within 10 %."""
    torch.manual_seed(0)
    dm = _data(hovmoller_files, window=8)
    estimator = FlowEstimator(frames=4, hidden=8, levels=2, speed=5.0, dims=1)
    field = HybridField(AdvectionDiffusion(dm.grid, kappa=1e5, velocity=estimator))
    opt = torch.optim.Adam(estimator.parameters(), lr=3e-3)
    for _ in range(6):
        for t, y in dm.train_dataloader():
            t, y = observe_past(field, dm.grid, t, y)
            pred = rollout(field, y[:, 0], t[0], method="rk4")
            loss = (pred - y).square().mean() + flow_penalty(field)
            opt.zero_grad()
            loss.backward()
            opt.step()
    test = dm.splits["test"]
    with torch.no_grad():
        t, y = (torch.stack(z) for z in zip(*[test[i] for i in range(len(test))], strict=True))
        observe_past(field, dm.grid, t[:, :8], y[:, :8])
        (u,) = estimator()
    assert float(u.mean()) == pytest.approx(HOVMOLLER_SPEED, rel=0.10)
    assert math.isfinite(float(u.std()))


# --- a 1-D model through the command line and a checkpoint ---------------------------------------


def test_a_1d_hybrid_from_the_config_reloads_from_a_weights_only_checkpoint(
    hovmoller_files, tmp_path
):
    """`configs/hovmoller.yaml` fits one batch; its checkpoint holds the circle's description
    and loads with ``weights_only=True`` into a model whose forecasts are bit-identical."""
    from hybrid.cli import main
    from hybrid.train import HybridModule

    train, test = hovmoller_files
    args = ["fit", "--config", "configs/hovmoller.yaml", "--data.path", train]
    args += ["--data.test_path", test, "--trainer.max_steps=1", "--trainer.logger=false"]
    args += ["--trainer.enable_progress_bar=false", "--model.warm_start=false"]
    main([*args, "--trainer.default_root_dir", str(tmp_path)])
    path = next(tmp_path.rglob("last.ckpt"))
    saved = torch.load(path, weights_only=True)
    assert saved["hyper_parameters"]["grid"]["shape"] == [144]
    a, b = HybridModule.load_from_checkpoint(path), HybridModule.load_from_checkpoint(path)
    assert a.grid.ndim == 1 and a.physics.velocity.components == 1
    assert float(a.physics.grid.dx_east[0]) == pytest.approx(2 * math.pi * 6.371e6 / 144)
    y0, t = torch.randn(2, 1, 144), torch.arange(4) * DAY
    assert torch.equal(a(y0, t), b(y0, t))
    main(["predict", "--ckpt_path", str(path), "--output", str(tmp_path / "forecast.nc")])
    with xr.open_dataset(tmp_path / "forecast.nc") as forecast:  # the circle's latitude kept
        assert forecast["olr"].dims == ("time", "prediction_timedelta", "lon")
        assert float(forecast["lat"]) == 0.0


# --- the shipped configs on the full protocol (slow: ~4 min on 2 busy cores) --------------------


@pytest.mark.slow
def test_the_configs_on_the_full_protocol_beat_the_baselines_and_find_the_speed(tmp_path):
    """`configs/hovmoller.yaml` (10 epochs) scored by `hybrid evaluate` on 360 test days: below
    persistence, its prior alone and the best constant-speed advection at every lead, u within
    5 %; `configs/moving_flow/hovmoller_flow.yaml` (10 epochs): mean estimated speed within 10 %."""
    from hybrid.cli import main

    spec = build("hovmoller")
    files = [
        str(write_netcdf(simulate_dataset(spec, s, progress=False), tmp_path / f"{s}.nc"))
        for s in ("train", "test")
    ]
    reports = {}
    for name in ("hovmoller.yaml", "moving_flow/hovmoller_flow.yaml"):
        run = tmp_path / name.replace("/", "_")
        args = ["--data.path", files[0], "--data.test_path", files[1], "--trainer.logger=false"]
        main(["fit", "--config", f"configs/{name}", *args, "--trainer.default_root_dir", str(run)])
        ckpt = str(next(run.rglob("last.ckpt")))
        main(["evaluate", "--ckpt_path", ckpt, "--output", str(run / "eval")])
        reports[name] = json.loads((run / "eval" / "metrics.json").read_text())
    hybrid = reports["hovmoller.yaml"]
    rmse = {k: np.array(v[1:]) for k, v in hybrid["rmse"].items()}
    dm = _data(files, window=6)  # the same test windows as the evaluation's
    train, test = dm.splits["train"], dm.splits["test"]
    speed = best_constant_speed(torch.as_tensor(train.y.load())[:, :, 0], DAY, dm.grid, train.valid)
    truth = torch.stack([test[i][1][:, 0] for i in range(len(test))])
    lead = torch.arange(LEADS + 1) * DAY
    advection = _rmse_by_lead(shift_exactly(truth[:, :1], speed * lead, dm.grid), truth)
    assert hybrid["n_forecasts"] == len(test)
    for baseline in (rmse["persistence"], rmse["physics"], advection):
        assert np.all(rmse["model"] < baseline), (rmse, advection)
    assert hybrid["parameters"]["velocity.u"] == pytest.approx(HOVMOLLER_SPEED, rel=0.05)
    flow = reports["moving_flow/hovmoller_flow.yaml"]["flow"]
    assert flow["mean_speed"] == pytest.approx(HOVMOLLER_SPEED, rel=0.10)
