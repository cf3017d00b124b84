"""TrajectoryDataModule: leak-free splits, land masks and gaps, statistics, order, file errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from hybrid.data.datamodule import TrajectoryDataModule

DT = 2.0  # s
TIME_ATTRS = {"units": "seconds since 2000-01-01 00:00:00", "axis": "T"}


def _write(path, variables: dict, *, time=None, coords=None, time_attrs=TIME_ATTRS) -> str:
    """Write ``{name: (dims, values)}`` with a CF ``time`` (numbers of seconds) and ``coords``."""
    ds = xr.Dataset(variables, coords=coords or {})
    if time is not None:
        ds = ds.assign_coords(time=xr.DataArray(np.asarray(time, float), dims="time"))
        ds["time"].attrs.update(time_attrs)
    ds.to_netcdf(path)
    return str(path)


def _ode_file(path, n: int, length: int, offset: float = 0.0) -> str:
    """``a[n, k] = offset + 1000 n + k``, ``b = -a``: each value names its sample and frame."""
    a = offset + 1000.0 * np.arange(n)[:, None] + np.arange(length)[None, :]
    dims = ("sample", "time")
    return _write(path, {"a": (dims, a), "b": (dims, -a)}, time=DT * np.arange(length))


def _box_coords(ny: int, nx: int, dx: float = 1000.0) -> dict:
    attrs = {"units": "m"}
    return {
        "y": xr.DataArray(dx * (np.arange(ny) + 0.5), dims="y", attrs={**attrs, "axis": "Y"}),
        "x": xr.DataArray(dx * (np.arange(nx) + 0.5), dims="x", attrs={**attrs, "axis": "X"}),
    }


def _samples(windows) -> set[int]:
    """The samples of an ODE file (see ``_ode_file``) that the windows come from."""
    return {int(windows[i][1][0, 0].item()) // 1000 for i in range(len(windows))}


def _frames(windows, cell=(0,)) -> list[list[int]]:
    """The absolute frames of each window, read from values equal to the frame index."""
    return [windows[i][1][(slice(None), *cell)].round().int().tolist() for i in range(len(windows))]


# --- split by trajectory -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n, val_fraction, test_fraction, sizes",
    [
        (10, 0.2, 0.0, {"train": 8, "val": 2}),
        (10, 0.2, 0.3, {"train": 5, "val": 2, "test": 3}),
        (5, 0.4, 0.2, {"train": 2, "val": 2, "test": 1}),
        (2, 0.4, 0.0, {"train": 1, "val": 1}),
    ],
)
def test_split_by_trajectory_is_disjoint_and_covers_all_samples(
    tmp_path, n, val_fraction, test_fraction, sizes
):
    path = _ode_file(tmp_path / "a.nc", n, 6)
    dm = TrajectoryDataModule(
        path, ["a", "b"], window=3, val_fraction=val_fraction, test_fraction=test_fraction
    )
    dm.setup()
    assert set(dm.splits) == set(sizes)
    samples = {name: _samples(dm.splits[name]) for name in sizes}
    assert {name: len(s) for name, s in samples.items()} == sizes
    assert set().union(*samples.values()) == set(range(n))
    assert sum(len(s) for s in samples.values()) == n  # disjoint
    for name, windows in dm.splits.items():
        assert len(windows) == sizes[name] * (6 - 3 + 1)  # whole trajectories, stride 1


def test_split_by_trajectory_depends_on_the_seed_only(tmp_path):
    path = _ode_file(tmp_path / "a.nc", 10, 4)

    def split(seed: int) -> dict[str, set[int]]:
        dm = TrajectoryDataModule(
            path, ["a"], window=2, val_fraction=0.3, test_fraction=0.3, seed=seed
        )
        dm.setup()
        return {name: _samples(w) for name, w in dm.splits.items()}

    assert split(0) == split(0)
    assert split(7) == split(7)
    assert split(0) != split(7)


def test_test_path_gives_the_test_split(tmp_path):
    train = _ode_file(tmp_path / "train.nc", 5, 6)
    test = _ode_file(tmp_path / "test.nc", 3, 8, offset=50_000.0)
    dm = TrajectoryDataModule(
        train,
        ["a", "b"],
        window=3,
        eval_window=4,
        val_fraction=0.4,
        test_fraction=0.4,
        test_path=test,
    )
    dm.setup()
    # test_fraction is ignored: train and val share the 5 training samples (3 + 2).
    assert _samples(dm.splits["train"]) | _samples(dm.splits["val"]) == set(range(5))
    assert len(_samples(dm.splits["train"])) == 3
    assert _samples(dm.splits["test"]) == {50, 51, 52}
    assert len(dm.splits["test"]) == 3 * (8 - 4 + 1)
    t, y = dm.splits["test"][0]
    assert y.shape == (4, 2) and torch.equal(t, torch.tensor([0.0, 2.0, 4.0, 6.0]))
    assert [len(y) for _, y in dm.test_dataloader()] == [3 * 5]  # in order, one batch of 32


def test_test_path_with_simulated_files(tiny_nc):
    train, test = tiny_nc("pendulum", n=3, n_test=2)
    dm = TrajectoryDataModule(train, ["theta", "omega"], window=10, eval_window=20, test_path=test)
    dm.setup()
    assert dm.dt == 0.5 and dm.grid is None and dm.channels == 2
    assert len(dm.splits["test"]) == 2 * (40 - 20 + 1)
    # 3 samples: 1 for validation (round(0.2 * 3)), 2 for training
    assert len(dm.splits["train"]) == 2 * (40 - 10 + 1)
    assert len(dm.splits["val"]) == 1 * (40 - 20 + 1)


# --- split by time -------------------------------------------------------------------------------


def _record(path, layout: str, length: int = 20) -> str:
    """One record whose value at frame k is k (plus a small per-cell offset on a grid)."""
    frames = np.arange(length, dtype=float)
    if layout == "time, y, x":
        values = frames[:, None, None] + 0.01 * np.arange(6).reshape(1, 2, 3)
        variables = {"c": (("time", "y", "x"), values)}
        return _write(path, variables, time=DT * frames, coords=_box_coords(2, 3))
    variables = {"c": (("sample", "time"), frames[None])}  # sample dim of size 1
    return _write(path, variables, time=DT * frames)


@pytest.mark.parametrize("layout", ["time, y, x", "sample=1, time"])
@pytest.mark.parametrize(
    "val_fraction, test_fraction, blocks",
    [
        (0.25, 0.25, {"train": (0, 10), "val": (10, 15), "test": (15, 20)}),
        (0.2, 0.0, {"train": (0, 16), "val": (16, 20)}),
        (0.3, 0.1, {"train": (0, 12), "val": (12, 18), "test": (18, 20)}),
    ],
)
def test_a_single_record_is_split_by_time_into_blocks(
    tmp_path, layout, val_fraction, test_fraction, blocks
):
    path = _record(tmp_path / "r.nc", layout)
    dm = TrajectoryDataModule(
        path, ["c"], window=2, val_fraction=val_fraction, test_fraction=test_fraction
    )
    dm.setup()
    assert set(dm.splits) == set(blocks)
    cell = (0, 0, 0) if layout == "time, y, x" else (0,)
    for name, (start, stop) in blocks.items():
        windows = dm.splits[name]
        frames = _frames(windows, cell)
        # every window stays inside its block, consecutive frames; all starts are there
        assert all(f == list(range(f[0], f[0] + 2)) for f in frames)
        assert sorted({k for f in frames for k in f}) == list(range(start, stop))
        assert len(windows) == stop - start - 2 + 1
        t, y = windows[0]
        assert torch.equal(t, torch.tensor([0.0, DT]))
        assert y.shape == ((2, 1, 2, 3) if layout == "time, y, x" else (2, 1))


def test_time_blocks_drop_a_split_too_short_for_a_window(tmp_path):
    path = _record(tmp_path / "r.nc", "sample=1, time", length=20)
    dm = TrajectoryDataModule(
        path, ["c"], window=3, eval_window=4, val_fraction=0.25, test_fraction=0.1
    )  # train 0..12, val 13..17 (5 frames: 2 windows of 4), test 18..19 (2 frames: none)
    dm.setup()
    assert set(dm.splits) == {"train", "val"}
    assert len(dm.splits["train"]) == 13 - 3 + 1 and len(dm.splits["val"]) == 2
    with pytest.raises(ValueError, match="no test windows: set test_fraction"):
        dm.test_dataloader()


def test_no_training_window_is_an_error(tmp_path):
    path = _ode_file(tmp_path / "a.nc", 3, 5)
    dm = TrajectoryDataModule(path, ["a"], window=6)
    with pytest.raises(ValueError, match="no training window of 6 frames remains"):
        dm.setup()


@pytest.mark.parametrize("fractions", [(1.0, 0.0), (-0.1, 0.0), (0.2, 1.0), (0.2, -0.5)])
def test_fractions_out_of_range_are_errors(tmp_path, fractions):
    path = _ode_file(tmp_path / "a.nc", 3, 5)
    with pytest.raises(ValueError, match=r"fractions must be in \[0, 1\)"):
        TrajectoryDataModule(path, ["a"], val_fraction=fractions[0], test_fraction=fractions[1])


# --- statistics ----------------------------------------------------------------------------------


def _train_rows(dm, values: np.ndarray) -> list[int]:
    """Which samples of ``values`` (``[N, T, ...]``, NaN as 0) the training split holds."""
    y = dm.splits["train"].y.load()
    filled = np.nan_to_num(values)
    return [int(np.argmin(np.abs(filled - row[:, 0]).reshape(len(filled), -1).sum(1))) for row in y]


def _stats_by_hand(y: np.ndarray) -> tuple[float, float, float]:
    """mean, std and sqrt(mean((Δy/Δt)²)) of ``y``: ``[N, T, ...]``, over all but NaN values."""
    y = y.astype(np.float64)
    tendency = np.diff(y, axis=1) / DT
    return np.nanmean(y), np.nanstd(y), np.sqrt(np.nanmean(tendency**2))


def test_statistics_come_from_the_training_trajectories_only(tmp_path, rng):
    n, length = 6, 7
    a = rng.normal(size=(n, length)) + 3.0 * np.arange(n)[:, None]  # sample means differ
    b = rng.normal(size=(n, length)) * 5.0
    dims = ("sample", "time")
    path = _write(tmp_path / "s.nc", {"a": (dims, a), "b": (dims, b)}, time=DT * np.arange(length))
    dm = TrajectoryDataModule(path, ["a", "b"], window=3, val_fraction=0.34, seed=3)
    stats = dm.statistics()
    rows = _train_rows(dm, a)
    assert len(rows) == 4 and len(set(rows)) == 4
    for c, values in enumerate((a, b)):
        mean, std, tendency = _stats_by_hand(values[rows])
        assert stats["mean"][c].item() == pytest.approx(mean, rel=1e-5, abs=1e-6)
        assert stats["std"][c].item() == pytest.approx(std, rel=1e-5)
        assert stats["tendency_std"][c].item() == pytest.approx(tendency, rel=1e-5)
    assert stats["mean"][0].item() != pytest.approx(np.mean(a), rel=1e-3)  # val left out


def test_statistics_of_a_single_record_use_the_training_block(tmp_path, rng):
    c = rng.normal(size=20) + np.arange(20)
    path = _write(tmp_path / "r.nc", {"c": (("time",), c)}, time=DT * np.arange(20))
    dm = TrajectoryDataModule(path, ["c"], window=2, val_fraction=0.25, test_fraction=0.25)
    stats = dm.statistics()
    mean, std, tendency = _stats_by_hand(c[None, :10])
    assert stats["mean"].tolist() == pytest.approx([mean], rel=1e-5)
    assert stats["std"].tolist() == pytest.approx([std], rel=1e-5)
    assert stats["tendency_std"].tolist() == pytest.approx([tendency], rel=1e-5)


def test_statistics_of_a_constant_field_are_floored(tmp_path):
    path = _write(
        tmp_path / "k.nc", {"c": (("sample", "time"), np.full((3, 5), 2.5))}, time=DT * np.arange(5)
    )
    stats = TrajectoryDataModule(path, ["c"], window=2).statistics()
    assert stats["mean"].item() == 2.5
    floor = torch.tensor([1e-12])
    assert torch.equal(stats["std"], floor) and torch.equal(stats["tendency_std"], floor)


# --- land masks and gaps -------------------------------------------------------------------------

NY, NX = 3, 4
LAND = np.zeros((NY, NX), bool)
LAND[:2, :2] = True  # a 2x2 block of land in the corner


def test_land_is_inactive_zero_and_left_out_of_statistics(tmp_path, rng):
    n, length = 5, 6
    c = rng.normal(size=(n, length, NY, NX)) + 4.0 * np.arange(n)[:, None, None, None]
    c[:, :, LAND] = np.nan
    path = _write(
        tmp_path / "land.nc",
        {"c": (("sample", "time", "y", "x"), c)},
        time=DT * np.arange(length),
        coords=_box_coords(NY, NX),
    )
    dm = TrajectoryDataModule(path, ["c"], window=3, val_fraction=0.4, seed=1)
    assert dm.grid is not None and dm.grid.kind == "box" and dm.grid.shape == (NY, NX)
    assert torch.equal(dm.grid.active.bool(), torch.from_numpy(~LAND))
    stats = dm.statistics()
    train = dm.splits["train"]
    assert len(train) == 3 * (length - 3 + 1) and train.n_dropped == 0  # land is no gap
    loaded = train.y.load()  # [N, T, C, ny, nx], read lazily
    assert np.isfinite(loaded).all()
    assert np.all(loaded[..., LAND] == 0)
    _, y = train[0]
    assert torch.all(y[:, 0, :2, :2] == 0) and torch.all(y[:, 0, 2] != 0)
    rows = _train_rows(dm, c)
    assert len(set(rows)) == 3
    mean, std, tendency = _stats_by_hand(c[rows])
    assert stats["mean"].item() == pytest.approx(mean, rel=1e-5)
    assert stats["std"].item() == pytest.approx(std, rel=1e-5)
    assert stats["tendency_std"].item() == pytest.approx(tendency, rel=1e-5)


def _gappy_record(path, gaps: list[int], length: int = 16) -> tuple[str, np.ndarray]:
    """One (time, y, x) record with land and a missing sea cell at each frame in ``gaps``;
    cell (2, 3) holds the frame index."""
    c = np.arange(length, dtype=float)[:, None, None] + np.zeros((NY, NX))
    c += 0.1 * np.sin(np.arange(NY * NX)).reshape(NY, NX) * np.arange(length)[:, None, None]
    c[:, LAND] = np.nan
    c[:, 2, 3] = np.arange(length)
    for k in gaps:
        c[k, 2, 0] = np.nan  # a sea cell, missing at this frame only
    path = _write(path, {"c": (("time", "y", "x"), c)}, time=DT * np.arange(length))
    return path, c


def test_frames_with_gaps_exclude_the_windows_touching_them(tmp_path):
    path, _ = _gappy_record(tmp_path / "g.nc", gaps=[4, 15])
    dm = TrajectoryDataModule(path, ["c"], window=3, val_fraction=0.25)
    dm.setup()  # train frames 0..11, val frames 12..15
    train, val = dm.splits["train"], dm.splits["val"]
    assert [f[0] for f in _frames(train, (0, 2, 3))] == [0, 1, 5, 6, 7, 8, 9]
    assert train.n_dropped == 3  # starts 2, 3, 4 touch frame 4
    assert [f[0] for f in _frames(val, (0, 2, 3))] == [12]
    assert val.n_dropped == 1  # start 13 touches frame 15
    loaded = train.y.load()
    assert np.isfinite(loaded).all() and loaded[0, 4, 0, 2, 0] == 0
    assert torch.equal(dm.grid.active.bool(), torch.from_numpy(~LAND))  # a gap is not land


def test_statistics_ignore_gap_frames(tmp_path):
    path, c = _gappy_record(tmp_path / "g.nc", gaps=[4])
    stats = TrajectoryDataModule(path, ["c"], window=3, val_fraction=0.25).statistics()
    train = c[:12].copy()
    train[4] = np.nan  # the whole gap frame is left out, and the tendencies across it
    mean, std, tendency = _stats_by_hand(train[None])
    assert stats["mean"].item() == pytest.approx(mean, rel=1e-5)
    assert stats["std"].item() == pytest.approx(std, rel=1e-5)
    assert stats["tendency_std"].item() == pytest.approx(tendency, rel=1e-5)


# --- training order ------------------------------------------------------------------------------


def _epoch(dm, epoch: int | None = None) -> list[torch.Tensor]:
    loader = dm.train_dataloader()
    if epoch is not None:
        loader.sampler.set_epoch(epoch)
    return [y for _, y in loader]


def test_training_order_depends_only_on_seed_and_epoch(tmp_path):
    path = _ode_file(tmp_path / "a.nc", 6, 10)
    dms = [
        TrajectoryDataModule(path, ["a", "b"], window=3, batch_size=8, seed=seed)
        for seed in (5, 5, 6)
    ]
    for dm in dms:
        dm.setup()
    first, again, other_seed = (_epoch(dm) for dm in dms)
    assert len(first) == 5 and [len(b) for b in first] == [8] * 5  # 5 samples x 8 windows
    assert all(torch.equal(x, y) for x, y in zip(first, again, strict=True))
    assert torch.equal(torch.cat(_epoch(dms[0], 0)), torch.cat(first))
    second = _epoch(dms[0], 1)
    assert torch.equal(torch.cat(second), torch.cat(_epoch(dms[1], 1)))
    assert not torch.equal(torch.cat(second), torch.cat(first))
    assert not torch.equal(torch.cat(other_seed), torch.cat(first))

    def keys(batches) -> list[float]:
        return sorted(torch.cat(batches)[:, 0, 0].tolist())

    assert keys(second) == keys(first)  # the same windows, shuffled


# --- file errors ---------------------------------------------------------------------------------


def test_missing_file_is_an_error(tmp_path):
    dm = TrajectoryDataModule(str(tmp_path / "nothere.nc"), ["a"])  # files open on first use
    with pytest.raises(ValueError, match=r"nothere\.nc: no such file"):
        dm.setup()


def test_a_file_that_is_not_netcdf_is_an_error(tmp_path):
    path = tmp_path / "x.nc"
    path.write_text("time,a\n0,1\n")
    with pytest.raises(ValueError, match=r"x\.nc: cannot be read as NetCDF"):
        TrajectoryDataModule(str(path), ["a"]).setup()


def test_a_missing_variable_is_an_error_listing_those_present(tmp_path):
    path = _ode_file(tmp_path / "a.nc", 3, 5)
    with pytest.raises(ValueError, match=r"variables \['q'\] not found; present: \['a', 'b'\]"):
        TrajectoryDataModule(path, ["a", "q"]).setup()


def test_no_time_dim_is_an_error(tmp_path):
    path = _write(tmp_path / "s.nc", {"a": (("sample", "step"), np.zeros((3, 5)))})
    with pytest.raises(ValueError, match=r"no `time` dimension in \('sample', 'step'\)"):
        TrajectoryDataModule(path, ["a"]).setup()


def test_variables_with_different_dims_are_an_error(tmp_path):
    variables = {"a": (("sample", "time"), np.zeros((2, 4))), "b": (("time",), np.zeros(4))}
    path = _write(tmp_path / "d.nc", variables, time=np.arange(4.0))
    with pytest.raises(ValueError, match="have different dims"):
        TrajectoryDataModule(path, ["a", "b"]).setup()


@pytest.mark.parametrize("time_attrs", [TIME_ATTRS, {}], ids=["cf", "numeric"])
@pytest.mark.parametrize(
    "time, message",
    [
        ([0.0, 1.0, 1.0, 2.0], r"time is not strictly increasing \(at index 1\)"),
        ([0.0, 2.0, 1.0, 3.0], r"time is not strictly increasing \(at index 1\)"),
        ([3.0, 2.0, 1.0, 0.0], "time is not strictly increasing"),
        ([0.0, 1.0, 2.0, 4.0], r"time is not evenly spaced \(steps 1.0..2.0 s\)"),
        ([0.0, 3.0, 4.0, 5.0], "time is not evenly spaced"),
    ],
)
def test_bad_times_are_errors(tmp_path, time_attrs, time, message):
    path = _write(
        tmp_path / "t.nc",
        {"a": (("sample", "time"), np.zeros((2, 4)))},
        time=time,
        time_attrs=time_attrs,
    )
    with pytest.raises(ValueError, match=message):
        TrajectoryDataModule(path, ["a"]).setup()


@pytest.mark.parametrize("time_attrs", [TIME_ATTRS, {}], ids=["cf", "numeric"])
def test_time_step_in_seconds(tmp_path, time_attrs):
    path = _write(
        tmp_path / "t.nc",
        {"a": (("sample", "time"), np.zeros((2, 4)))},
        time=[10.0, 10.5, 11.0, 11.5],
        time_attrs=time_attrs,
    )
    assert TrajectoryDataModule(path, ["a"]).dt == 0.5
