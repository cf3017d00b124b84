"""The split APHYNITY converges to, computed directly: a least-squares fit of the prior.

APHYNITY solves ``min ‖F_a‖²`` subject to the hybrid ``F_p(θ) + F_a`` fitting the trajectories.
With a network that can represent any ``F_a``, the constraint fixes ``F_p + F_a = F``, the true
tendency on the data's states ``y``, so the optimum is

    θ* = argmin_θ  Σ_y ‖F(y) − F_p(θ; y)‖²_W,        F_a* = F − F_p(θ*),

the prior fitted to the tendency by least squares, in the norm ``W`` of the configured objective
(``‖F_a‖²`` weighs each channel by ``1 / tendency_std²`` and counts only active cells: pass those
as ``weight`` and ``mask``). If ``θ*`` is not the true ``θ``, no amount of training recovers it:
the missing term ``F − F_p(θ)`` is not orthogonal (over these states) to the prior's directions
``∂F_p/∂θ``, and APHYNITY moves θ by ``(JᵀWJ)⁻¹ JᵀW (F − F_p(θ))``.

Use it before training to check that a prior's parameters are identifiable on a dataset, with the
true tendency when the data are simulated or :func:`finite_difference_tendency` otherwise.
:mod:`hybrid.warm_start` uses the same solver on short rollouts to start training there.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call

from hybrid.objectives import EPSILON, Norm
from hybrid.physics.parameters import scalar_parameters

MAX_PARAMETERS = 64  # two evaluations of the residual per scalar parameter


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


def residual_weight(
    shape: torch.Size, weight: Tensor | None = None, mask: Tensor | None = None
) -> Tensor:
    """``√(w m)`` broadcastable against states of ``shape`` ``[..., C, *grid]``: ``weight``
    ``[C]`` per channel, or a tensor of the states' rank broadcastable to them (a weight per state,
    as :func:`norm_weight` gives for ``l2_normalized``); ``mask`` ``[*grid]`` of cell weights (0 on
    land; area weights welcome). ``[..., C]`` ODE states take no mask."""
    n_grid = 0 if mask is None else mask.ndim
    out = torch.ones((), dtype=torch.float64)
    if weight is not None and weight.ndim == len(shape) and weight.ndim > 1:
        out = weight.double().cpu()
    elif weight is not None:
        if weight.numel() != shape[len(shape) - n_grid - 1]:
            raise ValueError(f"weight has {weight.numel()} channels, the states {tuple(shape)}")
        out = weight.double().cpu().view(-1, *[1] * n_grid)
    if mask is not None:
        out = out * mask.double().cpu()
    if not (out >= 0).all():
        raise ValueError("weights and mask must be non-negative")
    return out.sqrt()


def norm_weight(states: Tensor, norm: Norm, tendency_std: Tensor | None = None) -> Tensor:
    """The weight ``W`` that makes ``Σ W |F_a|²`` the objective's ``‖F_a‖²`` of ``norm``
    (:func:`hybrid.objectives.correction_sq`) at ``states`` ``[N, C, *grid]``, as a
    ``weight`` for :func:`least_norm_parameters`:

    * ``scaled``: ``1 / σ_c²`` per channel (``tendency_std`` ``[C]``), shape ``[C]``;
    * ``l2``: 1 per channel, ``[C]``;
    * ``l2_normalized``: ``1 / (|y| + ε)²`` per state and cell, ``[N, 1, *grid]``.
    """
    n_channels = states.shape[1]
    if norm == "scaled":
        if tendency_std is None:
            raise ValueError("the scaled norm needs the tendency's std per channel")
        return tendency_std.double().pow(-2)
    if norm == "l2":
        return torch.ones(n_channels, dtype=torch.float64)
    if norm == "l2_normalized":
        return (states.double().square().sum(1, keepdim=True).sqrt() + EPSILON).pow(-2)
    raise ValueError(f"norm must be one of {Norm.__args__}, got {norm!r}")


def least_norm_parameters(
    prior: nn.Module, states: Tensor, tendency: Tensor, **options
) -> dict[str, float]:
    """The prior's parameters at APHYNITY's optimum (see the module docstring), by Gauss-Newton:
    those of :func:`fit_tendency` (same arguments), ``{name: value}`` in physical units, as
    :func:`physical_parameters` names them."""
    return scalar_parameters(fit_tendency(prior, states, tendency, **options))


def fit_tendency(
    prior: nn.Module,
    states: Tensor,
    tendency: Tensor,
    *,
    weight: Tensor | None = None,
    mask: Tensor | None = None,
    iterations: int = 20,
    rtol: float = 1e-10,
) -> nn.Module:
    """A float64 copy of ``prior`` fitted to ``tendency`` by least squares (module docstring).

    Gauss-Newton in physical units (``κ``, not the stored ``log κ``) is invariant to the
    parameters' scales (κ ~ 1e3 beside u ~ 0.1 is no harder than two unit parameters) and exact in
    one step for a prior linear in its parameters; Levenberg-Marquardt damping shortens steps that
    would not lower the residual or would make a positive parameter negative.

    Args:
        prior: ``f(t, y)`` with at most :data:`MAX_PARAMETERS` scalar trainable parameters; its
            current parameters are the starting point; it is not modified.
        states: ``[N, *S]`` (any leading dims; flattened into the batch).
        tendency: ``dy/dt`` at ``states``, same shape.
        weight: the weights of the objective's norm (default all 1): ``[C]`` per channel, or
            per state (:func:`norm_weight` gives both from the objective's ``norm``).
        mask: ``[*grid]`` cell weights (0 on inactive cells).
        iterations: at most this many Gauss-Newton steps.
        rtol: stop when a step lowers the residual's mean square by less than this, relatively.
    """
    if states.shape != tendency.shape:
        raise ValueError(
            f"states {tuple(states.shape)} and tendency {tuple(tendency.shape)} differ"
        )
    if not (torch.isfinite(states).all() and torch.isfinite(tendency).all()):
        raise ValueError("states and tendency must be finite (mask or drop missing values first)")
    model = copy.deepcopy(prior).double()
    theta = trainable_parameters(model)
    is_log = {n: n.rpartition(".")[2].startswith("log_") for n in theta}
    y, f = states.double(), tendency.double()
    w = residual_weight(y.shape, weight, mask).to(y.device)
    t0 = torch.zeros((), dtype=torch.float64, device=y.device)

    def to_stored(x: Tensor) -> dict[str, Tensor]:
        values = unflatten(x, theta)
        return {n: v.log() if is_log[n] else v for n, v in values.items()}

    def residual(x: Tensor) -> Tensor:
        """``√W (F_p − F)`` flattened, the prior's parameters given in physical units."""
        return (w * (functional_call(model, to_stored(x), (t0, y)) - f)).flatten()

    def admissible(x: Tensor) -> bool:
        return all(bool((v > 0).all()) for n, v in unflatten(x, theta).items() if is_log[n])

    x0 = torch.cat([(v.exp() if is_log[n] else v).flatten() for n, v in theta.items()])
    x, _ = levenberg_marquardt(
        residual, x0, iterations=iterations, rtol=rtol, admissible=admissible
    )
    model.load_state_dict(to_stored(x), strict=False)  # the fitted parameters; the rest as it was
    return model


def trainable_parameters(model: nn.Module) -> dict[str, Tensor]:
    """``{name: detached copy}`` of the trainable parameters, checked against
    :data:`MAX_PARAMETERS`."""
    theta = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    n_scalars = sum(p.numel() for p in theta.values())
    if not 0 < n_scalars <= MAX_PARAMETERS:
        raise ValueError(f"the prior has {n_scalars} trainable scalars; need 1..{MAX_PARAMETERS}")
    return theta


def unflatten(x: Tensor, like: dict[str, Tensor]) -> dict[str, Tensor]:
    """Split the flat ``x`` ``[P]`` into tensors shaped like ``like``'s values."""
    out, i = {}, 0
    for name, v in like.items():
        out[name] = x[i : i + v.numel()].view_as(v)
        i += v.numel()
    return out


@torch.no_grad()  # no graph through a network's own parameters
def levenberg_marquardt(
    residual: Callable[[Tensor], Tensor],
    x0: Tensor,
    *,
    iterations: int = 20,
    rtol: float = 1e-10,
    admissible: Callable[[Tensor], bool] = lambda x: True,
) -> tuple[Tensor, float]:
    """``argmin_x ‖r(x)‖²`` from ``x0`` ``[P]`` by Levenberg-Marquardt (Marquardt's diagonal
    scaling, so invariant to the scale of each coordinate); the Jacobian by central differences.

    Starts undamped (a plain Gauss-Newton step, exact for a linear residual). Returns the
    point and the mean square of its residual; a step is taken only if it lowers it.
    """
    x, mu = x0.detach().double(), 0.0
    loss = float(residual(x).detach().pow(2).mean())
    for _ in range(iterations):
        jac, r = jacobian(residual, x)  # [M, P], [M]
        scale = jac.pow(2).sum(0).clamp_min(1e-300).sqrt()  # [P] Marquardt's diagonal
        new_x, new_loss = x, loss
        for _ in range(12):  # damping up to 1e7: beyond that no step lowers the loss
            damp = torch.diag(mu**0.5 * scale)
            a = torch.cat([jac, damp]) if mu > 0 else jac
            b = torch.cat([-r, r.new_zeros(len(x))]) if mu > 0 else -r
            step = torch.linalg.lstsq(a.cpu(), b.cpu()[:, None]).solution.flatten().to(x)
            trial = x + step
            if admissible(trial):
                trial_loss = float(residual(trial).detach().pow(2).mean())
                if trial_loss <= loss:
                    new_x, new_loss, mu = trial, trial_loss, mu / 10
                    break
            mu = max(mu * 10, 1e-4)
        done = new_x is x or loss - new_loss <= rtol * loss
        x, loss = new_x, new_loss
        if done:
            break
    return x, loss


def jacobian(residual: Callable[[Tensor], Tensor], x: Tensor) -> tuple[Tensor, Tensor]:
    """``∂r/∂x`` ``[M, P]`` by central differences, and ``r(x)`` ``[M]``; ``x`` in float64.

    ``(r(x + h·eᵢ) − r(x − h·eᵢ)) / 2h`` with ``h = ε^(1/3)·|xᵢ|`` (``ε^(1/3)`` where ``xᵢ = 0``),
    relative so that a parameter stored unscaled (a damping rate of 1e-7 s⁻¹) keeps its sign
    and its scale is irrelevant, as it was for forward mode. The truncation
    (``h²·r‴/6``) and the rounding (``ε·|r|/h``) are both near ``ε^(2/3) ≈ 4e-11`` relative, far
    below what a Gauss-Newton step needs (a step is kept only if the exact residual falls).
    ``2P + 1`` plain evaluations: PyTorch's forward mode (``torch.func.jvp``) costs 10-30x a
    plain evaluation on these fields, as its products with broadcast operands take a slow path
    (``python scripts/bench_jacobian.py``).
    """
    r = residual(x).detach()
    h = torch.finfo(torch.float64).eps ** (1 / 3) * torch.where(x == 0, 1.0, x.abs())
    columns = []
    for i in range(len(x)):
        step = torch.zeros_like(x)
        step[i] = h[i]
        columns.append((residual(x + step) - residual(x - step)).detach() / (2 * h[i]))
    return torch.stack(columns, 1), r
