"""The environment-major batch layout: rows ``e*b .. e*b+b-1`` of ``[E*b, ...]`` are
environment ``e``.

A parameter or module is **environment-specific** when ``per_environment`` is one of the parts of
its dotted name (:func:`is_environment_specific`); everything else is shared, which is what
adaptation to a new environment freezes.
"""

from __future__ import annotations

from torch import Tensor

MARK = "per_environment"


def by_environment(y: Tensor, n_environments: int) -> Tensor:
    """``[E*b, ...]`` -> ``[E, b, ...]``.

    Raises:
        ValueError: if the leading size is not a multiple of ``n_environments``.
    """
    if y.shape[0] % n_environments:
        raise ValueError(
            f"a batch of {y.shape[0]} rows is not {n_environments} environments of equal size: "
            "batches must be environment-major (hybrid.data.environments)"
        )
    return y.unflatten(0, (n_environments, -1))


def is_environment_specific(name: str) -> bool:
    """Whether the parameter or buffer ``name`` (dotted) belongs to one environment's part."""
    return MARK in name.split(".")
