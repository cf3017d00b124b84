"""Correction networks with the ``forward(t, y)`` contract.

Each one normalises its input per channel (:class:`ChannelScaler`, statistics saved with the
checkpoint), scales its output back, and starts with a zero last layer so that an untrained hybrid
equals its physics prior exactly.
"""

from hybrid.models.convnet import ConvNet
from hybrid.models.mlp import MLP
from hybrid.models.normalisation import ChannelScaler
from hybrid.models.resnet import ResNet
from hybrid.models.unet import UNet

__all__ = ["ConvNet", "MLP", "ChannelScaler", "ResNet", "UNet"]
