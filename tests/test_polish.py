"""The polish (``hybrid/polish.py``): the last epochs fit the network alone by L-BFGS, the prior
held where the objective left it."""

from __future__ import annotations

from types import SimpleNamespace

import lightning.pytorch as pl
import pytest
import torch
from torch import Tensor, nn

from hybrid.data.datamodule import TrajectoryDataModule
from hybrid.data.io import trajectories_to_dataset, write_netcdf
from hybrid.models import MLP
from hybrid.objectives import Aphynity, NaiveSum
from hybrid.physics.decay import LinearDecay
from hybrid.polish import polishing
from hybrid.train import HybridModule

RATE, DT = 0.7, 0.1


class Gain(nn.Module):
    """``F_a(y) = w y``: a correction whose best value is known in closed form."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        return self.w * y


def rk4_gain(z: float) -> float:
    """One rk4 step of ``dy/dt = −k y`` multiplies ``y`` by ``1 − z + z²/2 − z³/6 + z⁴/24``,
    ``z = k dt``."""
    return 1 - z + z**2 / 2 - z**3 / 6 + z**4 / 24


@pytest.fixture
def decay_file(tmp_path) -> str:
    """64 trajectories × 20 frames of the rk4 map of ``dy/dt = −0.7 y`` at the data step: the
    hybrid ``−γ y + w y`` integrated by rk4 at that step fits them exactly iff ``w = γ − 0.7``."""
    t = torch.arange(20, dtype=torch.float64) * DT
    y0 = torch.rand(64, generator=torch.Generator().manual_seed(0), dtype=torch.float64) + 0.5
    y = y0[:, None] * rk4_gain(RATE * DT) ** torch.arange(20, dtype=torch.float64)
    ds = trajectories_to_dataset(y[..., None], t, ["y"], units={"y": "1"})
    return str(write_netcdf(ds, tmp_path / "decay.nc"))


def _fit(model: HybridModule, dm, tmp_path, epochs: int) -> None:
    pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
    ).fit(model, dm)


def _module(objective, correction: nn.Module, polish_epochs: int, **kw) -> HybridModule:
    return HybridModule(
        LinearDecay(gamma=0.5), correction, objective, step_size=DT, warm_start=False,
        polish_epochs=polish_epochs, **kw,
    )  # fmt: skip


def _dm(path: str) -> TrajectoryDataModule:
    return TrajectoryDataModule(path, ["y"], window=20, batch_size=64, val_fraction=0.25)


def test_naive_sum_polish_fits_the_network_exactly_and_holds_the_prior(decay_file, tmp_path):
    """No split to take (naive sum), γ = 0.5 wrong and held: L-BFGS finds the unique exact fit
    ``w = γ − 0.7 = −0.2`` to float32 precision; each polish step counts as a training step
    (one batch an epoch), so checkpoints see the polished epochs."""
    model = _module(NaiveSum(), Gain(), polish_epochs=2)
    _fit(model, _dm(decay_file), tmp_path, epochs=2)
    assert float(model.physics.gamma.detach()) == pytest.approx(0.5, rel=1e-7)
    assert float(model.correction.w) == pytest.approx(0.5 - RATE, abs=2e-6)
    assert model.global_step == 2


def test_aphynity_polish_takes_the_least_norm_split(decay_file, tmp_path):
    """APHYNITY: the re-split moves the complete prior to the whole field, γ = 0.7 (the rk4
    map's own rate, exact here) and ``F_a`` = 0 (``w`` = 0, the least norm), λ untouched."""
    model = _module(Aphynity(lambda_0=1.0, tau_2=1.0), Gain(), polish_epochs=3)
    _fit(model, _dm(decay_file), tmp_path, epochs=3)
    assert float(model.physics.gamma.detach()) == pytest.approx(RATE, rel=1e-5)
    assert float(model.correction.w) == pytest.approx(0.0, abs=2e-6)
    assert float(model.objective.lambda_) == 1.0


def test_polish_runs_only_in_the_last_epochs(decay_file, tmp_path):
    """Three epochs, the last polished (naive sum): the prior moves under Adam in the first two
    (warm start off), then stays."""
    seen = {}

    class Record(pl.Callback):
        def on_train_epoch_end(self, trainer, module):
            seen[trainer.current_epoch] = float(module.physics.gamma.detach())

    model = _module(
        NaiveSum(), MLP(1, hidden=8), 1, optimizer=lambda p: torch.optim.Adam(p, lr=1e-2)
    )
    pl.Trainer(
        max_epochs=3, accelerator="cpu", logger=False, enable_progress_bar=False,
        enable_checkpointing=False, callbacks=[Record()], default_root_dir=tmp_path,
    ).fit(model, _dm(decay_file))  # fmt: skip
    assert seen[0] != 0.5 and seen[1] != seen[0]  # Adam moved γ
    assert seen[2] == seen[1]  # the polished epoch did not


def test_polishing_counts_from_the_end_and_not_for_step_bounded_runs():
    trainer = SimpleNamespace(max_epochs=5, current_epoch=2)
    module = SimpleNamespace(polish_epochs=2, trainer=trainer)
    assert not polishing(module)
    module.trainer.current_epoch = 3
    assert polishing(module)
    module.trainer.max_epochs = -1
    assert not polishing(module)
    module.polish_epochs, module.trainer.max_epochs = 0, 5
    assert not polishing(module)


def test_polish_needs_a_network():
    with pytest.raises(ValueError, match="polish_epochs fits the network"):
        HybridModule(LinearDecay(gamma=0.5), None, polish_epochs=3)
    with pytest.raises(ValueError, match="polish_epochs must be >= 0"):
        HybridModule(LinearDecay(gamma=0.5), MLP(1), polish_epochs=-1)


@pytest.mark.parametrize("failure", ["raise", "nan"])
def test_a_failed_polish_step_is_undone_and_training_goes_on(
    decay_file, tmp_path, monkeypatch, failure
):
    """L-BFGS's strong-Wolfe search can extrapolate its step past float range and raise
    (measured: the pendulum's data-only MLP with SiLU), or leave a non-finite loss: the step is
    undone (the network keeps its values, a warning says so) and the run finishes."""

    def broken_step(self, closure):
        closure()
        with torch.no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    p.fill_(float("nan"))
        if failure == "raise":
            raise RuntimeError("value cannot be converted to type float without overflow")

    monkeypatch.setattr(torch.optim.LBFGS, "step", broken_step)
    model = _module(NaiveSum(), Gain(), polish_epochs=1)
    with torch.no_grad():
        model.correction.w.fill_(-0.1)
    with pytest.warns(UserWarning, match="polish step skipped"):
        _fit(model, _dm(decay_file), tmp_path, epochs=1)
    assert float(model.correction.w) == pytest.approx(-0.1) and torch.isfinite(model.physics.gamma)
