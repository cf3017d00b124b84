"""HybridModule end to end: fit, reload, channel checks, non-finite losses."""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

from hybrid import metrics
from hybrid.data.datamodule import TrajectoryDataModule
from hybrid.models import MLP, ResNet
from hybrid.objectives import Aphynity, DataOnly, NaiveSum, PhysicsOnly
from hybrid.physics.advection_diffusion import AdvectionDiffusion, ConstantVelocity
from hybrid.physics.grid import Grid
from hybrid.physics.pendulum import DampedPendulum, FrictionlessPendulum
from hybrid.train import HybridModule, NonFiniteLossError


def _trainer(tmp_path, **kw) -> pl.Trainer:
    defaults = dict(
        max_epochs=1,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    return pl.Trainer(**{**defaults, **kw})


def test_untrained_hybrid_forecasts_like_its_prior(tiny_nc):
    train, _ = tiny_nc("pendulum", n=3)
    dm = TrajectoryDataModule(train, ["theta", "omega"], window=10)
    dm.setup()
    t, y = dm.splits["train"][0]
    prior = FrictionlessPendulum()
    hybrid = HybridModule(prior, MLP(2))
    alone = HybridModule(FrictionlessPendulum())
    assert torch.equal(hybrid(y[None, 0], t), alone(y[None, 0], t))


def test_fit_lowers_the_loss_and_logs_parameters(tiny_nc, tmp_path):
    train, _ = tiny_nc("pendulum", n=6)
    dm = TrajectoryDataModule(train, ["theta", "omega"], window=10, stride=5, batch_size=8)
    model = HybridModule(
        FrictionlessPendulum(omega0_sq=0.5),
        MLP(2, hidden=32),
        Aphynity(),
        optimizer=lambda p: torch.optim.Adam(p, lr=1e-2),
    )
    trainer = _trainer(tmp_path, max_epochs=8)
    before = trainer.validate(model, dm, verbose=False)[0]["val/mse"]
    trainer.fit(model, dm)
    after = trainer.callback_metrics
    assert float(after["val/mse"]) < 0.5 * before
    assert "physics/omega0_sq" in after and "train/lambda" in after
    assert float(model.objective.lambda_) > 1.0  # λ rose with the trajectory loss


def test_checkpoint_reloads_to_identical_forecasts(tiny_nc, tmp_path):
    train, _ = tiny_nc("advection_diffusion", n=3)
    dm = TrajectoryDataModule(train, ["c"], window=5, stride=10, batch_size=4)
    prior = AdvectionDiffusion(dm.grid, kappa=300.0, velocity=ConstantVelocity())
    model = HybridModule(prior, ResNet(1, hidden=4, blocks=1, grid=dm.grid))
    trainer = _trainer(tmp_path, max_steps=2, limit_val_batches=1)
    trainer.fit(model, dm)
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    # Built in Python, the modules are not in the hparams (only plain data is: the checkpoint
    # loads with weights_only=True); they are passed again, as Lightning documents. (From the CLI
    # the hparams hold their class_paths: see test_cli.py.)
    assert "physics" not in torch.load(path, weights_only=True)["hyper_parameters"]
    back = HybridModule.load_from_checkpoint(
        path,
        physics=AdvectionDiffusion(dm.grid, kappa=1.0, velocity=ConstantVelocity()),
        correction=ResNet(1, hidden=4, blocks=1, grid=dm.grid),
    )
    t, y = dm.splits["val"][0]
    assert torch.equal(model.cpu()(y[None, 0], t), back(y[None, 0], t))
    assert torch.equal(back.tendency_std, model.tendency_std)


def test_objective_must_match_the_parts():
    with pytest.raises(ValueError, match="objective 'physics' must not have a `correction`"):
        HybridModule(DampedPendulum(), MLP(2), PhysicsOnly())
    with pytest.raises(ValueError, match="objective 'sum' needs a `correction`"):
        HybridModule(DampedPendulum(), None, NaiveSum())


def test_channel_mismatch_is_a_clear_error(tiny_nc, tmp_path):
    train, _ = tiny_nc("pendulum", n=3)
    dm = TrajectoryDataModule(train, ["theta"], window=5)
    with pytest.raises(ValueError, match=r"model cannot take the data's state \[1\]"):
        _trainer(tmp_path, fast_dev_run=True).fit(HybridModule(DampedPendulum()), dm)


def test_nan_loss_stops_training_with_a_message(tiny_nc, tmp_path):
    train, _ = tiny_nc("pendulum", n=3)
    dm = TrajectoryDataModule(train, ["theta", "omega"], window=5)
    model = HybridModule(
        DampedPendulum(), MLP(2), optimizer=lambda p: torch.optim.SGD(p, lr=float("nan"))
    )
    with pytest.raises(NonFiniteLossError, match="training loss became nan at step 1"):
        _trainer(tmp_path, max_epochs=3).fit(model, dm)


def test_training_loss_is_the_metrics_area_weighted_mse(float64):
    """On a masked lat-lon grid, ``L_traj`` is the area-weighted MSE over active cells that the
    evaluation reports, computed here independently in NumPy: Σ cos-weighted errors / Σ weights."""
    lat, lon = np.linspace(-60, 60, 5), np.arange(0, 360, 45.0)
    active = np.ones((5, 8), bool)
    active[1, 2:5] = False  # land
    grid = Grid.latlon(lat, lon, active=active)
    model = HybridModule(None, ResNet(2, hidden=4, blocks=1, grid=grid), DataOnly())
    model.grid = grid  # what `fit` gives it from the data
    rng = np.random.default_rng(0)
    pred, y = (torch.from_numpy(rng.normal(size=(3, 4, 2, 5, 8))) for _ in range(2))
    pred[..., ~torch.from_numpy(active)] = 1e6  # junk on land never counts
    area = grid.area.numpy() * active
    err = ((pred - y).numpy() ** 2 * area).sum((-2, -1)) / area.sum()  # [B, W, C]
    assert float(model.trajectory_loss(pred, y)) == pytest.approx(err.mean(), rel=1e-12)
    assert float(metrics.mse(pred, y, metrics.cell_weights(grid)).mean()) == pytest.approx(
        err.mean(), rel=1e-12
    )
    cos_weighted = np.cos(np.deg2rad(lat))[:, None] * active  # WeatherBench 2: ∝ cos φ
    assert area / area.sum() == pytest.approx(cos_weighted / cos_weighted.sum(), rel=2e-3)


class _Kill(pl.Callback):
    """Simulates a crash in the middle of an epoch; counts the batches this run trained on."""

    def __init__(self, at_batch: int | None = None) -> None:
        self.at_batch, self.batches = at_batch, 0  # at_batch counted over epochs

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.fit_loop.total_batch_idx == self.at_batch:
            raise RuntimeError("killed")
        self.batches += 1


def _resumable_fit(dm, tmp_path, ckpt_path=None, kill: _Kill | None = None) -> HybridModule:
    """Two epochs (or until ``kill`` fires), checkpointing ``last.ckpt`` after each."""
    pl.seed_everything(0)
    model = HybridModule(
        FrictionlessPendulum(omega0_sq=0.5),
        MLP(2, hidden=16),
        Aphynity(tau_2=1.0, n_iter=2),
        optimizer=lambda p: torch.optim.Adam(p, lr=1e-2),
    )
    callbacks = [pl.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True)]
    callbacks += [kill] if kill is not None else []
    trainer = _trainer(tmp_path, max_epochs=2, callbacks=callbacks, enable_checkpointing=True)
    trainer.fit(model, dm, ckpt_path=ckpt_path)
    return model


