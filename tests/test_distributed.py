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
MODES = {"direct": False, "adjoint": True}


def _config(folder: Path, train: str, devices: int, batch_size: int, adjoint: bool) -> Path:
    """Write the `hybrid fit` config of one run beside ``folder``, where its checkpoints go."""
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
            "default_root_dir": str(folder),
            **({"strategy": "ddp"} if devices > 1 else {}),
        },
    }
    folder.mkdir(parents=True)
    path = folder.with_suffix(".yaml")
    path.write_text(yaml.safe_dump(config))
    return path


def _parameters(folder: Path) -> dict[str, torch.Tensor]:
    model = HybridModule.load_from_checkpoint(next(folder.rglob("last.ckpt")))
    return dict(model.named_parameters())


@pytest.fixture(scope="module")
def pendulum_train(tmp_path_factory) -> str:
    """8 simulated pendulum trajectories, written once for both modes."""
    from hybrid.data.io import write_netcdf
    from hybrid.data.protocols import build
    from hybrid.data.simulate import simulate_dataset

    ds = simulate_dataset(build("pendulum"), "train", n_samples=8, progress=False)
    return str(write_netcdf(ds, tmp_path_factory.mktemp("ddp") / "pendulum_train.nc"))


@pytest.fixture(scope="module")
def two_process_runs(pendulum_train, tmp_path_factory):
    """Both two-process fits (`python -m hybrid fit` in a fresh process, which spawns the second
    rank), started together in the background: each is mostly interpreter starts and imports, so
    they overlap each other and the one-process fits that the tests run meanwhile in this
    process. ``runs[mode]() -> (folder, returncode, stderr)`` waits for that mode's run."""
    root, runs = tmp_path_factory.mktemp("two"), {}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    for mode, adjoint in MODES.items():
        folder = root / mode
        config = _config(folder, pendulum_train, devices=2, batch_size=4, adjoint=adjoint)
        stderr = open(folder / "stderr.txt", "w")  # a file: a full pipe would block the run
        command = [sys.executable, "-m", "hybrid", "fit", "--config", str(config)]
        process = subprocess.Popen(
            command, cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=stderr
        )
        runs[mode] = (folder, process, stderr)
    yield {mode: (lambda run=run: _wait(*run)) for mode, run in runs.items()}
    for _, process, stderr in runs.values():
        process.kill()
        process.wait()
        stderr.close()


def _wait(folder: Path, process: subprocess.Popen, stderr) -> tuple[Path, int, str]:
    code = process.wait(timeout=300)
    stderr.flush()
    return folder, code, (folder / "stderr.txt").read_text()


@pytest.mark.parametrize("mode", MODES)
def test_two_process_ddp_matches_one_process(pendulum_train, two_process_runs, tmp_path, mode):
    """6 training trajectories x 4 windows of 8 frames = 24 windows, a global batch of 8 as 8 on
    one process or 4 + 4 on two; DDP averages the gradients and all-reduces APHYNITY's loss for
    λ, so both runs take the same steps. With the adjoint (whose gradients equal direct
    back-propagation: tests/test_dynamics.py), each rank's adjoint gradients are all-reduced.
    The one-process run is in this process (which saves an interpreter start)."""
    config = _config(tmp_path / "one", pendulum_train, 1, batch_size=8, adjoint=MODES[mode])
    main(["fit", "--config", str(config)])
    one = _parameters(tmp_path / "one")
    folder, code, stderr = two_process_runs[mode]()
    assert code == 0, stderr[-3000:]
    two = _parameters(folder)
    assert one.keys() == two.keys()
    for name in one:
        assert torch.allclose(one[name], two[name], rtol=1e-4, atol=1e-5), name
    assert not torch.isclose(one["field.physics.log_omega0_sq"], torch.tensor(0.5).log())
