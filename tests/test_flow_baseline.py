"""The paper's data-only baseline (de Bézenac et al. 2018): ``NextFrameUNet``, the flow estimator's
U-Net reading the last ``k`` frames and giving the next one, rolled out on its own forecasts
inside ``HybridModule`` (explicit Euler at the data step is the next-frame map)."""

from __future__ import annotations

import json

import pytest
import torch

from hybrid.cli import main
from hybrid.data.io import write_netcdf
from hybrid.data.protocols import build
from hybrid.data.simulate import simulate_dataset
from hybrid.flow import observe_past
from hybrid.models.flow import FlowEstimator
from hybrid.models.next_frame import NextFrameUNet
from hybrid.physics.grid import Grid
from hybrid.train import HybridModule

K, DT = 4, 10800.0


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def extrapolating(grid: Grid | None = None) -> NextFrameUNet:
    """A ``NextFrameUNet`` whose network is the known map ``(z_n - z_{n-k+1}) / (k - 1)`` and whose
    output scale is ``1/Δt``: ``y_{n+1} = y_n + (y_n - y_{n-3}) / 3``, linear extrapolation."""
    net = NextFrameUNet(channels=1, frames=K, hidden=4, levels=1, grid=grid)
    net.scaler.set_statistics(torch.zeros(1), torch.ones(1), torch.full((1,), 1 / DT))
    net.body = lambda z: (z[:, -1:] - z[:, :1]) / (K - 1)  # [N, k, ny, nx] -> [N, 1, ny, nx]
    return net


