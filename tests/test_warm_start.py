"""Warm start and Gauss-Newton steps of the prior: parameters recovered from exact solutions."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

from hybrid.cli import main
from hybrid.data.datamodule import TrajectoryDataModule
from hybrid.data.io import grid_coords, trajectories_to_dataset, write_netcdf
from hybrid.data.simulate import box_coords, simulate
from hybrid.physics.advection_diffusion import AdvectionDiffusion, ConstantVelocity
from hybrid.physics.grid import Grid
from hybrid.physics.parameters import physical_parameters
from hybrid.physics.shallow_water import FPlane, ShallowWater, geostrophic_velocity
from hybrid.train import HybridModule

CONFIGS = Path(__file__).parents[1] / "configs"
TRUTH = {"kappa": 12.0, "velocity.u": 0.05, "velocity.v": -0.03}
DX, N, DT = 100.0, 32, 600.0


def spectral_advection_diffusion(n_samples: int = 8, n_times: int = 20, seed: int = 0):
    """Exact solution of periodic ∂c/∂t = −u·∇c + κ∇²c: each Fourier mode of wave vector ``k``
    translates at ``u`` and decays at ``κ|k|²``. ``[S, T, 1, N, N]``.

    Modes with ``|k_i| Δ = 2π/32`` only: the prior's centred differences see the wave numbers
    ``sin(kΔ)/Δ`` and ``2 sin(kΔ/2)/Δ``, so its best fit to this PDE solution is off by
    ``(kΔ)²/6`` = 0.64 % in ``u, v`` and ``(kΔ)²/12`` = 0.32 % in κ: within 1 %."""
    rng = np.random.default_rng(seed)
    x = np.arange(N) * DX
    xx, yy = np.meshgrid(x, x)  # [N, N] (y, x)
    t = np.arange(n_times) * DT
    k = 2 * math.pi / (N * DX)
    u, v, kappa = TRUTH["velocity.u"], TRUTH["velocity.v"], TRUTH["kappa"]
    out = np.full((n_samples, n_times, 1, N, N), 1.0)
    for kx, ky in ((k, 0.0), (0.0, k), (k, k), (k, -k)):
        amp, phase = (
            rng.normal(size=(n_samples, 1, 1, 1)),
            rng.uniform(0, 2 * np.pi, (n_samples, 1, 1, 1)),
        )
        decay = np.exp(-kappa * (kx**2 + ky**2) * t)[None, :, None, None]
        arg = kx * (xx - u * t[None, :, None, None]) + ky * (yy - v * t[None, :, None, None])
        out[:, :, 0] += amp * decay * np.sin(arg + phase)
    return torch.from_numpy(t), torch.from_numpy(out)


def _write(tmp_path: Path, name: str, y: torch.Tensor, t: torch.Tensor, coords=None) -> str:
    ds = trajectories_to_dataset(y, t, [name], coords=coords, units={name: "1"})
    return str(write_netcdf(ds, tmp_path / f"{name}.nc"))


def _fit(config: Path, tmp_path: Path, *overrides: str) -> HybridModule:
    main(
        [
            "fit", "--config", str(config), *overrides,
            "--trainer.default_root_dir", str(tmp_path / "run"),
            "--trainer.enable_progress_bar", "false",
            "--trainer.accelerator", "cpu",
        ]
    )  # fmt: skip
    return HybridModule.load_from_checkpoint(next((tmp_path / "run").rglob("last.ckpt")))


def test_exact_advection_diffusion_from_a_3x_wrong_kappa_in_one_epoch(tmp_path):
    """The issue's first case: only the data path, the variable and κ0 (3× off) changed."""
    t, y = spectral_advection_diffusion()
    path = _write(tmp_path, "tracer", y, t, box_coords((N, N), DX, periodic=True))
    model = _fit(
        CONFIGS / "advection_diffusion" / "physics.yaml",
        tmp_path,
        "--data.path", path,
        "--data.test_path", path,
        "--data.variables", "[tracer]",
        "--model.physics.init_args.kappa", str(3 * TRUTH["kappa"]),
        "--trainer.max_epochs", "1",
    )  # fmt: skip
    found = {k: float(v) for k, v in physical_parameters(model.physics).items()}
    for name, truth in TRUTH.items():
        assert found[name] == pytest.approx(truth, rel=0.01), name
    kd = 2 * math.pi / N  # kΔ: the semi-discrete prior's exact fit (docstring)
    assert found["kappa"] == pytest.approx(12.0 * kd**2 / (4 * math.sin(kd / 2) ** 2), rel=2e-4)
    assert found["velocity.u"] == pytest.approx(0.05 * kd / math.sin(kd), rel=2e-4)
    report = json.loads(next((tmp_path / "run").rglob("warm_start.json")).read_text())
    assert report["initial"]["kappa"] == pytest.approx(36.0)
    assert report["found"]["kappa"] == pytest.approx(12.0, rel=0.01)
    assert report["seconds"] < 30
    ckpt = torch.load(next((tmp_path / "run").rglob("last.ckpt")), weights_only=True)
    assert ckpt["warm_start"]["found"].keys() == report["found"].keys()


