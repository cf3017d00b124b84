"""Finite-volume stencils on a :class:`~hybrid.physics.grid.Grid`, second order on regular grids.

Fields are ``[..., ny, nx]``; vectors are passed as their eastward and northward components
``(u, v)``. Every operator is written in flux form over the faces of the grid: the flux through the
face east of cell ``(j, i)`` is ``F_e[j, i]``, and the net outflow of the cell is
``F_e[j, i] - F_e[j, i-1] + F_n[j, i] - F_n[j-1, i]``. Closed faces (walls, masked cells) carry no
flux, so the area-weighted sum of a divergence, a Laplacian or an advective tendency is zero to
round-off on every geometry: mass is conserved exactly.
"""

from __future__ import annotations

import torch
from torch import Tensor

from hybrid.physics.grid import Grid


def east(f: Tensor) -> Tensor:
    """The +x neighbour ``f[..., j, i+1]`` (periodic wrap; walls are closed faces)."""
    return torch.roll(f, -1, dims=-1)


def north(f: Tensor) -> Tensor:
    """The +y neighbour ``f[..., j+1, i]``."""
    return torch.roll(f, -1, dims=-2)


def net_outflow(flux_east: Tensor, flux_north: Tensor, grid: Grid) -> Tensor:
    """Divergence of face fluxes: ``(F_e - F_w + F_n - F_s) / area``, zero at inactive cells."""
    out = flux_east - torch.roll(flux_east, 1, dims=-1) + flux_north - torch.roll(flux_north, 1, -2)
    return out * grid.inv_area


def diffusive_flux(f: Tensor, grid: Grid) -> tuple[Tensor, Tensor]:
    """Face fluxes of ``∇f`` (times face length): ``w · (f_neighbour - f)``, zero through walls."""
    return grid.w_east * (east(f) - f), grid.w_north * (north(f) - f)


def laplacian(f: Tensor, grid: Grid) -> Tensor:
    """``∇²f = ∇·∇f`` with no-flux walls; the 5-point stencil on a box.

    Args:
        f: ``[..., ny, nx]``.
    Returns:
        ``[..., ny, nx]``.
    """
    return net_outflow(*diffusive_flux(f, grid), grid)


def gradient(f: Tensor, grid: Grid) -> tuple[Tensor, Tensor]:
    """``(∂f/∂x, ∂f/∂y)`` eastward and northward at cell centres (centred differences).

    The cell value is the mean of its two face gradients; the gradient through a closed face is
    zero (no-flux), which makes the stencil one-sided next to walls and land.
    """
    gx = grid.open_east * (east(f) - f) / grid.dx_east  # at east faces
    gy = grid.open_north * (north(f) - f) / grid.dy_north  # at north faces
    fx = 0.5 * (gx + torch.roll(gx, 1, dims=-1))
    fy = 0.5 * (gy + torch.roll(gy, 1, dims=-2))
    return fx * grid.active, fy * grid.active


def face_velocity(u: Tensor, v: Tensor, grid: Grid) -> tuple[Tensor, Tensor]:
    """Volume fluxes through east and north faces (m³/s per m of depth): ``u_f · len · open``.

    ``u``, ``v`` broadcast to the grid, so a uniform velocity may be given as 0-d tensors (then
    no averaging is needed: one multiply per face).
    """
    if u.ndim == 0 and v.ndim == 0:
        return u * grid.len_open_east, v * grid.len_open_north
    u = torch.broadcast_to(u, torch.broadcast_shapes(u.shape, grid.area.shape))
    v = torch.broadcast_to(v, torch.broadcast_shapes(v.shape, grid.area.shape))
    ue = 0.5 * (u + east(u)) * grid.len_east * grid.open_east
    vn = 0.5 * (v + north(v)) * grid.len_north * grid.open_north
    return ue, vn


def divergence(u: Tensor, v: Tensor, grid: Grid) -> Tensor:
    """``∇·(u, v)`` of a cell-centred vector, from face-averaged normal components."""
    return net_outflow(*face_velocity(u, v, grid), grid)


def advective_flux_centred(c: Tensor, u: Tensor, v: Tensor, grid: Grid) -> tuple[Tensor, Tensor]:
    """Face fluxes ``u_f c_f`` with centred face values (second order, no damping)."""
    ue, vn = face_velocity(u, v, grid)
    return ue * 0.5 * (c + east(c)), vn * 0.5 * (c + north(c))


def advective_flux_upwind(c: Tensor, u: Tensor, v: Tensor, grid: Grid) -> tuple[Tensor, Tensor]:
    """Face fluxes ``u_f c_f`` with upwind face values (first order, monotone)."""
    ue, vn = face_velocity(u, v, grid)
    return ue * torch.where(ue > 0, c, east(c)), vn * torch.where(vn > 0, c, north(c))


def advection_centred(c: Tensor, u: Tensor, v: Tensor, grid: Grid) -> Tensor:
    """Tendency ``-∇·(u c)`` of a tracer with centred face values (second order, no damping)."""
    return -net_outflow(*advective_flux_centred(c, u, v, grid), grid)


