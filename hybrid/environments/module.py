"""``EnvironmentModule``: ``HybridModule`` trained on several environments at once, or adapted to
a new one from a trained model with its shared part frozen."""

from __future__ import annotations

import torch
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn

from hybrid.environments.layout import is_environment_specific
from hybrid.environments.objectives import EnvironmentFit, Leads
from hybrid.objectives import correction_sq
from hybrid.physics.grid import Grid
from hybrid.physics.parameters import physical_parameters
from hybrid.train import HybridModule


class EnvironmentModule(HybridModule):
    """``dy/dt = F_p(y; θ, θ_e) + f(y) + g_e(y)`` over environment-major batches
    ``[E*b, W, C, *grid]`` (:mod:`hybrid.data.environments`).

    The parts are those of :class:`HybridModule` (as modules: jsonargparse fills the first
    argument of a class awaiting a grid, which here is the wrapped module), made
    environment-aware by wrapping:
    ``physics`` a prior (shared) or :class:`~hybrid.environments.PerEnvironment`; ``correction``
    an :class:`~hybrid.environments.EnvironmentCorrection` of a shared and a per-environment
    network. The objective's penalty (:mod:`hybrid.environments.objectives`) replaces APHYNITY's
    ``‖F_a‖²``. The Gauss-Newton warm start reads single-environment windows, so it is off.

    **Adaptation** (``adapt_from``): build the model for the data's environments (usually one
    new one), load every shared weight of that checkpoint (all but the ``per_environment`` ones,
    with the training data's statistics) and freeze it; only the new environment's part (its
    ``g_e``, its CoDA code, its physical parameters) is trained.

    Args:
        n_environments: ``E``, checked against the data.
        adapt_from: checkpoint of a multi-environment run to adapt.
        Others: as :class:`HybridModule`.
    """

    def __init__(
        self,
        physics: nn.Module | None = None,
        correction: nn.Module | None = None,
        objective: EnvironmentFit | None = None,
        *,
        n_environments: int,
        adapt_from: str | None = None,
        grid: dict | None = None,
        method: str = "rk4",
        rtol: float = 1e-6,
        atol: float = 1e-8,
        step_size: float | None = None,
        adjoint: bool = False,
        freeze_physics: bool | list[str] = False,
        optimizer: OptimizerCallable = torch.optim.Adam,
        physics_lr: float | None = None,
        gradient_clip: float | None = None,
        warm_start: bool = False,
        stabilise: bool = True,
    ) -> None:
        if n_environments < 1:
            raise ValueError(f"n_environments must be positive, got {n_environments}")
        if warm_start:
            raise ValueError("warm_start reads single-environment windows: keep it false here")
        if objective is not None and not isinstance(objective, EnvironmentFit):
            raise ValueError(
                f"objective must be one of hybrid.environments' (Leads, Coda, OneForAll, "
                f"OnePerEnvironment), got {type(objective).__name__}"
            )
        self.n_environments, self.adapt_from = n_environments, adapt_from
        super().__init__(
            physics,
            correction,
            objective or Leads(),
            grid=grid,
            method=method,
            rtol=rtol,
            atol=atol,
            step_size=step_size,
            adjoint=adjoint,
            freeze_physics=freeze_physics,
            optimizer=optimizer,
            physics_lr=physics_lr,
            gradient_clip=gradient_clip,
            warm_start=False,
            stabilise=stabilise,
        )

    def build(self, grid: Grid | None) -> None:
        super().build(grid)
        self.objective.check_structure(self.field)
        counts = {getattr(m, "n_environments", None) for m in self.field.modules()} - {None}
        if counts - {self.n_environments}:
            raise ValueError(
                f"model.n_environments is {self.n_environments}, but parts have {sorted(counts)}"
            )
        if self.adapt_from is not None:
            load_shared(self, self.adapt_from)

    def configure_model(self) -> None:
        dm = self.trainer.datamodule if self._trainer is not None else None
        if self.field is None:
            self.build(None if dm is None else dm.grid)
        elif self.grid is None and dm is not None and dm.grid is not None:
            self.grid = dm.grid
            self.hparams["grid"] = dm.grid.description()
        if dm is not None:
            check_environments(self, dm)

    def correction_sq(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """The objective's penalty along the true states, and ``‖F_a‖²`` (``l2``, reported)."""
        w = self.cell_weights()
        penalty = self.objective.penalty(self.field, y, w, self.tendency_std)
        if self.correction is None:
            return penalty, y.new_zeros(())
        with torch.no_grad():  # reported only
            return penalty, correction_sq(self.correction(None, y), y, w, self.tendency_std, "l2")

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        if self.physics is None:  # a network's weights are not logged, whatever their size
            return
        for name, value in physical_parameters(self.physics).items():
            if value.numel() == self.n_environments and value.numel() > 1:
                for e, v in enumerate(value.flatten().tolist()):
                    self.log(f"physics/{name.split('.')[-1]}_e{e}", v, sync_dist=False)


def check_environments(model: EnvironmentModule, dm: object) -> None:
    """The data must have an ``environment`` dim with the model's count, and a state the
    model maps to its own shape."""
    if not hasattr(dm, "n_environments"):
        raise ValueError(
            "EnvironmentModule needs data with an `environment` dimension "
            "(hybrid.data.environments.EnvironmentDataModule)"
        )
    if dm.n_environments != model.n_environments:
        raise ValueError(
            f"the model has {model.n_environments} environments, the data {dm.n_environments}"
        )
    dm.setup()
    t, y = dm.splits["train"][0]  # [E, W], [E, W, C, *grid]
    with torch.no_grad():
        out = model.field(t[0, 0], y[:, 0])
    if out.shape != y[:, 0].shape:
        raise ValueError(
            f"the model maps the data's states {list(y.shape[2:])} to {list(out.shape[1:])}"
        )


def load_shared(model: nn.Module, path: str) -> None:
    """Load every shared tensor of the checkpoint at ``path`` into ``model`` and freeze it."""
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    own = model.state_dict()
    shared = {k: v for k, v in state.items() if not is_environment_specific(k) and k in own}
    absent = [k for k in own if not is_environment_specific(k) and k not in state]
    if absent:
        raise ValueError(
            f"{path} was not trained with this model's shared part: lacks {absent[:3]}"
        )
    for name in ("channel_weight", "tendency_std"):  # the training data's statistics
        setattr(model, name, torch.empty_like(state[name]))
    wrong = [k for k, v in shared.items() if v.shape != model.state_dict()[k].shape]
    if wrong:
        raise ValueError(f"{path} has other shapes for {wrong[:3]}: not the same architecture")
    model.load_state_dict(shared, strict=False)
    for name, p in model.named_parameters():
        if not is_environment_specific(name):
            p.requires_grad_(False)