def linear_windows(frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows ``y_n = a + b n`` (``[2, frames, 1, 8, 8]``) at times ``n Δt``."""
    a, b = torch.randn(2, 1, 1, 8, 8), torch.randn(2, 1, 1, 8, 8)
    n = torch.arange(frames, dtype=torch.float32).view(1, -1, 1, 1, 1)
    return (n.view(1, -1) * DT).expand(2, frames), a + b * n


def test_it_is_the_flow_estimators_unet_with_one_output_per_channel():
    """Same layers in the same order as FlowEstimator(frames=4, hidden=16, levels=2); only the
    head differs, 16·9·C + C weights against 16·9·2 + 2: 145 fewer for one tracer."""
    flow = FlowEstimator(frames=4, hidden=16, levels=2)
    unet = NextFrameUNet(channels=1, frames=4, hidden=16, levels=2)

    def shapes(m):
        return [tuple(p.shape) for n, p in m.named_parameters() if not n.startswith("head")]

    assert shapes(unet) == shapes(flow)
    n_flow, n_unet = (sum(p.numel() for p in m.parameters()) for m in (flow, unet))
    assert n_flow - n_unet == (16 * 9 * 2 + 2) - (16 * 9 + 1) == 145
    assert n_unet == 118545


def test_the_rollout_reads_its_own_forecasts_k_frames_back():
    """Through HybridModule (observe the first 4 frames, Euler at the data step): the known map
    continues a linear-in-time field exactly, 6 steps on its own forecasts."""
    model = HybridModule(correction=extrapolating(), method="euler", warm_start=False)
    t, y = observe_past(model.field, None, *linear_windows(K + 6))
    pred = model(y[:, 0], t[0])  # [2, 7, 1, 8, 8] from the 4th frame
    assert pred.shape == y.shape
    torch.testing.assert_close(pred, y, rtol=1e-5, atol=1e-4)
    again = model(y[:, 0], t[0])  # a second rollout restarts from the observed frames
    torch.testing.assert_close(again, pred)


def test_a_quadratic_is_continued_with_the_known_extrapolation_error():
    """``y_n = n²`` from frames 0..3: ``y_4 = 9 + (9 - 0)/3 = 12`` (not 16), then ``y_5 = 12 +
    (12 - 1)/3 = 47/3``: the window holds the forecasts, the oldest frame ``k - 1`` steps back."""
    model = HybridModule(correction=extrapolating(), method="euler", warm_start=False)
    n = torch.arange(K + 2, dtype=torch.float32)
    y = (n**2).view(1, -1, 1, 1, 1).expand(1, K + 2, 1, 8, 8)
    t, y = observe_past(model.field, None, (n * DT).view(1, -1), y)
    pred = model(y[:, 0], t[0])[0, :, 0, 0, 0]
    torch.testing.assert_close(pred, torch.tensor([9.0, 12.0, 47 / 3]), rtol=1e-5, atol=1e-4)


def test_other_solvers_are_refused_with_the_euler_message():
    model = HybridModule(correction=extrapolating(), method="rk4", warm_start=False)
    t, y = observe_past(model.field, None, *linear_windows(K + 3))
    with pytest.raises(ValueError, match="method: euler"):
        model(y[:, 0], t[0])


def test_along_true_states_each_reads_a_still_past():
    """``F_a(None, y)`` for ``‖F_a‖²``: a still past is extrapolated to no change (the known
    map gives 0), for any leading shape; land cells get no step whatever the network says."""
    net = extrapolating()
    assert net(None, torch.randn(3, 5, 1, 8, 8)).abs().max() == 0.0
    active = torch.ones(8, 8, dtype=torch.bool)
    active[:2] = False
    land = extrapolating(Grid.regular_box(8, 8, 1.0, active=active.numpy()))
    land.body = lambda z: torch.ones_like(z[:, :1])
    step = land(None, torch.randn(2, 1, 8, 8))
    assert step[..., :2, :].abs().max() == 0.0 and (step[..., 2:, :] == 1 / DT).all()


def test_it_is_refused_unobserved_or_with_the_wrong_frames():
    net = NextFrameUNet(channels=1, frames=K, hidden=4, levels=1)
    with pytest.raises(ValueError, match="observe"):
        net(torch.zeros(()), torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match="frames=4"):
        net.observe(torch.zeros(1, 3, 1, 8, 8))
    with pytest.raises(ValueError, match="divisible by 4"):
        NextFrameUNet(levels=2, grid=Grid.regular_box(6, 8, 1.0))


@pytest.mark.slow
def test_fit_and_evaluate_from_the_config(tmp_path):
    """(Slow: 7 s alone; the default suite fits the config for one batch in test_configs.py.)
    configs/moving_flow/unet_next_frame.yaml trains a few steps and ``hybrid evaluate`` scores
    it from the 4th frame of each window, as the flow model: leads 0..3 of 7-frame windows."""
    spec = build("moving_flow")
    spec.n_times = {"train": 9, "test": 9}
    paths = {}
    for split, n in (("train", 3), ("test", 2)):
        ds = simulate_dataset(spec, split, n_samples=n, progress=False)
        paths[split] = str(write_netcdf(ds, tmp_path / f"{split}.nc"))
    main(
        ["fit", "--config", "configs/moving_flow/unet_next_frame.yaml", "--data.path",
         paths["train"], "--data.test_path", paths["test"], "--data.window=6",
         "--data.eval_window=7", "--data.batch_size=2", "--trainer.max_steps=2",
         "--trainer.logger=false", "--trainer.enable_progress_bar=false",
         "--trainer.enable_model_summary=false", "--trainer.default_root_dir", str(tmp_path)]
    )  # fmt: skip
    out = tmp_path / "eval"
    main(["evaluate", "--ckpt_path", str(next(tmp_path.rglob("last.ckpt"))), "--output", str(out)])
    report = json.loads((out / "metrics.json").read_text())
    assert report["lead_time_s"] == [0.0, DT, 2 * DT, 3 * DT]
    assert report["n_forecasts"] == 2 * (9 - 7 + 1)
    assert report["rmse"]["model"][0] == 0.0 and report["rmse"]["persistence"][0] == 0.0
    assert report["rmse"]["model"][1] > 0.0  # two Adam steps moved it off persistence
    assert report["correction_norm"] >= 0.0 and "flow" not in report
