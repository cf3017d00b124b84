"""HybridField composition and rollout: shapes, convergence order, sub-stepping, gradients."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from hybrid.dynamics import Checkpointed, HybridField, rollout, substep_size


class Linear(nn.Module):
    """dy/dt = A y on the last axis (exact solution: expm(A t) y0)."""

    def __init__(self, a: Tensor, stable_dt: float | None = None) -> None:
        super().__init__()
        self.a = nn.Parameter(a.clone())
        if stable_dt is not None:
            self.stable_dt = lambda: stable_dt

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        return y @ self.a.T


class Pendulum(nn.Module):
    """Damped pendulum, nonlinear and with two named parameters."""

    def __init__(self, omega0_sq: float = 1.3, alpha: float = 0.2) -> None:
        super().__init__()
        self.omega0_sq = nn.Parameter(torch.tensor(omega0_sq))
        self.alpha = nn.Parameter(torch.tensor(alpha))

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        theta, omega = y.unbind(-1)
        return torch.stack((omega, -self.omega0_sq * torch.sin(theta) - self.alpha * omega), -1)


class ZeroCorrection(nn.Module):
    """An MLP-like correction whose last layer starts at zero."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, 16), nn.Tanh(), nn.Linear(16, dim))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        return self.net(y)


A = torch.tensor([[0.0, 1.0, 0.0], [-2.0, -0.3, 0.5], [0.1, 0.0, -0.7]], dtype=torch.float64)
Y0 = torch.tensor([[1.0, 0.0, -0.5], [0.3, 0.8, 0.2]], dtype=torch.float64)  # [B=2, 3]


def test_zero_initialised_correction_equals_physics(float64):
    physics, correction = Pendulum(), ZeroCorrection(2)
    hybrid = HybridField(physics, correction)
    y = torch.randn(5, 2)
    torch.testing.assert_close(hybrid(torch.tensor(0.0), y), physics(torch.tensor(0.0), y))
    t = torch.linspace(0, 2, 6)
    torch.testing.assert_close(rollout(hybrid, y, t), rollout(physics, y, t), rtol=0, atol=0)


def test_hybrid_field_needs_a_part():
    with pytest.raises(ValueError, match="at least one of `physics` or `correction`"):
        HybridField()


@pytest.mark.parametrize("parts", ["both", "physics", "correction"])
def test_hybrid_field_is_the_sum_of_its_parts(float64, parts):
    physics, correction = Pendulum(), Linear(torch.tensor([[0.1, -0.2], [0.3, 0.4]]))
    y, t = torch.randn(4, 2), torch.tensor(0.3)
    p = physics if parts != "correction" else None
    c = correction if parts != "physics" else None
    want = sum(f(t, y) for f in (p, c) if f is not None)
    torch.testing.assert_close(HybridField(p, c)(t, y), want, rtol=0, atol=0)


@pytest.mark.parametrize("state", [(3,), (2, 4, 5)])
@pytest.mark.parametrize("method", ["dopri5", "rk4"])
def test_rollout_is_batch_first(float64, state, method):
    field = Linear(torch.tensor([[-0.5]]))  # acts on the last axis of size 1
    y0 = torch.randn(7, *state, 1)  # [B, *S]
    t = torch.linspace(0, 1, 4)  # [T]
    y = rollout(field, y0, t, method=method)
    assert y.shape == (7, 4, *state, 1)  # [B, T, *S]
    torch.testing.assert_close(y[:, 0], y0, rtol=0, atol=0)
    torch.testing.assert_close(y[:, -1], y0 * math.exp(-0.5), rtol=1e-5, atol=0)


def _linear_error(method: str, n_steps: int, dense: bool) -> float:
    t_end = 2.0
    field = Linear(A)
    exact = Y0 @ torch.linalg.matrix_exp(A * t_end).T
    with torch.no_grad():
        if dense:  # one output per step: data step == step
            y = rollout(field, Y0, torch.linspace(0, t_end, n_steps + 1), method=method)
        else:  # one data step, divided exactly into n_steps
            t = torch.tensor([0.0, t_end])
            y = rollout(field, Y0, t, method=method, step_size=t_end / n_steps)
    return float((y[:, -1] - exact).abs().max())


@pytest.mark.parametrize("dense", [True, False], ids=["data_step", "sub_steps"])
@pytest.mark.parametrize(("method", "order"), [("euler", 1), ("midpoint", 2), ("rk4", 4)])
def test_fixed_step_convergence_order(float64, method, order, dense):
    steps = np.array([16, 32, 64, 128])
    errors = [_linear_error(method, int(n), dense) for n in steps]
    slope = np.polyfit(np.log(2.0 / steps), np.log(errors), 1)[0]
    assert abs(slope - order) < 0.3, (slope, errors)


@pytest.mark.parametrize(
    ("dt_data", "dt_stable", "step_size", "want"),
    [
        (1.0, math.inf, None, 1.0),
        (1.0, 0.3, None, 0.25),
        (1.0, 0.25, None, 0.25),
        (0.1, 0.01, None, 0.01),
        (1.0, math.inf, 0.4, 1 / 3),
        (1.0, 0.3, 0.2, 0.2),
        (1.0, 0.3, 0.21, 0.2),
        (3600.0, 7.3, None, 3600.0 / 494),
    ],
)
def test_substep_size_divides_the_data_step(dt_data, dt_stable, step_size, want):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        step = substep_size(dt_data, dt_stable, step_size)
    assert step == pytest.approx(want, rel=1e-12)
    n = dt_data / step
    assert n == pytest.approx(round(n), rel=1e-12)
    assert step <= dt_stable * (1 + 1e-12) and step <= (step_size or math.inf) * (1 + 1e-12)
    if n > 1:  # the largest such step: one fewer sub-step would break a limit
        assert dt_data / (round(n) - 1) > min(dt_stable, step_size or math.inf)


