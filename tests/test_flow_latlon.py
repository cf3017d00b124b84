"""The moving-flow protocol on a lat-lon band: the flow is divergence-free on the sphere's metric
and stays so as it turns, the tracer keeps its area-weighted mass, and the flow estimator trained
on the band's tracer finds the true flow (short run here, longer under ``-m slow``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hybrid.data.protocols import build
from hybrid.data.simulate import simulate, simulate_dataset
from hybrid.dynamics import rollout
from hybrid.flow import divergence_sq, magnitude_sq
from hybrid.physics import operators
from hybrid.physics.grid import Grid
from hybrid.physics.moving_flow_latlon import TurningFlowTracer, band_streamfunction_velocity

LAT, LON = np.arange(16) * 2.5 - 18.75, np.arange(72) * 5.0


def band() -> Grid:
    return Grid.latlon(LAT, LON).double()  # the protocol's band


def band_of(ny: int, nx: int) -> Grid:
    """20°S-20N, ``ny`` latitudes by ``nx`` longitudes, closed in longitude."""
    return Grid.latlon((np.arange(ny) + 0.5) * 40 / ny - 20, np.arange(nx) * 360 / nx).double()


@pytest.mark.parametrize("n", [1, 2, 4])
def test_band_flow_has_zero_discrete_divergence(n, float64):
    """Random ψ: the discrete divergence is zero to round-off; the box's centred formula
    (``u = -∂ψ/∂y``, ``v = ∂ψ/∂x``) leaves one on the sphere's metric."""
    grid = band_of(16 * n, 72 * n)
    psi = torch.randn(3, *grid.shape, generator=torch.Generator().manual_seed(n)) * 1e5
    u, v = band_streamfunction_velocity(psi, grid)
    scale = float(magnitude_sq(u, v, grid)) / grid.min_spacing() ** 2
    assert float(divergence_sq(u, v, grid)) < 1e-26 * scale
    dpsi_dx, dpsi_dy = operators.gradient(psi, grid)
    assert float(divergence_sq(-dpsi_dy, dpsi_dx, grid)) > 1e-6 * scale


def test_band_flow_converges_to_the_sphere_formula_at_second_order(float64):
    """``ψ = R cos φ sin λ`` (m²/s per m/s): on the sphere ``u = -(1/R)∂ψ/∂φ = sin φ sin λ``,
    ``v = (1/(R cos φ))∂ψ/∂λ = cos λ``; the discrete flow away from the walls (whose rows see a
    closed face) tends to it at order 2 (ny = 16, 32, 64 with nx = 72, 144, 288)."""
    errors, spacings = [], []
    for n in (1, 2, 4):
        grid = band_of(16 * n, 72 * n)
        phi = torch.asin(grid.sin_lat)
        lam = torch.arange(72 * n) * 2 * math.pi / (72 * n)
        u, v = band_streamfunction_velocity(grid.radius * torch.cos(phi) * torch.sin(lam), grid)
        inner = slice(1, -1)
        err_u = (u - torch.sin(phi) * torch.sin(lam))[inner].abs().max()
        err_v = (v - torch.cos(lam).expand_as(v))[inner].abs().max()
        errors.append(float(max(err_u, err_v)))
        spacings.append(1 / n)
    slope = np.polyfit(np.log(spacings), np.log(errors), 1)[0]
    assert abs(slope - 2) < 0.2, (errors, slope)


def test_band_streamfunction_refuses_a_box_and_land():
    with pytest.raises(ValueError, match="lat-lon grid that closes in longitude"):
        band_streamfunction_velocity(torch.zeros(8, 8), Grid.regular_box(8, 8, 1e3))
    land = np.ones((16, 72), bool)
    land[5, 5] = False
    with pytest.raises(ValueError, match="without land"):
        band_streamfunction_velocity(torch.zeros(16, 72), Grid.latlon(LAT, LON, active=land))


