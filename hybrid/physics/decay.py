"""First-order loss of a tracer: ∂c/∂t = -γ c."""

from __future__ import annotations

from torch import Tensor, nn

from hybrid.physics.parameters import Positive, log_parameter


class LinearDecay(nn.Module):
    """∂c/∂t = -γ c (radioactive or chemical decay, relaxation to zero), any shape ``[...]``.

    The default advection-diffusion dataset adds this term to transport, so that a transport-only
    prior is incomplete and the learned correction has something physical to find.

    Args:
        gamma: decay rate γ in 1/s (positive, stored as ``log_gamma``).
    """

    def __init__(self, gamma: float = 1e-5) -> None:
        super().__init__()
        self.log_gamma = log_parameter(gamma, "gamma")

    gamma = Positive()

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        return -self.gamma * y

    def stable_dt(self) -> float:
        return 2.0 / float(self.gamma.detach())
