"""Small U-Net correction for larger fields ``[..., C, *grid]`` (1-D or 2-D)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hybrid.models.activations import activation as make_activation
from hybrid.models.conv import GridConv, apply_on_field, geometry_of, zero_init
from hybrid.models.normalisation import ChannelScaler
from hybrid.models.sizes import require_positive
from hybrid.physics.grid import Grid


class ConvBlock(nn.Module):
    """``σ(conv(σ(conv(x))))`` with geometry-following padding."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        periodic: tuple[bool, ...],
        activation: str = "gelu",
    ) -> None:
        super().__init__()
        self.act = make_activation(activation)
        self.conv1 = GridConv(in_channels, out_channels, periodic)
        self.conv2 = GridConv(out_channels, out_channels, periodic)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.conv2(self.act(self.conv1(x))))


def unet_paths(
    c_in: int, hidden: int, levels: int, periodic: tuple[bool, ...], activation: str
) -> tuple[nn.ModuleList, nn.ModuleList]:
    """The down path (``c_in -> hidden -> 2 hidden -> ... -> 2^levels hidden``) and the up path
    (coarsest first, each block reading the upsampled level beside the skip) of a U-Net."""
    widths = [hidden * 2**level for level in range(levels + 1)]
    w_in = [c_in] + widths[:-1]
    down = nn.ModuleList(
        ConvBlock(a, b, periodic, activation) for a, b in zip(w_in, widths, strict=True)
    )
    coarse, fine = widths[:0:-1], widths[-2::-1]  # up path, coarsest first
    up = nn.ModuleList(
        ConvBlock(a + b, b, periodic, activation) for a, b in zip(coarse, fine, strict=True)
    )
    return down, up


def check_divisible(owner: str, shape: tuple[int, ...], levels: int) -> None:
    """Raise unless every grid axis of ``shape`` divides by ``2**levels`` (the poolings)."""
    if any(n % 2**levels for n in shape):
        axes = "(ny, nx)" if len(shape) == 2 else "(nx,)"
        raise ValueError(
            f"{owner} with levels={levels} needs every grid axis divisible by {2**levels}, "
            f"got grid shape {axes} = {tuple(shape)}"
        )


def unet_pass(down: nn.ModuleList, up: nn.ModuleList, head: nn.Module, z: Tensor) -> Tensor:
    """The U-Net of :func:`unet_paths` on ``z: [N, c_in, *grid]`` -> ``head``'s ``[N, C, *grid]``:
    down blocks with 2x average pooling between levels, up blocks on the nearest-upsampled
    coarser level beside its skip."""
    skips, h = [], z
    pool = F.avg_pool1d if z.ndim == 3 else F.avg_pool2d
    for level, block in enumerate(down):
        if level > 0:
            h = pool(h, 2)  # [N, w, ny', nx'] -> [N, w, ny'/2, nx'/2] (or [N, w, nx'/2])
        h = block(h)
        skips.append(h)
    for block, skip in zip(up, skips[-2::-1], strict=True):
        h = F.interpolate(h, scale_factor=2, mode="nearest")  # [N, w, 2 ny', 2 nx']
        h = block(torch.cat((h, skip), dim=1))  # concat channels: [N, w + w_skip, ...]
    return head(h)


class UNet(nn.Module):
    """``dy/dt = out_scale * mask * net(mask * (y - mean) / std)``, a U-Net.

    Level ``l`` has ``hidden * 2**l`` channels. Down: conv block, then 2x2 average pooling (2 on
    a 1-D grid, whose convolutions are 1-D).
    Up: nearest upsampling (which, unlike bilinear, commutes with periodic shifts by multiples of
    ``2**levels``), concatenation with the skip, conv block. The last 3x3 conv is zero-initialised,
    so an untrained hybrid equals its prior. Padding follows the grid: circular on periodic axes,
    zeros at walls. ``t`` is unused.

    Args:
        channels: number of state channels ``C``.
        hidden: width of the finest level.
        levels: number of poolings; every grid axis must divide by ``2**levels``.
        grid: geometry giving the periodic axes and the ``active`` mask (inactive cells are
            read as 0 and get a zero tendency); default fully periodic and unmasked.
        activation: ``"gelu"`` (default), ``"silu"``, ``"tanh"`` or ``"relu"`` (which can die:
            see :func:`hybrid.models.activations.activation`).
    """

    def __init__(
        self,
        channels: int,
        hidden: int = 32,
        levels: int = 2,
        grid: Grid | None = None,
        activation: str = "gelu",
    ) -> None:
        super().__init__()
        require_positive("UNet", channels=channels, hidden=hidden, levels=levels)
        self.levels, self.shape = levels, None if grid is None else tuple(grid.shape)
        if self.shape is not None:
            check_divisible("UNet", self.shape, levels)
        self.periodic, active = geometry_of(grid)
        self.register_buffer("active", active)
        self.scaler = ChannelScaler(channels, -1 - len(self.periodic))
        self.down, self.up = unet_paths(channels, hidden, levels, self.periodic, activation)
        self.head = GridConv(hidden, channels, self.periodic)
        zero_init(self.head)

    def body(self, z: Tensor) -> Tensor:
        """``z: [N, C, *grid]`` (normalised, masked) -> ``[N, C, *grid]``."""
        return unet_pass(self.down, self.up, self.head, z)

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        """``y: [..., C, *grid]`` -> ``dy/dt`` of the same shape."""
        if self.shape is None:  # no grid to check in __init__: a check on two ints, every call
            check_divisible("UNet", y.shape[-len(self.periodic) :], self.levels)
        return apply_on_field(self.body, self.scaler, self.active, y)
