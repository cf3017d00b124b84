"""The hybrid vector field and its integration over torchdiffeq.

Axis convention, stated once: **batch first at every public boundary**. ``rollout`` takes
``y0: [B, *S]`` and ``t: [T]`` and returns ``[B, T, *S]`` (torchdiffeq's time-first output is moved
exactly here). For fields ``S = (C, ny, nx)``.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint
from torchdiffeq import odeint, odeint_adjoint
from torchdiffeq._impl.odeint import SOLVERS
from torchdiffeq._impl.solvers import FixedGridODESolver

from hybrid.physics.parameters import scalar_parameters


def is_fixed_step(method: str) -> bool:
    """Whether torchdiffeq's ``method`` steps on a fixed grid (takes ``options.step_size``);
    unknown names are left to torchdiffeq, which lists the valid ones. Its solver table lives in
    private modules, but reading it keeps up with torchdiffeq where a copied list drifted."""
    solver = SOLVERS.get(method)
    return isinstance(solver, type) and issubclass(solver, FixedGridODESolver)


@runtime_checkable
class HasStableStep(Protocol):
    """A vector field that knows the largest stable explicit time step (CFL / diffusion limit)."""

    def stable_dt(self) -> float: ...


class HybridField(nn.Module):
    """``dy/dt = physics(t, y) + correction(t, y)``; either part may be None.

    Both parts obey the torchdiffeq contract ``f(t, y) -> dy/dt`` shaped like ``y``.
    """

    def __init__(self, physics: nn.Module | None = None, correction: nn.Module | None = None):
        super().__init__()
        if physics is None and correction is None:
            raise ValueError("HybridField needs at least one of `physics` or `correction`.")
        self.physics, self.correction = physics, correction

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        terms = [f(t, y) for f in (self.physics, self.correction) if f is not None]
        return sum(terms[1:], terms[0])

    def stable_dt(self) -> float:
        """The physics prior's stable step, or ``inf`` when it does not state one."""
        return self.physics.stable_dt() if isinstance(self.physics, HasStableStep) else math.inf


class Checkpointed(nn.Module):
    """``module(t, y)`` that keeps only its input for the backward pass and recomputes the rest.

    Activation checkpointing of one vector field (usually the correction network): a rollout
    then stores one state per evaluation instead of every hidden layer, for the price of one more
    forward pass of ``module`` in the backward. The gradients are those of direct backprop.

    ``chunk`` also splits the leading axis of ``y`` into pieces of at most ``chunk`` rows, each
    checkpointed alone, so that the correction norm along ``[B, T, ...]`` true states recomputes
    one piece at a time. That is exact only for a module that maps each row on its own: not for a
    batch-statistics norm (``ConvNet(batch_norm=True)``), whose statistics would then be per piece.

    Args:
        module: ``f(t, y)``.
        chunk: largest number of leading rows recomputed at once; default all.
    """

    def __init__(self, module: nn.Module, chunk: int | None = None) -> None:
        super().__init__()
        if chunk is not None and chunk < 1:
            raise ValueError(f"chunk must be positive, got {chunk}")
        self.module, self.chunk = module, chunk

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        if not torch.is_grad_enabled():
            return self.module(t, y)
        pieces = [y] if self.chunk is None else y.split(self.chunk)
        out = [checkpoint(self.module, t, piece, use_reentrant=False) for piece in pieces]
        return out[0] if len(out) == 1 else torch.cat(out)


def substep_size(dt_data: float, dt_stable: float, step_size: float | None) -> float:
    """A fixed step that divides ``dt_data`` and does not exceed ``dt_stable`` (nor ``step_size``).

    Warns when a requested ``step_size`` is beyond the stable step and shortens it.
    """
    wanted = dt_data if step_size is None else step_size
    if step_size is not None and step_size > dt_stable:
        warnings.warn(
            f"step_size={step_size:.4g} exceeds the prior's stable step {dt_stable:.4g}; "
            "sub-stepping at the stable step instead",
            stacklevel=3,
        )
    limit = min(wanted, dt_stable)
    return dt_data / math.ceil(dt_data / limit * (1 - 1e-12))


class TooManySubstepsError(ValueError):
    """The prior's stable step needs more sub-steps per data step than allowed."""


