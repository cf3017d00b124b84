"""The nonlinearities the correction networks accept, by name (for YAML configs)."""

from __future__ import annotations

from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
}


def activation(name: str) -> nn.Module:
    """A fresh ``nn.Module`` for ``name`` (one of :data:`ACTIVATIONS`).

    ReLU can die: a large early step (APHYNITY's network absorbs the prior's error while the
    physical parameters are still wrong) can leave every unit negative on all data, and the
    correction is then exactly zero for good. GELU and SiLU keep a gradient everywhere, which is
    why the convolutional networks default to GELU.

    Raises:
        ValueError: for an unknown name.
    """
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose from {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()
