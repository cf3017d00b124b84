"""Finite-volume stencils on a :class:`~hybrid.physics.grid.Grid`, second order on regular grids.

Fields are ``[..., ny, nx]`` on a 2-D grid, ``[..., nx]`` on a 1-D one. A vector is passed as its
components, eastward first, one per grid axis: ``u, v`` in 2-D, ``u`` alone in 1-D (component
``k`` lies along tensor axis ``-1 - k``); functions that take one take them before the grid
(``divergence(u, v, grid)``, ``divergence(u, grid)``) and those that return one return a tuple of
``grid.ndim`` components. Every operator is written in flux form over the faces of the grid: the
flux through the face east of cell ``(j, i)`` is ``F_e[j, i]``, and the net outflow of the cell is
``F_e[j, i] - F_e[j, i-1] + F_n[j, i] - F_n[j-1, i]`` (the first two terms alone in 1-D). Closed
faces (walls, masked cells) carry no flux, so the area-weighted sum of a divergence, a Laplacian
or an advective tendency is zero to round-off on every geometry: mass is conserved exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from hybrid.physics.grid import Grid


def east(f: Tensor) -> Tensor:
    """The +x neighbour ``f[..., j, i+1]`` (periodic wrap; walls are closed faces)."""
    return torch.roll(f, -1, dims=-1)


def north(f: Tensor) -> Tensor:
    """The +y neighbour ``f[..., j+1, i]``."""
    return torch.roll(f, -1, dims=-2)


def _next(f: Tensor, k: int) -> Tensor:
    """The ``+index`` neighbour along component ``k``'s axis (``-1 - k``)."""
    return torch.roll(f, -1, dims=-1 - k)


def _split(args: tuple, what: str) -> tuple[tuple[Tensor, ...], Grid]:
    """``(components, grid)`` from ``(*components, grid)``, one component per grid axis."""
    *parts, grid = args
    if not isinstance(grid, Grid) or len(parts) != grid.ndim:
        ndim = grid.ndim if isinstance(grid, Grid) else "?"
        raise ValueError(
            f"{what}: give one component per grid axis then the grid (u, grid in 1-D, "
            f"u, v, grid in 2-D); got {len(parts)} components for a {ndim}-D grid"
        )
    return tuple(parts), grid


def net_outflow(*fluxes_and_grid: Tensor | Grid) -> Tensor:
    """Divergence of face fluxes: ``(F_e - F_w [+ F_n - F_s]) / area``, zero at inactive cells.

    Args: ``flux_east[, flux_north], grid``, fluxes of the grid's shape (or broadcasting to it).
    """
    fluxes, grid = _split(fluxes_and_grid, "net_outflow")
    out = fluxes[0] - torch.roll(fluxes[0], 1, dims=-1)
    if len(fluxes) == 2:  # no sum(): its start at 0 would cost one more full-size add
        out = out + fluxes[1] - torch.roll(fluxes[1], 1, dims=-2)
    return out * grid.inv_area


def diffusive_flux(f: Tensor, grid: Grid) -> tuple[Tensor, ...]:
    """Face fluxes of ``∇f`` (times face length): ``w · (f_neighbour - f)``, zero through walls;
    ``grid.ndim`` of them, eastward first."""
    return tuple(grid.faces(k)[1] * (_next(f, k) - f) for k in range(grid.ndim))


def laplacian(f: Tensor, grid: Grid) -> Tensor:
    """``∇²f = ∇·∇f`` with no-flux walls; the 5-point stencil on a box, 3-point on a line.

    Args:
        f: ``[..., *grid.shape]``.
    Returns:
        ``[..., *grid.shape]``.
    """
    return net_outflow(*diffusive_flux(f, grid), grid)


def gradient(f: Tensor, grid: Grid) -> tuple[Tensor, ...]:
    """``(∂f/∂x[, ∂f/∂y])`` eastward (and northward) at cell centres (centred differences).

    The cell value is the mean of its two face gradients; the gradient through a closed face is
    zero (no-flux), which makes the stencil one-sided next to walls and land.
    """
    out = []
    for k in range(grid.ndim):
        g = grid.open(k) * (_next(f, k) - f) / grid.faces(k)[0]  # at +index faces
        out.append(0.5 * (g + torch.roll(g, 1, dims=-1 - k)) * grid.active)
    return tuple(out)


