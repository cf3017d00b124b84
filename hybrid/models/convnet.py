"""APHYNITY's convolutional correction (``ConvNetEstimator``) for fields ``[..., C, *grid]``."""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from hybrid.models.conv import GridConv, apply_on_field, geometry_of, zero_init
from hybrid.models.normalisation import ChannelScaler, RawChannels
from hybrid.models.sizes import require_choice, require_positive
from hybrid.physics.grid import Grid

BATCH_NORM = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d}


class ConvNet(nn.Module):
    """``dy/dt = out_scale * mask * net(mask * (y - mean) / std)`` with APHYNITY's estimator as net:

    ``depth`` 3x3 convolutions (``C -> hidden -> ... -> hidden -> C``; width 3 on a 1-D grid),
    each but the last followed
    by batch-statistics normalisation (``BatchNorm2d`` without running statistics, when
    ``batch_norm``) and ReLU; the
    hidden convolutions have no bias when normalised, as in the paper's code. The last one is
    zero-initialised (an untrained hybrid equals its prior). Padding follows the grid. ``t`` is
    unused.

    With ``batch_norm`` the output for one state depends on the others in the same call, as in
    the paper (its norm has no running statistics): a rollout normalises over the batch at each
    evaluation, the correction norm over all the true states at once.

    The reference code's ``ConvNetEstimator`` exactly is ``padding="zeros", init="default",
    normalise=False``: every convolution zero-padded (also across a periodic seam), PyTorch's
    default initialisation for every layer, the raw state in and out.

    Args:
        channels: number of state channels ``C``.
        hidden: width of the hidden layers (the paper: 16).
        depth: number of convolutions (the paper: 3).
        grid: geometry giving the periodic axes and the ``active`` mask; default fully periodic.
        batch_norm: normalise the hidden layers with the batch's statistics (the paper: yes).
        padding: ``"grid"`` (circular on periodic axes, zeros at walls) or ``"zeros"`` (zeros on
            every axis, the reference code's).
        init: ``"zero"`` (last layer zero) or ``"default"`` (PyTorch's, the reference code's).
        normalise: normalise inputs and scale outputs by the training data's statistics.
    """

    def __init__(
        self,
        channels: int,
        hidden: int = 16,
        depth: int = 3,
        grid: Grid | None = None,
        batch_norm: bool = True,
        padding: Literal["grid", "zeros"] = "grid",
        init: Literal["zero", "default"] = "zero",
        normalise: bool = True,
    ) -> None:
        super().__init__()
        require_positive("ConvNet", channels=channels, hidden=hidden)
        if depth < 2:
            raise ValueError(f"depth must be at least 2 (a hidden and a last layer), got {depth}")
        require_choice("ConvNet", "padding", padding, ("grid", "zeros"))
        require_choice("ConvNet", "init", init, ("zero", "default"))
        self.periodic, active = geometry_of(grid)
        self.register_buffer("active", active)  # saved: see ResNet
        dim = -1 - len(self.periodic)
        self.scaler = ChannelScaler(channels, dim) if normalise else RawChannels(dim)
        pads = self.periodic if padding == "grid" else (False,) * len(self.periodic)
        widths = [channels] + [hidden] * (depth - 1)
        layers: list[nn.Module] = []
        for w_in, w_out in zip(widths[:-1], widths[1:], strict=True):
            conv = GridConv(w_in, w_out, pads)
            if batch_norm:  # a bias before a batch norm is cancelled by its mean
                conv.conv.bias = None
            norm = BATCH_NORM[len(self.periodic)] if batch_norm else None
            norm = norm(w_out, track_running_stats=False) if norm else nn.Identity()
            layers += [conv, norm, nn.ReLU(inplace=True)]  # neither needs its output back
        self.hidden = nn.Sequential(*layers)
        self.head = GridConv(hidden, channels, pads)
        if init == "zero":
            zero_init(self.head)

    def body(self, z: Tensor) -> Tensor:
        """``z: [N, C, *grid]`` (normalised, masked) -> ``[N, C, *grid]``."""
        return self.head(self.hidden(z))

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        """``y: [..., C, *grid]`` -> ``dy/dt`` of the same shape."""
        return apply_on_field(self.body, self.scaler, self.active, y)