def test_pattern_turns_at_the_centred_differences_phase_speed(float64):
    """``u = sin(mλ)`` under ``∂u/∂t = -Ω ∂u/∂λ`` is exactly ``sin(m(λ - Ω' t))`` with
    ``Ω' = Ω sin(mΔλ)/(mΔλ)``, on every row."""
    omega, m = 2e-6, 3
    model = TurningFlowTracer(band(), kappa=100.0, omega=omega)
    lam = torch.deg2rad(torch.as_tensor(LON))
    y0 = torch.stack((torch.ones(16, 72), torch.sin(m * lam).expand(16, 72), torch.zeros(16, 72)))
    t = torch.arange(4) * 6 * 3600.0
    y = rollout(model, y0[None], t, method="rk4", step_size=600.0)
    dlam = 2 * math.pi / 72
    phase = omega * math.sin(m * dlam) / (m * dlam)
    assert torch.allclose(
        y[0, -1, 1], torch.sin(m * (lam - phase * t[-1])).expand(16, 72), atol=1e-8
    )


@pytest.fixture(scope="module")
def trajectories():
    """Two trajectories of 6 days (``build`` and ``simulate`` work in float64)."""
    spec = build("moving_flow_latlon")
    y0 = spec.initial_condition(np.random.default_rng(0), 2)
    t = torch.arange(6, dtype=torch.float64) * spec.dt
    return spec, simulate(spec.model, y0, t, progress=False, **spec.solver)  # [2, 6, 3, 16, 72]


def test_protocol_flow_stays_incompressible_and_turns(trajectories):
    spec, y = trajectories
    grid, u, v = spec.model.grid, y[:, :, 1], y[:, :, 2]
    speed_sq = magnitude_sq(u, v, grid)
    assert float(magnitude_sq(u[:, 0], v[:, 0], grid).sqrt()) == pytest.approx(1.0, rel=0.05)
    assert float(divergence_sq(u, v, grid)) < 1e-26 * float(speed_sq) / grid.min_spacing() ** 2
    assert float((u[:, -1] - u[:, 0]).abs().max()) > 0.05  # the pattern moves


def test_protocol_tracer_keeps_its_area_weighted_mass(trajectories):
    """Flux form on the band: ``Σ area · c`` is constant to round-off (rk4 at fixed steps), the
    plain sum over cells is not (cells near the walls are smaller)."""
    spec, y = trajectories
    area = spec.model.grid.area
    mass = (y[:, :, 0] * area).sum((-2, -1))  # [2, 6]
    assert torch.allclose(mass, mass[:, :1].expand_as(mass), rtol=1e-13, atol=0)
    plain = y[:, :, 0].sum((-2, -1))
    assert float((plain - plain[:, :1]).abs().max() / plain.abs().max()) > 1e-6


def test_protocol_file_holds_the_band_and_the_true_velocity():
    spec = build("moving_flow_latlon")
    spec.n_times = {"train": 2, "test": 2}
    ds = simulate_dataset(spec, "test", n_samples=1, progress=False)
    assert set(ds.data_vars) == {"c", "u", "v"}
    assert ds.u.dims == ("sample", "time", "lat", "lon") and ds.v.attrs["units"] == "m s-1"
    assert ds.lat.values[0] == -18.75 and ds.lon.size == 72
    assert ds.attrs["true_kappa"] == pytest.approx(5e3)


# --- the flow estimator on the band -----------------------------------------------------------


def band_windows(n: int, frames: int, window: int, length: int, split: str = "train") -> tuple:
    """``n`` trajectories of the protocol cut into every ``window``-frame window: times ``[W]``,
    tracer ``[N_w, W, 1, 16, 72]`` and the true flow at each window's ``frames``-th frame
    ``(u, v)``, ``[N_w, 16, 72]`` each (float32)."""
    spec = build("moving_flow_latlon")
    rng = np.random.default_rng([0, 0 if split == "train" else 1])
    y0 = spec.initial_condition(rng, n)
    t = torch.arange(length, dtype=torch.float64) * spec.dt
    y = simulate(spec.model, y0, t, progress=False, **spec.solver).float()  # [n, T, 3, 16, 72]
    cut = torch.cat([y[:, s : s + window] for s in range(y.shape[1] - window + 1)])
    start = cut[:, frames - 1]  # [N_w, 3, 16, 72]
    return t[:window].float(), cut[:, :, :1], (start[:, 1], start[:, 2])


