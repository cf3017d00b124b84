"""Priors written the way a user would, outside the package, for tests that name them by
``class_path`` (the test prepends this folder to ``sys.path``)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Decay(nn.Module):
    """dy/dt = −r·y, any shape, with r stored as its log (no scale hints, no stable step)."""

    def __init__(self, r: float = 1.0) -> None:
        super().__init__()
        self.log_r = nn.Parameter(torch.tensor(float(r)).log())

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        return -self.log_r.exp() * y


class Spring(nn.Module):
    """dx/dt = v, dv/dt = −k·x on ``[..., 2]`` states ``(x, v)``, k stored as its log."""

    def __init__(self, k: float = 1.0) -> None:
        super().__init__()
        self.log_k = nn.Parameter(torch.tensor(float(k)).log())

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        x, v = y.unbind(-1)
        return torch.stack((v, -self.log_k.exp() * x), -1)
