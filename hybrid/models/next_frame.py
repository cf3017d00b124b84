"""``NextFrameUNet``: the data-only baseline of de Bézenac et al. (ICLR 2018), a U-Net that reads
the last ``k`` frames and gives the next one, rolled out on its own forecasts.

It is written as the correction ``F_a`` of a :class:`~hybrid.train.HybridModule` with no prior,
so that ``hybrid fit`` trains it on the same windows and loss as the flow model and ``hybrid
evaluate`` scores it (``configs/moving_flow/unet_next_frame.yaml``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from hybrid.models.conv import GridConv, geometry_of, zero_init
from hybrid.models.normalisation import ChannelScaler
from hybrid.models.sizes import require_positive
from hybrid.models.unet import check_divisible, unet_pass, unet_paths
from hybrid.physics.grid import Grid

EULER_ONLY = (
    "NextFrameUNet maps one data step to the next: integrate it with `method: euler` at the "
    "data step (model.method: euler, no step_size, no recompute)"
)


class NextFrameUNet(nn.Module):
    """``y_{n+1} = y_n + Δt s ⊙ net(z_{n-k+1}, …, z_n)``, ``z = mask (y - μ) / σ`` per channel.

    The paper's baseline predicts ``I_{t+1}`` from ``I_{t-k+1..t}``; here the network gives the
    step from the last frame (a skip connection: zero-initialised, it starts at persistence),
    in units of the data's tendency spread ``s`` (``ChannelScaler``: ``μ``, ``σ``, ``s`` set by
    ``HybridModule`` from the training data). As a vector field it is the delay equation
    ``dy/dt(t) = s ⊙ net(y(t - (k-1)Δt), …, y(t))``, whose explicit Euler step at the data step
    ``Δt`` is the map above, exactly; rolled out by ``method: euler`` it reads its own forecasts.

    The first ``k`` frames of each window are given by :meth:`observe` (the
    :class:`~hybrid.flow.ReadsPast` protocol, as for the flow estimator); each call
    ``forward(t, y)`` of a rollout then appends ``y`` to the held frames. Calls must come at
    equally spaced, increasing times (raised otherwise: rk4's repeated stage times are refused;
    sub-steps, which the module cannot tell from data steps, are not); a call at or before the
    first time of the last rollout starts again from the observed frames. ``forward(None, y)``
    (``‖F_a‖²`` along true states ``y``: ``[..., C, *grid]``) reads each state with a still past,
    the state repeated ``k`` times.

    The network is :class:`~hybrid.models.flow.FlowEstimator`'s U-Net (same widths, blocks,
    pooling, skips and zero head), with ``C`` outputs instead of the velocity's ``dims``:
    ``k C -> C`` channels, padded by the grid (circular where periodic, zeros at walls), land
    read as 0 and given no step.

    Args:
        channels: state channels ``C``.
        frames: past frames read, ``k`` (the current one included).
        hidden: width of the finest level.
        levels: poolings; every grid axis must divide by ``2**levels``.
        grid: the data's grid (periodic axes, land mask); default a periodic unmasked 2-D box.
        activation: ``"gelu"``, ``"silu"``, ``"tanh"`` or ``"relu"``.
    """

    def __init__(
        self,
        channels: int = 1,
        frames: int = 4,
        hidden: int = 16,
        levels: int = 2,
        grid: Grid | None = None,
        activation: str = "gelu",
    ) -> None:
        super().__init__()
        require_positive("NextFrameUNet", channels=channels, frames=frames, hidden=hidden)
        if levels < 0:
            raise ValueError(f"NextFrameUNet levels must be non-negative, got {levels}")
        if grid is not None:
            check_divisible("NextFrameUNet", grid.shape, levels)
        self.channels, self.frames, self.levels = channels, frames, levels
        self.periodic, active = geometry_of(grid)
        self.register_buffer("active", active)
        self.scaler = ChannelScaler(channels, -1 - len(self.periodic))
        self.down, self.up = unet_paths(
            frames * channels, hidden, levels, self.periodic, activation
        )
        self.head = GridConv(hidden, channels, self.periodic)
        zero_init(self.head)
        self._past: Tensor | None = None  # [B, k, C, *grid], observed
        self._window: Tensor | None = None  # [B, k, C, *grid], the rollout's last k states
        self._times: list[float] = []  # the current rollout's call times

    def body(self, z: Tensor) -> Tensor:
        """``z: [N, k C, *grid]`` (normalised, masked) -> ``[N, C, *grid]``."""
        return unet_pass(self.down, self.up, self.head, z)

    def tendency(self, window: Tensor) -> Tensor:
        """``s ⊙ net(z)`` of ``window``: ``[..., k, C, *grid]`` (oldest first) -> ``[..., C,
        *grid]``."""
        rank = len(self.periodic)
        lead, grid = window.shape[: -2 - rank], window.shape[-rank:]
        z = self.scaler.normalise(window).reshape(-1, self.frames * self.channels, *grid)
        if self.active is not None:
            z = torch.where(self.active, z, 0.0)  # [N, k C, *grid]
        out = self.body(z)  # [N, C, *grid]
        if self.active is not None:
            out = torch.where(self.active, out, 0.0)
        return self.scaler.scale_output(out).reshape(*lead, self.channels, *grid)

    def observe(self, past: Tensor, grid: Grid | None = None) -> None:
        """Hold ``past``: ``[B, k, C, *grid]`` (oldest first), the frames before the next
        rollout, whose last is the rollout's first state."""
        want = (self.frames, self.channels)
        if past.ndim != 3 + len(self.periodic) or tuple(past.shape[1:3]) != want:
            raise ValueError(
                f"NextFrameUNet reads past frames [B, frames={self.frames}, C={self.channels}, "
                f"*grid], got {list(past.shape)}"
            )
        self._past, self._window, self._times = past, None, []

    def penalty(self) -> Tensor:
        """No regulariser on the estimate (the :class:`~hybrid.flow.ReadsPast` protocol)."""
        return torch.zeros(())

    def advance(self, t: float, y: Tensor) -> Tensor:
        """The last ``k`` states ``[B, k, C, *grid]`` with ``y`` (``[B, C, *grid]``, the state at
        ``t``) the newest; a call at or before the rollout's first time restarts from the
        observed frames (whose last ``y`` replaces, with the same values)."""
        if self._past is None:
            raise ValueError(
                "NextFrameUNet has not seen any past frames: call observe(past) first "
                "(HybridModule does so with each window's first frames)"
            )
        times = self._times
        if not times or t <= times[0]:
            window, self._times = self._past[:, :-1], [t]
        else:
            step, spacing = t - times[-1], times[1] - times[0] if len(times) > 1 else None
            if step <= 0 or (spacing is not None and not math.isclose(step, spacing, rel_tol=1e-6)):
                raise ValueError(f"{EULER_ONLY}; got a call at t={t:g} after {times[-3:]}")
            window, self._times = self._window[:, 1:], times + [t]
        self._window = torch.cat((window, y[:, None]), dim=1)  # [B, k, C, *grid]
        return self._window

    def forward(self, t: Tensor | None, y: Tensor) -> Tensor:
        """``dy/dt`` at ``t`` along the rollout, ``y``: ``[B, C, *grid]``; with ``t`` None, of
        each state of ``y``: ``[..., C, *grid]`` on a still past."""
        if t is None:
            rank = len(self.periodic)
            shape = list(y.unsqueeze(-2 - rank).shape)  # [..., 1, C, *grid]
            shape[-2 - rank] = self.frames
            return self.tendency(y.unsqueeze(-2 - rank).expand(shape))  # [..., k, C, *grid]
        return self.tendency(self.advance(float(t), y))
