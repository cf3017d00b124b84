"""The wave and reaction-diffusion priors on a line (``dims=1``), against their known answers."""

from __future__ import annotations

import math

import pytest
import torch

from hybrid.dynamics import rollout
from hybrid.physics.reaction_diffusion import (
    DiffusionOnly,
    ReactionDiffusion,
    laplacian_eigenvalue,
    uniform_steady_state,
)
from hybrid.physics.wave import DampedWave, UndampedWave, wave_dispersion, wave_energy


@pytest.fixture(autouse=True)
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.mark.parametrize("m", [1, 4])
def test_diffusion_on_a_line_decays_each_mode_at_the_3_point_eigenvalue(m):
    size, length, a = 32, 2.0, 1e-2
    prior = DiffusionOnly(a=a, b=2 * a, size=size, length=length, dims=1)
    x = torch.arange(size) / size
    y0 = torch.stack((torch.cos(2 * math.pi * m * x), torch.cos(2 * math.pi * m * x)))[None]
    with torch.no_grad():
        y = rollout(prior, y0, torch.tensor([0.0, 3.0]), method="dopri5", rtol=1e-11, atol=1e-13)
    lam = laplacian_eigenvalue(m, 0, size, length)
    assert y.shape == (1, 2, 2, size)
    assert torch.allclose(y[0, 1, 0], math.exp(-a * lam * 3) * y0[0, 0], atol=1e-10)
    assert torch.allclose(y[0, 1, 1], math.exp(-2 * a * lam * 3) * y0[0, 1], atol=1e-10)


def test_fitzhugh_nagumo_on_a_line_keeps_its_uniform_steady_state():
    prior = ReactionDiffusion(size=16, dims=1)
    u, v = uniform_steady_state(float(prior.k.detach()))
    y = torch.tensor([u, v])[:, None].expand(2, 16)[None]
    assert prior(torch.tensor(0.0), y).abs().max() < 1e-15
    assert prior.stable_dt() == pytest.approx(2 / (4 * 5e-3 / (2 / 16) ** 2 + 3))


@pytest.mark.parametrize("damping", [0.0, 1.0])
def test_a_wave_mode_on_a_periodic_line_oscillates_at_the_discrete_dispersion_frequency(damping):
    size, dx, c, k = 32, 1.0, 2.0, 2 * math.pi * 3 / 32
    kwargs = {"c": c, "size": size, "dx": dx, "periodic": True, "dims": 1}
    prior = DampedWave(k=damping, **kwargs) if damping else UndampedWave(**kwargs)
    omega = wave_dispersion(c, damping, k, 0.0, dx)
    x = torch.arange(size) * dx
    y0 = torch.stack((torch.cos(k * x), -damping / 2 * torch.cos(k * x)))[None]
    t = torch.tensor([0.0, 0.7, 1.9])
    with torch.no_grad():
        y = rollout(prior, y0, t, method="dopri5", rtol=1e-11, atol=1e-13)
    for i, ti in enumerate(t.tolist()):  # w = exp(-kt/2) cos(ωt) cos(kx) for these initial data
        exact = math.exp(-damping * ti / 2) * math.cos(omega * ti) * torch.cos(k * x)
        assert torch.allclose(y[0, i, 0], exact, atol=1e-9)
    if not damping:
        energy = wave_energy(y, c, dx, dims=1)
        assert torch.allclose(energy, energy[:, :1], rtol=1e-9)


def test_priors_refuse_a_rank_other_than_1_or_2():
    with pytest.raises(ValueError, match="dims must be 1"):
        DampedWave(dims=3)
    with pytest.raises(ValueError, match="dims must be 1"):
        ReactionDiffusion(dims=0)
