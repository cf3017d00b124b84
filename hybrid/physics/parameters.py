"""Physical parameters stored for the optimiser, read back by name in physical units.

Adam moves every stored number by about its learning rate per step, whatever the number's size, so
a Coriolis parameter of 1e-4 s⁻¹ stored as itself jumps by hundreds of times its value at lr 1e-2.
Priors therefore store

* a positive parameter as its log (``log_<name>``, read as :class:`Positive`): steps are relative;
* a parameter of either sign, or zero, divided by a fixed typical size (``scaled_<name>`` times
  the buffer ``scale_<name>``, read as :class:`Scaled`): steps are ``lr × scale``.
"""

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


def register_scaled(module: nn.Module, name: str, value: float, typical: float) -> None:
    """Store ``name`` on ``module`` as the parameter ``scaled_<name> = value / scale`` and the
    buffer ``scale_<name>``, with ``scale = |value|`` (``typical`` when ``value`` is 0).

    Raises:
        ValueError: if ``typical`` is not positive.
    """
    if not typical > 0:
        raise ValueError(f"the typical size of {name} must be positive, got {typical}")
    scale = abs(float(value)) or float(typical)
    module.register_buffer(f"scale_{name}", torch.tensor(scale))
    module.register_parameter(f"scaled_{name}", nn.Parameter(torch.tensor(float(value) / scale)))


class Scaled:
    """``scaled_<name> * scale_<name>`` as a read-only attribute (see :func:`register_scaled`)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.parameter, self.scale = f"scaled_{name}", f"scale_{name}"

    def __get__(self, obj: nn.Module | None, objtype: type | None = None) -> Tensor:
        return self if obj is None else getattr(obj, self.parameter) * getattr(obj, self.scale)


def physical_parameters(module: nn.Module) -> dict[str, Tensor]:
    """Every parameter of ``module`` in physical units, keyed by its dotted name.

    A parameter named ``log_<symbol>`` is reported as ``<symbol>`` = ``exp(value)``, one named
    ``scaled_<symbol>`` as ``<symbol>`` = ``value * scale_<symbol>``; others as they are. Works for
    any prior that follows these conventions, including users' own.
    """
    out = {}
    for name, p in module.named_parameters():
        head, _, leaf = name.rpartition(".")
        prefix = f"{head}." if head else ""
        if leaf.startswith("log_"):
            name, p = prefix + leaf[4:], p.exp()
        elif leaf.startswith("scaled_"):
            symbol = leaf[len("scaled_") :]
            name, p = prefix + symbol, p * module.get_buffer(f"{prefix}scale_{symbol}")
        out[name] = p.detach()
    return out


def scalar_parameters(module: nn.Module) -> dict[str, float]:
    """The scalar ones of :func:`physical_parameters`, as floats (what is logged and reported)."""
    return {k: float(v) for k, v in physical_parameters(module).items() if v.numel() == 1}


def stored_parameter(module: nn.Module, name: str) -> nn.Parameter:
    """The parameter behind the physical name ``name`` (as :func:`physical_parameters` spells it:
    ``kappa`` is stored as ``log_kappa``, ``coriolis.f0`` as ``coriolis.scaled_f0``).

    Raises:
        ValueError: naming the physical parameters ``module`` has, if ``name`` is not one.
    """
    head, _, leaf = name.rpartition(".")
    prefix = f"{head}." if head else ""
    stored = dict(module.named_parameters())
    for candidate in (name, f"{prefix}log_{leaf}", f"{prefix}scaled_{leaf}"):
        if candidate in stored:
            return stored[candidate]
    known = ", ".join(physical_parameters(module))
    raise ValueError(f"the prior has no parameter {name!r}; it has: {known}")