def substep_count(dt_data: float, step: float) -> int:
    """Sub-steps of size ``step`` in one data step ``dt_data`` (``step`` divides it)."""
    return round(dt_data / step)


def check_substeps(
    field: nn.Module, dt_data: float, dt_stable: float, step: float, max_substeps: int
) -> int:
    """The number of sub-steps of size ``step`` per data step, ``n = dt_data / step``.

    Raises:
        TooManySubstepsError: when ``n > max_substeps``, naming the stable step, the data step
            and the prior's parameters (the stable step shrinks as ``Δx² / κ``: a diffusivity
            run away in training makes every step cost ``n`` field evaluations).
    """
    n = substep_count(dt_data, step)
    if n <= max_substeps:
        return n
    physics = field.physics if isinstance(field, HybridField) else field
    values = scalar_parameters(physics)
    named = ", ".join(f"{k}={v:.4g}" for k, v in values.items()) or "no scalar parameters"
    raise TooManySubstepsError(
        f"the prior's stable step {dt_stable:.4g} s needs {n} sub-steps per data step of "
        f"{dt_data:.4g} s, more than max_substeps={max_substeps} (prior: {named}); bound the "
        "prior's parameters, or raise model.max_substeps (the memory of the backward then grows "
        "only by one state per evaluation: see checkpoint_substeps)"
    )


def rollout(
    field: nn.Module,
    y0: Tensor,
    t: Tensor,
    *,
    method: str = "dopri5",
    rtol: float = 1e-6,
    atol: float = 1e-8,
    step_size: float | None = None,
    adjoint: bool = False,
    options: dict[str, Any] | None = None,
    max_substeps: int | None = None,
    checkpoint_substeps: int | None = None,
) -> Tensor:
    """Integrate ``dy/dt = field(t, y)`` from ``y0`` at ``t[0]``.

    For fixed-step methods the step is the largest one that divides the (evenly spaced) output step
    ``t[1] - t[0]`` without exceeding ``step_size`` nor the field's ``stable_dt()``: a data step
    beyond the stable step is sub-stepped into ``n`` steps. Adaptive methods (``dopri5``, ...) use
    ``rtol``/``atol``.

    Memory: direct backprop keeps every evaluation's activations, ``4 n (T - 1)`` of them for
    rk4. With ``n > checkpoint_substeps`` each evaluation of ``field`` is recomputed in the
    backward (:class:`Checkpointed`), so only its input state is kept: the same gradients for
    one more forward pass per evaluation.

    Args:
        field: ``f(t, y)``; an ``nn.Module`` (its parameters are needed by the adjoint).
        y0: ``[B, *S]`` initial states.
        t: ``[T]`` increasing output times, ``t[0]`` the time of ``y0``.
        method: any torchdiffeq method name (torchdiffeq validates it).
        step_size: largest fixed step wanted; default the output step.
        adjoint: back-propagate with the adjoint method (memory O(1) in T).
        options: extra torchdiffeq solver options.
        max_substeps: most sub-steps per data step (fixed-step methods); default no bound.
        checkpoint_substeps: checkpoint the field's evaluations when the sub-steps per data step
            exceed this (and gradients are being recorded, without the adjoint); default never.
    Returns:
        ``[B, T, *S]``.

    Raises:
        TooManySubstepsError: more than ``max_substeps`` sub-steps per data step.
    """
    options = dict(options or {})
    if is_fixed_step(method) and t.numel() > 1 and "step_size" not in options:
        dt_data = float(t[1] - t[0])
        dt_stable = field.stable_dt() if isinstance(field, HasStableStep) else math.inf
        options["step_size"] = substep_size(dt_data, dt_stable, step_size)
        n = substep_count(dt_data, options["step_size"])
        if max_substeps is not None:
            check_substeps(field, dt_data, dt_stable, options["step_size"], max_substeps)
        if (
            checkpoint_substeps is not None
            and n > checkpoint_substeps
            and torch.is_grad_enabled()
            and not adjoint
        ):
            field = Checkpointed(field)
    solve = odeint_adjoint if adjoint else odeint
    kwargs = {"adjoint_params": tuple(field.parameters())} if adjoint else {}
    y = solve(field, y0, t, method=method, rtol=rtol, atol=atol, options=options, **kwargs)
    return y.movedim(0, 1)  # [T, B, *S] -> [B, T, *S]