def test_substep_size_warns_beyond_the_stable_step():
    with pytest.warns(UserWarning, match="exceeds the prior's stable step"):
        step = substep_size(1.0, 0.3, 0.5)
    assert step == pytest.approx(0.25)


def test_rollout_sub_steps_at_the_fields_stable_step(float64):
    unstable = Linear(A, stable_dt=0.05)
    t = torch.linspace(0, 1, 3)
    with pytest.warns(UserWarning, match="exceeds the prior's stable step"):
        y = rollout(unstable, Y0, t, method="euler", step_size=0.5)
    want = rollout(Linear(A), Y0, t, method="euler", step_size=0.05)
    torch.testing.assert_close(y, want, rtol=0, atol=0)
    # a HybridField passes its physics' stable step on
    hybrid = HybridField(unstable, ZeroCorrection(3))
    assert hybrid.stable_dt() == 0.05
    torch.testing.assert_close(rollout(hybrid, Y0, t, method="euler"), want, rtol=1e-15, atol=0)


@pytest.mark.parametrize("method", ["rk4", "dopri5"])
def test_gradcheck_through_rollout(float64, method):
    t = torch.tensor([0.0, 0.5, 1.0])  # 2 steps
    y0 = torch.tensor([[0.4, -0.2], [1.0, 0.3]], requires_grad=True)
    params = torch.tensor([1.3, 0.2], requires_grad=True)

    def solve(y0, params):
        field = Pendulum()
        del field.omega0_sq, field.alpha  # plain tensors, so gradcheck can perturb them
        field.omega0_sq, field.alpha = params.unbind()
        return rollout(field, y0, t, method=method, rtol=1e-10, atol=1e-12)

    assert torch.autograd.gradcheck(solve, (y0, params))


@pytest.mark.parametrize(
    ("method", "kwargs"),
    [("dopri5", dict(rtol=1e-10, atol=1e-12)), ("rk4", dict(step_size=0.01))],
)
def test_adjoint_gradients_equal_direct_backprop(float64, method, kwargs):
    t = torch.linspace(0, 2, 5)
    weights = torch.linspace(0.5, 1.5, 5)[None, :, None]  # [1, T, 1]
    grads = []
    for adjoint in (False, True):
        field = Pendulum()
        y0 = torch.tensor([[0.8, 0.0], [-0.3, 0.5]], requires_grad=True)
        y = rollout(field, y0, t, method=method, adjoint=adjoint, **kwargs)
        (weights * y.square()).sum().backward()
        grads.append([y0.grad, field.omega0_sq.grad, field.alpha.grad])
    for direct, adj in zip(*grads, strict=True):
        assert direct is not None and direct.abs().max() > 1e-3
        torch.testing.assert_close(adj, direct, rtol=1e-6, atol=1e-8)


def _wave_hybrid(chunk: int | None, checkpointed: bool):
    """An undamped-wave prior plus a randomised ResNet on a tiny walled grid."""
    from hybrid.models import ResNet
    from hybrid.physics.wave import UndampedWave

    torch.manual_seed(0)
    net = ResNet(2, hidden=3, blocks=1)
    torch.nn.init.normal_(net.head.conv.weight, std=0.3)
    field = HybridField(
        UndampedWave(c=1.0, size=8), Checkpointed(net, chunk) if checkpointed else net
    )
    return field, net


@pytest.mark.parametrize(("chunk", "adjoint"), [(None, False), (2, False), (None, True)])
def test_checkpointed_gradients_equal_direct_backprop(float64, chunk, adjoint):
    """Rollout loss plus ‖F_a‖² along 'true' states: the same gradients with the correction
    checkpointed (and chunked), alone or under the adjoint, as with direct backprop."""
    t = torch.linspace(0, 0.4, 5)
    y_true = torch.randn(3, 5, 2, 8, 8, generator=torch.Generator().manual_seed(1))
    grads = []
    for checkpointed in (False, True):
        field, net = _wave_hybrid(chunk, checkpointed)
        y0 = y_true[:, 0].clone().requires_grad_()
        pred = rollout(field, y0, t, method="rk4", step_size=0.05, adjoint=adjoint and checkpointed)
        loss = (pred - y_true).square().mean() + field.correction(None, y_true).square().mean()
        loss.backward()
        grads.append([y0.grad, field.physics.log_c.grad, *(p.grad for p in net.parameters())])
    for direct, ckpt in zip(*grads, strict=True):
        assert direct is not None and direct.abs().max() > 1e-6
        # the adjoint's backward rk4 matches the discrete gradient to O(h⁴), not to rounding
        tol = dict(rtol=1e-4, atol=1e-7) if adjoint else dict(rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(ckpt, direct, **tol)


def test_checkpointed_is_the_module_without_gradients_and_rejects_bad_chunk():
    field, net = _wave_hybrid(2, True)
    y = torch.randn(5, 2, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(field.correction(None, y), net(None, y), rtol=0, atol=0)
    torch.testing.assert_close(field.correction(None, y), net(None, y), rtol=0, atol=0)
    with pytest.raises(ValueError, match="chunk must be positive, got 0"):
        Checkpointed(net, chunk=0)
