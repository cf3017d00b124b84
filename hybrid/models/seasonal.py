"""A correction that knows the time of year: the annual phase as extra input channels.

A batch of windows starts on different dates, but torchdiffeq integrates the whole batch along
one relative time ``t`` (from 0 at each window's start). The date therefore travels beside the
batch (``TrajectoryDataModule(dates=True)`` serves ``(t, y, date)``) and is handed to the parts
of the field that read it before the rollout (:func:`observe_dates`, as
:func:`hybrid.flow.observe_past` hands a flow estimator its past frames). The phase of the year
of window ``b`` at relative time ``t`` is then

    f_b(t) = f_b(0) + t / Y,

with ``f_b(0)`` the place of the window's first frame in its year on the file's calendar and
``Y`` the calendar's mean year in seconds (:func:`hybrid.data.datamodule.window_dates`).
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from hybrid.models.activations import activation as make_activation
from hybrid.models.conv import GridConv, apply_on_field, geometry_of, zero_init
from hybrid.models.normalisation import ChannelScaler
from hybrid.models.resnet import ResidualBlock
from hybrid.models.sizes import require_positive
from hybrid.physics.grid import Grid


@runtime_checkable
class ReadsDate(Protocol):
    """A part of the field that reads the date of each window of the batch."""

    def observe_date(self, phase: Tensor, year: Tensor, t: Tensor) -> None: ...


def reads_date(field: nn.Module) -> bool:
    """Whether any part of ``field`` reads the date."""
    return any(isinstance(m, ReadsDate) for m in field.modules())


def observe_dates(field: nn.Module, batch: tuple[Tensor, ...], t: Tensor) -> None:
    """Give each part of ``field`` that reads the date the phase of the year of each window.

    ``batch`` is ``(t_w [B, W], y, date [B, 2][, forcing])`` with ``date = (f(0), Y)`` per
    window; ``t``: ``[B, W']`` the relative times the rollout integrates along (``W' ≤ W`` when
    :func:`hybrid.flow.observe_past` kept the last ``W'`` frames, which then start
    ``t_w[:, W - W']`` after the window's first frame). Nothing happens when no part reads the date.

    Raises:
        ValueError: a part reads the date but the batch has none.
    """
    readers = [m for m in field.modules() if isinstance(m, ReadsDate)]
    if not readers:
        return
    if len(batch) < 3 or batch[2].ndim != 2:  # no date: (t, y) or (t, y, forcing)
        raise ValueError(
            "the correction reads the time of year, but the data serve no dates: set "
            "`data.dates: true` (TrajectoryDataModule(dates=True))"
        )
    t_w, date = batch[0], batch[2].double()  # [B, W], [B, 2]
    shift = t_w[:, t_w.shape[1] - t.shape[1]].double()  # [B] s, the rollout's first frame
    give_dates(field, date[:, 0] + shift / date[:, 1], date[:, 1], t[0])


def give_dates(field: nn.Module, phase: Tensor, year: Tensor, t: Tensor) -> None:
    """Hand every part of ``field`` that reads the date ``phase``: ``[B]`` the phase of the year
    at relative time 0, ``year``: ``[B]`` ``Y`` (s), ``t``: ``[W]`` the frames' relative times."""
    for m in field.modules():
        if isinstance(m, ReadsDate):
            m.observe_date(phase.double(), year.double(), t.double())


def annual_harmonics(phase: Tensor, harmonics: int) -> Tensor:
    """``[cos 2πf, sin 2πf, …, cos 2πKf, sin 2πKf]``: ``phase`` ``[*lead]`` → ``[*lead, 2K]``."""
    k = torch.arange(1, harmonics + 1, dtype=phase.dtype, device=phase.device)
    angle = 2 * math.pi * phase[..., None] * k  # [*lead, K]
    return torch.stack([angle.cos(), angle.sin()], -1).flatten(-2)  # [*lead, 2K]


class Seasonal(nn.Module):
    """``dy/dt = out_scale * mask * net([(y - mean) / std, cos 2πjf(t), sin 2πjf(t)]_{j≤K})``.

    A residual conv net (:class:`~hybrid.models.resnet.ResNet`'s blocks and geometry) with
    ``C + 2K`` input channels, the normalised state and ``K`` annual harmonics of the phase of
    the year, uniform over the grid, and ``C`` outputs, the last layer zero-initialised (an
    untrained hybrid is its prior). So the correction can depend on the season: a decay rate,
    a forcing that follows the year. It reads the date (:class:`ReadsDate`): each rollout is
    preceded by :func:`observe_dates`.

    ``forward(t, y)``: with ``t`` a time of the rollout, ``y``: ``[B, C, *grid]``, window ``b``
    at phase ``f_b(0) + t / Y``; with ``t`` None (the correction along a window's true states),
    ``y``: ``[B, W, C, *grid]``, frame ``w`` at ``f_b(0) + t_w / Y`` (or ``[R, C, *grid]``,
    the first ``R`` of those frames flattened window-major, as ``hybrid evaluate`` samples them).

    Args:
        channels: number of state channels ``C``.
        harmonics: ``K``, annual harmonics fed (0: none, then it is a state-only ResNet).
        hidden: width of the hidden layers.
        blocks: number of residual blocks.
        grid: geometry (periodic axes, ``active`` mask); default fully periodic, unmasked.
        activation: as :class:`~hybrid.models.resnet.ResNet`'s.
    """

    def __init__(
        self,
        channels: int,
        harmonics: int = 1,
        hidden: int = 16,
        blocks: int = 2,
        grid: Grid | None = None,
        activation: str = "gelu",
    ) -> None:
        super().__init__()
        require_positive("Seasonal", channels=channels, hidden=hidden, blocks=blocks)
        if harmonics < 0:
            raise ValueError(f"harmonics must be non-negative, got {harmonics}")
        self.harmonics = harmonics
        self.periodic, active = geometry_of(grid)
        self.register_buffer("active", active)
        self.scaler = ChannelScaler(channels, -1 - len(self.periodic))
        self.lift = GridConv(channels + 2 * harmonics, hidden, self.periodic)
        self.act = make_activation(activation)
        self.blocks = nn.Sequential(
            *(ResidualBlock(hidden, self.periodic, activation) for _ in range(blocks))
        )
        self.head = GridConv(hidden, channels, self.periodic)
        zero_init(self.head)
        self.phase = self.year = self.frames = None  # set by observe_date

    def observe_date(self, phase: Tensor, year: Tensor, t: Tensor) -> None:
        """``phase``: ``[B]`` ``f_b(0)``; ``year``: ``[B]`` ``Y`` (s); ``t``: ``[W]`` the
        window's relative frame times (s)."""
        self.phase, self.year, self.frames = phase, year, t

    def phase_at(self, t: Tensor | None, lead: tuple[int, ...]) -> Tensor:
        """The phase of the year of each row of the state: ``[*lead]`` (float64)."""
        if self.phase is None:
            raise ValueError("Seasonal needs the windows' dates: call observe_dates first")
        if t is None:  # the true states of each window, [B, W]
            f = self.phase[:, None] + self.frames[None, :].to(self.phase) / self.year[:, None]
        else:
            f = self.phase + torch.as_tensor(t).to(self.phase) / self.year  # [B]
        if t is None and len(lead) == 1 and lead[0] <= f.numel():
            f = f.flatten()[: lead[0]]  # the frames flattened window-major, or their first rows
        if f.shape != lead:
            raise ValueError(
                f"Seasonal holds dates for states {tuple(f.shape)}, got states {lead}: observe "
                "the dates of these windows first (the warm start's stretches carry none: set "
                "model.warm_start false)"
            )
        return f

    def body(self, z: Tensor, features: Tensor) -> Tensor:
        """``z: [N, C, *grid]`` (normalised, masked), ``features: [N, 2K]`` -> ``[N, C, *grid]``."""
        grid = z.shape[2:]
        extra = features[(...,) + (None,) * len(grid)].expand(*features.shape, *grid)
        if self.active is not None:
            extra = torch.where(self.active, extra, 0.0)
        return self.head(self.act(self.blocks(self.lift(torch.cat([z, extra], 1)))))

    def forward(self, t: Tensor | None, y: Tensor) -> Tensor:
        """``y: [*lead, C, *grid]`` -> ``dy/dt`` of the same shape."""
        lead = tuple(y.shape[: y.ndim - 1 - len(self.periodic)])
        features = annual_harmonics(self.phase_at(t, lead), self.harmonics).to(y.dtype)
        features = features.reshape(-1, 2 * self.harmonics)  # [N, 2K]
        return apply_on_field(lambda z: self.body(z, features), self.scaler, self.active, y)
