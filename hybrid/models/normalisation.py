"""Per-channel input normalisation and output scaling, stored with the network's checkpoint."""

from __future__ import annotations

import torch
from numpy.typing import ArrayLike
from torch import Tensor, nn


class ChannelScaler(nn.Module):
    """``normalise(y) = (y - mean) / std`` and ``scale_output(z) = z * out_scale`` per channel.

    The statistics are buffers (saved in ``state_dict``), so they travel with checkpoints. Until
    :meth:`set_statistics` is called they are the identity (``mean = 0``, ``std = out_scale = 1``).

    Args:
        channels: number of channels ``C``.
        channel_dim: the (negative) axis holding the channels: ``-1`` for ODE states ``[..., C]``,
            ``-3`` for fields ``[..., C, ny, nx]``.
    """

    def __init__(self, channels: int, channel_dim: int) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"channels must be positive, got {channels}")
        if channel_dim >= 0:
            raise ValueError(
                f"channel_dim must be negative (counted from the end), got {channel_dim}"
            )
        self.channels, self.channel_dim = channels, channel_dim
        self.register_buffer("mean", torch.zeros(channels))
        self.register_buffer("std", torch.ones(channels))
        self.register_buffer("out_scale", torch.ones(channels))

    def set_statistics(self, mean: ArrayLike, std: ArrayLike, out_scale: ArrayLike) -> None:
        """Set the statistics, each of shape ``[C]``.

        Args:
            mean: per-channel mean of the inputs ``y``.
            std: per-channel standard deviation of the inputs (positive).
            out_scale: per-channel scale of the outputs, e.g. the std of ``dy/dt`` (positive).

        Raises:
            ValueError: a shape other than ``[C]``, a non-finite value, or a non-positive scale.
        """
        values = {"mean": mean, "std": std, "out_scale": out_scale}
        for name, value in values.items():
            v = torch.as_tensor(value, dtype=self.mean.dtype, device=self.mean.device)
            if v.shape != (self.channels,):
                raise ValueError(f"{name} must have shape ({self.channels},), got {tuple(v.shape)}")
            if not torch.isfinite(v).all():
                raise ValueError(f"{name} must be finite, got {v.tolist()}")
            if name != "mean" and not (v > 0).all():
                raise ValueError(f"{name} must be positive, got {v.tolist()}")
            values[name] = v
        for name, v in values.items():
            getattr(self, name).copy_(v)

    def _along_channels(self, v: Tensor) -> Tensor:
        return v.reshape(-1, *([1] * (-self.channel_dim - 1)))  # [C] -> [C, 1, ..., 1]

    def normalise(self, y: Tensor) -> Tensor:
        """``(y - mean) / std`` broadcast along ``channel_dim``."""
        return (y - self._along_channels(self.mean)) / self._along_channels(self.std)

    def scale_output(self, z: Tensor) -> Tensor:
        """``z * out_scale`` broadcast along ``channel_dim``."""
        return z * self._along_channels(self.out_scale)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, channel_dim={self.channel_dim}"


class RawChannels(nn.Module):
    """The identity in place of a :class:`ChannelScaler`: raw states in, raw tendencies out.

    Not a ``ChannelScaler``, so training does not set the data's statistics on it.
    """

    def __init__(self, channel_dim: int) -> None:
        super().__init__()
        self.channel_dim = channel_dim

    def normalise(self, y: Tensor) -> Tensor:
        return y

    def scale_output(self, z: Tensor) -> Tensor:
        return z
