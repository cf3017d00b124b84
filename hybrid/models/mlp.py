"""Fully connected correction for ODE states ``[..., state_dim]`` (APHYNITY's pendulum net)."""

from __future__ import annotations

from torch import Tensor, nn

from hybrid.models.activations import activation as make_activation
from hybrid.models.normalisation import ChannelScaler


class MLP(nn.Module):
    """``dy/dt = out_scale * net((y - mean) / std)``, an MLP (ReLU, as APHYNITY's); ``t`` is unused.

    The last layer is zero-initialised, so an untrained hybrid equals its physics prior exactly.

    Args:
        state_dim: width of the state's last axis.
        hidden: width of the hidden layers (APHYNITY's pendulum used 200).
        depth: number of linear layers (at least 1; APHYNITY used 3).
        activation: ``"relu"`` (default, the paper's), ``"gelu"``, ``"silu"`` or ``"tanh"``.
    """

    def __init__(
        self, state_dim: int, hidden: int = 200, depth: int = 3, activation: str = "relu"
    ) -> None:
        super().__init__()
        for name, value in {"state_dim": state_dim, "hidden": hidden, "depth": depth}.items():
            if value < 1:
                raise ValueError(f"{name} must be positive, got {value}")
        self.scaler = ChannelScaler(state_dim, -1)
        widths = [state_dim] + [hidden] * (depth - 1)
        layers: list[nn.Module] = []
        for w_in, w_out in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.Linear(w_in, w_out), make_activation(activation)]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(widths[-1], state_dim)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        """``y: [..., state_dim]`` -> ``dy/dt`` of the same shape."""
        return self.scaler.scale_output(self.head(self.body(self.scaler.normalise(y))))
