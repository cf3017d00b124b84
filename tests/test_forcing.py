"""Forcing variables of the data files as inputs of the correction (:mod:`hybrid.models.forced`).

Known answers: linear interpolation is exact for a forcing linear in time, at every rk4 stage
between frames; the served forcing is the file's, normalised by the training mean and spread
(numpy over the file), and a checkpoint's normalisation survives a test file of other
statistics; on ``dT/dt = -r T + a F`` (the ``forced_decay`` protocol, whose exact solution
:func:`forced_decay_exact` checks the simulator) a correction linear in its inputs, behind the
known prior ``-r T``, recovers ``a`` within 1 %.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import xarray as xr
from torch import Tensor, nn

from hybrid.cli import main
from hybrid.data.datamodule import TrajectoryDataModule
from hybrid.data.io import write_netcdf
from hybrid.data.protocols import (
    FORCED_GAIN,
    FORCED_RATE,
    build,
    forced_decay_exact,
    forcing_pattern,
)
from hybrid.data.simulate import simulate_dataset
from hybrid.dynamics import HybridField, rollout
from hybrid.models import ResNet
from hybrid.models.forced import Forced, interpolate
from hybrid.models.seasonal import Seasonal
from hybrid.physics.decay import LinearDecay
from hybrid.train import HybridModule

UNITS = 1e-5  # K/s: the linear correction's output unit, so that its weights are of order 1


class Pointwise(nn.Module):
    """``F_a = UNITS (W z + b)`` at each cell: linear in its inputs ``z``: ``[..., C, ny, nx]``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(channels, channels))
        self.b = nn.Parameter(torch.zeros(channels))

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        return UNITS * (torch.einsum("ij,...jyx->...iyx", self.w, z) + self.b[:, None, None])


