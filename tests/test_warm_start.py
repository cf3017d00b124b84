"""Warm start and Gauss-Newton steps of the prior: parameters recovered from exact solutions."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from hybrid.cli import main
from hybrid.data.io import trajectories_to_dataset, write_netcdf
from hybrid.data.simulate import box_coords
from hybrid.physics.grid import rebuild_grid
from hybrid.physics.parameters import physical_parameters
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
    with torch.serialization.safe_globals([rebuild_grid]):
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
