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