def test_user_prior_from_yaml_with_default_optimiser(tmp_path, monkeypatch):
    """``dy/dt = −r·y`` stored as ``log_r``, r0 = 0.2 against 0.7, 64 × 20 frames, physics
    objective, no optimiser settings: r within 1 %."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    t = torch.arange(20, dtype=torch.float64) * 0.1
    y0 = torch.rand(64, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64) + 0.5
    y = y0[:, None] * torch.exp(-0.7 * t)[None, :, None]  # [S, T, 1]
    path = _write(tmp_path, "y", y, t)
    config = tmp_path / "decay.yaml"
    config.write_text(
        "model:\n"
        "  physics: {class_path: user_priors.Decay, init_args: {r: 0.2}}\n"
        "  objective: {class_path: hybrid.objectives.PhysicsOnly}\n"
        f"data: {{path: {path}, variables: [y], window: 5, stride: 5, batch_size: 16}}\n"
        "trainer: {max_epochs: 2, logger: false}\n"
    )
    model = _fit(config, tmp_path)
    assert float(model.physics.log_r.exp()) == pytest.approx(0.7, rel=0.01)
    off = _fit(config, tmp_path / "off", "--model.warm_start", "false")
    assert float(off.physics.log_r.exp()) < 0.35  # Adam alone, 2 epochs: far from 0.7
    assert not list((tmp_path / "off").rglob("warm_start.json"))


def _shallow_water_file(tmp_path: Path, kind: str) -> tuple[str, object]:
    """Balanced bumps plus noise under the true shallow water (H 100 m, f0 1e-4, drag 1e-6),
    on a periodic box or a lat-lon patch with land (NaN in the file), 6 × 16 hourly frames."""
    if kind == "box":
        coords = box_coords((24, 24), 50e3)
        grid = Grid.regular_box(24, 24, 50e3)
        land = torch.zeros(24, 24, dtype=torch.bool)
    else:
        lat, lon = np.linspace(30.0, 50.0, 20), np.linspace(0.0, 24.0, 20)
        land = torch.zeros(20, 20, dtype=torch.bool)
        land[3:6, 4:8] = True
        coords = grid_coords("latlon", lon, lat)
        grid = Grid.latlon(lat, lon, active=~land.numpy())
    truth = ShallowWater(grid, H=100.0, r=1e-6, coriolis=FPlane(1e-4)).double()
    g = torch.Generator().manual_seed(1)
    ny, nx = grid.shape
    yy, xx = torch.meshgrid(
        torch.linspace(0, 2 * math.pi, ny), torch.linspace(0, 2 * math.pi, nx), indexing="ij"
    )
    a, b = torch.randn(2, 6, 1, 1, generator=g)
    eta = 0.5 * (a * torch.sin(xx + b) * torch.cos(yy) + b * torch.cos(2 * yy - a)).double()
    u, v = geostrophic_velocity(eta, grid.double(), 9.81, 1e-4)
    y0 = torch.stack((eta + 0.05 * torch.cos(xx + yy), u, v), dim=1) * (~land)
    t = torch.arange(16, dtype=torch.float64) * 3600.0
    y = simulate(truth, y0, t, progress=False, method="rk4", step_size=300.0)
    y = y.masked_fill(land, float("nan"))
    ds = trajectories_to_dataset(y, t, ["eta", "u", "v"], coords=coords)
    return str(write_netcdf(ds, tmp_path / f"sw_{kind}.nc")), grid


@pytest.mark.parametrize("kind", ["box", "latlon"])
def test_shallow_water_from_30_percent_off_with_the_defaults(tmp_path, kind):
    """Physics objective, H, f0 and drag 30 % off (g known): within 2 % after one epoch."""
    path, _ = _shallow_water_file(tmp_path, kind)
    dm = TrajectoryDataModule(path, ["eta", "u", "v"], window=6, stride=3, batch_size=8)
    prior = ShallowWater(dm.grid, H=70.0, r=1.3e-6, coriolis=FPlane(1.3e-4))
    model = HybridModule(prior, freeze_physics=["g"])
    trainer = pl.Trainer(
        max_epochs=1, accelerator="cpu", logger=False, enable_progress_bar=False,
        enable_checkpointing=False, enable_model_summary=False, default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(model, dm)
    found = physical_parameters(model.physics)
    assert float(found["H"]) == pytest.approx(100.0, rel=0.02)
    assert float(found["coriolis.f0"]) == pytest.approx(1e-4, rel=0.02)
    assert float(found["r"]) == pytest.approx(1e-6, rel=0.02)


class TimeToAccuracy(pl.Callback):
    """Epochs and seconds (from the start of ``fit``, warm start included) until every named
    parameter is within ``rel`` of its truth; epoch 0 is the state before the first epoch."""

    def __init__(self, truth: dict[str, float], rel: float = 0.01) -> None:
        self.truth, self.rel, self.reached = truth, rel, None

    def on_fit_start(self, trainer, module) -> None:
        self.start = time.perf_counter()

    def _check(self, module, epoch: int) -> None:
        found = physical_parameters(module.physics)
        ok = all(abs(float(found[k]) / v - 1) <= self.rel for k, v in self.truth.items())
        if ok and self.reached is None:
            self.reached = (epoch, time.perf_counter() - self.start)
        self.last = {k: float(found[k]) for k in self.truth}

    def on_train_start(self, trainer, module) -> None:
        self._check(module, 0)

    def on_validation_epoch_end(self, trainer, module) -> None:
        if not trainer.sanity_checking:
            self._check(module, trainer.current_epoch + 1)


def _case(name: str, tmp_path: Path, monkeypatch):
    """(data module, prior, HybridModule kwargs, truth) of the time-to-accuracy cases."""
    if name == "advection_diffusion":
        t, y = spectral_advection_diffusion()
        path = _write(tmp_path, "tracer", y, t, box_coords((N, N), DX, periodic=True))
        dm = TrajectoryDataModule(path, ["tracer"], window=10, stride=5, batch_size=16)
        prior = AdvectionDiffusion(dm.grid, kappa=36.0, velocity=ConstantVelocity())
        adam = {"optimizer": lambda p: torch.optim.Adam(p, lr=1e-2)}  # the config's
        return dm, prior, adam, TRUTH
    if name == "decay":
        monkeypatch.syspath_prepend(str(Path(__file__).parent))
        from user_priors import Decay

        t = torch.arange(20, dtype=torch.float64) * 0.1
        y0 = torch.rand(64, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        path = _write(tmp_path, "y", (y0 + 0.5)[:, None] * torch.exp(-0.7 * t)[None, :, None], t)
        dm = TrajectoryDataModule(path, ["y"], window=5, stride=5, batch_size=16)
        return dm, Decay(0.2), {}, {"r": 0.7}
    path, _ = _shallow_water_file(tmp_path, name.removeprefix("shallow_water_"))
    dm = TrajectoryDataModule(path, ["eta", "u", "v"], window=6, stride=3, batch_size=8)
    prior = ShallowWater(dm.grid, H=70.0, r=1.3e-6, coriolis=FPlane(1.3e-4))
    truth = {"H": 100.0, "coriolis.f0": 1e-4, "r": 1e-6}
    return dm, prior, {"freeze_physics": ["g"]}, truth


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", ["advection_diffusion", "decay", "shallow_water_box", "shallow_water_latlon"]
)
@pytest.mark.parametrize("warm", [True, False])
def test_time_to_accuracy(tmp_path, monkeypatch, name, warm):
    """NOTES' Convergence table: ``pytest -m slow tests/test_warm_start.py -s -k time_to``."""
    dm, prior, kwargs, truth = _case(name, tmp_path, monkeypatch)
    model = HybridModule(prior, warm_start=warm, **kwargs)
    clock = TimeToAccuracy(truth)
    trainer = pl.Trainer(
        max_epochs=5 if warm else 30, accelerator="cpu", logger=False, enable_progress_bar=False,
        enable_checkpointing=False, enable_model_summary=False, default_root_dir=tmp_path,
        callbacks=[clock],
    )  # fmt: skip
    trainer.fit(model, dm)
    print(f"\nTIME_TO_1% {name} warm={warm}: {clock.reached} last={clock.last}")
    if warm:
        assert clock.reached is not None and clock.reached[0] <= 1
