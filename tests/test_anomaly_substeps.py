"""The bound on sub-steps per data step: a clear error beyond it, checkpointed evaluations
(the same gradients, far less memory kept for the backward) when they grow."""

from __future__ import annotations

import pytest
import torch

from hybrid.dynamics import HybridField, TooManySubstepsError, rollout
from hybrid.models import ResNet
from hybrid.physics.advection_diffusion import AdvectionDiffusion
from hybrid.physics.grid import Grid


def _hybrid(kappa: float) -> HybridField:
    """Diffusion on a 8 x 8 periodic box of 1 km cells plus a randomised ResNet."""
    torch.manual_seed(0)
    grid = Grid.regular_box(8, 8, dx=1e3)
    net = ResNet(1, hidden=4, blocks=1, grid=grid)
    torch.nn.init.normal_(net.head.conv.weight, std=0.3)
    net.scaler.set_statistics([0.0], [1.0], [1e-5])  # a tendency of order 1e-5 per second
    return HybridField(AdvectionDiffusion(grid, kappa=kappa), net)


def test_too_many_substeps_names_the_steps_and_the_parameters():
    field = _hybrid(kappa=99.0)  # stable step 2 / (8 κ / Δ²) = 2525 s
    t = torch.tensor([0.0, 25_000.0])  # 10 sub-steps per data step
    y0 = torch.randn(2, 1, 8, 8)
    assert rollout(field, y0, t, method="rk4", max_substeps=10).shape == (2, 2, 1, 8, 8)
    with pytest.raises(
        TooManySubstepsError,
        match=r"2525 s needs 10 sub-steps .* 2\.5e\+04 s, "
        r"more than max_substeps=9 \(prior: kappa=99\)",
    ):
        rollout(field, y0, t, method="rk4", max_substeps=9)


def _saved_bytes_and_grads(field: HybridField, checkpoint_substeps: int | None):
    """Bytes autograd keeps for the backward of one rollout, and the gradients."""
    y0 = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([0.0, 25_000.0])  # 10 sub-steps per data step at κ = 99
    saved = []

    def pack(x):
        saved.append(x.numel() * x.element_size())
        return x

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        pred = rollout(field, y0, t, method="rk4", checkpoint_substeps=checkpoint_substeps)
    pred.square().mean().backward()
    return sum(saved), [p.grad.clone() for p in field.parameters()]


def test_checkpointing_many_substeps_keeps_the_gradients_and_cuts_the_memory(float64):
    direct_bytes, direct = _saved_bytes_and_grads(_hybrid(99.0), None)
    ckpt_bytes, ckpt = _saved_bytes_and_grads(_hybrid(99.0), 2)
    for a, b in zip(direct, ckpt, strict=True):
        assert a.abs().max() > 0
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-15)
    # kept: one state per evaluation instead of every hidden layer of the net and the prior
    assert ckpt_bytes < direct_bytes / 8
    # below the threshold nothing changes
    same_bytes, _ = _saved_bytes_and_grads(_hybrid(99.0), 10)
    assert same_bytes == direct_bytes


def test_the_warm_start_fit_keeps_nothing_for_a_backward(float64):
    """The Gauss-Newton fit is forward mode only: called in a training step (grad mode on, the
    network's weights trainable) it must not record the rollouts' activations (it did: 18 GB on
    OSTIA), and it still finds the diffusivity that made the data."""
    from hybrid.warm_start import rollout_fit

    truth = _hybrid(50.0)
    y0 = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([0.0, 25_000.0])  # 5 sub-steps at κ = 50, 10 at κ = 99
    with torch.no_grad():
        y = rollout(truth, y0, t, method="rk4")
    field = _hybrid(99.0)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(
        lambda x: saved.append(x.numel()) or x, lambda x: x
    ):
        stored, _ = rollout_fit(field, t, y, None, None, iterations=4)
    assert sum(saved) < 10, saved  # a scalar, not the activations (43 million numbers)
    assert float(stored["physics.log_kappa"].exp()) == pytest.approx(50.0, rel=1e-3)  # from 99