def test_killed_run_resumes_to_the_same_parameters(tiny_nc, tmp_path):
    """Killed inside epoch 2 and resumed from the end of epoch 1, a run trains epoch 2 alone
    (a restart from scratch, which the same seed would also bring to the same parameters,
    would train both) and ends where the uninterrupted run does."""
    train, _ = tiny_nc("pendulum", n=6)
    dm = TrajectoryDataModule(train, ["theta", "omega"], window=10, stride=5, batch_size=4)
    whole = _resumable_fit(dm, tmp_path / "whole")
    steps_per_epoch = len(dm.train_dataloader())
    with pytest.raises(RuntimeError, match="killed"):
        _resumable_fit(dm, tmp_path / "cut", kill=_Kill(steps_per_epoch + 2))  # inside epoch 2
    last = tmp_path / "cut" / "last.ckpt"
    assert torch.load(last, weights_only=True)["epoch"] == 0  # the end of epoch 1 is kept
    counter = _Kill()
    resumed = _resumable_fit(dm, tmp_path / "cut", ckpt_path=last, kill=counter)
    assert counter.batches == steps_per_epoch
    for (name, a), b in zip(whole.named_parameters(), resumed.parameters(), strict=True):
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-7), name
    assert float(whole.objective.lambda_) == pytest.approx(float(resumed.objective.lambda_))


