"""Estimated flows (de Bézenac et al., ICLR 2018): the regularisers on a velocity field, its scores
against a true one, and how a window's past frames reach the parts that read them.

Velocities are ``(u, v)`` eastward and northward in m/s at cell centres, ``[..., ny, nx]``, on a
:class:`~hybrid.physics.grid.Grid`; on a 1-D grid ``u`` alone, ``[..., nx]``: the regularisers
take the components before the grid as the operators do (``u, grid`` or ``u, v, grid``). Means
over the grid are area-weighted over active cells.

A part that reads the past (:class:`ReadsPast`, e.g. :class:`hybrid.models.flow.FlowEstimator`)
is given the first ``frames`` frames of each window by :func:`observe_past` before the rollout;
the forecast then starts from the last observed frame. A part with a ``refine`` method is then
handed the prior's one-step transport (:func:`prior_step`) to refine its estimate on those
frames. :func:`flow_penalty` sums the regularisers such parts computed on their last estimate.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from hybrid.dynamics import rollout
from hybrid.flow_refinement import Transport
from hybrid.physics import operators
from hybrid.physics.grid import Grid


def _grid_axes(grid: Grid) -> tuple[int, ...]:
    return tuple(range(-grid.ndim, 0))


def _grid_mean(x: Tensor, grid: Grid) -> Tensor:
    """Area-weighted mean over the grid axes and plain mean over the others: a scalar."""
    return (x * grid.area_weights()).sum(_grid_axes(grid)).mean()


def divergence_sq(*w_and_grid: Tensor | Grid) -> Tensor:
    """Mean ``(∇·w)²`` (s⁻²), the divergence from face-averaged normal velocities;
    ``u[, v], grid``."""
    grid = w_and_grid[-1]
    return _grid_mean(operators.divergence(*w_and_grid).square(), grid)


def smoothness_sq(*w_and_grid: Tensor | Grid) -> Tensor:
    """Mean ``|∇u|² + |∇v|²`` (s⁻²), centred differences (one-sided at walls and land);
    ``u[, v], grid``."""
    *w, grid = w_and_grid
    return _grid_mean(sum(g.square() for f in w for g in operators.gradient(f, grid)), grid)


def magnitude_sq(*w_and_grid: Tensor | Grid) -> Tensor:
    """Mean ``u² + v²`` (m² s⁻²); ``u[, v], grid``."""
    *w, grid = w_and_grid
    return _grid_mean(sum(c.square() for c in w), grid)


def flow_regularisation(
    *w_and_grid: Tensor | Grid,
    speed: float,
    divergence: float = 0.0,
    smoothness: float = 0.0,
    magnitude: float = 0.0,
) -> Tensor:
    """The paper's penalty ``λ_div ‖∇·w‖² + λ_grad ‖∇w‖² + λ_magn ‖w‖²`` of ``w = (u[, v])``
    (given as ``u[, v], grid``), each term made dimensionless with the typical ``speed`` (m/s)
    and the grid's smallest spacing ``Δ`` (m): ``(Δ/U)² ‖∇·w‖²``, ``(Δ/U)² ‖∇w‖²``, ``‖w‖²/U²``
    (so the weights read the same on any grid)."""
    grid = w_and_grid[-1]
    scale = (grid.min_spacing() / speed) ** 2
    terms = w_and_grid[0].new_zeros(())
    if divergence:
        terms = terms + divergence * scale * divergence_sq(*w_and_grid)
    if smoothness:
        terms = terms + smoothness * scale * smoothness_sq(*w_and_grid)
    if magnitude:
        terms = terms + magnitude * magnitude_sq(*w_and_grid) / speed**2
    return terms


def normal_flow(frames: Tensor, grid: Grid, damping: float = 0.1) -> Tensor:
    """The velocity each pair of consecutive frames shows along the tracer gradient (the
    optical-flow constraint ``δc + w·∇c̄ = 0``, Horn & Schunck 1981), in grid cells per frame:

    ``w_n = -δc ∇c̄ Δ / (|∇c̄ Δ|² + η² ⟨|∇c̄ Δ|²⟩)``, ``δc = c_{j+1} - c_j``,
    ``c̄ = (c_j + c_{j+1})/2``, ``Δ`` the grid's smallest spacing, ``⟨·⟩`` the area mean over
    active cells of each pair and channel, ``η`` = ``damping`` (where the gradient is weak the
    frames tell no velocity, and ``w_n`` fades to 0). A pattern moving at ``s`` cells per frame
    gives ``s`` along its gradient (less ``η²``'s damping) to second order in ``s`` and the
    grid spacing; invariant to the tracer's units and offset.

    Args:
        frames: ``[B, k, C, *grid]`` (oldest first, ``k >= 2``).
    Returns:
        ``[B, k-1, C, dims, *grid]``: components eastward (northward second), land 0.
    """
    prev, nxt = frames[:, :-1], frames[:, 1:]  # [B, k-1, C, *grid]
    spacing = grid.min_spacing()
    g = torch.stack([d * spacing for d in operators.gradient(0.5 * (prev + nxt), grid)], 3)
    sq = g.square().sum(3, keepdim=True)  # [B, k-1, C, 1, *grid]
    mean_sq = (sq * grid.area_weights()).sum(_grid_axes(grid), keepdim=True)
    floor = (damping**2 * mean_sq).clamp_min(torch.finfo(sq.dtype).tiny)
    return -(nxt - prev)[:, :, :, None] * g / (sq + floor) * grid.active


def streamfunction_flow(psi: Tensor, grid: Grid) -> tuple[Tensor, Tensor]:
    """The incompressible velocity of a streamfunction: ``u = -∂ψ/∂y``, ``v = ∂ψ/∂x`` on a box,
    ``u = -(1/R) ∂ψ/∂φ``, ``v = (1/(R cos φ)) ∂ψ/∂λ`` on a lat-lon grid, at cell centres.

    ``v`` is the centred ``∂ψ/∂x`` of :func:`operators.gradient` (one-sided at closed faces);
    with ``L_n`` the open length of the face north of row ``j``, ``Δx`` the zonal centre spacing
    and ``q = ψ / (2 Δx)``: ``P_j = L_n (q_j + q_{j+1})``, ``u_j = -(P_j - P_{j-1}) / L_e``
    (``P_j - P_{j-1} ≈ L_n Δy ∂(ψ/Δx)/∂y``; on a box, ``u`` is the centred ``-∂ψ/∂y``). Then
    the prior's divergence (:func:`operators.divergence`, face-averaged normal velocities) is
    zero to round-off wherever every zonal face is open: a box or lat-lon band periodic in
    ``x`` without land, walls north and south allowed (a closed face has ``L_n = 0``). Next to
    land or an east/west wall it is zero only to the stencil's order. Land cells get zero
    velocity. Second-order accurate, first order in the rows next to a north or south wall.

    Args:
        psi: ``[..., ny, nx]`` streamfunction (m²/s).
        grid: a 2-D grid.
    Returns:
        ``(u, v)``, eastward and northward (m/s), each ``[..., ny, nx]``.
    Raises:
        ValueError: on a 1-D grid (a flow along a line has no streamfunction).
    """
    if grid.ndim != 2:
        raise ValueError(
            f"a streamfunction needs a 2-D grid, got a {grid.ndim}-D grid of shape {grid.shape}"
        )
    v = operators.gradient(psi, grid)[0]
    q = psi / (2 * grid.dx_east)  # ψ / (2 Δx), Δx = R cos φ Δλ on the sphere
    p = grid.faces(1)[2] * (q + operators.north(q))  # [..., ny, nx] at north faces, 0 at walls
    u = -(p - torch.roll(p, 1, dims=-2)) / grid.len_east * grid.active
    return u, v


def gradient_mask(c: Tensor, grid: Grid, threshold: float = 0.1) -> Tensor:
    """Cells where the tracer gradient is not negligible: ``|∇c| > threshold · RMS|∇c|`` (RMS
    over each field's active cells). ``c``: ``[..., *grid]`` -> bool of the same shape.

    Only there does a tracer tell its velocity (along its gradient: the aperture problem)."""
    g = sum(d.square() for d in operators.gradient(c, grid)) * grid.active
    rms = ((g * grid.area_weights()).sum(_grid_axes(grid), keepdim=True)).sqrt()
    return (g.sqrt() > threshold * rms) & (grid.active > 0.5)


def flow_scores(
    u: Tensor, v: Tensor, u_true: Tensor, v_true: Tensor, grid: Grid, mask: Tensor | None = None
) -> dict[str, float]:
    """Vector correlation and RMSE of an estimated velocity against the truth.

    ``correlation = Σ w (ŵ - ŵ̄)·(w - w̄) / sqrt(Σ w |ŵ - ŵ̄|² Σ w |w - w̄|²)``, the sums over every
    field and the selected cells (``mask``, default all active) with area weights, ``ŵ̄``, ``w̄``
    the weighted means of each component over those cells of each field (so a uniform drift does
    not inflate it). ``rmse = sqrt(Σ w |ŵ - w|² / Σ w)`` (m/s). Fields ``[..., ny, nx]``.

    Raises:
        ValueError: shapes that differ, or a mask that selects no cell.
    """
    shapes = {tuple(x.shape) for x in (u, v, u_true, v_true)}
    if len(shapes) != 1:
        raise ValueError(f"u, v, u_true, v_true must have one shape, got {sorted(shapes)}")
    w = grid.area * grid.active
    w = w * (torch.ones_like(u) if mask is None else mask.to(u))
    if not float(w.sum()) > 0:
        raise ValueError("the mask selects no active cell to score the flow on")

    def anomaly(f: Tensor) -> Tensor:
        mean = (f * w).sum((-2, -1), keepdim=True) / w.sum((-2, -1), keepdim=True).clamp_min(1e-30)
        return f - mean

    a = torch.stack((anomaly(u), anomaly(v)))  # [2, ..., ny, nx]
    b = torch.stack((anomaly(u_true), anomaly(v_true)))
    corr = (w * a * b).sum() / ((w * a.square()).sum() * (w * b.square()).sum()).sqrt()
    err = (w * ((u - u_true).square() + (v - v_true).square())).sum() / w.sum()
    return {"correlation": float(corr), "rmse": float(err.sqrt())}


@runtime_checkable
class ReadsPast(Protocol):
    """A part that reads the last ``frames`` frames of the window before each rollout, and may
    hold a penalty on what it estimated from them."""

    frames: int

    def observe(self, past: Tensor, grid: Grid | None) -> None: ...

    def penalty(self) -> Tensor: ...


def observe_past(
    field: nn.Module, grid: Grid | None, t: Tensor, y: Tensor
) -> tuple[Tensor, Tensor]:
    """Give each part of ``field`` that reads the past its frames of the windows, and return
    the windows from the last observed frame on, times from 0 there.

    With ``k`` the most frames any part reads, ``t``: ``[B, W]`` -> ``[B, W-k+1]`` and
    ``y``: ``[B, W, C, *grid]`` -> ``[B, W-k+1, C, *grid]``; frames ``0..k-1`` are observed.
    Unchanged when no part reads the past (``k = 1``).

    Raises:
        ValueError: if the windows are not longer than ``k`` frames.
    """
    readers = [m for m in field.modules() if isinstance(m, ReadsPast)]
    if not readers:
        return t, y
    k = max(m.frames for m in readers)
    if y.shape[1] <= k:
        raise ValueError(
            f"windows of {y.shape[1]} frames leave nothing to forecast after the {k} frames the "
            f"flow estimator reads: use windows of at least {k + 1} frames"
        )
    for m in readers:
        m.observe(y[:, k - m.frames : k], grid)  # [B, frames, C, *grid]
        if hasattr(m, "refine"):
            m.refine(prior_step(field, m, t[0, :2] - t[0, :1]), grid)
    return t[:, k - 1 :] - t[:, k - 1 : k], y[:, k - 1 :]


def prior_step(field: nn.Module, reader: nn.Module, dt: Tensor) -> Transport:
    """``(c, w) -> c`` one data step later (``dt = [0, Δt]``), carried by ``field``'s prior
    (``field.physics``, or ``field`` itself without one) with the flow ``w`` held by ``reader``
    (its ``hold``): rk4 at the data step, sub-stepped where the prior's stable step is shorter.
    ``c``: ``[N, C, *grid]``; ``w``: ``(u[, v])``, ``[N, 1, *grid]`` each (m/s)."""
    prior = getattr(field, "physics", None)
    prior = field if prior is None else prior

    def step(c: Tensor, w: tuple[Tensor, ...]) -> Tensor:
        reader.hold(w)
        return rollout(prior, c, dt.clone(), method="rk4")[:, -1]  # not an inference tensor

    return step


def flow_penalty(field: nn.Module) -> Tensor | float:
    """The sum of the penalties of the parts that read the past (0 when there are none)."""
    return sum((m.penalty() for m in field.modules() if isinstance(m, ReadsPast)), 0.0)