def face_velocity(*w_and_grid: Tensor | Grid) -> tuple[Tensor, ...]:
    """Volume fluxes through east (and north) faces: ``u_f · len · open`` per component.

    Args: ``u[, v], grid``; the components broadcast to the grid, so a uniform velocity may be
    given as 0-d tensors (then no averaging is needed: one multiply per face).
    """
    w, grid = _split(w_and_grid, "face_velocity")
    if all(c.ndim == 0 for c in w):
        return tuple(c * grid.faces(k)[2] for k, c in enumerate(w))
    out = []
    for k, c in enumerate(w):
        c = torch.broadcast_to(c, torch.broadcast_shapes(c.shape, grid.area.shape))
        out.append(0.5 * (c + _next(c, k)) * grid.faces(k)[2])
    return tuple(out)


def divergence(*w_and_grid: Tensor | Grid) -> Tensor:
    """``∇·w`` of a cell-centred vector (``u[, v], grid``), from face-averaged normal components."""
    return net_outflow(*face_velocity(*w_and_grid), w_and_grid[-1])


def advective_flux_centred(c: Tensor, *w_and_grid: Tensor | Grid) -> tuple[Tensor, ...]:
    """Face fluxes ``u_f c_f`` with centred face values (second order, no damping);
    ``c, u[, v], grid``."""
    faces = face_velocity(*w_and_grid)
    return tuple(q * 0.5 * (c + _next(c, k)) for k, q in enumerate(faces))


def advective_flux_upwind(c: Tensor, *w_and_grid: Tensor | Grid) -> tuple[Tensor, ...]:
    """Face fluxes ``u_f c_f`` with upwind face values (first order, monotone);
    ``c, u[, v], grid``."""
    faces = face_velocity(*w_and_grid)
    return tuple(q * torch.where(q > 0, c, _next(c, k)) for k, q in enumerate(faces))


def advective_flux(scheme: str) -> Callable[..., tuple[Tensor, ...]]:
    """:func:`advective_flux_centred` or :func:`advective_flux_upwind`, by ``scheme`` name."""
    schemes = {"centred": advective_flux_centred, "upwind": advective_flux_upwind}
    if scheme not in schemes:
        raise ValueError(f"scheme must be one of {sorted(schemes)}, got {scheme!r}")
    return schemes[scheme]


def advection_centred(c: Tensor, *w_and_grid: Tensor | Grid) -> Tensor:
    """Tendency ``-∇·(w c)`` of a tracer with centred face values (second order, no damping);
    ``c, u[, v], grid``."""
    return -net_outflow(*advective_flux_centred(c, *w_and_grid), w_and_grid[-1])


def advection_upwind(c: Tensor, *w_and_grid: Tensor | Grid) -> Tensor:
    """Tendency ``-∇·(w c)`` with upwind face values (first order, monotone);
    ``c, u[, v], grid``."""
    return -net_outflow(*advective_flux_upwind(c, *w_and_grid), w_and_grid[-1])


def laplacian_fourth_order(f: Tensor, dx: float, *, periodic: bool, ndim: int = 2) -> Tensor:
    """Fourth-order Laplacian on a square box (``ndim=2``, ``f: [..., ny, nx]``) or a line
    (``ndim=1``, ``f: [..., nx]``) of spacing ``dx``.

    ``(-f₋₂ + 16 f₋₁ - 30 f + 16 f₊₁ - f₊₂) / (12 dx²)`` along each axis. Without periodicity the
    second derivative along an axis is zero on its two outermost rows (or columns) at each end, as
    in the APHYNITY damped-wave protocol.
    """
    if ndim not in (1, 2):
        raise ValueError(f"ndim must be 1 or 2, got {ndim}")
    out = torch.zeros_like(f)
    for dim in (-1, -2)[:ndim]:
        r = [torch.roll(f, s, dims=dim) for s in (2, 1, -1, -2)]
        d2 = (-r[0] + 16 * r[1] - 30 * f + 16 * r[2] - r[3]) / (12 * dx**2)
        if not periodic:
            n = f.shape[dim]
            inside = torch.zeros(n, dtype=f.dtype, device=f.device)
            inside[2 : n - 2] = 1
            d2 = d2 * (inside if dim == -1 else inside[:, None])
        out = out + d2
    return out


