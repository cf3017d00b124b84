"""Refining an estimated flow, per forecast, on the frames already observed.

A flow estimate ``w`` (a network's, or none) is improved by fitting the transitions between the
last observed frames: the prior, carrying frame ``c_j`` with ``w`` held for one data step, should
give the next frame ``c_{j+1}``. Per window ``b``, with ``z = w / U`` (``U`` the typical speed)
and the last ``P`` transitions of the observed frames (nothing after the last one is read):

``f_b(z) = (1/(P s_b²)) Σ_j ⟨(Φ(c_j; U z) - c_{j+1})²⟩ + λ_s Δ² ⟨|∇z|²⟩ + λ_d Δ² ⟨(∇·z)²⟩``

``Φ`` the prior's one-step transport, ``⟨·⟩`` the area mean over active cells (summed over
channels), ``s_b² = (1/P) Σ_j ⟨(c_{j+1} - c_j)²⟩`` (persistence's error: the data term is about 1
with no flow), ``Δ`` the grid's smallest spacing, ``λ_s``, ``λ_d`` the smoothness and divergence
weights (the data say nothing where the tracer is flat, nor across its gradient: these fill in).

``f_b = ‖F_b(z)‖²`` with ``F_b`` the stacked residuals; each Gauss-Newton step solves
``JᵀJ δ = -Jᵀ F`` by a few conjugate-gradient iterations, matrix-free (``J v`` by the
double-backward trick, ``Jᵀ u`` by one backward), with every scalar of CG per window: a window's
refined flow does not depend on the others in its batch. A step that raises a window's ``f_b``
is not taken there.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from hybrid.physics import operators
from hybrid.physics.grid import Grid

Transport = Callable[[Tensor, tuple[Tensor, ...]], Tensor]


def _dot(a: Tensor, b: Tensor) -> Tensor:
    """Per-window inner product ``[B, ...] x [B, ...] -> [B, 1, ...]`` (broadcasts back)."""
    return (a * b).flatten(1).sum(1).view(-1, *([1] * (a.ndim - 1)))


def conjugate_gradient(apply: Callable[[Tensor], Tensor], b: Tensor, steps: int) -> Tensor:
    """At most ``steps`` CG iterations on ``A x = b`` from ``x = 0`` for each window
    independently (``A`` symmetric positive semi-definite, applied by ``apply``; ``b``:
    ``[B, ...]``). A window stops once ``‖r‖² <= ε ‖b‖²`` (``ε`` the dtype's epsilon): past
    that, round-off (or a null space of ``A``, such as the velocity across a tracer gradient
    that nothing constrains) would make its steps noise."""
    eps, tiny = torch.finfo(b.dtype).eps, torch.finfo(b.dtype).tiny
    x, r = torch.zeros_like(b), b.clone()
    p, rr = r.clone(), _dot(r, r)
    stop = eps * rr  # [B, 1, ...]
    for _ in range(steps):
        going = rr > stop
        if not going.any():
            break
        ap = apply(p)
        alpha = torch.where(going, rr / _dot(p, ap).clamp_min(tiny), 0.0)  # [B, 1, ...]
        x, r = x + alpha * p, r - alpha * ap
        rr_next = _dot(r, r)
        p = torch.where(going, r + rr_next / rr.clamp_min(tiny) * p, p)
        rr = torch.where(going, rr_next, rr)
    return x


def hindcast_residuals(
    transport: Transport, past: Tensor, z: Tensor, grid: Grid, *, speed: float, pairs: int,
    smoothness: float, divergence: float,
) -> Tensor:  # fmt: skip
    """``F_b(z)``, ``[B, M]``: the module docstring's residuals, whose squares sum to ``f_b``.

    Args:
        transport: ``(c [P B, C, *grid], w) -> c`` one data step later, the velocity ``w`` held
            (its components ``[P B, 1, *grid]``, m/s).
        past: ``[B, k, C, *grid]``, the observed frames, oldest first; the last ``pairs``
            transitions are fitted.
        z: ``[B, dims, *grid]``, the velocity in units of ``speed``.
    """
    b, dims = past.shape[0], grid.ndim
    root_w = grid.area_weights().sqrt()  # [*grid], 0 on land
    c0 = past[:, -pairs - 1 : -1].transpose(0, 1).flatten(0, 1)  # [P B, C, *grid]
    c1 = past[:, -pairs:].transpose(0, 1).flatten(0, 1)
    scale = ((c1 - c0).square() * grid.area_weights()).flatten(1).sum(1)  # [P B]
    scale = scale.view(pairs, b).mean(0).clamp_min(torch.finfo(past.dtype).tiny)  # [B]
    w = tuple(x.repeat(pairs, *[1] * (dims + 1)) * speed for x in z.split(1, 1))  # [P B, 1, …]
    miss = (transport(c0, w) - c1) * root_w  # [P B, C, *grid]
    miss = miss.view(pairs, b, -1).transpose(0, 1).flatten(1) / (pairs * scale[:, None]).sqrt()
    h = grid.min_spacing()
    parts = [miss]
    if smoothness:
        grads = [g for c in z.split(1, 1) for g in operators.gradient(c[:, 0], grid)]
        parts += [(smoothness**0.5 * h * g * root_w).flatten(1) for g in grads]
    if divergence:
        div = operators.divergence(*z[:, :, None].unbind(1), grid)[:, 0]  # [B, *grid]
        parts.append((divergence**0.5 * h * div * root_w).flatten(1))
    return torch.cat(parts, 1)


def gauss_newton_step(residual: Callable[[Tensor], Tensor], z: Tensor, cg_steps: int) -> Tensor:
    """One Gauss-Newton step on ``‖residual(z)‖²`` per window, ``z: [B, ...]``, kept only where it
    lowers that window's objective."""
    z = z.detach().requires_grad_(True)
    r = residual(z)  # [B, M]
    u = torch.zeros_like(r, requires_grad=True)
    jt_u = torch.autograd.grad(r, z, u, create_graph=True)[0]  # Jᵀ u, linear in u

    def normal(v: Tensor) -> Tensor:  # JᵀJ v
        jv = torch.autograd.grad(jt_u, u, v, retain_graph=True)[0]
        return torch.autograd.grad(r, z, jv, retain_graph=True)[0]

    gradient = torch.autograd.grad(r, z, r.detach(), retain_graph=True)[0]  # Jᵀ F
    z_new = (z + conjugate_gradient(normal, -gradient, cg_steps)).detach()
    with torch.no_grad():
        f_new = residual(z_new).square().sum(1)  # [B]
        better = torch.isfinite(f_new) & (f_new < r.detach().square().sum(1))
    return torch.where(better.view(-1, *([1] * (z.ndim - 1))), z_new, z.detach())


def refine_flow(
    transport: Transport, past: Tensor, flow: tuple[Tensor, ...], grid: Grid, *, speed: float,
    pairs: int = 1, steps: int = 3, cg_steps: int = 30, smoothness: float = 1e-2,
    divergence: float = 100.0,
) -> tuple[Tensor, ...]:  # fmt: skip
    """The flow that minimises the module docstring's ``f_b`` from ``flow`` (``steps``
    Gauss-Newton steps of ``cg_steps`` CG iterations); gradients are not kept. Runs with
    gradients on, also when called under ``torch.no_grad`` or ``torch.inference_mode``.

    Args:
        transport: see :func:`hindcast_residuals`.
        past: ``[B, k, C, *grid]``, oldest first; the last ``pairs`` (``<= k - 1``) transitions
            are fitted.
        flow: the start, ``(u[, v])`` in m/s, ``[B, 1, *grid]`` each.
        speed: the typical speed ``U`` (m/s), the unknown's unit.
    Returns:
        ``(u[, v])``, ``[B, 1, *grid]`` each (m/s), zero on land.

    Raises:
        ValueError: if ``pairs`` is not in ``1..k-1``.
    """
    if not 1 <= pairs < past.shape[1]:
        raise ValueError(
            f"refining on {pairs} transitions needs 1 to {past.shape[1] - 1} (frames - 1), "
            f"got {pairs}"
        )
    weights = {"smoothness": smoothness, "divergence": divergence}
    with torch.inference_mode(False), torch.enable_grad():  # also under Lightning's predict
        observed = past.clone()  # a normal tensor, even from inference mode

        def residual(z: Tensor) -> Tensor:
            return hindcast_residuals(
                transport, observed, z, grid, speed=speed, pairs=pairs, **weights
            )

        z = torch.cat(flow, 1).detach().clone() / speed  # [B, dims, *grid]
        for _ in range(steps):
            z = gauss_newton_step(residual, z, cg_steps)
        return tuple((z * speed * grid.active).split(1, 1))