def train_band_estimator(epochs: int, n: int, length: int, hidden: int, lr: float = 3e-3) -> tuple:
    """A FlowEstimator + the (upwind, κ-known) prior, ``epochs`` passes of Adam over ``n``
    trajectories' 7-frame windows (4 read, 3 forecast); returns the estimator and the grid."""
    from hybrid.dynamics import HybridField
    from hybrid.flow import flow_penalty, observe_past
    from hybrid.models.flow import FlowEstimator
    from hybrid.physics.advection_diffusion import AdvectionDiffusion

    torch.manual_seed(0)
    grid = Grid.latlon(LAT, LON)
    estimator = FlowEstimator(frames=4, hidden=hidden, levels=2, speed=1.0, divergence=1.0)
    field = HybridField(AdvectionDiffusion(grid, kappa=5e3, velocity=estimator, scheme="upwind"))
    t, y, _ = band_windows(n, 4, 7, length)
    opt = torch.optim.Adam(estimator.parameters(), lr=lr)
    for _ in range(epochs):
        for batch in torch.randperm(len(y)).split(8):
            tt, yy = observe_past(field, grid, t.expand(len(batch), -1), y[batch])
            pred = rollout(field, yy[:, 0], tt[0], method="rk4")
            loss = (pred - yy).square().mean() + flow_penalty(field)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return estimator, grid


def band_flow_correlation(estimator, grid: Grid) -> float:
    """The estimate's vector correlation with the truth over held-out windows' tracer-gradient
    cells (:func:`hybrid.flow.flow_scores`, as ``hybrid evaluate`` scores it)."""
    from hybrid.flow import flow_scores, gradient_mask

    t, y, (u_true, v_true) = band_windows(4, 4, 4, 8, split="test")
    with torch.no_grad():
        estimator.observe(y, grid)
        u, v = (w[:, 0] for w in estimator())
    mask = gradient_mask(y[:, -1, 0], grid)
    return flow_scores(u, v, u_true, v_true, grid, mask)["correlation"]


def test_the_estimator_learns_the_band_flow_in_a_short_run():
    """Untrained, the estimate is zero (no correlation); 14 passes over 8 trajectories' windows
    (Adam at 1e-2, ~15 s) give a correlation of 0.68 with the truth on held-out trajectories
    (measured; at 3e-3 the same steps leave it at 0.00, and hidden=16 stays at 0.00 too)."""
    estimator, grid = train_band_estimator(epochs=14, n=8, length=16, hidden=8, lr=1e-2)
    assert band_flow_correlation(estimator, grid) > 0.5


@pytest.mark.slow
def test_the_band_config_finds_the_true_flow(tmp_path):
    """`configs/moving_flow/latlon_band.yaml` on the full protocol (64 + 16 trajectories, 40
    epochs, 3 min 20 s to 7 min on the shared cores), then `hybrid evaluate`: the estimate's
    vector correlation with the true flow at the forecasts' starts, over tracer-gradient cells,
    is at least 0.85 (measured 0.902 from the CLI; issue 17 asks 0.9 on the box), and the
    forecast beats persistence at every lead (measured 4.4-4.6x lower RMSE)."""
    import json

    from hybrid.cli import main
    from hybrid.data.io import write_netcdf
    from hybrid.data.simulate import simulate_dataset

    spec, paths = build("moving_flow_latlon"), {}
    for split in ("train", "test"):
        ds = simulate_dataset(spec, split, progress=False)
        paths[split] = str(write_netcdf(ds, tmp_path / f"{split}.nc"))
    args = ["fit", "--config", "configs/moving_flow/latlon_band.yaml", "--data.path"]
    args += [paths["train"], "--data.test_path", paths["test"], "--trainer.logger=false"]
    main(
        [*args, "--trainer.enable_progress_bar=false", "--trainer.default_root_dir", str(tmp_path)]
    )
    ckpt = str(next(tmp_path.rglob("last.ckpt")))
    main(["evaluate", "--ckpt_path", ckpt, "--output", str(tmp_path / "eval")])
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert report["flow"]["correlation"] >= 0.85
    model, persistence = report["rmse"]["model"][1:], report["rmse"]["persistence"][1:]
    assert all(m < p for m, p in zip(model, persistence, strict=True))
