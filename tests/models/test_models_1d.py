"""The correction networks and the flow estimator on a 1-D grid: 1-D convolutions, padding that
follows the circle or the walls, the land mask, and the same contracts as in 2-D."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from torch import nn

from hybrid.models import ConvNet, ResNet, UNet
from hybrid.models.conv import position_channels
from hybrid.models.flow import FlowEstimator
from hybrid.physics.advection_diffusion import AdvectionDiffusion
from hybrid.physics.grid import Grid

NETS = {
    "resnet": lambda g: ResNet(channels=2, hidden=8, grid=g),
    "resnet_coords": lambda g: ResNet(channels=2, hidden=8, grid=g, coords=True),
    "unet": lambda g: UNet(channels=2, hidden=4, levels=2, grid=g),
    "convnet": lambda g: ConvNet(channels=2, hidden=8, grid=g, batch_norm=False),
}


def _circle(n: int = 32, active=None) -> Grid:
    return Grid.latlon(0.0, np.arange(n) * 360.0 / n, active=active)


def _randomise(net: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.3)
    return net


@pytest.mark.parametrize("name", sorted(NETS))
def test_a_net_on_a_1d_grid_is_1d_and_starts_at_zero(name):
    net = NETS[name](_circle())
    convs = [m for m in net.modules() if isinstance(m, nn.Conv1d | nn.Conv2d)]
    assert convs and all(isinstance(m, nn.Conv1d) for m in convs)
    y = torch.randn(3, 5, 2, 32)  # [B, T, C, nx]
    assert torch.equal(net(torch.tensor(0.0), y), torch.zeros_like(y))


@pytest.mark.parametrize("name", ["resnet", "unet", "convnet"])
def test_a_net_on_a_longitude_circle_commutes_with_rotations(name):
    """Circular padding: rotating the input by 4 cells (a multiple of the U-Net's 2**levels)
    rotates the output, seam included; a walled line does not (its ends see zeros)."""
    y = torch.randn(2, 2, 32)
    for grid, commutes in ((_circle(), True), (Grid.regular_line(32, 1e3, periodic=False), False)):
        net = _randomise(NETS[name](grid))
        out, rolled = net(0, y), net(0, torch.roll(y, 4, dims=-1))
        assert torch.allclose(rolled, torch.roll(out, 4, dims=-1), atol=1e-5) == commutes


@pytest.mark.parametrize("name", sorted(NETS))
def test_land_on_a_circle_reads_as_zero_and_gets_no_tendency(name):
    active = np.ones(32, bool)
    active[10:14] = False
    net = _randomise(NETS[name](_circle(active=active)))
    y = torch.randn(2, 2, 32)
    y_nan = y.clone()
    y_nan[..., 10:14] = float("nan")
    out = net(0, y_nan)
    assert torch.isfinite(out).all() and torch.all(out[..., 10:14] == 0)
    assert torch.equal(out, net(0, torch.where(torch.isnan(y_nan), 0.0, y)))


@pytest.mark.parametrize("name", sorted(NETS))
def test_a_1d_net_comes_back_from_a_weights_only_checkpoint(name):
    net = _randomise(NETS[name](_circle()))
    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)
    buffer.seek(0)
    back = NETS[name](_circle())
    back.load_state_dict(torch.load(buffer, weights_only=True))
    y = torch.randn(2, 2, 32)
    assert torch.equal(back(0, y), net(0, y))


def test_position_channels_on_a_circle_and_a_line():
    on_circle = position_channels((8,), (True,))
    assert on_circle.shape == (2, 8)
    assert torch.allclose(on_circle[0], torch.sin(2 * torch.pi * torch.arange(8) / 8))
    assert position_channels((5,), (False,)).tolist() == [[-1.0, -0.5, 0.0, 0.5, 1.0]]


def test_the_unet_names_a_circle_that_does_not_divide():
    with pytest.raises(ValueError, match=r"divisible by 4, got grid shape \(nx,\) = \(30,\)"):
        UNet(channels=1, levels=2, grid=_circle(30))


# --- the flow estimator on a circle --------------------------------------------------------------


def test_the_1d_flow_estimator_gives_one_component_and_starts_with_no_flow():
    grid = _circle()
    estimator = FlowEstimator(frames=3, hidden=4, levels=2, speed=5.0, divergence=1.0, dims=1)
    prior = AdvectionDiffusion(grid, kappa=1e4, velocity=estimator)
    estimator.observe(torch.randn(2, 3, 1, 32), grid)
    (u,) = estimator()
    assert u.shape == (2, 1, 32) and torch.all(u == 0)
    y = torch.randn(2, 1, 32)
    assert torch.allclose(prior(0, y), AdvectionDiffusion(grid, kappa=1e4)(0, y))


def test_the_flow_estimator_names_a_rank_that_does_not_fit():
    with pytest.raises(ValueError, match=r"dims=2\) was given a 1-D grid .*set dims=1"):
        FlowEstimator(frames=2, levels=1).observe(torch.randn(1, 2, 1, 32), _circle())
    with pytest.raises(ValueError, match="2 components for a 1-D grid"):
        AdvectionDiffusion(_circle(), velocity=FlowEstimator(dims=2))
    with pytest.raises(ValueError, match=r"past frames \[B, frames, C, nx\]"):
        FlowEstimator(frames=2, levels=1, dims=1).observe(torch.randn(1, 3, 1, 32), _circle())


def test_aphynitys_batch_norm_on_a_circle_is_1d():
    net = _randomise(ConvNet(channels=2, hidden=8, grid=_circle(), batch_norm=True))
    assert any(isinstance(m, nn.BatchNorm1d) for m in net.modules())
    assert net(0, torch.randn(4, 2, 32)).shape == (4, 2, 32)


def test_the_flow_regularisers_on_a_circle_have_their_discrete_values():
    """``u = sin(kx)``: the face-averaged divergence is ``cos(kx) sin(kΔ)/Δ`` and the centred
    gradient the same, so both mean squares are ``(sin(kΔ)/Δ)²/2``; ``‖u‖²`` is ``1/2``."""
    from hybrid.flow import divergence_sq, magnitude_sq, smoothness_sq

    grid = _circle(64)
    dx = float(grid.dx_east[0])
    k = 3 * 2 * torch.pi / (64 * dx)
    u = torch.sin(k * torch.arange(64) * dx)[None]
    want = (torch.sin(torch.tensor(k * dx)) / dx) ** 2 / 2
    assert float(divergence_sq(u, grid)) == pytest.approx(float(want), rel=1e-5)
    assert float(smoothness_sq(u, grid)) == pytest.approx(float(want), rel=1e-5)
    assert float(magnitude_sq(u, grid)) == pytest.approx(0.5, rel=1e-5)
