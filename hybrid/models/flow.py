"""``FlowEstimator``: a U-Net from the last ``k`` frames to the velocity that moves the tracer
(de Bézenac et al., ICLR 2018), used as the ``velocity`` of
:class:`~hybrid.physics.advection_diffusion.AdvectionDiffusion` with no change to the prior."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hybrid.flow import flow_regularisation, normal_flow, streamfunction_flow
from hybrid.flow_refinement import Transport, refine_flow
from hybrid.models.activations import activation as make_activation
from hybrid.models.conv import CONV, pad_geometry
from hybrid.models.sizes import require_positive
from hybrid.physics.grid import Grid

OUTPUTS = ("velocity", "streamfunction", "both")


class _Block(nn.Module):
    """``σ(conv(σ(conv(x))))``, 3x3 (or width-3 1-D) convolutions padded by the geometry given at
    call time."""

    def __init__(self, c_in: int, c_out: int, activation: str, dims: int = 2) -> None:
        super().__init__()
        self.conv1, self.conv2 = CONV[dims](c_in, c_out, 3), CONV[dims](c_out, c_out, 3)
        self.act = make_activation(activation)

    def forward(self, x: Tensor, periodic: tuple[bool, ...]) -> Tensor:
        x = self.act(self.conv1(pad_geometry(x, periodic, 1)))
        return self.act(self.conv2(pad_geometry(x, periodic, 1)))


class FlowEstimator(nn.Module):
    """Velocity ``(u, v) = U · mask · net(normalised last k frames)`` (m/s) on the data's grid;
    ``(u,)`` on a 1-D grid (``dims=1``: a line or a longitude circle, 1-D convolutions).

    The prior calls ``velocity()`` with no argument, so the estimator is given the past first:
    :meth:`observe` (called by :func:`hybrid.flow.observe_past` in ``HybridModule`` with each
    window's first ``frames`` frames) estimates the flow and holds it for the rollout that starts
    from the last of them; ``forward()`` returns it, ``[B, 1, *grid]`` each, which broadcasts over
    the tracer channels. Frames are normalised per window and channel (mean and spread over the
    ``k`` frames' active cells): a velocity does not depend on the tracer's units or offset.

    The network is a U-Net (``levels`` poolings, widths ``hidden · 2^l``, nearest upsampling,
    skips); its convolutions are padded by the grid given to :meth:`observe` (circular on periodic
    axes, zeros at walls), and land reads as 0 and gets zero velocity. The last convolution is
    zero-initialised: an untrained estimator gives no flow. The grid (a box or lat-lon band) comes
    from the data at each call, so the weights do not depend on it.

    Args:
        frames: past frames read, ``k`` (the current one included).
        channels: tracer channels ``C`` of each frame.
        hidden: width of the finest level.
        levels: poolings; every grid axis must divide by ``2**levels``.
        speed: typical speed ``U`` (m/s): the network's output unit, and the scale of the
            regularisers (:func:`hybrid.flow.flow_regularisation`).
        divergence, smoothness, magnitude: weights of the paper's regularisers on the estimate.
        normal_flow: also give the network, per pair of consecutive frames and channel, the
            velocity they show along the tracer gradient (:func:`hybrid.flow.normal_flow`, cells
            per frame; ``(k-1) C dims`` more input channels): the division ``-∂c/∂t / |∇c|``
            that the network otherwise has to learn. ``0`` (off) or the damping ``η`` of weak
            gradients.
        output: what the network gives: ``"velocity"``, the components ``(u, v)`` in units of
            ``U``; or ``"streamfunction"``, one channel ``ψ`` in units of ``U L / 2π`` (``L`` =
            the smallest spacing times the shortest axis' cells: the streamfunction of a flow
            of speed ``U`` at the grid's longest wave), whose velocity
            :func:`hybrid.flow.streamfunction_flow` gives, incompressible by construction (its
            discrete divergence is zero to round-off on a grid periodic in ``x`` without land;
            half the unknowns, and the part of the flow across the tracer gradient follows from
            the part along it); or ``"both"``, ``ψ`` and ``(u, v)`` (three channels), the
            velocity added to ``ψ``'s curl (the divergence penalty then bears on it alone).
            ``ψ`` on 2-D grids only. On the moving-flow box both ``ψ`` outputs forecast worse
            than ``"velocity"`` at short leads (``NOTES.md``, session 6).
        smoothing: passes of the ``[1, 2, 1]/4`` filter along each axis over ``ψ`` (land set
            to 0, padded by the geometry) before its curl: each damps a mode of ``k`` cells⁻¹
            by ``cos²(k/2)`` per axis: meant against grid-scale steps in ``ψ`` that the curl's
            difference would amplify (it did not help on the moving-flow box). ``ψ`` outputs
            only; 0 (off) by default.
        refine_steps: Gauss-Newton steps refining each estimate on the observed frames
            (:func:`hybrid.flow_refinement.refine_flow`: the prior, the candidate flow held,
            should carry each of the last ``refine_pairs`` observed frames to the next), after
            the network, except in training mode with gradients recorded (a training step:
            the refined flow carries no gradient, so the network learns as without it);
            validation, test, ``hybrid evaluate`` and the scorers refine. 0 (off) by default;
            :func:`hybrid.flow.observe_past` calls :meth:`refine`.
        refine_iterations: conjugate-gradient iterations per Gauss-Newton step.
        refine_pairs: transitions fitted, the most recent (``1 .. frames - 1``).
        refine_smoothness, refine_divergence: the refinement's weights ``λ_s``, ``λ_d`` of
            ``Δ² ⟨|∇w|²⟩ / U²`` and ``Δ² ⟨(∇·w)²⟩ / U²`` against the hindcast misfit (relative
            to persistence's).
        activation: ``"gelu"``, ``"silu"``, ``"tanh"`` or ``"relu"``.
        dims: the grid's rank, 2 (a box or lat-lon patch) or 1 (a line or longitude circle):
            the number of velocity components and of the convolutions' axes.
    """

    def __init__(
        self,
        frames: int = 4,
        channels: int = 1,
        hidden: int = 16,
        levels: int = 2,
        speed: float = 1.0,
        divergence: float = 0.0,
        smoothness: float = 0.0,
        magnitude: float = 0.0,
        normal_flow: float = 0.0,
        output: Literal["velocity", "streamfunction", "both"] = "velocity",
        smoothing: int = 0,
        refine_steps: int = 0,
        refine_iterations: int = 100,
        refine_pairs: int = 1,
        refine_smoothness: float = 1e-2,
        refine_divergence: float = 100.0,
        activation: str = "gelu",
        dims: int = 2,
    ) -> None:
        super().__init__()
        if dims not in CONV:
            raise ValueError(f"FlowEstimator dims must be 1 or 2 (the grid's rank), got {dims}")
        require_positive("FlowEstimator", frames=frames, channels=channels, hidden=hidden)
        if levels < 0:
            raise ValueError(f"FlowEstimator levels must be non-negative, got {levels}")
        if normal_flow < 0:
            raise ValueError(f"FlowEstimator normal_flow must be non-negative, got {normal_flow}")
        if output not in OUTPUTS:
            raise ValueError(f"FlowEstimator output must be one of {OUTPUTS}, got {output!r}")
        if output != "velocity" and dims != 2:
            raise ValueError(
                f"FlowEstimator output={output!r} needs a 2-D grid (dims=2), got dims={dims}:"
                " a flow along a line has no streamfunction; use output='velocity'"
            )
        if smoothing < 0 or (smoothing and output == "velocity"):
            raise ValueError(
                f"FlowEstimator smoothing must be a non-negative number of passes, and smooths "
                f"a streamfunction only; got {smoothing} with output={output!r}"
            )
        if not speed > 0:
            raise ValueError(f"FlowEstimator speed must be positive (m/s), got {speed}")
        pairs_ok = 1 <= refine_pairs < frames or not refine_steps
        if refine_steps < 0 or refine_iterations < 1 or not pairs_ok:
            raise ValueError(
                "FlowEstimator refine_steps must be >= 0, refine_iterations >= 1 and, to refine, "
                f"refine_pairs in 1..frames-1 = 1..{frames - 1}; got {refine_steps}, "
                f"{refine_iterations}, {refine_pairs}"
            )
        if refine_smoothness < 0 or refine_divergence < 0:
            raise ValueError(
                "FlowEstimator refine_smoothness and refine_divergence must be non-negative, "
                f"got {refine_smoothness}, {refine_divergence}"
            )
        self.refinement = {
            "steps": refine_steps, "cg_steps": refine_iterations, "pairs": refine_pairs,
            "smoothness": refine_smoothness, "divergence": refine_divergence,
        }  # fmt: skip
        weights = {"divergence": divergence, "smoothness": smoothness, "magnitude": magnitude}
        for name, value in weights.items():
            if value < 0:
                raise ValueError(f"FlowEstimator {name} weight must be non-negative, got {value}")
        self.frames, self.channels, self.levels, self.speed = frames, channels, levels, speed
        self.weights, self.dims, self.components = weights, dims, dims
        self.normal_flow, self.output, self.smoothing = normal_flow, output, smoothing
        widths = [hidden * 2**level for level in range(levels + 1)]
        inputs = frames * channels + (dims * (frames - 1) * channels if normal_flow else 0)
        w_in = [inputs] + widths[:-1]
        self.down = nn.ModuleList(
            _Block(a, b, activation, dims) for a, b in zip(w_in, widths, strict=True)
        )
        coarse, fine = widths[:0:-1], widths[-2::-1]
        self.up = nn.ModuleList(
            _Block(a + b, b, activation, dims) for a, b in zip(coarse, fine, strict=True)
        )
        outputs = {"velocity": dims, "streamfunction": 1, "both": 1 + dims}[output]  # (ψ,) u, v
        self.head = CONV[dims](hidden, outputs, 3)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self._flow: tuple[Tensor, ...] | None = None
        self._penalty: Tensor | None = None
        self._past: Tensor | None = None

    def net(self, z: Tensor, periodic: tuple[bool, ...]) -> Tensor:
        """``z: [B, k C, *grid]`` -> ``[B, outputs, *grid]``: the streamfunction first (in units
        of ``speed · L / 2π``) where there is one, then the velocity (in units of ``speed``)."""
        skips, h = [], z
        pool = F.avg_pool1d if self.dims == 1 else F.avg_pool2d
        for level, block in enumerate(self.down):
            if level > 0:
                h = pool(h, 2)  # [B, w, ny', nx'] -> [B, w, ny'/2, nx'/2] (or [B, w, nx'/2])
            h = block(h, periodic)
            skips.append(h)
        for block, skip in zip(self.up, skips[-2::-1], strict=True):
            h = F.interpolate(h, scale_factor=2, mode="nearest")  # [B, w, 2 ny', 2 nx']
            h = block(torch.cat((h, skip), dim=1), periodic)
        return self.head(pad_geometry(h, periodic, 1))

    def check(self, past: Tensor, grid: Grid) -> None:
        """Raise ``ValueError`` unless the grid has ``dims`` axes, each dividing by
        ``2**levels``, and ``past`` is ``[B, frames, channels, *grid.shape]`` (once per window
        batch, not in the solver's loop)."""
        if grid.ndim != self.dims:
            raise ValueError(
                f"FlowEstimator(dims={self.dims}) was given a {grid.ndim}-D grid of shape "
                f"{tuple(grid.shape)}: set dims={grid.ndim}"
            )
        want = (self.frames, self.channels, *grid.shape)
        if past.ndim != 3 + self.dims or tuple(past.shape[1:]) != want:
            axes = "ny, nx" if self.dims == 2 else "nx"
            raise ValueError(
                f"FlowEstimator reads past frames [B, frames, C, {axes}] = "
                f"[B, {', '.join(map(str, want))}], got {list(past.shape)}"
            )
        factor = 2**self.levels
        if any(n % factor for n in grid.shape):
            raise ValueError(
                f"FlowEstimator with levels={self.levels} needs ny and nx divisible by {factor}, "
                f"got grid shape {tuple(grid.shape)}"
            )

    def observe(self, past: Tensor, grid: Grid | None) -> None:
        """Estimate the flow from ``past``: ``[B, frames, C, *grid]`` (oldest first) on ``grid``,
        and hold it, with its regularisation, until the next call.

        Raises:
            ValueError: without a grid, or for frames or a grid that do not fit.
        """
        if grid is None:
            raise ValueError("FlowEstimator needs the data's grid (geometry, mask, spacing)")
        self.check(past, grid)
        active = grid.active > 0.5  # [*grid]
        cells, axes = active.sum(), (1, *range(3, 3 + self.dims))  # frames and grid axes
        x = torch.where(active, past, 0.0)
        mean = x.sum(axes, keepdim=True) / (cells * self.frames)  # [B, 1, C, 1(, 1)]
        var = torch.where(active, past - mean, 0.0).square().sum(axes, keepdim=True)
        z = torch.where(
            active, (past - mean) / (var / (cells * self.frames)).sqrt().clamp_min(1e-12), 0.0
        )
        z = z.flatten(1, 2)  # [B, k C, *grid]
        if self.normal_flow:  # [B, k C + (k-1) C dims, *grid]
            z = torch.cat((z, normal_flow(past, grid, self.normal_flow).flatten(1, 3)), 1)
        out = self.net(z, tuple(grid.periodic))  # -> [B, outputs, *grid]
        self._flow = self._velocity(out, grid)
        self._penalty = flow_regularisation(*self._flow, grid, speed=self.speed, **self.weights)
        self._past = past.detach()

    def refine(self, transport: Transport, grid: Grid) -> None:
        """Replace the held estimate by its refinement on the frames of the last
        :meth:`observe` (:func:`hybrid.flow_refinement.refine_flow`, ``transport`` the prior's
        one data step with a flow held by :meth:`hold`); nothing when ``refine_steps`` is 0, or
        in training mode with gradients recorded (a training step). The refined flow carries no
        gradient."""
        training_step = self.training and torch.is_grad_enabled()
        if not self.refinement["steps"] or training_step or self._past is None:
            return
        start, options = self(), self.refinement
        self._flow = refine_flow(transport, self._past, start, grid, speed=self.speed, **options)

    def hold(self, flow: tuple[Tensor, ...]) -> None:
        """Hold ``flow`` (``(u[, v])``, ``[B, 1, *grid]`` each, m/s) as the estimate."""
        self._flow = tuple(flow)

    def _velocity(self, out: Tensor, grid: Grid) -> tuple[Tensor, ...]:
        """The network's output ``[B, (1 +) dims or 1, *grid]`` (``ψ`` first) -> ``(u[, v])``
        (m/s), ``[B, 1, *grid]`` each, zero on land."""
        terms = []
        if self.output != "streamfunction":
            w = out[:, -self.dims :]  # [B, dims, *grid]
            terms.append(torch.where(grid.active > 0.5, w * self.speed, 0.0).split(1, dim=1))
        if self.output != "velocity":
            unit = self.speed * grid.min_spacing() * min(grid.shape) / (2 * math.pi)  # U L / 2π
            terms.append(streamfunction_flow(self._smooth(out[:, :1], grid) * unit, grid))
        return tuple(sum(parts) for parts in zip(*terms, strict=True))

    def _smooth(self, psi: Tensor, grid: Grid) -> Tensor:
        """``smoothing`` passes of the 3x3 binomial filter over ``psi: [B, 1, ny, nx]``."""
        if not self.smoothing:
            return psi
        w = psi.new_tensor([1.0, 2.0, 1.0])
        kernel = (w[:, None] * w[None, :] / 16)[None, None]  # [1, 1, 3, 3]
        psi = psi * grid.active
        for _ in range(self.smoothing):
            psi = F.conv2d(pad_geometry(psi, tuple(grid.periodic), 1), kernel)
        return psi

    def forward(self) -> tuple[Tensor, ...]:
        """The flow estimated by the last :meth:`observe`, ``(u, v)`` (``(u,)`` in 1-D),
        ``[B, 1, *grid]`` each."""
        if self._flow is None:
            raise ValueError(
                "FlowEstimator has not seen any past frames: call observe(past, grid) first "
                "(HybridModule does so with each window's first frames)"
            )
        return self._flow

    def penalty(self) -> Tensor:
        """The regularisation of the last estimate (0 before any)."""
        return self._penalty if self._penalty is not None else torch.zeros(())