class Spy(nn.Module):
    """Records ``(t, input)`` of every call; returns zero."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[float, Tensor]] = []

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        self.calls.append((float(t), z.detach().clone()))
        return torch.zeros_like(z)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> tuple[str, str, xr.Dataset]:
    """``forced_decay`` files: 4 training and 2 test trajectories of 120 days; the test file's
    forcing ``F`` is ``3 F + 1`` (other statistics than the training file's)."""
    root, spec = tmp_path_factory.mktemp("forced"), build("forced_decay")
    train = simulate_dataset(spec, "train", n_samples=4, progress=False)
    test = simulate_dataset(spec, "test", n_samples=2, progress=False)
    test["F"] = 3 * test["F"] + 1
    paths = [str(write_netcdf(d, root / f"{s}.nc")) for s, d in (("train", train), ("test", test))]
    return paths[0], paths[1], train


def test_the_simulator_follows_the_exact_solution(files):
    """rk4 at 3 h steps against :func:`forced_decay_exact`: 4.8e-7 K at most (measured) over
    120 days, against a field of about 10 K."""
    *_, ds = files
    t = (ds["time"].values - ds["time"].values[0]) / np.timedelta64(1, "s")
    exact = forced_decay_exact(ds["T"].values[:, 0].astype(np.float64), t, forcing_pattern(8))
    assert np.abs(exact - ds["T"].values).max() < 1e-5 * np.abs(exact).max()


def test_interpolation_is_exact_for_a_linear_forcing_at_rk4_stages(float64):
    """``F(t) = α + β t`` sampled at 4 frames: the forcing a ``Forced`` network reads at every
    rk4 stage (two sub-steps a frame: stages at quarter frames) is ``α + β t`` to rounding."""
    dt, alpha, beta = 3600.0, torch.randn(2, 1, 3, 3), torch.randn(2, 1, 3, 3) / 3600.0
    t = torch.arange(4) * dt
    frames = alpha[:, None] + beta[:, None] * t[None, :, None, None, None]  # [B, W, 1, 3, 3]
    spy = Spy()
    net = Forced(spy, forcings=1)
    net.observe_forcing(frames, t)
    rollout(HybridField(None, net), torch.zeros(2, 1, 3, 3), t, method="rk4", step_size=dt / 2)
    stage_times = {round(s / dt * 4) for s, _ in spy.calls}
    assert stage_times == set(range(13))  # every quarter frame from 0 to 3 frames
    for s, z in spy.calls:
        torch.testing.assert_close(z[:, 1:], alpha + beta * s, rtol=0, atol=1e-12)
    torch.testing.assert_close(interpolate(frames, t, 1e9), frames[:, -1])  # held beyond


def test_forcing_frames_are_the_files_normalised_by_training_statistics(files):
    """``F`` on the grid and the index ``g`` (time alone, broadcast over the grid) come with
    each window as ``(x - mean) / std`` of the training trajectories; the state's windows and
    validity are those of the data without forcing."""
    train, _, ds = files
    dm = TrajectoryDataModule(train, ["T"], window=5, forcings=["F", "g"], val_fraction=0.25)
    plain = TrajectoryDataModule(train, ["T"], window=5, val_fraction=0.25)
    dm.setup(), plain.setup()
    f, g = ds["F"].values.astype(np.float64), ds["g"].values.astype(np.float64)
    expected = [[f.mean(), g.mean()], [f.std(), g.std()]]  # one forcing for every trajectory
    got = [dm.forcing_stats["mean"].numpy(), dm.forcing_stats["std"].numpy()]
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    windows = dm.splits["train"]
    assert windows.index == plain.splits["train"].index
    t, y, forcing = windows[7]
    n, s = windows.index[7]
    torch.testing.assert_close(y, plain.splits["train"][7][1])
    want_f = (f[s : s + 5] - f.mean()) / f.std()  # [W, ny, nx]
    want_g = (g[s : s + 5] - g.mean()) / g.std()  # [W]
    np.testing.assert_allclose(forcing[:, 0].numpy(), want_f, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        forcing[:, 1].numpy(),
        np.broadcast_to(want_g[:, None, None], want_f.shape),
        rtol=1e-5,
        atol=1e-6,
    )


def test_a_checkpoint_keeps_the_training_normalisation(files, tmp_path):
    """The data module's state (saved in checkpoints, read with ``weights_only``) carries the
    forcing's training mean and spread: a restored module serves a test file whose ``F`` is
    ``3 F + 1`` as ``(3 F + 1 - mean) / std`` with the training mean and spread."""
    train, test, ds = files
    dm = TrajectoryDataModule(train, ["T"], window=5, forcings=["F"], val_fraction=0.25)
    dm.setup()
    torch.save(dm.state_dict(), tmp_path / "state.pt")
    back = TrajectoryDataModule(train, ["T"], window=5, forcings=["F"], test_path=test)
    back.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    back.setup("predict")
    mean, std = (float(v) for v in dm.forcing_stats.values())
    _, _, forcing = back.splits["test"][3]
    f = 3 * ds["F"].values[3:8].astype(np.float64) + 1
    np.testing.assert_allclose(forcing[:, 0].numpy(), (f - mean) / std, rtol=1e-5, atol=1e-5)
    assert back.climatology == dm.climatology == {}


def test_a_missing_forcing_fails_with_one_message(files, tmp_path, capsys):
    train, *_ = files
    with pytest.raises(ValueError, match=r"data.forcings: .*\['wind'\] not found; present"):
        TrajectoryDataModule(train, ["T"], forcings=["wind"]).setup()
    config = tmp_path / "c.yaml"
    config.write_text(
        "model:\n  warm_start: false\n"
        "  physics: {class_path: hybrid.physics.decay.LinearDecay, init_args: {gamma: 1.0e-6}}\n"
        f"data: {{path: {train}, variables: [T], forcings: [wind], window: 3}}\n"
        f"trainer: {{max_steps: 1, logger: false, default_root_dir: {tmp_path}}}\n"
    )
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--config", str(config)])
    err = capsys.readouterr().err + str(exit_.value.code)
    assert exit_.value.code not in (0, None)
    assert "['wind'] not found" in err and "Traceback" not in err


def test_dates_and_forcings_compose(files):
    """``Forced(Seasonal)``: one correction reading the date and the forcing from a batch
    ``(t, y, date, F)``; a batch lacking either stops with the option to set."""
    train, *_ = files
    both = TrajectoryDataModule(train, ["T"], window=4, dates=True, forcings=["F"])
    both.setup()
    model = HybridModule(None, Forced(Seasonal(channels=2, hidden=4, blocks=1), forcings=1))
    batch = tuple(a[None] for a in both.splits["train"][0])  # (t, y, date, F)
    assert [a.ndim for a in batch] == [2, 5, 2, 5]
    t, y = model.observe(batch)
    assert model(y[:, 0], t[0]).shape == y.shape
    with pytest.raises(ValueError, match="data.dates"):
        model.observe((batch[0], batch[1], batch[3]))
    with pytest.raises(ValueError, match="data.forcings"):
        model.observe(batch[:3])


def test_a_linear_correction_recovers_the_forcing_gain(files):
    """Prior ``-r T`` with the true ``r``, correction ``W [T, F̂] + b`` (``F̂`` normalised by
    the data module): the trajectory fit by L-BFGS gives ``a = W_TF / std(F)`` within 1 % of
    1e-5 K/s (0.28 % measured: the forcing's linear interpolation at the rk4 mid-stages), no
    feedback on ``T`` and ``b = a mean(F)``."""
    train, *_ = files
    dm = TrajectoryDataModule(train, ["T"], window=8, stride=4, forcings=["F"], batch_size=1000)
    dm.setup()
    model = HybridModule(
        LinearDecay(FORCED_RATE), Forced(Pointwise(2), 1), freeze_physics=True, warm_start=False
    )
    model.set_statistics(**dm.statistics())
    batch = next(iter(dm.train_dataloader()))
    net = model.correction.net
    opt = torch.optim.LBFGS(net.parameters(), max_iter=50, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        t, y = model.observe(batch)
        loss = model.trajectory_loss(model(y[:, 0], t[0]), y)
        loss.backward()
        return loss

    opt.step(closure)
    mean, std = (float(v) for v in dm.forcing_stats.values())
    a = UNITS * float(net.w[0, 1].detach()) / std
    assert abs(a / FORCED_GAIN - 1) < 0.01
    assert abs(UNITS * float(net.w[0, 0].detach())) < 0.01 * FORCED_RATE
    assert abs(UNITS * float(net.b[0].detach()) - a * mean) < 0.01 * FORCED_GAIN * abs(mean)


def test_an_untrained_forced_network_is_zero_and_scales_the_state_only():
    """A zero-initialised net behind ``Forced`` adds nothing; its scaler is given the state's
    statistics for the state's channels and the identity for the forcing's."""
    net = Forced(ResNet(channels=3, hidden=4, blocks=1), forcings=2)
    net.observe_forcing(torch.randn(2, 4, 2, 5, 5), torch.arange(4.0))
    y = torch.randn(2, 1, 5, 5)
    assert torch.equal(net(torch.tensor(0.5), y), torch.zeros_like(y))
    net.net.scaler.set_statistics(torch.tensor([2.0]), torch.tensor([3.0]), torch.tensor([4.0]))
    assert net.net.scaler.mean.tolist() == [2.0, 0.0, 0.0]
    assert net.net.scaler.std.tolist() == [3.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="observe_forcings"):
        Forced(ResNet(channels=2), forcings=1)(None, y)


def test_fit_and_evaluate_read_the_forcing_from_the_command_line(files, tmp_path):
    """`hybrid fit` with `data.forcings` and a `Forced` correction (the nested network built
    with the data's grid), then `hybrid evaluate` on the test file: the checkpoint holds the
    forcing's training mean, and the forecasts' forcing reaches the correction."""
    train, test, _ = files
    config = tmp_path / "c.yaml"
    config.write_text(
        "model:\n  freeze_physics: true\n"
        "  physics: {class_path: hybrid.physics.decay.LinearDecay, init_args: {gamma: 1.0e-6}}\n"
        "  correction: {class_path: hybrid.models.forced.Forced, init_args: {forcings: 1,"
        " net: {class_path: hybrid.models.ResNet, init_args: {channels: 2, hidden: 4}}}}\n"
        f"data: {{path: {train}, test_path: {test}, variables: [T], forcings: [F], window: 3,"
        " eval_window: 4, stride: 20, batch_size: 8, time_range: [2000-01-01, 2000-01-20]}\n"
        f"trainer: {{max_steps: 2, logger: false, enable_progress_bar: false,"
        f" default_root_dir: {tmp_path}}}\n"
    )
    main(["fit", "--config", str(config)])
    ckpt = next(tmp_path.rglob("last.ckpt"))
    state = torch.load(ckpt, weights_only=True)["TrajectoryDataModule"]
    assert state["forcing_mean"].shape == (1,)
    main(["evaluate", "--ckpt_path", str(ckpt), "--output", str(tmp_path / "eval")])
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert report["n_forecasts"] == 2 * 17 and math.isfinite(report["correction_norm"])
