"""Real 2-process DDP on the CPU (gloo): same global batch, same parameters as one process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from hybrid.cli import main
from hybrid.train import HybridModule

ROOT = Path(__file__).resolve().parents[1]


def _fit(
    tmp_path: Path, train: str, name: str, devices: int, batch_size: int, adjoint: bool
) -> dict[str, torch.Tensor]:
    """Run `hybrid fit` (two ranks: `python -m hybrid fit` in a fresh process, which spawns the
    second; one: in this process, which saves an interpreter start); return the final
    parameters."""
    config = {
        "seed_everything": 0,
        "model": {
            "physics": {
                "class_path": "hybrid.physics.pendulum.FrictionlessPendulum",
                "init_args": {"omega0_sq": 0.5},
            },
            "correction": {
                "class_path": "hybrid.models.MLP",
                "init_args": {"state_dim": 2, "hidden": 16},
            },
            "adjoint": adjoint,
            "optimizer": {"class_path": "torch.optim.Adam", "init_args": {"lr": 1e-2}},
        },
        "data": {
            "path": train,
            "variables": ["theta", "omega"],
            "window": 8,
            "stride": 10,
            "batch_size": batch_size,
            "val_fraction": 0.25,
        },
        "trainer": {
            "accelerator": "cpu",
            "devices": devices,
            "max_epochs": 2,
            "logger": False,
            "enable_progress_bar": False,
            "default_root_dir": str(tmp_path / name),
            **({"strategy": "ddp"} if devices > 1 else {}),
        },
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    if devices == 1:
        main(["fit", "--config", str(path)])
    else:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
        run = subprocess.run(
            [sys.executable, "-m", "hybrid", "fit", "--config", str(path)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, run.stderr[-3000:]
    model = HybridModule.load_from_checkpoint(next((tmp_path / name).rglob("last.ckpt")))
    return dict(model.named_parameters())


@pytest.mark.parametrize("adjoint", [False, True], ids=["direct", "adjoint"])
def test_two_process_ddp_matches_one_process(tiny_nc, tmp_path, adjoint):
    """6 training trajectories x 4 windows of 8 frames = 24 windows, a global batch of 8 as 8 on
    one process or 4 + 4 on two; DDP averages the gradients and all-reduces APHYNITY's loss for
    λ, so both runs take the same steps. With the adjoint (whose gradients equal direct
    back-propagation: tests/test_dynamics.py), each rank's adjoint gradients are all-reduced."""
    train, _ = tiny_nc("pendulum", n=8)
    one = _fit(tmp_path, train, "one", devices=1, batch_size=8, adjoint=adjoint)
    two = _fit(tmp_path, train, "two", devices=2, batch_size=4, adjoint=adjoint)
    assert one.keys() == two.keys()
    for name in one:
        assert torch.allclose(one[name], two[name], rtol=1e-4, atol=1e-5), name
    assert not torch.isclose(one["field.physics.log_omega0_sq"], torch.tensor(0.5).log())
