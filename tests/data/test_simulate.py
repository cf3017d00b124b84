"""Simulation protocols, CF NetCDF output and the `hybrid simulate` command."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import xarray as xr

from hybrid.cli import main
from hybrid.data.io import replacing, to_tensor, write_netcdf
from hybrid.data.protocols import DATASETS, build
from hybrid.data.simulate import simulate, simulate_dataset
from hybrid.dynamics import rollout


@pytest.mark.parametrize(
    "name, n_samples, n_times, dt",
    [
        ("reaction_diffusion", {"train": 1600, "test": 320}, 30, 0.1),
        ("wave", {"train": 1, "test": 1}, 225, 1e-3),
        ("pendulum", {"train": 25, "test": 25}, 40, 0.5),
    ],
)
def test_aphynity_protocols(name, n_samples, n_times, dt):
    spec = build(name)
    assert spec.n_samples == n_samples
    assert spec.n_times["train"] == n_times and spec.dt == dt


def test_initial_condition_distributions(rng):
    theta_omega = build("pendulum").initial_condition(rng, 500)
    radius = theta_omega.norm(dim=1)
    assert radius.min() >= 1.3 and radius.max() < 2.3
    uv = build("reaction_diffusion").initial_condition(rng, 4)
    assert uv.shape == (4, 2, 32, 32) and uv.min() >= 0 and uv.max() < 1
    w = build("wave").initial_condition(rng, 3)
    assert w.shape == (3, 2, 64, 64) and torch.all(w[:, 1] == 0)
    peak = w[:, 0].flatten(1).argmax(1)
    assert torch.all((peak // 64 >= 20) & (peak // 64 < 40) & (peak % 64 >= 20) & (peak % 64 < 40))


def test_pendulum_dataset_matches_fine_rk4(float64):
    """The stored trajectories agree with an independent fine-step rk4 integration (step 1e-2:
    its own error is 7e-10 against a step of 1e-3, far below float32 storage)."""
    spec = build("pendulum")
    ds = simulate_dataset(spec, "train", n_samples=3, progress=False)
    y = to_tensor(ds, ["theta", "omega"]).double()  # [N, T, C]
    t = torch.arange(40, dtype=torch.float64) * 0.5
    with torch.no_grad():
        ref = rollout(spec.model, y[:, 0], t, method="rk4", step_size=1e-2)
    assert torch.allclose(y, ref, atol=1e-6)  # float32 storage
    assert math.isclose(ds.attrs["true_omega0_sq"], (2 * math.pi / 6) ** 2, rel_tol=1e-12)
    assert math.isclose(ds.attrs["true_alpha"], 0.2, rel_tol=1e-12)


def test_splits_differ_and_seed_reproduces():
    spec = build("pendulum")
    a, b = (simulate_dataset(spec, s, n_samples=2, progress=False) for s in ("train", "test"))
    a2 = simulate_dataset(spec, "train", n_samples=2, progress=False)
    assert not np.allclose(a.theta, b.theta)
    xr.testing.assert_identical(a, a2)


def test_field_dataset_is_cf_and_round_trips(tmp_path):
    ds = simulate_dataset(build("advection_diffusion"), "test", n_samples=2, progress=False)
    path = write_netcdf(ds, tmp_path / "ad.nc")
    back = xr.open_dataset(path)
    assert back.attrs["Conventions"] == "CF-1.8"
    assert back.c.dims == ("sample", "time", "y", "x")
    assert back.x.attrs["units"] == "m" and back.x.attrs["axis"] == "X"
    assert back.attrs["true_kappa"] == pytest.approx(800.0)
    assert back.attrs["true_velocity.u"] == pytest.approx(0.4)
    assert torch.equal(to_tensor(back, ["c"]), to_tensor(ds, ["c"]))
    seconds = (back.time - back.time[0]).values / np.timedelta64(1, "s")
    np.testing.assert_allclose(seconds, np.arange(40) * 3 * 3600.0)


def test_simulate_is_batched_in_chunks(float64):
    spec = build("pendulum")
    y0 = spec.initial_condition(np.random.default_rng(1), 5)
    t = torch.arange(5, dtype=torch.float64)
    whole = simulate(spec.model, y0, t, progress=False, method="rk4", step_size=0.1)
    chunks = simulate(spec.model, y0, t, chunk=2, progress=False, method="rk4", step_size=0.1)
    assert torch.equal(whole, chunks)


def test_write_netcdf_never_overwrites_silently(tmp_path):
    path = tmp_path / "x.nc"
    path.write_text("precious")
    with pytest.raises(FileExistsError, match="exists"):
        write_netcdf(xr.Dataset({"a": ("t", [1.0])}), path)
    assert path.read_text() == "precious"
    write_netcdf(xr.Dataset({"a": ("t", [1.0])}), path, overwrite=True)
    assert xr.open_dataset(path).a.values.tolist() == [1.0]
    assert list(tmp_path.iterdir()) == [path]  # no temporary left behind


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    """``io.replacing``, the one atomic writer: an interrupted block replaces nothing."""
    path = tmp_path / "x.nc"
    path.write_text("precious")
    with pytest.raises(RuntimeError, match="interrupted"), replacing(path, True) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert path.read_text() == "precious"
    assert list(tmp_path.iterdir()) == [path]


def test_cli_simulate_writes_netcdf_and_plot(tmp_path, capsys):
    out = tmp_path / "pend.nc"
    main(["simulate", "pendulum", "--output", str(out), "--n_samples", "2"])
    assert xr.open_dataset(out).theta.shape == (2, 40)
    assert out.with_suffix(".png").stat().st_size > 1000


def test_cli_refuses_to_overwrite(tmp_path):
    out = tmp_path / "pend.nc"
    out.write_text("precious")
    with pytest.raises(SystemExit, match="exists; pass --overwrite"):
        main(["simulate", "pendulum", "--output", str(out), "--n_samples", "1"])
    assert out.read_text() == "precious"


@pytest.mark.parametrize("argv", [[], ["nonsense"]])
def test_cli_usage_errors(argv):
    with pytest.raises(SystemExit, match="usage: hybrid"):
        main(argv)


def test_every_protocol_builds():
    for name in DATASETS:
        spec = build(name)
        y0 = spec.initial_condition(np.random.default_rng(0), 2)
        assert torch.isfinite(spec.model(torch.tensor(0.0), y0)).all()
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        build("nope")


def test_default_transport_dataset_adds_a_steady_source(float64):
    """The term the transport prior lacks is the zero-mass source pattern, exactly."""
    spec = build("advection_diffusion")
    y0 = spec.initial_condition(np.random.default_rng(0), 2)
    missing = spec.model(torch.tensor(0.0), y0) - spec.prior(torch.tensor(0.0), y0)
    source = missing[0, 0]
    assert torch.allclose(missing[1, 0], source)  # state-independent
    assert abs(float(source.sum())) < 1e-18 and float(source.abs().max()) == pytest.approx(1e-6)
    decay = build("advection_diffusion_decay")
    missing = decay.model(torch.tensor(0.0), y0) - decay.prior(torch.tensor(0.0), y0)
    assert torch.allclose(missing, -y0 / (3 * 86400.0))
