"""Training objectives: which parts of ``dy/dt = F_p + F_a`` are trained, and how they are weighed.

Each objective is a small ``nn.Module`` (its state, e.g. APHYNITY's multiplier λ, is saved with the
checkpoint) with

* ``check(physics, correction)``: raise ``ValueError`` if the model lacks a part it needs;
* ``forward(traj_loss, correction_sq) -> loss`` where ``traj_loss`` is the trajectory fit
  ``L_traj`` and ``correction_sq`` the mean squared norm ``‖F_a‖²`` along the true states;
* ``update(traj_loss)``: called after each optimiser step with the (all-reduced) ``L_traj``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _require(
    physics: nn.Module | None,
    correction: nn.Module | None,
    *,
    name: str,
    needs_physics: bool,
    needs_correction: bool,
) -> None:
    got = {"physics": physics is not None, "correction": correction is not None}
    wanted = {"physics": needs_physics, "correction": needs_correction}
    for part, present in got.items():
        if present != wanted[part]:
            verb = "needs" if wanted[part] else "must not have"
            raise ValueError(f"objective {name!r} {verb} a `{part}` (model.{part})")


class TrajectoryFit(nn.Module):
    """``L = L_traj``, the plain fit; subclasses differ only in which parts the model has."""

    name, needs_physics, needs_correction = "sum", True, True

    def check(self, physics: nn.Module | None, correction: nn.Module | None) -> None:
        _require(
            physics,
            correction,
            name=self.name,
            needs_physics=self.needs_physics,
            needs_correction=self.needs_correction,
        )

    def forward(self, traj_loss: Tensor, correction_sq: Tensor) -> Tensor:
        return traj_loss

    def update(self, traj_loss: float) -> None:
        """Nothing to adapt."""


class PhysicsOnly(TrajectoryFit):
    """Fit the prior's physical parameters alone (no correction network)."""

    name, needs_physics, needs_correction = "physics", True, False


class DataOnly(TrajectoryFit):
    """A neural ODE: the correction network alone, no prior."""

    name, needs_physics, needs_correction = "data", False, True


class NaiveSum(TrajectoryFit):
    """Prior plus correction fitted together with no penalty on the correction."""


class Aphynity(TrajectoryFit):
    """APHYNITY: ``min ‖F_a‖²`` subject to fitting the trajectories, by the adaptive Lagrangian

    ``L = ‖F_a‖² + λ L_traj``, with ``λ ← λ + τ₂ L_traj`` every ``n_iter`` optimiser steps
    (Yin et al. 2021, Alg. 1; τ₁ is the optimiser's learning rate).

    Args:
        lambda_0: initial multiplier λ₀.
        tau_2: multiplier step τ₂.
        n_iter: optimiser steps between updates of λ.
    """

    name = "aphynity"

    def __init__(self, lambda_0: float = 1.0, tau_2: float = 1e-3, n_iter: int = 1) -> None:
        super().__init__()
        if lambda_0 < 0 or tau_2 < 0 or n_iter < 1:
            raise ValueError(
                f"need lambda_0 >= 0, tau_2 >= 0, n_iter >= 1; got {lambda_0}, {tau_2}, {n_iter}"
            )
        self.tau_2, self.n_iter = tau_2, n_iter
        self.register_buffer("lambda_", torch.tensor(float(lambda_0), dtype=torch.float64))
        self.register_buffer("steps", torch.tensor(0, dtype=torch.int64))

    def forward(self, traj_loss: Tensor, correction_sq: Tensor) -> Tensor:
        return correction_sq + self.lambda_.to(traj_loss) * traj_loss

    def update(self, traj_loss: float) -> None:
        self.steps += 1
        if int(self.steps) % self.n_iter == 0:
            self.lambda_ += self.tau_2 * traj_loss
