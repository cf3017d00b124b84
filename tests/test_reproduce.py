"""A reduced run of scripts/reproduce_aphynity.py (one seed, a few epochs): the table's format
and APHYNITY's correction smaller than the naive hybrid's."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location(
        "reproduce", ROOT / "scripts/reproduce_aphynity.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_reduced_table(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)  # the configs are read from configs/
    table = _script().main(
        [
            "--output",
            str(tmp_path),
            "--datasets",
            "pendulum",
            "--methods",
            "sum_incomplete",
            "aphynity_incomplete",
            "--seeds",
            "0",
            "--epochs",
            "30",
            "--n-train",
            "10",
            "--n-test",
            "5",
        ]
    )
    rows = {r["method"]: r for r in table}
    assert set(rows) == {"sum_incomplete", "aphynity_incomplete"}
    for r in rows.values():
        assert r["mse"][0] > 0 and r["log10_mse"] < 2 and r["wall_s"][0] > 0
        assert r["param_error_pct"] is not None
    assert rows["aphynity_incomplete"]["paper"] == (-7.86, 4.0, 132.0)
    assert (
        rows["aphynity_incomplete"]["correction_norm"][0]
        < rows["sum_incomplete"]["correction_norm"][0]
    )
    md = (tmp_path / "results.md").read_text()
    assert "| pendulum | aphynity_incomplete |" in md and "log10 / ln" in md
    assert json.loads((tmp_path / "results.json").read_text())["runs"][0]["val_curve"]
    assert (tmp_path / "val_mse_vs_time.png").stat().st_size > 1000
    assert "| dataset | method |" in capsys.readouterr().out


@pytest.mark.slow
def test_pendulum_aphynity_takes_the_least_norm_split_near_the_solver_floor(tmp_path, monkeypatch):
    """The issue's command (the config's 60 epochs, the last 10 polished): ω0² is the least-norm
    split that :mod:`hybrid.identifiability` predicts from the true tendency on the training
    windows in the objective's norm (2.1 % below the truth), not the truth itself, and within the
    paper's 4 %. The test MSE is a measured regression bound, not a theory: at the error that rk4
    at the data step leaves to the exact equation (2.33e-6 on these data), within 1.5×.

    Measured (2 busy cores, the configs' SiLU MLP): test MSE 2.42e-6 / 1.70e-6 / 2.04e-6 (seeds
    0 / 1 / 2: 1.04× / 0.73× / 0.88× that error; the paper's ReLU gave 3.9× / 3.2× / 1.8×); ω0²
    2.06 % off, within 0.07 % of the predicted split; ~1 min."""
    import torch

    from hybrid.data.datamodule import TrajectoryDataModule
    from hybrid.identifiability import least_norm_parameters, norm_weight
    from hybrid.physics.pendulum import OMEGA0_SQ, DampedPendulum, FrictionlessPendulum
    from hybrid.train import HybridModule

    monkeypatch.chdir(ROOT)
    argv = ["--output", str(tmp_path), "--datasets", "pendulum", "--methods",
            "aphynity_incomplete", "--seeds", "0"]  # fmt: skip
    (row,) = _script().main(argv)
    assert row["mse"][0] <= 1.5 * row["floor_mse"]
    assert row["param_error_pct"][0] <= 4.0

    dm = TrajectoryDataModule(str(tmp_path / "data/pendulum/train.nc"), ["theta", "omega"],
                              window=40, batch_size=25, val_fraction=0.2)  # fmt: skip
    dm.setup("fit")
    train = dm.splits["train"]
    states = torch.stack([train[i][1] for i in range(len(train))]).flatten(0, 1).double()
    with torch.no_grad():
        tendency = DampedPendulum()(None, states)
    weight = norm_weight(states, "scaled", dm.statistics()["tendency_std"])
    predicted = least_norm_parameters(FrictionlessPendulum(1.0), states, tendency, weight=weight)
    ckpt = next((tmp_path / "runs/pendulum/aphynity_incomplete/seed0/best").glob("*.ckpt"))
    found = float(HybridModule.load_from_checkpoint(ckpt).physics.omega0_sq.detach())
    assert found == pytest.approx(predicted["omega0_sq"], rel=2e-3)
    assert abs(predicted["omega0_sq"] / OMEGA0_SQ - 1) > 0.015  # the split is not the truth
