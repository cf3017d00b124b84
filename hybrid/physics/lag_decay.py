"""An anomaly relaxing to zero at the lag regression's rate: the damped persistence as an ODE."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def pchip_slopes(values: Tensor) -> Tensor:
    """Monotone (Fritsch-Carlson) slopes of a cubic Hermite through ``values`` at unit spacing:
    the harmonic mean of the neighbouring secants where they agree in sign, else 0; the end
    secants at the ends. ``[K]`` -> ``[K]``."""
    d = values.diff()  # [K-1] secants
    inner = torch.where(d[:-1] * d[1:] > 0, 2 * d[:-1] * d[1:] / (d[:-1] + d[1:]), 0.0)
    return torch.cat([d[:1], inner, d[-1:]])


class LagDecay(nn.Module):
    """``da/dt = -γ(t) a`` with ``∫_0^{lΔt} γ = -ln ρ_l``: ``a(lΔt) = ρ_l a(0)`` at every lag.

    ``t`` is the time since the forecast's start (the lead). ``ln ρ(t)`` is the monotone cubic
    Hermite (:func:`pchip_slopes`) through ``(lΔt, ln ρ_l)``, ``ρ_0 = 1``, and
    ``γ(t) = -d ln ρ / dt``, continuous in ``t`` (rk4 stages at a lag boundary then agree), so
    from an anomaly ``a(0)`` the forecast is the damped persistence ``ρ_l a(0)`` with ``ρ_l``
    the lag regression of the training anomalies (:func:`hybrid.data.climatology.lag_regression`),
    which may fall faster than any single exponential ``ρ_1^l``. Beyond the last lag ``L`` the
    last secant's rate holds. The rates are fixed (buffers), not learnt. Any state shape.

    Args:
        rho: ``ρ_1 … ρ_L``, positive.
        step: the lag ``Δt`` (s), the data step.
    """

    def __init__(self, rho: list[float], step: float) -> None:
        super().__init__()
        if not rho or min(rho) <= 0:
            raise ValueError(f"rho must be a non-empty list of positive values, got {rho}")
        if not step > 0:
            raise ValueError(f"step must be positive, got {step}")
        log_rho = torch.log(torch.tensor([1.0, *rho], dtype=torch.float64))  # [L+1]
        self.register_buffer("log_rho", log_rho.float())
        self.register_buffer("slopes", pchip_slopes(log_rho).float())  # d ln ρ / d(t/Δt)
        self.step = step

    def rate(self, t: Tensor) -> Tensor:
        """``γ(t) = -(1/Δt) d/ds`` of the Hermite cubic of ``ln ρ`` at ``s = t/Δt`` (a scalar)."""
        if t is None:
            raise ValueError("LagDecay's rate depends on the lead t, which was not given")
        s = float(t) / self.step
        last = len(self.slopes) - 1
        if s >= last:
            return -self.slopes[last] / self.step
        k = max(int(s), 0)
        u = max(s - k, 0.0)
        p, m = self.log_rho[k : k + 2], self.slopes[k : k + 2]
        dp = (6 * u * u - 6 * u) * (p[0] - p[1]) + (3 * u * u - 4 * u + 1) * m[0]
        return -(dp + (3 * u * u - 2 * u) * m[1]) / self.step

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        return -self.rate(t) * y

    def stable_dt(self) -> float:
        """``0.5 / max γ`` (on the secants): rk4 steps of ``γ h ≤ 0.5`` follow ``exp(-γ h)``."""
        return 0.5 * self.step / max(float(-self.log_rho.diff().min()), 1e-30)