def _pad(f: Tensor, periodic: tuple[bool, ...], width: int) -> Tensor:
    """Forward of :func:`pad` (no graph): ``[N, C, ny, nx] -> [N, C, ny + 2w, nx + 2w]``, or
    ``[N, C, nx] -> [N, C, nx + 2w]`` when ``periodic`` has one axis."""
    if len(periodic) == 1:
        return _pad_line(f, periodic[0], width)
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


def _pad_line(f: Tensor, periodic: bool, w: int) -> Tensor:
    """``[..., nx] -> [..., nx + 2w]``: the cells across the seam, or zeros at walls."""
    out = f.new_zeros((*f.shape[:-1], f.shape[-1] + 2 * w))
    out[..., w:-w] = f
    if periodic:
        out[..., :w], out[..., -w:] = f[..., -w:], f[..., :w]
    return out


def _fold(g: Tensor, periodic: tuple[bool, ...], width: int) -> Tensor:
    """Adjoint of :func:`_pad`: halo gradients are added back onto the cells they copied."""
    w = width
    if len(periodic) == 1:
        out = g[..., w:-w].clone()
        if periodic[0]:
            out[..., -w:] += g[..., :w]
            out[..., :w] += g[..., -w:]
        return out
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
    """Linear, so its forward derivative is itself (``jvp``): forward mode (``torch.func.jvp``)
    goes through it as through any other op."""

    @staticmethod
    def forward(f: Tensor, periodic: tuple[bool, ...], width: int) -> Tensor:
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


def pad(f: Tensor, periodic: tuple[bool, ...], width: int) -> Tensor:
    """Halo of ``width`` cells around ``f: [..., ny, nx]`` (``periodic = (y, x)``) or
    ``f: [..., nx]`` (``periodic = (x,)``): the neighbour across the seam along a periodic axis,
    zeros along a wall. Keeps a channels-last layout.

    One copy forward and one backward (halo gradients folded back onto the cells they came
    from), where ``torch.cat`` of slices costs a zero-filled full-size gradient per slice.
    """
    if width < 1:
        return f
    return _Pad.apply(f, tuple(bool(p) for p in periodic), width)


def _stencil_periodic(f: Tensor, dims: int, scale: float) -> Tensor:
    """``scale · (Σ_axis (f₊₁ + f₋₁) - 2 dims f)`` over the last ``dims`` axes, by rolls."""
    out = f * (-2.0 * dims)
    for axis in range(-dims, 0):
        out = out + f.roll(1, axis) + f.roll(-1, axis)
    return out * scale


class _LaplacianPeriodic(torch.autograd.Function):
    """The periodic 5-point (3-point) Laplacian is symmetric, ``Lᵀ = L``: the backward applies
    the same stencil to the incoming gradient, with no per-roll gradient buffers."""

    @staticmethod
    def forward(f: Tensor, dims: int, scale: float) -> Tensor:
        return _stencil_periodic(f, dims, scale)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        _, ctx.dims, ctx.scale = inputs

    @staticmethod
    def backward(ctx, g: Tensor) -> tuple[Tensor, None, None]:
        return _LaplacianPeriodic.apply(g, ctx.dims, ctx.scale), None, None

    @staticmethod
    def jvp(ctx, f_dot: Tensor, *_) -> Tensor:
        return _stencil_periodic(f_dot, ctx.dims, ctx.scale)


def laplacian_periodic(f: Tensor, dx: float) -> Tensor:
    """``∇²f`` on a periodic square grid of spacing ``dx``, ``f: [N, C, n, n]``: the 5-point
    ``(f₋₁,₀ + f₊₁,₀ + f₀,₋₁ + f₀,₊₁ - 4f)/dx²`` (equal to :func:`laplacian` there, to rounding);
    on a periodic line, ``f: [N, C, n]``, the 3-point ``(f₋₁ - 2f + f₊₁)/dx²``.

    Computed by rolls, several times faster on the CPU than a depthwise convolution of the
    padded field (``scripts/bench_train.py``'s reaction-diffusion row), and differentiated as
    the symmetric operator it is.
    """
    return _LaplacianPeriodic.apply(f, 2 if f.ndim == 4 else 1, 1.0 / dx**2)
