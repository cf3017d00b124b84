"""``HybridModule``: trains ``dy/dt = physics(t, y) + correction(t, y)`` on trajectory windows."""

from __future__ import annotations

import warnings

import lightning.pytorch as pl
import torch
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn

from hybrid import metrics
from hybrid.dynamics import Checkpointed, HybridField, rollout
from hybrid.flow import flow_penalty, observe_past
from hybrid.models.forced import observe_forcings
from hybrid.models.normalisation import ChannelScaler
from hybrid.models.parts import Part, awaits_grid, build_part
from hybrid.models.seasonal import observe_dates
from hybrid.objectives import Aphynity, DataOnly, PhysicsOnly, TrajectoryFit, correction_sq
from hybrid.physics.grid import Grid
from hybrid.physics.parameters import scalar_parameters, stored_parameter
from hybrid.polish import make_polisher, polish_step, polishing
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
    trajectory loss is the metrics' MSE (:func:`hybrid.metrics.mse`: area-weighted over active
    cells) with each channel weighted by its inverse variance (from the training data);
    ``correction_sq`` is the mean squared norm of ``F_a`` along the true states, each channel in
    units of its tendency's spread.

    The parts may be given as modules, or as classes awaiting the data's grid (``class_path`` in a
    config); those are built in :meth:`configure_model` with the data module's grid passed to
    each part that takes a ``grid`` argument. The checkpoint then holds only plain data: the
    parts' ``class_path`` and ``init_args``, and the grid's :meth:`~Grid.description`, whose
    buffers come back with the state dict, so checkpoints load with ``weights_only=True``.

    Args:
        physics: the prior, an ``nn.Module`` with ``forward(t, y)`` (e.g. ``class_path:
            hybrid.physics.advection_diffusion.AdvectionDiffusion``; its ``grid`` comes from the
            data).
        correction: the network ``F_a`` (e.g. ``hybrid.models.ResNet``).
        objective: ``PhysicsOnly``, ``DataOnly``, ``NaiveSum`` or ``Aphynity`` (default: APHYNITY
            for a hybrid, the plain fit otherwise).
        grid: the data's grid as :meth:`Grid.description` gives it; filled in by ``fit`` and read
            back from checkpoints (not for users to type).
        method: torchdiffeq method (fixed-step ``rk4`` sub-steps at the prior's stable step).
        rtol, atol: tolerances of adaptive methods.
        step_size: largest fixed step (s); default the data step.
        adjoint: back-propagate with the adjoint method.
        max_substeps: most fixed sub-steps per data step: beyond, training stops with a message
            naming the prior's parameters (a diffusivity run away makes each step cost more).
        checkpoint_substeps: beyond this many sub-steps per data step, each evaluation of the
            field is recomputed in the backward instead of kept (the same gradients; the
            memory of a rollout then no longer grows with the network's size per sub-step).
        freeze_physics: keep the prior's parameters fixed (known physics): ``True`` for all, or
            a list of physical names (``[r]``, ``[g, coriolis.f0]``) for some.
        optimizer: optimiser factory, called with the trainable parameters.
        physics_lr: learning rate of the prior's parameters, when it should differ from the
            optimiser's (which then applies to the network): physical parameters often tolerate,
            and need, a larger rate than the network's weights.
        gradient_clip: largest gradient norm of a step; by default (none) a network's gradient
            is clipped at 3x its running mean (:mod:`hybrid.schedule`). It takes the place of
            the Trainer's ``gradient_clip_val``, which steps chosen by the objective rule out.
        warm_start: fit the prior's parameters to the training data by Gauss-Newton before
            training, and again with the network held fixed after every epoch
            (:mod:`hybrid.warm_start`); ``false`` leaves them to the optimiser alone.
        stabilise: with a network, warm the learning rate up and decay it by a cosine, and
            clip outlier gradients (:mod:`hybrid.schedule`); ``false`` keeps the optimiser's
            constant rate, as the reference code does.
        recompute: checkpoint the correction's activations (:class:`hybrid.dynamics.Checkpointed`),
            recomputing them in the backward ``recompute`` rows at a time: memory of one state
            per network call instead of every hidden layer (the full wave protocol: 3.9 GiB);
            exact for networks without batch statistics. Default off.
        polish_epochs: the last this many epochs fit the network alone by L-BFGS on
            ``L_traj``, the prior's parameters held where the objective left them (APHYNITY's
            λ → ∞ limit, :mod:`hybrid.polish`); for data that fit in one batch.
    """

    def __init__(
        self,
        physics: Part = None,
        correction: Part = None,
        objective: TrajectoryFit | None = None,
        *,
        grid: dict | None = None,
        method: str = "rk4",
        rtol: float = 1e-6,
        atol: float = 1e-8,
        step_size: float | None = None,
        adjoint: bool = False,
        max_substeps: int | None = 64,
        checkpoint_substeps: int | None = 2,
        freeze_physics: bool | list[str] = False,
        optimizer: OptimizerCallable = torch.optim.Adam,
        physics_lr: float | None = None,
        gradient_clip: float | None = None,
        warm_start: bool = True,
        stabilise: bool = True,
        recompute: int | None = None,
        polish_epochs: int = 0,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False  # the objective's steps per batch (training_step)
        with warnings.catch_warnings():  # modules given as objects are dropped just below
            warnings.filterwarnings("ignore", "Attribute '.*' is an instance of `nn.Module`")
            self.save_hyperparameters()
        keep_plain(self.hparams)
        if physics_lr is not None and not physics_lr > 0:
            raise ValueError(f"physics_lr must be positive, got {physics_lr}")
        self.objective = objective or default_objective(physics, correction)
        self.objective.check(physics, correction)
        self.parts, self.freeze = {"physics": physics, "correction": correction}, freeze_physics
        self.solver = {
            "method": method,
            "rtol": rtol,
            "atol": atol,
            "step_size": step_size,
            "adjoint": adjoint,
            "max_substeps": max_substeps,
            "checkpoint_substeps": checkpoint_substeps,
        }
        for name in ("max_substeps", "checkpoint_substeps"):
            if self.solver[name] is not None and self.solver[name] < 1:
                raise ValueError(f"{name} must be at least 1, got {self.solver[name]}")
        self.optimizer, self.physics_lr = optimizer, physics_lr
        if gradient_clip is not None and not gradient_clip > 0:
            raise ValueError(f"gradient_clip must be positive, got {gradient_clip}")
        self.gradient_clip = gradient_clip
        self.warm_start, self.warm_start_report = warm_start, {}
        self.stabilise = stabilise
        if polish_epochs < 0:
            raise ValueError(f"polish_epochs must be >= 0, got {polish_epochs}")
        if polish_epochs and correction is None:
            raise ValueError("polish_epochs fits the network, but the model has none")
        self.polish_epochs = polish_epochs
        if recompute is not None and recompute < 1:
            raise ValueError(f"recompute must be a positive number of rows, got {recompute}")
        self.recompute = recompute
        self.register_buffer("channel_weight", torch.ones(0))  # [C] 1/std², set from data
        self.register_buffer("tendency_std", torch.ones(0))  # [C]
        self.grid: Grid | None = None
        self.field: HybridField | None = None
        if grid is not None or not any(map(awaits_grid, self.parts.values())):
            self.build(None if grid is None else Grid.from_description(grid))

    def build(self, grid: Grid | None) -> None:
        """Make the field from the parts, giving ``grid`` to each part built here that takes
        one; apply ``freeze_physics``."""
        self.grid = grid
        self.hparams["grid"] = None if grid is None else grid.description()
        physics, correction = (build_part(part, grid) for part in self.parts.values())
        if self.recompute is not None and correction is not None:
            correction = Checkpointed(correction, chunk=self.recompute)
        self.field = HybridField(physics, correction)
        if self.freeze is True and physics is not None:
            physics.requires_grad_(False)
        elif self.freeze:
            if physics is None:
                raise ValueError("freeze_physics names parameters, but there is no prior")
            for name in self.freeze:
                stored_parameter(physics, name).requires_grad_(False)

    def configure_model(self) -> None:
        """Build the parts that await the data's grid (Lightning calls this before any stage,
        and on loading a checkpoint), and check that the model fits the data."""
        dm = self.trainer.datamodule if self._trainer is not None else None
        if self.field is None:
            self.build(None if dm is None else dm.grid)
        elif self.grid is None and dm is not None and dm.grid is not None:
            self.grid = dm.grid  # parts given as modules: the loss still weighs by the data's areas
            self.hparams["grid"] = dm.grid.description()
        if dm is not None:
            check_data(self, dm)

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

    def on_fit_start(self) -> None:
        dm = self.trainer.datamodule
        if dm is not None and self.channel_weight.numel() == 0:  # not when resuming
            self.set_statistics(**dm.statistics())
        start_of_fit(self)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        clip_outliers(self, optimizer)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["warm_start"] = self.warm_start_report
        checkpoint["grad_norm_mean"] = getattr(self, "_grad_norm_mean", None)  # schedule.py

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        for name in ("channel_weight", "tendency_std"):  # shapes known only once data were seen
            setattr(self, name, torch.empty_like(checkpoint["state_dict"][name]))
        if checkpoint.get("grad_norm_mean") is not None:  # a resumed run clips as it would have
            self._grad_norm_mean = checkpoint["grad_norm_mean"]

    # -- maths -----------------------------------------------------------------------------
    def forward(self, y0: Tensor, t: Tensor) -> Tensor:
        """Forecast ``[B, T, C, *grid]`` from ``y0``: ``[B, C, *grid]`` at relative times ``t``."""
        return rollout(self.field, y0, t, **self.solver)

    def cell_weights(self) -> Tensor | None:
        """``[*grid]`` area weights of the active cells (:func:`hybrid.metrics.cell_weights`)."""
        return metrics.cell_weights(self.grid)

    def mse(self, pred: Tensor, y: Tensor) -> Tensor:
        """The metrics' MSE of ``[B, W, C, *grid]`` forecasts, per frame and channel: ``[W, C]``."""
        return metrics.mse(pred, y, self.cell_weights())

    def trajectory_loss(self, pred: Tensor, y: Tensor) -> Tensor:
        """``L_traj`` of the objective from the metrics' MSE (:meth:`TrajectoryFit.trajectory_loss`:
        channel-weighted by the inverse variance in the project's default, plain when official)."""
        return self.objective.trajectory_loss(self.mse(pred, y), self.channel_weight)

    def correction_sq(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """``‖F_a‖²`` along the true states ``y``: ``[B, W, C, *grid]`` by the objective's norm,
        and by ``l2`` in data units (what is reported)."""
        if self.correction is None:
            zero = y.new_zeros(())
            return zero, zero
        fa, w = self.correction(None, y), self.cell_weights()
        raw = correction_sq(fa, y, w, self.tendency_std, "l2")
        return self.objective.correction_sq(fa, y, w, self.tendency_std), raw

    # -- Lightning steps -------------------------------------------------------------------
    def observe(self, batch: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        """Hand the parts that read the past, the date or the forcing theirs; the windows to
        forecast (:func:`~hybrid.flow.observe_past`). A batch is ``(t, y[, date][, forcing])``."""
        t, y = observe_past(self.field, self.grid, *batch[:2])  # [B, W], [B, W, C, *grid]
        observe_dates(self.field, batch, t)
        observe_forcings(self.field, batch, t)
        return t, y

    def _shared_step(self, batch: tuple[Tensor, Tensor]) -> dict[str, Tensor]:
        t, y = self.observe(batch)  # [B, W], [B, W, C, *grid]
        pred = self(y[:, 0], t[0])
        mse = self.mse(pred, y)  # [W, C]
        traj = self.objective.trajectory_loss(mse, self.channel_weight)
        corr, corr_raw = self.correction_sq(y)
        return {
            "loss": self.objective(traj, corr) + flow_penalty(self.field),
            "traj_loss": traj,
            "correction_sq": corr,
            "correction_norm": corr_raw,
            "mse": mse,
        }

    def _log(self, out: dict[str, Tensor], stage: str, batch_size: int) -> None:
        logs = {f"{stage}/{k}": v.mean() if k == "mse" else v for k, v in out.items()}
        self.log_dict(logs, batch_size=batch_size, sync_dist=stage != "train")

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        """The objective's ``steps_per_batch`` gradient steps on this batch (APHYNITY's
        ``n_iter``), then its ``update`` with the last step's ``L_traj`` (all-reduced)."""
        optimizer, *polisher = self.optimizers() if self.polish_epochs else [self.optimizers()]
        if polishing(self):
            _, y = self.observe(batch)
            out = polish_step(self, polisher[0], y, lambda: self._shared_step(batch))
            self._log(out, "train", batch[1].shape[0])
            return
        for _ in range(self.objective.steps_per_batch):
            out = self._shared_step(batch)
            if not torch.isfinite(out["loss"]):
                raise NonFiniteLossError(
                    f"training loss became {out['loss'].detach().item()} at step "
                    f"{self.global_step} (lower the learning rate or the step size); the "
                    "last checkpoint is kept"
                )
            schedule_lr(self)
            optimizer.zero_grad()
            self.manual_backward(out["loss"])
            if self.gradient_clip is not None:
                self.clip_gradients(optimizer, gradient_clip_val=self.gradient_clip)
            optimizer.step()  # clip_outliers runs in on_before_optimizer_step
        self._log({k: v.detach() for k, v in out.items()}, "train", batch[1].shape[0])
        traj = self.trainer.strategy.reduce(out["traj_loss"].detach(), reduce_op="mean")
        self.objective.update(float(traj))  # the same λ on every rank
        end_of_batch(self, batch_idx)
        if isinstance(self.objective, Aphynity):
            self.log("train/lambda", float(self.objective.lambda_))

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        out = self._shared_step(batch)
        self._log(out, "val", batch[1].shape[0])
        rmse = out["mse"].mean(1).sqrt()  # [W] over channels
        leads = sorted({1, len(rmse) // 2, len(rmse) - 1})
        self.log_dict(
            {f"val/rmse_lead_{k}": rmse[k] for k in leads},
            sync_dist=True,
            batch_size=batch[1].shape[0],
        )

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._log(self._shared_step(batch), "test", batch[1].shape[0])

    def predict_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> dict[str, Tensor]:
        """Forecasts ``[B, W, C, *grid]`` from each window's first frame: the model, the prior
        alone (correction off) when there is a correction, and persistence; with the truth."""
        t, y = self.observe(batch)
        y0 = y[:, 0]
        out = {"truth": y, "model": self(y0, t[0]), "persistence": y0[:, None].expand_as(y)}
        if self.physics is not None and self.correction is not None:
            out["physics"] = rollout(HybridField(self.physics), y0, t[0], **self.solver)
        return out

    def on_validation_epoch_end(self) -> None:
        if self.physics is not None:
            for name, value in scalar_parameters(self.physics).items():
                self.log(f"physics/{name}", value, sync_dist=False, prog_bar=True)

    def configure_optimizers(self) -> torch.optim.Optimizer | list[torch.optim.Optimizer]:
        """The configured optimiser; with ``polish_epochs``, and the polisher second."""
        main = self._optimizer()
        return [main, make_polisher(self.correction)] if self.polish_epochs else main

    def _optimizer(self) -> torch.optim.Optimizer:
        trainable = [p for p in self.parameters() if p.requires_grad]
        if self.physics_lr is None or self.physics is None:
            return self.optimizer(trainable)
        prior = {id(p) for p in self.physics.parameters()}
        groups = [
            {"params": [p for p in trainable if id(p) not in prior]},
            {"params": [p for p in trainable if id(p) in prior], "lr": self.physics_lr},
        ]
        return self.optimizer([g for g in groups if g["params"]])


def keep_plain(hparams: dict) -> None:
    """Drop from ``hparams`` what is not plain data (modules or classes given as Python objects
    rather than by ``class_path``): checkpoints then load with ``weights_only=True``, and such
    parts are passed again to ``load_from_checkpoint``, as Lightning documents for modules."""
    for key in [k for k, v in hparams.items() if not _is_plain(v)]:
        del hparams[key]


def _is_plain(value: object) -> bool:
    if isinstance(value, dict):
        return all(_is_plain(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(_is_plain(v) for v in value)
    return value is None or isinstance(value, bool | int | float | str)


def check_data(model: HybridModule, dm: pl.LightningDataModule) -> None:
    """The model must fit the data: the trained grid, and the data's channels (run once on a
    window, so that a prior or network that does not fit fails here, with a message naming both,
    not deep inside the solver)."""
    trained = None if model.grid is None else tuple(model.grid.shape)
    shape = None if dm.grid is None else tuple(dm.grid.shape)
    if trained != shape:
        raise ValueError(f"the checkpoint was trained on a {trained} grid; the data has {shape}")
    window = next(iter(dm.splits.values()))[0]  # (t, y) or (t, y, date)
    t, y = (a[0] for a in model.observe(tuple(a[None] for a in window)))
    try:
        with torch.no_grad():
            out = model.field(t[0], y[:1])
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
