"""Smoke test of scripts/bench_train.py: a tiny grid and window, one batch size, two steps."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_train.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_train", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def test_main_tiny(bench, capsys):
    threads = torch.get_num_threads()
    argv = ["--batch-sizes", "2", "--steps", "2", "--warmup", "1", "--size", "8", "--frames", "4"]
    try:
        rows = bench.main([*argv, "--device", "cpu", "--threads", "1"])
    finally:
        torch.set_num_threads(threads)
    assert [(r["batch"], r["adjoint"]) for r in rows] == [(2, False), (2, True)]
    for r in rows:
        assert 0 < r["fwd"] and 0 < r["bwd"] and r["step"] == pytest.approx(r["fwd"] + r["bwd"])
        assert r["median"] >= r["step"]
    assert rows[0]["l_step"] > 0 and "l_step" not in rows[1]
    out = capsys.readouterr().out
    assert out.startswith("# torch ")
    assert "## adjoint=False" in out and "## adjoint=True" in out
    assert bench.HEADER in out and "traj/s" in out and "epoch of 1600 trajectories" in out


def test_data_and_statistics(bench):
    """The true model's trajectories start at the drawn state and stay bounded; the statistics
    are per channel and positive."""
    y = bench.make_data(3, 8, 5, torch.float32, torch.device("cpu"))
    assert y.shape == (3, 5, 2, 8, 8) and torch.isfinite(y).all()
    assert 0 <= y[:, 0].min() and y[:, 0].max() < 1
    stats = bench.statistics_of(y)
    assert all(v.shape == (2,) for v in stats.values())
    assert (stats["std"] > 0).all() and (stats["tendency_std"] > 0).all()


def test_batches_cycle_through_the_trajectories(bench):
    y = torch.arange(3.0).view(3, 1, 1, 1, 1).expand(3, 4, 2, 2, 2)
    batches = bench.make_batches(y, 2, 3)
    assert [b[1][:, 0, 0, 0, 0].tolist() for b in batches] == [[0, 1], [2, 0], [1, 2]]
    assert all(b[0].shape == (2, 4) for b in batches)
