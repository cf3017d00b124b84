"""A physics prior with some physical parameters per environment and the others shared."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.func import functional_call

from hybrid.environments.layout import by_environment
from hybrid.physics.parameters import stored_parameter


class PerEnvironment(nn.Module):
    """``dy/dt = F(y; θ_shared, θ_e)`` for the rows of environment ``e``: the prior ``F`` with the
    parameters ``names`` taking one value per environment, the others shared.

    State ``y``: ``[E*b, *S]``, environment-major. The per-environment values live in the
    submodule ``per_environment`` under the prior's stored names (``log_alpha``: ``[E]``), so
    :func:`~hybrid.physics.parameters.physical_parameters` reports them as
    ``per_environment.alpha``; the prior's own copies become buffers. Works for any prior whose
    per-environment parameters are its own (not a submodule's).

    Args:
        prior: the physics prior.
        n_environments: number of environments ``E``.
        names: physical names of the parameters that differ between environments.
    """

    def __init__(self, prior: nn.Module, n_environments: int, names: list[str]) -> None:
        super().__init__()
        if n_environments < 1:
            raise ValueError(f"n_environments must be positive, got {n_environments}")
        self.prior, self.n_environments = prior, n_environments
        self.per_environment = nn.Module()
        self.stored: list[str] = []
        for name in names:
            p = stored_parameter(prior, name)
            leaf = next(k for k, v in prior.named_parameters() if v is p)
            if "." in leaf:
                raise ValueError(f"{name!r} belongs to a submodule of the prior ({leaf})")
            del prior._parameters[leaf]
            prior.register_buffer(leaf, p.detach().clone())
            value = nn.Parameter(p.detach().expand(n_environments).clone())
            self.per_environment.register_parameter(leaf, value)
            self.stored.append(leaf)

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        ys = by_environment(y, self.n_environments)  # [E, b, *S]
        values = {k: getattr(self.per_environment, k) for k in self.stored}
        out = [
            functional_call(self.prior, {k: v[e] for k, v in values.items()}, (t, ys[e]))
            for e in range(self.n_environments)
        ]
        return torch.cat(out)

    def stable_dt(self) -> float:
        """The prior's stable step, the smallest over environments (``inf`` if it has none)."""
        if not hasattr(self.prior, "stable_dt"):
            return float("inf")
        values = {k: getattr(self.per_environment, k).detach() for k in self.stored}
        return min(
            _at(self.prior, {k: v[e] for k, v in values.items()})
            for e in range(self.n_environments)
        )


def _at(prior: nn.Module, values: dict[str, Tensor]) -> float:
    """``prior.stable_dt()`` with its buffers ``values`` put in for the call."""
    old = {k: getattr(prior, k) for k in values}
    try:
        for k, v in values.items():
            setattr(prior, k, v)
        return prior.stable_dt()
    finally:
        for k, v in old.items():
            setattr(prior, k, v)
