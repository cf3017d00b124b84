"""Training objectives: the APHYNITY Lagrangian, its multiplier schedule, and the parts check."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hybrid.objectives import (
    Aphynity,
    DataOnly,
    NaiveSum,
    OfficialAphynity,
    PhysicsOnly,
    correction_sq,
)

PHYSICS, CORRECTION = nn.Linear(1, 1), nn.Linear(1, 1)


@pytest.mark.parametrize(
    "lambda_0, traj, corr, expected",
    [(1.0, 2.0, 3.0, 5.0), (0.5, 2.0, 3.0, 4.0), (0.0, 7.0, 0.25, 0.25), (10.0, 0.125, 0.0, 1.25)],
)
def test_aphynity_loss_is_correction_plus_lambda_times_trajectory(lambda_0, traj, corr, expected):
    loss = Aphynity(lambda_0=lambda_0)(torch.tensor(traj), torch.tensor(corr))
    assert loss.item() == expected


def test_aphynity_loss_keeps_the_gradient_of_both_terms():
    traj, corr = torch.tensor(2.0, requires_grad=True), torch.tensor(3.0, requires_grad=True)
    loss = Aphynity(lambda_0=0.5)(traj, corr)
    loss.backward()
    assert traj.grad.item() == 0.5 and corr.grad.item() == 1.0
    assert loss.dtype == torch.float32  # λ (float64 buffer) follows the loss's dtype


def test_lambda_rises_by_tau2_times_the_loss_at_every_update():
    # update() is called once per batch, after its n_iter gradient steps: λ ← λ + τ₂ L.
    objective = Aphynity(lambda_0=1.0, tau_2=0.25, n_iter=3)
    assert objective.steps_per_batch == 3
    objective.update(4.0)
    assert objective.lambda_.item() == 2.0  # 1 + 0.25 * 4
    objective.update(8.0)
    assert objective.lambda_.item() == 4.0  # 2 + 0.25 * 8
    # The new λ weighs the next loss.
    assert objective(torch.tensor(1.0), torch.tensor(0.5)).item() == 4.5


def test_lambda_accepts_a_tensor_loss():
    objective = Aphynity(lambda_0=0.0, tau_2=2.0)
    objective.update(torch.tensor(0.75))
    assert objective.lambda_.item() == 1.5


def test_tau_2_zero_keeps_lambda_fixed():
    objective = Aphynity(lambda_0=3.0, tau_2=0.0)
    for _ in range(5):
        objective.update(10.0)
    assert objective.lambda_.item() == 3.0


def test_lambda_resumes_from_the_state_dict():
    objective = Aphynity(lambda_0=1.0, tau_2=0.5, n_iter=3)
    objective.update(4.0)
    state = objective.state_dict()
    assert set(state) == {"lambda_"} and state["lambda_"].item() == 3.0
    resumed = Aphynity(lambda_0=1.0, tau_2=0.5, n_iter=3)
    resumed.load_state_dict(state)
    resumed.update(2.0)
    assert resumed.lambda_.item() == 4.0


def test_lambda_is_saved_with_the_model_that_holds_the_objective():
    model = nn.Module()
    model.objective = Aphynity(lambda_0=2.0, tau_2=1.0)
    model.objective.update(0.5)
    state = model.state_dict()
    assert state["objective.lambda_"].item() == 2.5
    fresh = nn.Module()
    fresh.objective = Aphynity(lambda_0=2.0, tau_2=1.0)
    fresh.load_state_dict(state)
    assert fresh.objective.lambda_.item() == 2.5


@pytest.mark.parametrize("objective", [PhysicsOnly(), DataOnly(), NaiveSum()])
def test_plain_objectives_return_the_trajectory_loss(objective):
    traj, corr = torch.tensor(1.5), torch.tensor(100.0)
    assert objective(traj, corr) is traj
    objective.update(3.0)  # nothing to adapt
    assert objective(traj, corr) is traj
    assert objective.state_dict() == {}


@pytest.mark.parametrize(
    "objective, physics, correction, message",
    [
        (PhysicsOnly(), None, None, "objective 'physics' needs a `physics` (model.physics)"),
        (
            PhysicsOnly(),
            PHYSICS,
            CORRECTION,
            "objective 'physics' must not have a `correction` (model.correction)",
        ),
        (DataOnly(), PHYSICS, CORRECTION, "objective 'data' must not have a `physics`"),
        (DataOnly(), None, None, "objective 'data' needs a `correction` (model.correction)"),
        (NaiveSum(), None, CORRECTION, "objective 'sum' needs a `physics` (model.physics)"),
        (NaiveSum(), PHYSICS, None, "objective 'sum' needs a `correction` (model.correction)"),
        (Aphynity(), None, CORRECTION, "objective 'aphynity' needs a `physics`"),
        (Aphynity(), PHYSICS, None, "objective 'aphynity' needs a `correction`"),
        (Aphynity(), None, None, "objective 'aphynity' needs a `physics`"),
    ],
)
def test_check_names_the_missing_or_extra_part(objective, physics, correction, message):
    with pytest.raises(ValueError) as info:
        objective.check(physics, correction)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize(
    "objective, physics, correction",
    [
        (PhysicsOnly(), PHYSICS, None),
        (DataOnly(), None, CORRECTION),
        (NaiveSum(), PHYSICS, CORRECTION),
        (Aphynity(), PHYSICS, CORRECTION),
    ],
)
def test_check_accepts_the_right_parts(objective, physics, correction):
    objective.check(physics, correction)


@pytest.mark.parametrize(
    "kwargs, shown",
    [
        ({"lambda_0": -1.0}, "got -1.0, 1000.0, 1"),
        ({"tau_2": -0.5}, "got 1.0, -0.5, 1"),
        ({"n_iter": 0}, "got 1.0, 1000.0, 0"),
        ({"n_iter": -2}, "got 1.0, 1000.0, -2"),
    ],
)
def test_aphynity_rejects_bad_settings(kwargs, shown):
    with pytest.raises(ValueError, match="need lambda_0 >= 0, tau_2 >= 0, n_iter >= 1") as info:
        Aphynity(**kwargs)
    assert str(info.value).endswith(shown)


def test_aphynity_accepts_zero_lambda_and_tau():
    objective = Aphynity(lambda_0=0.0, tau_2=0.0, n_iter=1)
    assert objective.lambda_.item() == 0.0


# --- the norms of F_a and the trajectory loss ---------------------------------------------------


def test_l2_and_l2_normalized_are_the_reference_codes_formulas(rng):
    """APHYNITY's code: ``(F.norm(p=2, dim=C) ** 2).mean()`` and
    ``((F.norm(dim=C) / (y.norm(dim=C) + 1e-5)) ** 2).mean()`` over batch, time and cells."""
    fa, y = (torch.from_numpy(rng.normal(size=(3, 4, 2, 5, 6))) for _ in range(2))
    l2 = (fa.norm(p=2, dim=2) ** 2).mean()
    normalised = ((fa.norm(p=2, dim=2) / (y.norm(p=2, dim=2) + 1e-5)) ** 2).mean()
    none = torch.ones(0)
    assert correction_sq(fa, y, None, none, "l2") == pytest.approx(float(l2), rel=1e-12)
    got = correction_sq(fa, y, None, none, "l2_normalized")
    assert got == pytest.approx(float(normalised), rel=1e-12)
    ode_fa, ode_y = fa[..., 0, 0], y[..., 0, 0]  # [B, W, C]: pendulum states
    ode = ((ode_fa.norm(dim=2) / (ode_y.norm(dim=2) + 1e-5)) ** 2).mean()
    assert correction_sq(ode_fa, ode_y, None, none, "l2_normalized") == pytest.approx(float(ode))


def test_scaled_norm_measures_each_channel_in_its_tendency_spread(rng):
    fa, y = (torch.from_numpy(rng.normal(size=(2, 3, 2, 4, 4))) for _ in range(2))
    sigma = torch.tensor([2.0, 0.5], dtype=torch.float64)
    expected = ((fa / sigma.view(2, 1, 1)) ** 2).sum(2).mean()
    assert correction_sq(fa, y, None, sigma, "scaled") == pytest.approx(float(expected))


def test_official_objective_is_plain_mse_and_l2():
    """OfficialAphynity: nn.MSELoss over all entries (no channel weights), l2, n_iter steps."""
    mse = torch.tensor([[0.0, 0.0], [1.0, 3.0]])  # [W, C]
    weights = torch.tensor([10.0, 0.1])
    official = OfficialAphynity(tau_2=1.0, n_iter=5)
    assert official.trajectory_loss(mse, weights).item() == 1.0  # (1 + 3) / 4
    assert official.norm == "l2" and official.steps_per_batch == 5 and not official.weighted
    assert Aphynity().trajectory_loss(mse, weights).item() == pytest.approx((10 + 0.3) / 4)
    with pytest.raises(ValueError, match="norm must be one of"):
        Aphynity(norm="l1")
