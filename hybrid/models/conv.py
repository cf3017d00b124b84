"""Convolutions that follow the grid's geometry: circular on periodic axes, zeros at walls.

Shared by :class:`~hybrid.models.resnet.ResNet`, :class:`~hybrid.models.unet.UNet` and
:class:`~hybrid.models.convnet.ConvNet`, together
with the normalise-mask-apply-mask-scale wrapper that both fields nets use. The convolutions are
1-D on a 1-D grid (a line, a longitude circle) and 2-D otherwise: the networks follow the grid.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from hybrid.models.normalisation import ChannelScaler, RawChannels
from hybrid.physics import operators
from hybrid.physics.grid import Grid


def pad_geometry(x: Tensor, periodic: tuple[bool, ...], width: int) -> Tensor:
    """:func:`hybrid.physics.operators.pad`: circular along a periodic axis, zeros at a wall."""
    return operators.pad(x, periodic, width)  # [N, C, ny + 2w, nx + 2w] or [N, C, nx + 2w]


CONV = {1: nn.Conv1d, 2: nn.Conv2d}


class GridConv(nn.Module):
    """A ``kernel_size``-wide convolution over the grid's axes (1-D on a line or longitude circle,
    2-D otherwise: the rank is ``len(periodic)``), padded by :func:`pad_geometry`.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        periodic: one flag per grid axis, ``(periodic_y, periodic_x)`` or ``(periodic_x,)``.
        kernel_size: odd kernel size.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        periodic: tuple[bool, ...] = (True, True),
        kernel_size: int = 3,
    ) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd number, got {kernel_size}")
        if len(periodic) not in CONV:
            raise ValueError(f"a grid has 1 or 2 axes, got periodic flags {tuple(periodic)}")
        self.periodic = tuple(periodic)
        # walls on every axis: the convolution's own zero padding, with no padded copy
        self.width = kernel_size // 2 if any(self.periodic) else 0
        padding = 0 if any(self.periodic) else kernel_size // 2
        conv = CONV[len(self.periodic)]
        self.conv = conv(in_channels, out_channels, kernel_size, padding=padding)

    def forward(self, x: Tensor) -> Tensor:
        """``x: [N, C_in, *grid]`` -> ``[N, C_out, *grid]``."""
        return self.conv(pad_geometry(x, self.periodic, self.width))

    def extra_repr(self) -> str:
        return f"periodic={self.periodic}"


GridConv2d = GridConv  # the name it had when grids were 2-D only


def geometry_of(grid: Grid | None) -> tuple[tuple[bool, ...], Tensor | None]:
    """``(periodic, active)`` of a grid; fully periodic 2-D and unmasked without one. A network
    registers ``active`` as a buffer, saved with its weights: a model rebuilt from a checkpoint's
    grid description gets its land mask back from the state dict (``hybrid.train``)."""
    if grid is None:
        return (True, True), None
    return tuple(bool(p) for p in grid.periodic), grid.active > 0.5  # bool, the grid's shape


def position_channels(shape: tuple[int, ...], periodic: tuple[bool, ...]) -> Tensor:
    """Fixed input channels that tell a convolution where it is, ``[P, *shape]``: ``sin``, ``cos``
    of the angle along a periodic axis (no seam), a ramp from -1 to 1 along a walled one."""
    channels = []
    for axis, (n, wraps) in enumerate(zip(shape, periodic, strict=True)):
        s = torch.arange(n, dtype=torch.get_default_dtype()) / n
        ramps = (
            [torch.sin(2 * math.pi * s), torch.cos(2 * math.pi * s)]
            if wraps
            else [2 * s * n / max(n - 1, 1) - 1]
        )
        view = [1] * len(shape)
        view[axis] = n
        channels += [r.view(view).expand(shape) for r in ramps]
    return torch.stack(channels)


def zero_init(conv: GridConv) -> None:
    """Zero weights and bias, so that the network's output starts exactly at zero."""
    nn.init.zeros_(conv.conv.weight)
    nn.init.zeros_(conv.conv.bias)


def needs_mask(active: Tensor | None) -> bool:
    """Whether masking by ``active`` changes anything. On the CPU a fully active grid skips the
    two ``where`` passes (a few % of a reaction-diffusion step); on an accelerator the check
    would cost a host sync per call while the masking is cheap, so it masks."""
    if active is None:
        return False
    return active.device.type != "cpu" or not bool(active.all())


def apply_on_field(
    body: Callable[[Tensor], Tensor],
    scaler: ChannelScaler | RawChannels,
    active: Tensor | None,
    y: Tensor,
) -> Tensor:
    """Normalise ``y: [..., C, *grid]``, mask, run ``body`` on ``[N, C, *grid]``, mask, scale.

    The grid's rank is the scaler's (``channel_dim = -1 - rank``). Inactive cells enter as 0
    whatever they hold (``torch.where``, so a NaN there never reaches the active cells, nor the
    gradients) and leave with a zero tendency.
    """
    rank = -1 - scaler.channel_dim
    lead, field = y.shape[: -1 - rank], y.shape[-1 - rank :]
    active = active if needs_mask(active) else None
    z = scaler.normalise(y).reshape(-1, *field)  # [..., C, *grid] -> [N, C, *grid]
    if active is not None:
        z = torch.where(active, z, 0.0)
    # Channels-last inside (2-D): mkldnn convolutions of few channels run several times faster on
    # the CPU with the channels innermost, and every layer after the first keeps that layout.
    layout = torch.channels_last if rank == 2 else torch.contiguous_format
    out = body(z.contiguous(memory_format=layout))
    if active is not None:
        out = torch.where(active, out, 0.0)
    out = scaler.scale_output(out).contiguous()  # back to the caller's layout
    return out.reshape(*lead, *out.shape[1:])  # -> [..., C, *grid]
