"""The `hybrid` command end to end: user priors by class_path, checkpoints, resume, DDP."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch
import yaml

from hybrid.cli import main
from hybrid.train import HybridModule

USER_PRIOR = '''
import torch
from torch import Tensor, nn


class LinearSpring(nn.Module):
    """A user's own prior, outside the package: dθ/dt = ω, dω/dt = -k θ."""

    def __init__(self, k: float = 1.0) -> None:
        super().__init__()
        self.log_k = nn.Parameter(torch.tensor(k).log())

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        theta, omega = y.unbind(-1)
        return torch.stack((omega, -self.log_k.exp() * theta), dim=-1)
'''


def _pendulum_config(tmp_path: Path, train: str, physics: dict, **model) -> Path:
    config = {
        "seed_everything": 0,
        "model": {
            "physics": physics,
            "correction": {
                "class_path": "hybrid.models.MLP",
                "init_args": {"state_dim": 2, "hidden": 16},
            },
            "optimizer": {"class_path": "torch.optim.Adam", "init_args": {"lr": 1e-2}},
            **model,
        },
        "data": {
            "path": train,
            "variables": ["theta", "omega"],
            "window": 10,
            "stride": 10,
            "batch_size": 8,
            "val_fraction": 0.25,
        },
        "trainer": {
            "accelerator": "cpu",
            "devices": 1,
            "max_epochs": 2,
            "logger": False,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "default_root_dir": str(tmp_path / "run"),
        },
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _last_checkpoint(root: Path) -> Path:
    return next(root.rglob("last.ckpt"))


def test_user_prior_from_its_own_package_trains_from_yaml(tiny_nc, tmp_path, monkeypatch):
    (tmp_path / "mylab_priors.py").write_text(textwrap.dedent(USER_PRIOR))
    monkeypatch.syspath_prepend(str(tmp_path))
    train, _ = tiny_nc("pendulum", n=4)
    physics = {"class_path": "mylab_priors.LinearSpring", "init_args": {"k": 0.5}}
    config = _pendulum_config(tmp_path, train, physics)
    main(["fit", "--config", str(config)])
    model = HybridModule.load_from_checkpoint(_last_checkpoint(tmp_path / "run"))
    assert type(model.physics).__name__ == "LinearSpring"
    assert float(model.physics.log_k.exp()) != pytest.approx(0.5)  # it was trained


def test_cli_checkpoint_reloads_to_identical_forecasts(tiny_nc, tmp_path):
    """From the CLI the hparams hold class_paths (and the linked grid as plain tensors), so the
    default `weights_only` load rebuilds the model and gives bit-identical forecasts."""
    train, _ = tiny_nc("advection_diffusion", n=3)
    main(
        [
            "fit",
            "--config",
            "configs/quickstart.yaml",
            "--data.path",
            train,
            "--data.test_path",
            train,
            "--data.window",
            "4",
            "--data.eval_window",
            "4",
            "--data.stride",
            "20",
            "--trainer.max_steps",
            "2",
            "--model.warm_start",  # the warm start has its own tests; not this one's subject
            "false",
            "--trainer.logger",
            "false",
            "--trainer.enable_progress_bar",
            "false",
            "--trainer.default_root_dir",
            str(tmp_path / "run"),
        ]
    )
    path = _last_checkpoint(tmp_path / "run")
    a, b = HybridModule.load_from_checkpoint(path), HybridModule.load_from_checkpoint(path)
    y0 = torch.rand(2, 1, 32, 32) + 1
    t = torch.arange(5) * 3 * 3600.0
    assert torch.equal(a(y0, t), b(y0, t))
    assert a.physics.grid.shape == (32, 32) and a.correction.active is not None


@pytest.mark.parametrize(
    "override, message",
    [
        (["--model.physics", "hybrid.physics.pendulum.NoSuchPrior"], "NoSuchPrior"),
        (["--model.physics.init_args.omega_typo", "1.0"], "omega_typo"),
        (["--data.variables", "[theta]"], "cannot take the data's state"),
        (["--data.path", "missing.nc"], "missing.nc: no such file"),
    ],
)
def test_config_mistakes_exit_with_one_clear_message(tiny_nc, tmp_path, capsys, override, message):
    train, _ = tiny_nc("pendulum", n=4)
    physics = {"class_path": "hybrid.physics.pendulum.DampedPendulum"}
    config = _pendulum_config(tmp_path, train, physics)
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--config", str(config), *override])
    err = capsys.readouterr().err + str(exit_.value.code)
    assert exit_.value.code not in (0, None)
    assert message in err and "Traceback" not in err


def test_fit_keeps_the_best_validation_checkpoint_beside_the_last(tiny_nc, tmp_path):
    train, _ = tiny_nc("pendulum", n=4)
    physics = {"class_path": "hybrid.physics.pendulum.DampedPendulum"}
    main(["fit", "--config", str(_pendulum_config(tmp_path, train, physics))])
    best = list((tmp_path / "run").rglob("best-epoch=*.ckpt"))
    assert len(best) == 1 and _last_checkpoint(tmp_path / "run").exists()
    state = torch.load(best[0], weights_only=True)
    scores = [v for k, v in state["callbacks"].items() if "val/mse" in k]
    # its score is its own validation MSE, recomputed here in NumPy over the validation windows
    from hybrid.data.datamodule import TrajectoryDataModule

    model = HybridModule.load_from_checkpoint(best[0])
    val = TrajectoryDataModule.load_from_checkpoint(best[0])
    val.setup()
    t, y = zip(*(val.splits["val"][i] for i in range(len(val.splits["val"]))), strict=True)
    with torch.no_grad():
        pred = model(torch.stack(y)[:, 0], t[0]).numpy()
    mse = ((pred - torch.stack(y).numpy()) ** 2).mean()
    assert len(scores) == 1 and float(scores[0]["best_model_score"]) == pytest.approx(mse, rel=1e-5)


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_evaluate_and_predict_options_are_hybrid_evaluates_signature(command, capsys):
    """The options and their help come from ``hybrid.evaluate.<command>``'s signature and Args."""
    with pytest.raises(SystemExit):
        main([command, "-h"])
    out = capsys.readouterr().out
    assert "--ckpt_path CKPT_PATH" in out and "--output OUTPUT" in out
    assert "checkpoint of a ``hybrid fit`` run" in out and "--batch_size BATCH_SIZE" in out
