"""Fully connected correction for ODE states ``[..., state_dim]`` (APHYNITY's pendulum net)."""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from hybrid.models.activations import activation as make_activation
from hybrid.models.normalisation import ChannelScaler, RawChannels
from hybrid.models.sizes import require_choice, require_positive


class MLP(nn.Module):
    """``dy/dt = out_scale * net((y - mean) / std)``, an MLP (ReLU, as APHYNITY's); ``t`` is unused.

    By default the last layer is zero-initialised, so an untrained hybrid equals its physics prior
    exactly, and the input is normalised and the output scaled by the data's statistics.
    ``init="orthogonal"`` with ``normalise=False`` is the reference code's pendulum network
    (orthogonal weights of gain 0.2 in every layer, zero biases, raw state in and out).

    Args:
        state_dim: width of the state's last axis.
        hidden: width of the hidden layers (APHYNITY's pendulum used 200).
        depth: number of linear layers (at least 1; APHYNITY used 3).
        activation: ``"relu"`` (default, the paper's), ``"gelu"``, ``"silu"`` or ``"tanh"``.
        init: ``"zero"`` (last layer zero) or ``"orthogonal"`` (every layer, gain ``gain``).
        gain: the orthogonal initialisation's gain.
        normalise: normalise inputs and scale outputs by the training data's statistics.
    """

    def __init__(
        self,
        state_dim: int,
        hidden: int = 200,
        depth: int = 3,
        activation: str = "relu",
        init: Literal["zero", "orthogonal"] = "zero",
        gain: float = 0.2,
        normalise: bool = True,
    ) -> None:
        super().__init__()
        require_positive("MLP", state_dim=state_dim, hidden=hidden, depth=depth)
        require_choice("MLP", "init", init, ("zero", "orthogonal"))
        self.scaler = ChannelScaler(state_dim, -1) if normalise else RawChannels(-1)
        widths = [state_dim] + [hidden] * (depth - 1)
        layers: list[nn.Module] = []
        for w_in, w_out in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.Linear(w_in, w_out), make_activation(activation)]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(widths[-1], state_dim)
        if init == "zero":
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)
        else:
            for layer in self.modules():
                if isinstance(layer, nn.Linear):
                    nn.init.orthogonal_(layer.weight, gain=gain)
                    nn.init.zeros_(layer.bias)

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        """``y: [..., state_dim]`` -> ``dy/dt`` of the same shape."""
        return self.scaler.scale_output(self.head(self.body(self.scaler.normalise(y))))
