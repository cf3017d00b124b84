"""Gray-Scott: the 9-point Laplacian against exact eigenvalues, the reaction by hand."""

from __future__ import annotations

import math

import pytest
import torch

from hybrid.physics.gray_scott import GrayScott, laplacian_9


@pytest.mark.parametrize("n", [16, 32, 64])
def test_laplacian_second_order_on_a_sine(float64, n):
    x = torch.arange(n) / n
    a = torch.sin(2 * math.pi * x)[None, :] * torch.cos(2 * math.pi * x)[:, None]
    dx = 1.0 / n
    err = (laplacian_9(a, dx) + 8 * math.pi**2 * a).abs().max() / (8 * math.pi**2)
    assert float(err) < 2.0 * (2 * math.pi * dx) ** 2  # O(dx²)
    assert float(err) > 0.1 * (2 * math.pi * dx) ** 2


def test_checkerboard_eigenvalue(float64):
    a = (-1.0) ** (torch.arange(8)[:, None] + torch.arange(8)[None, :])
    assert torch.allclose(laplacian_9(a.double(), 0.5), -4 / 0.25 * a.double())


def test_reaction_terms_by_hand(float64):
    """Uniform state: no diffusion, ``du = −u v² + F(1 − u)``, ``dv = u v² − (F + k) v``."""
    prior = GrayScott(F=0.03, k=0.06)
    y = torch.empty(1, 2, 8, 8)
    y[:, 0], y[:, 1] = 0.8, 0.3
    out = prior(None, y)
    assert torch.allclose(out[:, 0], torch.tensor(-0.8 * 0.09 + 0.03 * 0.2))
    assert torch.allclose(out[:, 1], torch.tensor(0.8 * 0.09 - 0.09 * 0.3))


def test_diffusion_of_a_mode(float64):
    """``v = 0``, ``u = 1 + ε m`` with ``m`` an eigenmode: ``du = −D_u λ ε m − F ε m``."""
    n, eps = 16, 1e-3
    prior = GrayScott(dx=1.0)
    x = torch.arange(n) / n
    m = torch.cos(2 * math.pi * x)[None, :].expand(n, n)
    y = torch.stack((1 + eps * m, torch.zeros(n, n)))
    lam = laplacian_9(m, 1.0) / m.where(m.abs() > 0.5, torch.ones(()))
    expected = (prior.D_u * laplacian_9(eps * m, 1.0) - prior.F * eps * m).detach()
    assert torch.allclose(prior(None, y)[0], expected)
    assert float(lam[0, 0]) == pytest.approx(2 * (math.cos(2 * math.pi / n) - 1), rel=1e-12)


def test_stable_dt():
    assert GrayScott(D_u=0.2, D_v=0.1, dx=1.0).stable_dt() == pytest.approx(2.5 / 0.8)
