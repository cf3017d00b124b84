"""Training objectives: which parts of ``dy/dt = F_p + F_a`` are trained, and how they are weighed.

Each objective is a small ``nn.Module`` (its state, e.g. APHYNITY's multiplier λ, is saved with the
checkpoint) with

* ``check(physics, correction)``: raise ``ValueError`` if the model lacks a part it needs;
* ``trajectory_loss(mse, channel_weight)``: ``L_traj`` from the per-frame, per-channel MSE;
* ``correction_sq(fa, y, weights, tendency_std)``: the squared norm ``‖F_a‖²`` along the true
  states, one of :data:`NORMS`;
* ``forward(traj_loss, correction_sq) -> loss``;
* ``steps_per_batch``: gradient steps taken on each batch before ``update``;
* ``update(traj_loss)``: called once per batch with the (all-reduced) ``L_traj`` of its last step.

The project's default (``weighted=True``, ``norm="scaled"``) weighs each channel's MSE by its
inverse variance and measures ``F_a`` in units of each channel's tendency spread, so that no
variable dominates by its units; ``OfficialAphynity`` is the 2021 reference code's objective.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from hybrid import metrics

EPSILON = 1e-5  # the reference code's guard in ``l2_normalized``
Norm = Literal["scaled", "l2", "l2_normalized"]


def correction_sq(
    fa: Tensor, y: Tensor, weights: Tensor | None, tendency_std: Tensor, norm: Norm = "scaled"
) -> Tensor:
    """Mean squared norm of ``fa = F_a(y)`` along the states ``y``, both ``[B, W, C, *grid]``,
    averaged over states and cells (area-``weights`` ``[*grid]`` or None):

    * ``scaled``: ``Σ_c |F_a,c|² / σ_c²`` with ``σ_c`` the tendency spread ``tendency_std[c]``;
    * ``l2``: ``Σ_c |F_a,c|²`` (APHYNITY's ``l2``);
    * ``l2_normalized``: ``(|F_a| / (|y| + ε))²``, norms over channels per cell and state
      (APHYNITY's ``l2_normalized``, ε = 1e-5).
    """
    if norm == "scaled":
        scale = tendency_std if tendency_std.numel() else fa.new_ones(fa.shape[2])
        fa = fa / scale.view(-1, *[1] * (fa.ndim - 3))
    elif norm == "l2_normalized":
        fa = fa / (y.square().sum(2, keepdim=True).sqrt() + EPSILON)
    elif norm != "l2":
        raise ValueError(f"norm must be one of {Norm.__args__}, got {norm!r}")
    return metrics.spatial_mean(fa.square().sum(2, keepdim=True), weights).mean()


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
    steps_per_batch, weighted, norm = 1, True, "scaled"

    def check(self, physics: nn.Module | None, correction: nn.Module | None) -> None:
        _require(
            physics,
            correction,
            name=self.name,
            needs_physics=self.needs_physics,
            needs_correction=self.needs_correction,
        )

    def trajectory_loss(self, mse: Tensor, channel_weight: Tensor) -> Tensor:
        """``L_traj = 1/(W C) Σ_{t,c} w_c MSE[t, c]`` (``mse``: ``[W, C]``), with ``w_c`` the
        channel's inverse variance when ``weighted`` (and known), else 1: the plain MSE."""
        if self.weighted and channel_weight.numel():
            mse = mse * channel_weight
        return mse.mean()

    def correction_sq(
        self, fa: Tensor, y: Tensor, weights: Tensor | None, tendency_std: Tensor
    ) -> Tensor:
        """``‖F_a‖²`` along the true states by this objective's norm (:func:`correction_sq`)."""
        return correction_sq(fa, y, weights, tendency_std, self.norm)

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

    ``L = ‖F_a‖² + λ L_traj``: ``n_iter`` gradient steps on each batch, then
    ``λ ← λ + τ₂ L_traj`` with the last step's ``L_traj`` (Yin et al. 2021, Alg. 1; τ₁ is the
    optimiser's learning rate), as the reference code does.

    At a finite λ the minimiser keeps only ``λc/(1 + λc)`` of the term the prior misses (``c``
    the trajectory loss's curvature along it), so λ must grow large within the run. The default
    τ₂ = 1000 is for the project's normalised losses (``L_traj`` ~ 1e-3 relative once the prior
    fits): λ rises by about one a step. The reference code's τ₂ = 1e-3 is for its raw losses;
    here it leaves λ ≈ 1 and the correction at a third of the missing term on a damped spring
    (``tests/test_default_objective.py``).

    Args:
        lambda_0: initial multiplier λ₀.
        tau_2: multiplier step τ₂.
        n_iter: gradient steps on each batch before λ is updated.
        norm: ``scaled`` (the project's: each channel in units of its tendency spread), ``l2``
            or ``l2_normalized`` (the reference code's): see :func:`correction_sq`.
        weighted: weigh each channel's MSE by its inverse variance (the project's); ``false``
            is the reference code's plain MSE.
    """

    name = "aphynity"

    def __init__(
        self,
        lambda_0: float = 1.0,
        tau_2: float = 1000.0,
        n_iter: int = 1,
        norm: Norm = "scaled",
        weighted: bool = True,
    ) -> None:
        super().__init__()
        if lambda_0 < 0 or tau_2 < 0 or n_iter < 1:
            raise ValueError(
                f"need lambda_0 >= 0, tau_2 >= 0, n_iter >= 1; got {lambda_0}, {tau_2}, {n_iter}"
            )
        if norm not in Norm.__args__:
            raise ValueError(f"norm must be one of {Norm.__args__}, got {norm!r}")
        self.tau_2, self.steps_per_batch = tau_2, n_iter
        self.norm, self.weighted = norm, weighted
        self.register_buffer("lambda_", torch.tensor(float(lambda_0), dtype=torch.float64))

    def forward(self, traj_loss: Tensor, correction_sq: Tensor) -> Tensor:
        return correction_sq + self.lambda_.to(traj_loss) * traj_loss

    def update(self, traj_loss: float) -> None:
        self.lambda_ += self.tau_2 * traj_loss


class OfficialAphynity(Aphynity):
    """The reference code's objective exactly (``yuan-yin/APHYNITY``, ``APHYNITYExperiment``):
    plain MSE over all entries (``nn.MSELoss``), ``‖F_a‖²`` by ``l2`` (or ``l2_normalized`` for
    the pendulum), ``n_iter`` gradient steps per batch before each λ update."""

    def __init__(
        self,
        lambda_0: float = 1.0,
        tau_2: float = 1e-3,
        n_iter: int = 1,
        norm: Norm = "l2",
    ) -> None:
        super().__init__(lambda_0, tau_2, n_iter, norm, weighted=False)
