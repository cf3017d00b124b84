"""Physical parameters: positive ones stored as their log, read back by name in physical units."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def log_parameter(value: float, name: str) -> nn.Parameter:
    """``nn.Parameter(log(value))`` for a parameter that must stay positive.

    Raises:
        ValueError: if ``value`` is not positive.
    """
    if not value > 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return nn.Parameter(torch.tensor(math.log(value)))


class Positive:
    """``exp(log_<name>)`` as a read-only attribute, for a parameter stored as its log.

    In a prior's class body, ``kappa = Positive()`` exposes ``self.log_kappa.exp()`` as
    ``self.kappa`` (a property written once instead of once per parameter).
    """

    def __set_name__(self, owner: type, name: str) -> None:
        self.log_name = f"log_{name}"

    def __get__(self, obj: nn.Module | None, objtype: type | None = None) -> Tensor:
        return self if obj is None else getattr(obj, self.log_name).exp()


def physical_parameters(module: nn.Module) -> dict[str, Tensor]:
    """Every parameter of ``module`` in physical units, keyed by its dotted name.

    A parameter named ``log_<symbol>`` is reported as ``<symbol>`` = ``exp(value)``; others as they
    are. Works for any prior that follows the ``log_`` convention, including users' own.
    """
    out = {}
    for name, p in module.named_parameters():
        head, _, leaf = name.rpartition(".")
        if leaf.startswith("log_"):
            name, p = (f"{head}." if head else "") + leaf[4:], p.exp()
        out[name] = p.detach()
    return out