def test_nan_keeps_the_last_good_checkpoint(tiny_nc, tmp_path):
    train, _ = tiny_nc("pendulum", n=3)
    dm = TrajectoryDataModule(train, ["theta", "omega"], window=5, stride=5, batch_size=64)

    class PoisonAfterFirstEpoch(pl.Callback):
        def on_train_epoch_start(self, trainer, pl_module) -> None:
            if trainer.current_epoch == 1:
                with torch.no_grad():
                    next(pl_module.correction.parameters()).fill_(float("nan"))

    model = HybridModule(DampedPendulum(), MLP(2))
    ckpt = pl.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True)
    trainer = _trainer(
        tmp_path, max_epochs=3, enable_checkpointing=True, callbacks=[ckpt, PoisonAfterFirstEpoch()]
    )
    with pytest.raises(NonFiniteLossError, match="training loss became nan"):
        trainer.fit(model, dm)
    good = HybridModule.load_from_checkpoint(
        tmp_path / "last.ckpt", physics=DampedPendulum(), correction=MLP(2)
    )
    assert all(torch.isfinite(p).all() for p in good.parameters())


def test_physics_lr_gives_the_prior_its_own_learning_rate():
    prior, net = FrictionlessPendulum(), MLP(2, hidden=8)
    model = HybridModule(prior, net, physics_lr=0.5, optimizer=lambda p: torch.optim.Adam(p, 1e-3))
    groups = model.configure_optimizers().param_groups
    assert [g["lr"] for g in groups] == [1e-3, 0.5]
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in prior.parameters()}
    assert {id(p) for p in groups[0]["params"]} == {id(p) for p in net.parameters()}
    frozen = HybridModule(
        FrictionlessPendulum(), MLP(2, hidden=8), physics_lr=0.5, freeze_physics=True
    )
    assert len(frozen.configure_optimizers().param_groups) == 1  # no empty group for the prior
    with pytest.raises(ValueError, match="physics_lr must be positive"):
        HybridModule(FrictionlessPendulum(), physics_lr=0.0)


def test_physics_lr_moves_the_prior_faster():
    """One SGD step: the prior's parameters move by ``physics_lr × grad``, the network's by
    ``lr × grad`` (plain SGD makes the step exactly proportional to the rate)."""
    steps = {}
    for physics_lr in (None, 10.0):
        pl.seed_everything(0, verbose=False)
        model = HybridModule(
            DampedPendulum(omega0_sq=0.5),
            MLP(2, hidden=8),
            objective=NaiveSum(),
            physics_lr=physics_lr,
            optimizer=lambda p: torch.optim.SGD(p, lr=1e-3),
        )
        before = model.physics.log_omega0_sq.detach().clone()
        opt = model.configure_optimizers()
        loss = model.physics(None, torch.ones(3, 2)).pow(2).sum()
        loss.backward()
        opt.step()
        steps[physics_lr] = float(model.physics.log_omega0_sq.detach() - before)
    assert steps[10.0] == pytest.approx(1e4 * steps[None], rel=1e-5)


