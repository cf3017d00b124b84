"""Objectives over several environments: ``L = L_traj + penalty``, and the structure each needs.

* :class:`Leads`: ``f`` shared (a prior, a network, or both) plus one small ``g_e`` per environment,
  ``penalty = λ (Σ_e ‖g_e‖² + μ Σ_e Σ_layers σ_max(W))`` with ``‖g_e‖²`` the mean over the true
  states of environment ``e`` (LEADS, Yin et al. 2021, ``sum_spectral``).
* :class:`Coda`: weights ``θ_e = θ_c + W ξ_e`` (:class:`~hybrid.environments.networks.Hyper`),
  ``penalty = λ_W Σ_rows ‖W_row‖₂ + λ_ξ ‖ξ‖²`` (CoDA, Kirchmeyer et al. 2022, ``l12m-l2c``).
* :class:`OneForAll`: one model for every environment (nothing per environment), no penalty.
* :class:`OnePerEnvironment`: nothing shared between the networks, no penalty.

``forward(traj_loss, penalty)`` and ``penalty(field, y, weights, tendency_std)`` take the place of
APHYNITY's ``‖F_a‖²``; ``check_structure(field)`` runs once the model is built.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hybrid.environments.layout import is_environment_specific
from hybrid.environments.networks import EnvironmentCorrection, Hyper, Independent
from hybrid.environments.parameters import PerEnvironment
from hybrid.objectives import Norm, TrajectoryFit, correction_sq


class EnvironmentFit(TrajectoryFit):
    """``L = L_traj + penalty``; either part of the model may be absent.

    Args:
        weighted: weigh each channel's MSE by its inverse variance (the project's); ``false`` is
            the reference codes' plain MSE.
    """

    name = "environments"

    def __init__(self, weighted: bool = True) -> None:
        super().__init__()
        self.weighted = weighted

    def check(self, physics: object, correction: object) -> None:
        if physics is None and correction is None:
            raise ValueError(f"objective {self.name!r} needs a `physics` or a `correction`")

    def check_structure(self, field: nn.Module) -> None:
        """Raise ``ValueError`` if the built model is not of the kind this objective trains."""

    def penalty(
        self, field: nn.Module, y: Tensor, weights: Tensor | None, tendency_std: Tensor
    ) -> Tensor:
        """The regularisation along the true states ``y``: ``[E*b, W, C, *grid]``."""
        return y.new_zeros(())

    def forward(self, traj_loss: Tensor, penalty: Tensor) -> Tensor:
        return traj_loss + penalty


def _specific(field: nn.Module, kind: type, objective: str) -> nn.Module:
    """The per-environment network of the field's correction, checked to be a ``kind``."""
    corr = field.correction
    if not isinstance(corr, EnvironmentCorrection) or not isinstance(corr.specific, kind):
        raise ValueError(
            f"objective {objective!r} needs model.correction: hybrid.environments."
            f"EnvironmentCorrection with a `specific` {kind.__name__} network"
        )
    return corr.specific


def spectral_norms(network: Independent | Hyper) -> Tensor:
    """``Σ_e Σ_layers σ_max(W_e)``, over the weight matrices (conv kernels flattened to
    ``[out, in·k·k]``) of every environment."""
    weights = [w for w in network.environment_weights().values() if w.ndim >= 3]
    return sum(torch.linalg.matrix_norm(w.flatten(2), ord=2).sum() for w in weights)


class Leads(EnvironmentFit):
    """LEADS: ``L = L_traj + λ (Σ_e ‖g_e‖² + μ Σ σ_max)`` (see the module docstring).

    Args:
        weight: λ (the reference code's ``lambda_inv``: LV 2e-4, GS 1e-3, NS 1e-5).
        spectral: μ (``factor_lip``: LV and GS 1e-2, NS 1e-4).
        norm: ``‖g_e‖²`` by ``l2_normalized`` (the reference's), ``l2`` or ``scaled``.
        weighted: see :class:`EnvironmentFit`.
    """

    name = "leads"

    def __init__(
        self,
        weight: float = 2e-4,
        spectral: float = 1e-2,
        norm: Norm = "l2_normalized",
        weighted: bool = True,
    ) -> None:
        super().__init__(weighted)
        if weight < 0 or spectral < 0:
            raise ValueError(f"weight and spectral must be >= 0, got {weight}, {spectral}")
        self.weight, self.spectral, self.norm = weight, spectral, norm

    def check_structure(self, field: nn.Module) -> None:
        _specific(field, Independent, self.name)

    def penalty(
        self, field: nn.Module, y: Tensor, weights: Tensor | None, tendency_std: Tensor
    ) -> Tensor:
        g = _specific(field, Independent, self.name)
        size = correction_sq(g(None, y), y, weights, tendency_std, self.norm)  # mean over E
        return self.weight * (g.n_environments * size + self.spectral * spectral_norms(g))


class Coda(EnvironmentFit):
    """CoDA: ``L = L_traj + λ_W Σ_rows ‖W_row‖₂ + λ_ξ ‖ξ‖²`` (see the module docstring).

    Args:
        hyper_weight: λ_W (the reference's ``-m``, 1e-6).
        code_weight: λ_ξ (the reference's ``-c``, 1e-4).
        weighted: see :class:`EnvironmentFit`.
    """

    name = "coda"

    def __init__(
        self, hyper_weight: float = 1e-6, code_weight: float = 1e-4, weighted: bool = True
    ) -> None:
        super().__init__(weighted)
        self.hyper_weight, self.code_weight = hyper_weight, code_weight

    def check_structure(self, field: nn.Module) -> None:
        _specific(field, Hyper, self.name)

    def penalty(
        self, field: nn.Module, y: Tensor, weights: Tensor | None, tendency_std: Tensor
    ) -> Tensor:
        h = _specific(field, Hyper, self.name)
        rows = h.hyper.norm(dim=1).sum()
        return self.hyper_weight * rows + self.code_weight * h.per_environment.codes.square().sum()


class OneForAll(EnvironmentFit):
    """One model for all environments: the baseline that ignores them."""

    name = "one_for_all"

    def check_structure(self, field: nn.Module) -> None:
        own = [n for n, _ in field.named_parameters() if is_environment_specific(n)]
        if own:
            raise ValueError(f"objective 'one_for_all' shares everything; the model has {own[:3]}")


class OnePerEnvironment(EnvironmentFit):
    """One model per environment, trained side by side: nothing shared between networks, and
    a prior, if any, with per-environment parameters."""

    name = "one_per_environment"

    def check_structure(self, field: nn.Module) -> None:
        if field.correction is not None:
            _specific(field, Independent, self.name)
            if field.correction.shared is not None:
                raise ValueError("objective 'one_per_environment' must have no `shared` network")
        if field.physics is not None and not isinstance(field.physics, PerEnvironment):
            raise ValueError(
                "objective 'one_per_environment' needs a prior wrapped in "
                "hybrid.environments.PerEnvironment"
            )
