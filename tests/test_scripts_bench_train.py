"""Smoke test of scripts/bench_train.py: a tiny grid and window, one batch size, two steps."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_train.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_train", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def counted_gflop(bench, row: dict) -> float:
    """``3 F S / 1e9``: forward + backward ≈ 3 forwards of the network, F the FLOPs torch's
    ``FlopCounterMode`` counts in one forward on one state ``[1, 2, n, n]`` (``[1, 2]``), S the
    step's states ``B (4 (T-1) + T)`` (rk4's evaluations and the norm's true states)."""
    from hybrid.models import MLP, ConvNet
    from hybrid.physics.reaction_diffusion import DiffusionOnly

    key, n = row["system"], row["size"]
    if key == "pendulum":
        net, y = MLP(2, hidden=200), torch.zeros(1, 2)
    else:
        grid = DiffusionOnly(size=n).grid if key == "rd" else bench.wall_grid(n)
        net, y = ConvNet(2, hidden=16, grid=grid), torch.zeros(1, 2, n, n)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.tensor(0.0), y)
    states = row["batch"] * (4 * (row["frames"] - 1) + row["frames"])
    return 3 * counter.get_total_flops() * states / 1e9


def test_main_tiny(bench, capsys):
    threads = torch.get_num_threads()
    argv = ["--batch", "2", "--steps", "1", "--warmup", "1", "--size", "8", "--frames", "4"]
    try:
        rows = bench.main([*argv, "--threads", "1"])
    finally:
        torch.set_num_threads(threads)
    assert [r["system"] for r in rows] == ["rd", "wave", "pendulum"]
    for r in rows:
        assert r["ref"] > 0 and r["ours"] > 0
        assert r["gflop"] == pytest.approx(counted_gflop(bench, r), rel=1e-12)
    rd = rows[0]
    assert rd["roofline"] == pytest.approx(rd["gflop"] / rd["ours"] / rd["conv_gflops"])
    assert 0 < rows[2]["us_eval_matmul"] < rows[2]["us_eval"]
    out = capsys.readouterr().out
    assert out.startswith("# torch ") and bench.HEADER in out and "µs per field evaluation" in out


def test_reference_restatement_is_the_papers_maths(bench):
    """The restated RD prior is a Δu, b Δv with a = b = sigmoid(-2) 1e-2 (5-point, periodic);
    the restated ConvNetEstimator has the paper's layers."""
    from hybrid.physics.operators import laplacian_periodic

    y = torch.rand(2, 2, 8, 8)
    a = torch.sigmoid(torch.tensor(-2.0)) * 1e-2
    want = a * laplacian_periodic(y, 0.25)
    torch.testing.assert_close(bench.RefReactionDiffusion(0.25)(y), want, rtol=1e-5, atol=1e-6)
    kinds = [type(m).__name__ for m in bench.ref_convnet()]
    assert kinds == ["Conv2d", "BatchNorm2d", "ReLU"] * 2 + ["Conv2d"]


def test_data_and_statistics(bench):
    """The true model's trajectories start at the drawn state and stay bounded; the statistics
    are per channel, as NumPy computes them."""
    y = bench.make_data(3, 8, 5, torch.float32, torch.device("cpu"))
    assert y.shape == (3, 5, 2, 8, 8) and torch.isfinite(y).all()
    assert 0 <= y[:, 0].min() and y[:, 0].max() < 1
    stats = bench.statistics_of(y)
    channels = y.numpy().swapaxes(2, -1).reshape(-1, 2)  # [values, C]
    dydt = np.diff(y.numpy(), axis=1).swapaxes(2, -1).reshape(-1, 2) / bench.DT
    np.testing.assert_allclose(stats["mean"], channels.mean(0), rtol=1e-5)
    np.testing.assert_allclose(stats["std"], channels.std(0), rtol=1e-5)
    np.testing.assert_allclose(stats["tendency_std"], np.sqrt((dydt**2).mean(0)), rtol=1e-5)


def test_batches_cycle_through_the_trajectories(bench):
    y = torch.arange(3.0).view(3, 1, 1, 1, 1).expand(3, 4, 2, 2, 2)
    batches = bench.make_batches(y, 2, 3)
    assert [b[1][:, 0, 0, 0, 0].tolist() for b in batches] == [[0, 1], [2, 0], [1, 2]]
    assert all(b[0].shape == (2, 4) for b in batches)


def test_profile_names_every_part(bench, capsys, monkeypatch):
    """``--profile`` reads its system's size and frames from ``SYSTEMS`` (not ``--size`` and
    ``--frames``): the test shrinks reaction-diffusion there to 8² and 3 frames."""
    monkeypatch.setitem(bench.SYSTEMS, "rd", bench.System("reaction-diffusion", bench.DT, 3, 2, 8))
    threads = torch.get_num_threads()
    argv = ["--profile", "--systems", "rd", "--batch", "2", "--size", "8", "--frames", "3"]
    try:
        bench.main([*argv, "--threads", "1"])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "profile of ours, reaction-diffusion" in out
    assert all(f"{part} " in out for part in bench.PARTS)


def test_ours_is_the_reference_network_unless_asked_for_the_projects(bench):
    """``--network reference`` (default) gives the reference's ConvNetEstimator exactly: zero
    padding on the periodic square, PyTorch's initialisation (a nonzero last layer), raw states;
    and its pendulum MLP on raw states."""
    from hybrid.models.conv import GridConv
    from hybrid.models.normalisation import RawChannels

    s = bench.System("reaction-diffusion", bench.DT, 3, 2, 8)
    stats = bench.statistics_of(bench.make_data(2, 8, 3, torch.float32, torch.device("cpu")))
    exact = bench.ours_module("rd", s, stats, False).correction
    convs = [m.conv for m in exact.modules() if isinstance(m, GridConv)]
    assert [c.padding for c in convs] == [(1, 1)] * 3 and isinstance(exact.scaler, RawChannels)
    assert exact.head.conv.weight.abs().sum() > 0
    project = bench.ours_module("rd", s, stats, False, network="project").correction
    assert all(m.conv.padding == (0, 0) for m in project.modules() if isinstance(m, GridConv))
    assert project.head.conv.weight.abs().sum() == 0
    pendulum = bench.System("pendulum", 0.5, 3, 2, 0)
    stats = bench.statistics_of(bench.system_data("pendulum", pendulum, 2), pendulum.dt)
    mlp = bench.ours_module("pendulum", pendulum, stats, False).correction
    assert isinstance(mlp.scaler, RawChannels) and mlp.head.weight.abs().sum() > 0
    project = bench.ours_module("pendulum", pendulum, stats, False, network="project").correction
    assert not isinstance(project.scaler, RawChannels) and project.head.weight.abs().sum() == 0


def test_reference_code_needs_a_copy_of_the_reference(bench, tmp_path):
    s = bench.SYSTEMS["rd"]
    with pytest.raises(SystemExit, match="no forecasters.py"):
        bench.reference_code_step(tmp_path, s)
