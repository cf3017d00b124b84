"""The split APHYNITY converges to, computed directly: a least-squares fit of the prior.

APHYNITY solves ``min ‖F_a‖²`` subject to the hybrid ``F_p(θ) + F_a`` fitting the trajectories.
With a network that can represent any ``F_a``, the constraint fixes ``F_p + F_a = F``, the true
tendency on the data's states ``y``, so the optimum is

    θ* = argmin_θ  Σ_y ‖F(y) − F_p(θ; y)‖²,        F_a* = F − F_p(θ*),

the prior fitted to the tendency by least squares. If ``θ*`` is not the true ``θ``, no amount of
training recovers it: the missing term ``F − F_p(θ)`` is not orthogonal (over these states) to the
prior's directions ``∂F_p/∂θ``, and APHYNITY moves θ by ``(JᵀJ)⁻¹ Jᵀ (F − F_p(θ))``.

Use it before training to check that a prior's parameters are identifiable on a dataset, with the
true tendency when the data are simulated or :func:`finite_difference_tendency` otherwise.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn
from torch.func import functional_call, jvp

from hybrid.physics.parameters import physical_parameters

MAX_PARAMETERS = 64  # one forward-mode pass per scalar parameter


def finite_difference_tendency(trajectories: Tensor, dt: float) -> tuple[Tensor, Tensor]:
    """Centred differences ``(y[t+1] − y[t−1]) / 2dt`` and the states they belong to.

    Args:
        trajectories: ``[B, T, *S]`` at a fixed step ``dt`` (T >= 3).
    Returns:
        ``(states, tendency)``, both ``[B, T − 2, *S]``; second-order accurate in ``dt``.
    """
    if trajectories.ndim < 3 or trajectories.shape[1] < 3:
        raise ValueError(f"need [B, T>=3, ...] trajectories, got {tuple(trajectories.shape)}")
    tendency = (trajectories[:, 2:] - trajectories[:, :-2]) / (2 * dt)
    return trajectories[:, 1:-1], tendency


def least_norm_parameters(
    prior: nn.Module,
    states: Tensor,
    tendency: Tensor,
    *,
    iterations: int = 20,
    rtol: float = 1e-10,
) -> dict[str, float]:
    """The prior's parameters at APHYNITY's optimum (see the module docstring), by Gauss-Newton.

    Gauss-Newton in physical units (``κ``, not the stored ``log κ``) is invariant to the parameters'
    scales (κ ~ 1e3 beside u ~ 0.1 is no harder than two unit parameters) and exact in one step for
    a prior linear in its parameters; steps are halved where they would not lower the residual or
    would make a positive parameter negative. ``prior`` is not modified; its current parameters
    are the starting point.

    Args:
        prior: ``f(t, y)`` with at most :data:`MAX_PARAMETERS` scalar trainable parameters.
        states: ``[N, *S]`` (any leading dims; flattened into the batch).
        tendency: ``dy/dt`` at ``states``, same shape.
        iterations: at most this many Gauss-Newton steps.
        rtol: stop when a step lowers the residual's mean square by less than this, relatively.
    Returns:
        ``{name: value}`` in physical units, as :func:`physical_parameters` names them.
    """
    if states.shape != tendency.shape:
        raise ValueError(
            f"states {tuple(states.shape)} and tendency {tuple(tendency.shape)} differ"
        )
    if not (torch.isfinite(states).all() and torch.isfinite(tendency).all()):
        raise ValueError("states and tendency must be finite (mask or drop missing values first)")
    model = copy.deepcopy(prior).double()
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    theta = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    n_scalars = sum(p.numel() for p in theta.values())
    if not 0 < n_scalars <= MAX_PARAMETERS:
        raise ValueError(f"the prior has {n_scalars} trainable scalars; need 1..{MAX_PARAMETERS}")
    y, f = states.double(), tendency.double()
    t0 = torch.zeros((), dtype=torch.float64)
    is_log = {n: n.rpartition(".")[2].startswith("log_") for n in names}

    def residual(values: dict[str, Tensor]) -> Tensor:
        """``F_p − F`` flattened, the prior's parameters given in physical units."""
        params = {n: v.log() if is_log[n] else v for n, v in values.items()}
        return (functional_call(model, params, (t0, y)) - f).flatten()

    values = {n: v.exp() if is_log[n] else v for n, v in theta.items()}
    for _ in range(iterations):
        r, jac = _residual_and_jacobian(residual, values, names)
        loss = float(r.pow(2).mean())
        step = torch.linalg.lstsq(jac, -r[:, None]).solution.flatten()
        values, new_loss = _backtrack(residual, values, names, step, loss, is_log)
        if loss - new_loss <= rtol * loss:
            break
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n in values:
                p.copy_(values[n].log() if is_log[n] else values[n])
    return {k: float(v) for k, v in physical_parameters(model).items() if v.numel() == 1}


def _backtrack(residual, values, names, step, loss, is_log, halvings: int = 40):
    """The Gauss-Newton step, halved until positive parameters stay positive and the loss drops."""
    for _ in range(halvings):
        trial = _unflatten_add(values, names, step)
        if all(bool((trial[n] > 0).all()) for n in names if is_log[n]):
            with torch.no_grad():
                trial_loss = float(residual(trial).pow(2).mean())
            if trial_loss <= loss:
                return trial, trial_loss
        step = step / 2
    return values, loss


def _residual_and_jacobian(residual, theta: dict[str, Tensor], names: list[str]):
    """``r(θ)`` ``[M]`` and ``∂r/∂θ`` ``[M, P]``, one forward-mode pass per scalar parameter."""
    columns, r = [], None
    for name in names:
        for k in range(theta[name].numel()):
            tangent = {n: torch.zeros_like(v) for n, v in theta.items()}
            tangent[name].view(-1)[k] = 1.0
            r, column = jvp(residual, (theta,), (tangent,))
            columns.append(column)
    return r.detach(), torch.stack(columns, dim=1).detach()


def _unflatten_add(theta: dict[str, Tensor], names: list[str], step: Tensor) -> dict[str, Tensor]:
    out, i = dict(theta), 0
    for name in names:
        n = theta[name].numel()
        out[name] = theta[name] + step[i : i + n].view_as(theta[name])
        i += n
    return out
