"""Lotka-Volterra against its conserved quantity, its equilibrium and per-environment parameters."""

from __future__ import annotations

import pytest
import torch

from hybrid.dynamics import rollout
from hybrid.physics.lotka_volterra import LotkaVolterra, lotka_volterra_invariant


@pytest.mark.parametrize(("alpha", "gamma"), [(0.5, 0.5), (0.25, 1.0), (1.0, 0.25)])
def test_invariant_is_constant_along_trajectories(float64, alpha, gamma):
    prior = LotkaVolterra(alpha=alpha, gamma=gamma)
    y0 = torch.tensor([[1.0, 1.5], [2.0, 1.2]])
    t = torch.arange(0, 10, 0.5)
    with torch.no_grad():
        y = rollout(prior, y0, t, method="dopri5", rtol=1e-10, atol=1e-10)  # [2, 20, 2]
    v = lotka_volterra_invariant(y, alpha, 0.5, gamma, 0.5)
    assert float((v - v[:, :1]).abs().max()) < 1e-8
    assert float((y - y[:, :1]).abs().max()) > 0.1  # it does move


def test_equilibrium_is_still(float64):
    prior = LotkaVolterra(alpha=0.75, beta=0.5, gamma=0.25, delta=0.5)
    y = torch.tensor([0.25 / 0.5, 0.75 / 0.5])  # (γ/δ, α/β)
    assert torch.allclose(prior(None, y), torch.zeros(2), atol=1e-15)


def test_parameters_broadcast_per_leading_index(float64):
    prior = LotkaVolterra()
    y = torch.rand(3, 4, 2) + 1  # [E, b, 2]
    alphas = torch.tensor([0.25, 0.5, 1.0])
    prior.log_alpha = torch.nn.Parameter(alphas.log().view(3, 1))
    out = prior(None, y)
    for e, a in enumerate(alphas):
        assert torch.allclose(out[e], LotkaVolterra(alpha=float(a)).double()(None, y[e]))


def test_positive_parameters_are_required():
    with pytest.raises(ValueError, match="gamma must be positive"):
        LotkaVolterra(gamma=0.0)
