"""``HybridModule``: trains ``dy/dt = physics(t, y) + correction(t, y)`` on trajectory windows."""

from __future__ import annotations

import inspect
import math
import warnings

import lightning.pytorch as pl
import torch
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn

from hybrid.dynamics import HybridField, rollout
from hybrid.models.normalisation import ChannelScaler
from hybrid.objectives import Aphynity, DataOnly, PhysicsOnly, TrajectoryFit
from hybrid.physics.grid import rebuild_grid
from hybrid.physics.parameters import physical_parameters, stored_parameter
from hybrid.schedule import clip_outliers, schedule_lr
from hybrid.warm_start import end_of_batch, start_of_fit


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


def default_objective(physics: nn.Module | None, correction: nn.Module | None) -> TrajectoryFit:
    """APHYNITY for a hybrid, the plain fit for a prior or a network alone."""
    if physics is not None and correction is not None:
        return Aphynity()
    return PhysicsOnly() if correction is None else DataOnly()


class HybridModule(pl.LightningModule):
    """Forecaster ``dy/dt = physics(t, y) + correction(t, y)`` integrated with torchdiffeq.

    A batch is ``(t, y)`` with ``t``: ``[B, W]`` (identical rows) and ``y``: ``[B, W, C, *grid]``;
    the model integrates from ``y[:, 0]`` along ``t[0]`` and is scored on every frame. The
    trajectory loss weighs each channel by its inverse variance (from the training data) and
    ignores inactive cells; ``correction_sq`` is the mean squared norm of ``F_a`` along the true
    states, each channel in units of its tendency's spread.

    Args:
        physics: the prior, an ``nn.Module`` with ``forward(t, y)`` (e.g. ``class_path:
            hybrid.physics.advection_diffusion.AdvectionDiffusion``; its ``grid`` comes from the
            data).
        correction: the network ``F_a`` (e.g. ``hybrid.models.ResNet``).
        objective: ``PhysicsOnly``, ``DataOnly``, ``NaiveSum`` or ``Aphynity`` (default: APHYNITY
            for a hybrid, the plain fit otherwise).
        method: torchdiffeq method (fixed-step ``rk4`` sub-steps at the prior's stable step).
        rtol, atol: tolerances of adaptive methods.
        step_size: largest fixed step (s); default the data step.
        adjoint: back-propagate with the adjoint method.
        freeze_physics: keep the prior's parameters fixed (known physics): ``True`` for all, or
            a list of physical names (``[r]``, ``[g, coriolis.f0]``) for some.
        optimizer: optimiser factory, called with the trainable parameters.
        physics_lr: learning rate of the prior's parameters, when it should differ from the
            optimiser's (which then applies to the network): physical parameters often tolerate,
            and need, a larger rate than the network's weights.
        warm_start: fit the prior's parameters to the training data by Gauss-Newton before
            training, and again with the network held fixed after every epoch
            (:mod:`hybrid.warm_start`); ``false`` leaves them to the optimiser alone.
    """

    def __init__(
        self,
        physics: nn.Module | None = None,
        correction: nn.Module | None = None,
        objective: TrajectoryFit | None = None,
        *,
        method: str = "rk4",
        rtol: float = 1e-6,
        atol: float = 1e-8,
        step_size: float | None = None,
        adjoint: bool = False,
        freeze_physics: bool | list[str] = False,
        optimizer: OptimizerCallable = torch.optim.Adam,
        physics_lr: float | None = None,
        warm_start: bool = True,
    ) -> None:
        super().__init__()
        with warnings.catch_warnings():  # modules in hparams are on purpose: the CLI's class_paths
            warnings.filterwarnings("ignore", "Attribute '.*' is an instance of `nn.Module`")
            self.save_hyperparameters()
        _drop_links_not_accepted(self.hparams, physics=physics, correction=correction)
        self.objective = objective or default_objective(physics, correction)
        self.objective.check(physics, correction)
        self.field = HybridField(physics, correction)
        if freeze_physics is True and physics is not None:
            physics.requires_grad_(False)
        elif freeze_physics:
            if physics is None:
                raise ValueError("freeze_physics names parameters, but there is no prior")
            for name in freeze_physics:
                stored_parameter(physics, name).requires_grad_(False)
        self.solver = {
            "method": method,
            "rtol": rtol,
            "atol": atol,
            "step_size": step_size,
            "adjoint": adjoint,
        }
        if physics_lr is not None and not physics_lr > 0:
            raise ValueError(f"physics_lr must be positive, got {physics_lr}")
        self.optimizer, self.physics_lr = optimizer, physics_lr
        self.warm_start, self.warm_start_report = warm_start, {}
        self.register_buffer("channel_weight", torch.ones(0))  # [C] 1/std², set from data
        self.register_buffer("tendency_std", torch.ones(0))  # [C]
        self.register_buffer("active", torch.ones(0), persistent=False)  # [*grid] loss mask

    @property
    def physics(self) -> nn.Module | None:
        return self.field.physics

    @property
    def correction(self) -> nn.Module | None:
        return self.field.correction

    # -- data statistics -------------------------------------------------------------------
    def set_statistics(self, mean: Tensor, std: Tensor, tendency_std: Tensor) -> None:
        """Per-channel statistics of the training data: loss weights and network scalings."""
        self.channel_weight = std.pow(-2).to(self.device)
        self.tendency_std = tendency_std.to(self.device)
        for m in self.correction.modules() if self.correction is not None else ():
            if isinstance(m, ChannelScaler):
                m.set_statistics(mean, std, tendency_std)

    def setup(self, stage: str) -> None:
        dm = self.trainer.datamodule if self.trainer is not None else None
        if dm is None:
            return
        if dm.grid is not None:
            self.active = dm.grid.active.to(self.device)
        check_channels(self.field, dm)
        if stage == "fit" and self.channel_weight.numel() == 0:
            self.set_statistics(**dm.statistics())

    def on_fit_start(self) -> None:
        start_of_fit(self)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["warm_start"] = self.warm_start_report

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        for name in ("channel_weight", "tendency_std"):  # shapes known only once data were seen
            setattr(self, name, torch.empty_like(checkpoint["state_dict"][name]))

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path, *args, **kwargs) -> HybridModule:
        """Lightning's loader, allowing the grid the CLI linked into the priors' hparams."""
        with torch.serialization.safe_globals([rebuild_grid]):
            return super().load_from_checkpoint(checkpoint_path, *args, **kwargs)

    # -- maths -----------------------------------------------------------------------------
    def forward(self, y0: Tensor, t: Tensor) -> Tensor:
        """Forecast ``[B, T, C, *grid]`` from ``y0``: ``[B, C, *grid]`` at relative times ``t``."""
        return rollout(self.field, y0, t, **self.solver)

    def _mask(self, y: Tensor) -> Tensor:
        """``[*grid]`` weights of active cells broadcastable against ``[..., C, *grid]``."""
        return self.active if self.active.numel() else torch.ones((), device=y.device)

    def trajectory_loss(self, pred: Tensor, y: Tensor) -> Tensor:
        """Channel-weighted MSE over active cells: ``mean_{b,t,cells} Σ_c w_c (ŷ - y)² / C``."""
        w = self.channel_weight if self.channel_weight.numel() else torch.ones(y.shape[2])
        w = w.to(y).view(-1, *[1] * (y.ndim - 3))  # [C, 1, ...]
        return masked_mean((pred - y) ** 2 * w, self._mask(y))

    def correction_sq(self, y: Tensor) -> Tensor:
        """``mean ‖F_a(y)‖²`` over the true states ``y``: ``[B, W, C, *grid]`` (per cell, summed
        over channels in units of each channel's tendency spread), and the same in data units."""
        if self.correction is None:
            zero = y.new_zeros(())
            return zero, zero
        fa = self.correction(None, y)  # [B, W, C, *grid]
        scale = self.tendency_std if self.tendency_std.numel() else torch.ones(y.shape[2])
        scale = scale.to(y).view(-1, *[1] * (y.ndim - 3))
        mask = self._mask(y)
        n_channels = y.shape[2]
        return (
            masked_mean((fa / scale) ** 2, mask) * n_channels,
            masked_mean(fa**2, mask) * n_channels,
        )

    # -- Lightning steps -------------------------------------------------------------------
    def _shared_step(self, batch: tuple[Tensor, Tensor], stage: str) -> dict[str, Tensor]:
        t, y = batch  # [B, W], [B, W, C, *grid]
        pred = self(y[:, 0], t[0])
        traj = self.trajectory_loss(pred, y)
        corr, corr_raw = self.correction_sq(y)
        loss = self.objective(traj, corr)
        mse = masked_mean((pred - y) ** 2, self._mask(y))
        logs = {
            "loss": loss,
            "traj_loss": traj,
            "correction_sq": corr,
            "correction_norm": corr_raw,
            "mse": mse,
        }
        self.log_dict(
            {f"{stage}/{k}": v for k, v in logs.items()},
            batch_size=y.shape[0],
            prog_bar=False,
            sync_dist=stage != "train",
        )
        return {"loss": loss, "traj_loss": traj, "pred": pred}

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        out = self._shared_step(batch, "train")
        if not torch.isfinite(out["loss"]):
            raise NonFiniteLossError(
                f"training loss became {out['loss'].detach().item()} at step {self.global_step} "
                "(lower the learning rate or the step size); the last checkpoint is kept"
            )
        self._last_traj = out["traj_loss"].detach()
        return out["loss"]

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        schedule_lr(self)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        clip_outliers(self, optimizer)

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        traj = self.trainer.strategy.reduce(self._last_traj, reduce_op="mean")  # same λ on ranks
        self.objective.update(float(traj))
        end_of_batch(self, batch_idx)
        if isinstance(self.objective, Aphynity):
            self.log("train/lambda", float(self.objective.lambda_))

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        out = self._shared_step(batch, "val")
        self.log_dict(
            rmse_by_lead(out["pred"], batch[1], self._mask(batch[1])),
            sync_dist=True,
            batch_size=batch[1].shape[0],
        )

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._shared_step(batch, "test")

    def predict_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        t, y = batch
        return self(y[:, 0], t[0])

    def on_validation_epoch_end(self) -> None:
        if self.physics is not None:
            for name, value in physical_parameters(self.physics).items():
                if value.numel() == 1:
                    self.log(f"physics/{name}", float(value), sync_dist=False, prog_bar=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        trainable = [p for p in self.parameters() if p.requires_grad]
        if self.physics_lr is None or self.physics is None:
            return self.optimizer(trainable)
        prior = {id(p) for p in self.physics.parameters()}
        groups = [
            {"params": [p for p in trainable if id(p) not in prior]},
            {"params": [p for p in trainable if id(p) in prior], "lr": self.physics_lr},
        ]
        return self.optimizer([g for g in groups if g["params"]])


def _drop_links_not_accepted(hparams: dict, **parts: nn.Module | None) -> None:
    """The CLI links the data's grid into every prior and network; jsonargparse skips classes
    without a ``grid`` argument, but Lightning still records the value in their hparams, which
    would break ``load_from_checkpoint``. Drop it there."""
    for name, module in parts.items():
        if module is None:  # the CLI's empty slot for the link (hybrid/cli.py)
            hparams[name] = None
            continue
        spec = hparams.get(name)
        init_args = spec.get("init_args", {}) if isinstance(spec, dict) else {}
        if "grid" in init_args and "grid" not in inspect.signature(type(module)).parameters:
            del init_args["grid"]


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``x``: ``[..., C, *grid]`` over all entries on active cells (``mask``: ``[*grid]``
    of 0/1, or a scalar for ODE states)."""
    if mask.ndim == 0:
        return x.mean()
    return (x * mask).sum() / (mask.sum() * (x.numel() / mask.numel()))


def rmse_by_lead(pred: Tensor, y: Tensor, mask: Tensor) -> dict[str, float]:
    """Raw RMSE at a few lead times: ``val/rmse_lead_{k}`` for the first, middle and last lead."""
    leads = sorted({1, y.shape[1] // 2, y.shape[1] - 1})
    return {
        f"val/rmse_lead_{k}": math.sqrt(float(masked_mean((pred[:, k] - y[:, k]) ** 2, mask)))
        for k in leads
    }


def check_channels(field: HybridField, dm: pl.LightningDataModule) -> None:
    """Run the model once on a training window so that a prior or network that does not fit the
    data's channels fails here, with a message naming both, not deep inside the solver."""
    t, y = dm.splits["train"][0]
    try:
        with torch.no_grad():
            out = field(t[0], y[:1])
    except (RuntimeError, ValueError, IndexError) as err:
        raise ValueError(
            f"the model cannot take the data's state {list(y.shape[1:])} "
            f"(variables {dm.variables}): {err}"
        ) from err
    if out.shape != y[:1].shape:
        raise ValueError(
            f"the model maps the data's state {list(y.shape[1:])} (variables "
            f"{dm.variables}) to {list(out.shape[1:])}: channel counts disagree"
        )
