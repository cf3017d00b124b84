"""Small residual convolutional correction for fields ``[..., C, *grid]`` (1-D or 2-D)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hybrid.models.activations import activation as make_activation
from hybrid.models.conv import GridConv, apply_on_field, geometry_of, position_channels, zero_init
from hybrid.models.normalisation import ChannelScaler
from hybrid.models.sizes import require_positive
from hybrid.physics.grid import Grid


class ResidualBlock(nn.Module):
    """``h + conv(σ(conv(σ(h))))`` with geometry-following padding."""

    def __init__(self, hidden: int, periodic: tuple[bool, ...], activation: str = "gelu") -> None:
        super().__init__()
        self.conv1 = GridConv(hidden, hidden, periodic)
        self.conv2 = GridConv(hidden, hidden, periodic)
        self.act = make_activation(activation)

    def forward(self, h: Tensor) -> Tensor:
        return h + self.conv2(self.act(self.conv1(self.act(h))))


class ResNet(nn.Module):
    """``dy/dt = out_scale * mask * net(mask * (y - mean) / std)``, a residual conv net.

    Lift (3x3, ``C -> hidden``), ``blocks`` residual blocks, projection (3x3, ``hidden -> C``,
    zero-initialised so that an untrained hybrid equals its prior). Padding follows the grid:
    circular on periodic axes, zeros at walls. On a 1-D grid every convolution is 1-D (width 3).
    ``t`` is unused.

    Args:
        channels: number of state channels ``C``.
        hidden: width of the hidden layers.
        blocks: number of residual blocks.
        grid: geometry giving the periodic axes and the ``active`` mask (inactive cells are
            read as 0 and get a zero tendency); default fully periodic and unmasked.
        coords: also feed the position (:func:`position_channels`), so the correction can depend
            on where it is (a local source, a coast) and not only on the local state. Needs
            ``grid``; the net is then no longer shift-equivariant.
        activation: ``"gelu"`` (default), ``"silu"``, ``"tanh"`` or ``"relu"`` (which can die:
            see :func:`hybrid.models.activations.activation`).
    """

    def __init__(
        self,
        channels: int,
        hidden: int = 16,
        blocks: int = 2,
        grid: Grid | None = None,
        coords: bool = False,
        activation: str = "gelu",
    ) -> None:
        super().__init__()
        require_positive("ResNet", channels=channels, hidden=hidden, blocks=blocks)
        self.periodic, active = geometry_of(grid)
        self.register_buffer("active", active)
        if coords and grid is None:
            raise ValueError("coords=True needs the grid (its shape and periodic axes)")
        positions = position_channels(grid.shape, self.periodic) if coords else None
        self.register_buffer("positions", positions, persistent=False)  # [P, *grid]
        self.scaler = ChannelScaler(channels, -1 - len(self.periodic))
        n_extra = 0 if positions is None else positions.shape[0]
        self.lift = GridConv(channels + n_extra, hidden, self.periodic)
        self.act = make_activation(activation)
        self.blocks = nn.Sequential(
            *(ResidualBlock(hidden, self.periodic, activation) for _ in range(blocks))
        )
        self.head = GridConv(hidden, channels, self.periodic)
        zero_init(self.head)

    def body(self, z: Tensor) -> Tensor:
        """``z: [N, C, *grid]`` (normalised, masked) -> ``[N, C, *grid]``."""
        if self.positions is not None:
            z = torch.cat([z, self.positions.to(z).expand(z.shape[0], *self.positions.shape)], 1)
        return self.head(self.act(self.blocks(self.lift(z))))

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        """``y: [..., C, *grid]`` -> ``dy/dt`` of the same shape."""
        return apply_on_field(self.body, self.scaler, self.active, y)