def test_freeze_physics_by_name_holds_only_those_parameters():
    from hybrid.physics.grid import Grid
    from hybrid.physics.shallow_water import FPlane, ShallowWater

    prior = ShallowWater(Grid.regular_box(8, 8, 5e4), r=1e-6, coriolis=FPlane())
    HybridModule(prior, freeze_physics=["g", "r"])
    trainable = {n for n, p in prior.named_parameters() if p.requires_grad}
    assert trainable == {"log_H", "coriolis.scaled_f0"}
    with pytest.raises(ValueError, match=r"no parameter 'gravity'; it has: g, H, r, coriolis.f0"):
        HybridModule(
            ShallowWater(Grid.regular_box(8, 8, 5e4), coriolis=FPlane()), freeze_physics=["gravity"]
        )


def test_n_iter_takes_that_many_gradient_steps_per_batch_then_updates_lambda(tiny_nc, tmp_path):
    """The reference code's loop: for each batch, n_iter optimiser steps on it, then one λ update
    with the last step's trajectory loss."""
    train, _ = tiny_nc("pendulum", n=4)
    dm = TrajectoryDataModule(train, ["theta", "omega"], window=5, stride=5, batch_size=8)
    steps = []

    class Counting(torch.optim.SGD):
        def step(self, closure=None):
            steps.append(1)
            return super().step(closure)

    model = HybridModule(
        FrictionlessPendulum(),
        MLP(2, hidden=8),
        Aphynity(lambda_0=1.0, tau_2=0.0, n_iter=3),
        optimizer=lambda p: Counting(p, lr=1e-3),
    )
    _trainer(tmp_path, max_steps=6, limit_val_batches=0).fit(model, dm)
    assert len(steps) == 6 and model.global_step == 6  # 2 batches of 3 steps
    updates = []
    model.objective.update = updates.append
    steps.clear()
    _trainer(tmp_path, max_steps=12, limit_val_batches=0).fit(model, dm)
    assert len(updates) == len(steps) // 3 and len(steps) >= 6


def test_recompute_checkpoints_the_correction_with_the_same_loss_and_gradients():
    """``recompute`` wraps the network in ``Checkpointed``: the loss and every gradient equal
    direct backprop's to rounding; the option and the wrapped weights survive a state-dict
    round trip."""
    torch.manual_seed(0)
    y = torch.randn(4, 6, 2)
    t = torch.arange(6.0)[None].expand(4, -1) * 0.1
    grads = {}
    for recompute in (None, 3):
        torch.manual_seed(1)
        model = HybridModule(FrictionlessPendulum(), MLP(2, hidden=16, init="orthogonal"),
                             recompute=recompute, warm_start=False)  # fmt: skip
        loss = model._shared_step((t, y))["loss"]
        loss.backward()
        grads[recompute] = (loss.detach(), [p.grad.clone() for p in model.parameters()])
    (loss0, g0), (loss1, g1) = grads[None], grads[3]
    assert torch.allclose(loss0, loss1, rtol=1e-6)
    for a, b in zip(g0, g1, strict=True):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-8)
    again = HybridModule(FrictionlessPendulum(), MLP(2, hidden=16), recompute=3)
    again.load_state_dict(model.state_dict())
    assert type(again.correction).__name__ == "Checkpointed"
    with pytest.raises(ValueError, match="recompute must be a positive"):
        HybridModule(FrictionlessPendulum(), MLP(2), recompute=0)
