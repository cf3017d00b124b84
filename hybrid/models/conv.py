"""Convolutions that follow the grid's geometry: circular on periodic axes, zeros at walls.

Shared by :class:`~hybrid.models.resnet.ResNet`, :class:`~hybrid.models.unet.UNet` and
:class:`~hybrid.models.convnet.ConvNet`, together
with the normalise-mask-apply-mask-scale wrapper that both fields nets use.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from hybrid.models.normalisation import ChannelScaler
from hybrid.physics import operators
from hybrid.physics.grid import Grid


def pad_geometry(x: Tensor, periodic: tuple[bool, bool], width: int) -> Tensor:
    """Pad ``x: [N, C, ny, nx]`` by ``width`` cells on each side of the last two axes.

    Circular along a periodic axis (the neighbour across the seam), zeros along a wall.
    """
    return operators.pad(x, periodic, width)  # [N, C, ny + 2 width, nx + 2 width]


class GridConv2d(nn.Module):
    """A ``kernel_size`` x ``kernel_size`` convolution padded by :func:`pad_geometry`.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        periodic: ``(periodic_y, periodic_x)``.
        kernel_size: odd kernel size.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        periodic: tuple[bool, bool] = (True, True),
        kernel_size: int = 3,
    ) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd number, got {kernel_size}")
        self.periodic = tuple(periodic)
        # walls on both axes: the convolution's own zero padding, with no padded copy
        self.width = kernel_size // 2 if any(self.periodic) else 0
        padding = 0 if any(self.periodic) else kernel_size // 2
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding)

    def forward(self, x: Tensor) -> Tensor:
        """``x: [N, C_in, ny, nx]`` -> ``[N, C_out, ny, nx]``."""
        return self.conv(pad_geometry(x, self.periodic, self.width))

    def extra_repr(self) -> str:
        return f"periodic={self.periodic}"


def geometry_of(grid: Grid | None) -> tuple[tuple[bool, bool], Tensor | None]:
    """``(periodic, active)`` of a grid; fully periodic and unmasked without one."""
    if grid is None:
        return (True, True), None
    return tuple(bool(p) for p in grid.periodic), grid.active > 0.5  # bool [ny, nx]


def position_channels(shape: tuple[int, int], periodic: tuple[bool, bool]) -> Tensor:
    """Fixed input channels that tell a convolution where it is, ``[P, ny, nx]``: ``sin``, ``cos``
    of the angle along a periodic axis (no seam), a ramp from -1 to 1 along a walled one."""
    channels = []
    for axis, (n, wraps) in enumerate(zip(shape, periodic, strict=True)):
        s = torch.arange(n, dtype=torch.get_default_dtype()) / n
        ramps = (
            [torch.sin(2 * math.pi * s), torch.cos(2 * math.pi * s)]
            if wraps
            else [2 * s * n / max(n - 1, 1) - 1]
        )
        for r in ramps:
            channels.append(r[:, None].expand(shape) if axis == 0 else r[None, :].expand(shape))
    return torch.stack(channels)


def zero_init(conv: GridConv2d) -> None:
    """Zero weights and bias, so that the network's output starts exactly at zero."""
    nn.init.zeros_(conv.conv.weight)
    nn.init.zeros_(conv.conv.bias)


def apply_on_field(
    body: Callable[[Tensor], Tensor], scaler: ChannelScaler, active: Tensor | None, y: Tensor
) -> Tensor:
    """Normalise ``y: [..., C, ny, nx]``, mask, run ``body`` on ``[N, C, ny, nx]``, mask, scale.

    Inactive cells enter as 0 whatever they hold (``torch.where``, so a NaN there never reaches
    the active cells, nor the gradients) and leave with a zero tendency.
    """
    lead, field = y.shape[:-3], y.shape[-3:]
    z = scaler.normalise(y).reshape(-1, *field)  # [..., C, ny, nx] -> [N, C, ny, nx]
    if active is not None:
        z = torch.where(active, z, 0.0)
    # Channels-last inside: mkldnn convolutions of few channels run several times faster on the
    # CPU with the channels innermost, and every layer after the first keeps that layout.
    out = body(z.contiguous(memory_format=torch.channels_last))
    if active is not None:
        out = torch.where(active, out, 0.0)
    out = scaler.scale_output(out).contiguous()  # back to the caller's layout
    return out.reshape(*lead, *out.shape[-3:])  # -> [..., C, ny, nx]
