"""Data with an ``environment`` dim: simulation, the environment-major layout, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from hybrid.data.environments import EnvironmentDataModule, simulate_environments
from hybrid.data.io import write_netcdf
from hybrid.data.protocols import LV_ENVIRONMENTS, build
from hybrid.physics.lotka_volterra import lotka_volterra_invariant


@pytest.fixture(scope="module")
def lv_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("lv")
    spec = build("lotka_volterra")
    for env in spec.environments:  # float32 storage: 1e-8 is plenty, and 3x faster than 1e-10
        env.solver = {"method": "dopri5", "rtol": 1e-8, "atol": 1e-8}
    paths = []
    for split, n in (("train", 2), ("test", 3)):
        ds = simulate_environments(spec, split, n_samples=n)
        paths.append(str(write_netcdf(ds, root / f"lv_{split}.nc")))
    return paths


def test_file_has_environments_and_true_parameters(lv_files):
    ds = xr.open_dataset(lv_files[0])
    assert dict(ds.sizes) == {"environment": 10, "sample": 2, "time": 20}
    assert ds["true_alpha"].values.tolist() == [a for a, _ in LV_ENVIRONMENTS]
    assert ds["true_gamma"].values.tolist() == [g for _, g in LV_ENVIRONMENTS]
    for e, (a, g) in enumerate(LV_ENVIRONMENTS):  # each environment follows its own (α, γ)
        y = torch.stack([torch.from_numpy(ds[v].values[e]) for v in ("x", "y")], -1).double()
        v = lotka_volterra_invariant(y, a, 0.5, g, 0.5)  # [N, T]
        assert float((v - v[:, :1]).abs().max()) < 1e-5  # float32 storage
    same_start = ds["x"].isel(time=0).values
    assert (same_start == same_start[:1]).all()  # every environment starts alike


def test_batches_are_environment_major(lv_files):
    dm = EnvironmentDataModule(lv_files[0], ["x", "y"], window=5, batch_size=3, stride=5)
    dm.setup()
    t, y = next(iter(dm.train_dataloader()))
    assert t.shape == (30, 5) and y.shape == (30, 5, 2)
    assert torch.allclose(t[0], torch.arange(5) * 0.5)
    full = dm.splits["train"].y  # [E, N, T, C]
    for e in range(10):
        for row in y[3 * e : 3 * e + 3]:  # each row of environment e is one of its windows
            hits = [(full[e, n, s : s + 5] == row).all() for n in range(2) for s in range(16)]
            assert any(hits)
    stats = dm.statistics()
    train, t = dm.splits["train"].y.numpy(), dm.splits["train"].t.numpy()  # [E, N, T, C], [T]
    values, dydt = train.reshape(-1, 2), np.diff(train, axis=2).reshape(-1, 2) / (t[1] - t[0])
    np.testing.assert_allclose(stats["mean"], values.mean(0), rtol=1e-5)
    np.testing.assert_allclose(stats["std"], values.std(0, ddof=1), rtol=1e-5)
    np.testing.assert_allclose(stats["tendency_std"], np.sqrt((dydt**2).mean(0)), rtol=1e-5)


def test_val_path_validates_on_that_file(lv_files):
    """The reference's selection: validation on the test file's whole trajectories."""
    dm = EnvironmentDataModule(lv_files[0], ["x", "y"], val_path=lv_files[1], window=5)
    dm.setup()
    test = xr.open_dataset(lv_files[1])
    assert dm.splits["val"].y.shape == (10, 3, 20, 2)
    assert torch.equal(dm.splits["val"].y[4, 2, :, 1], torch.from_numpy(test["y"].values[4, 2]))
    assert dm.splits["train"].y.shape == (10, 2, 20, 2)
    with pytest.raises(ValueError, match="not both"):
        EnvironmentDataModule(lv_files[0], ["x", "y"], val_path=lv_files[1], val_fraction=0.5)


def test_test_split_is_whole_trajectories(lv_files):
    dm = EnvironmentDataModule(lv_files[0], ["x", "y"], test_path=lv_files[1], batch_size=3)
    dm.setup()
    t, y = next(iter(dm.test_dataloader()))
    assert y.shape == (30, 20, 2)
    assert torch.equal(y[3:6], dm.splits["test"].y[1])  # rows 3..5: environment 1


def test_environment_subset(lv_files):
    dm = EnvironmentDataModule(lv_files[0], ["x", "y"], environments=[9])
    assert dm.n_environments == 1
    assert dm.true_parameters()["alpha"].tolist() == [1.0]
    with pytest.raises(ValueError, match=r"environments \[10\] not in"):
        _ = EnvironmentDataModule(lv_files[0], ["x", "y"], environments=[10]).dataset


def test_missing_environment_dim_is_one_clear_error(tmp_path, tiny_nc):
    train, _ = tiny_nc("pendulum", n=2, n_test=1)
    with pytest.raises(ValueError, match="has no `environment` dimension"):
        _ = EnvironmentDataModule(train, ["theta", "omega"]).dataset


@pytest.mark.parametrize(
    "content, message", [(None, "no such file"), (b"x,y\n1,2\n", "not a NetCDF")]
)
def test_a_file_that_is_not_netcdf_is_one_clear_error(tmp_path, content, message):
    """Opened as every data file is (`hybrid.data.io.open_netcdf`): the file named, the reason."""
    path = tmp_path / "lv.csv"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=rf"lv.csv: .*{message}"):
        _ = EnvironmentDataModule(str(path), ["u", "v"]).dataset


def _short(name: str, frames: int):
    spec = build(name)
    spec.environments[0].n_times = {"train": frames, "test": frames}
    return spec


def test_gray_scott_protocol():
    ds = simulate_environments(_short("gray_scott", 2), "train")
    assert dict(ds.sizes) == {"environment": 3, "sample": 1, "time": 2, "y": 32, "x": 32}
    assert ds["true_F"].values == pytest.approx([0.037, 0.030, 0.039], rel=1e-12)
    u0 = ds["u"].isel(time=0, sample=0).values
    assert set(u0[0].ravel().astype(float).round(2).tolist()) <= {0.0, 0.95}
    assert (u0[:, :, :] == u0[:1]).all()  # one start for every environment
    assert ((u0[0] == 0).sum()) >= 9  # at least one 3x3 block (blocks may overlap)
    later = ds["v"].isel(time=1).values  # [E, 1, 32, 32]: the environments differ by then
    assert abs(later[0] - later[1]).max() > 1e-3


def test_pendulum_environments_protocol():
    ds = simulate_environments(build("pendulum_environments"), "test", n_samples=2)
    assert dict(ds.sizes) == {"environment": 4, "sample": 2, "time": 40}
    assert ds["true_alpha"].values == pytest.approx([0.2, 0.2, 0.1, 0.3], rel=1e-12)


@pytest.mark.slow
def test_navier_stokes_protocol():
    ds = simulate_environments(_short("navier_stokes", 3), "train", n_samples=1)
    assert dict(ds.sizes) == {"environment": 4, "sample": 1, "time": 3, "y": 32, "x": 32}
    w = ds["w"].values  # [E, 1, T, 32, 32]
    assert abs(w.mean((-2, -1))).max() < 1e-4  # the forcings have zero mean: so does w
    assert abs(w[0, 0, 2] - w[3, 0, 2]).max() > 1e-3  # forcings differ