def advection_upwind(c: Tensor, u: Tensor, v: Tensor, grid: Grid) -> Tensor:
    """Tendency ``-∇·(u c)`` with upwind face values (first order, monotone)."""
    return -net_outflow(*advective_flux_upwind(c, u, v, grid), grid)


def laplacian_fourth_order(f: Tensor, dx: float, *, periodic: bool) -> Tensor:
    """Fourth-order Laplacian on a square box of spacing ``dx``, ``f``: ``[..., ny, nx]``.

    ``(-f₋₂ + 16 f₋₁ - 30 f + 16 f₊₁ - f₊₂) / (12 dx²)`` along each axis. Without periodicity the
    second derivative along an axis is zero on its two outermost rows (or columns) at each end, as
    in the APHYNITY damped-wave protocol.
    """
    out = torch.zeros_like(f)
    for dim in (-1, -2):
        r = [torch.roll(f, s, dims=dim) for s in (2, 1, -1, -2)]
        d2 = (-r[0] + 16 * r[1] - 30 * f + 16 * r[2] - r[3]) / (12 * dx**2)
        if not periodic:
            n = f.shape[dim]
            inside = torch.zeros(n, dtype=f.dtype, device=f.device)
            inside[2 : n - 2] = 1
            d2 = d2 * (inside if dim == -1 else inside[:, None])
        out = out + d2
    return out


def _pad(f: Tensor, periodic: tuple[bool, bool], width: int) -> Tensor:
    """Forward of :func:`pad` (no graph): ``[N, C, ny, nx] -> [N, C, ny + 2w, nx + 2w]``."""
    channels_last = f.ndim == 4 and f.is_contiguous(memory_format=torch.channels_last)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    shape = (*f.shape[:-2], f.shape[-2] + 2 * width, f.shape[-1] + 2 * width)
    out = f.new_zeros(shape).contiguous(memory_format=layout)
    w = width
    out[..., w:-w, w:-w] = f
    if periodic[1]:  # columns across the seam
        out[..., w:-w, :w] = f[..., -w:]
        out[..., w:-w, -w:] = f[..., :w]
    if periodic[0]:  # rows across the seam, corners included when both wrap
        out[..., :w, :] = out[..., -2 * w : -w, :]
        out[..., -w:, :] = out[..., w : 2 * w, :]
    return out


def _fold(g: Tensor, periodic: tuple[bool, bool], width: int) -> Tensor:
    """Adjoint of :func:`_pad`: halo gradients are added back onto the cells they copied."""
    w = width
    g = g.clone(memory_format=torch.preserve_format) if periodic[0] else g
    if periodic[0]:
        g[..., -2 * w : -w, :] += g[..., :w, :]
        g[..., w : 2 * w, :] += g[..., -w:, :]
    out = g[..., w:-w, w:-w].clone(memory_format=torch.preserve_format)
    if periodic[1]:
        out[..., -w:] += g[..., w:-w, :w]
        out[..., :w] += g[..., w:-w, -w:]
    return out


class _Pad(torch.autograd.Function):
    """Linear, so its forward derivative is itself (``jvp``): the warm start's Gauss-Newton
    Jacobians (:mod:`hybrid.identifiability`) go through it in forward mode."""

    @staticmethod
    def forward(f: Tensor, periodic: tuple[bool, bool], width: int) -> Tensor:
        return _pad(f, periodic, width)

    @staticmethod
    def setup_context(ctx, inputs: tuple, output: Tensor) -> None:
        _, ctx.periodic, ctx.width = inputs

    @staticmethod
    def backward(ctx, g: Tensor) -> tuple[Tensor, None, None]:
        return _fold(g, ctx.periodic, ctx.width), None, None

    @staticmethod
    def jvp(ctx, f_dot: Tensor, *_) -> Tensor:
        return _pad(f_dot, ctx.periodic, ctx.width)


def pad(f: Tensor, periodic: tuple[bool, bool], width: int) -> Tensor:
    """Halo of ``width`` cells around ``f: [..., ny, nx]``: the neighbour across the seam along a
    periodic axis (``periodic = (y, x)``), zeros along a wall. Keeps a channels-last layout.

    One copy forward and one backward (halo gradients folded back onto the cells they came
    from), where ``torch.cat`` of slices costs a zero-filled full-size gradient per slice.
    """
    if width < 1:
        return f
    return _Pad.apply(f, tuple(bool(p) for p in periodic), width)


FIVE_POINT = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])  # ×1/dx²


def laplacian_periodic(f: Tensor, dx: float) -> Tensor:
    """5-point ``∇²f`` on a periodic square grid of spacing ``dx``, ``f: [N, C, n, n]``, as one
    depthwise convolution of the padded field (equal to :func:`laplacian` there, to rounding)."""
    channels = f.shape[-3]
    kernel = (FIVE_POINT / dx**2).to(f).expand(channels, 1, 3, 3)
    return torch.nn.functional.conv2d(pad(f, (True, True), 1), kernel, groups=channels)
