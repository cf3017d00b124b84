"""Training objectives: the APHYNITY Lagrangian, its multiplier schedule, and the parts check."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hybrid.objectives import Aphynity, DataOnly, NaiveSum, PhysicsOnly

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


@pytest.mark.parametrize("n_iter", [1, 2, 3])
def test_lambda_rises_by_tau2_times_the_loss_every_n_iter_updates(n_iter):
    # λ ← λ + τ₂ L at updates n_iter, 2 n_iter, ... with L the loss passed at that update.
    lambda_0, tau_2 = 1.0, 0.5
    objective = Aphynity(lambda_0=lambda_0, tau_2=tau_2, n_iter=n_iter)
    losses = [2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]
    expected = lambda_0
    for k, loss in enumerate(losses, start=1):
        objective.update(loss)
        if k % n_iter == 0:
            expected += tau_2 * loss
        assert objective.lambda_.item() == expected, f"after update {k}"
        assert int(objective.steps) == k


def test_lambda_with_n_iter_3_by_hand():
    objective = Aphynity(lambda_0=1.0, tau_2=0.25, n_iter=3)
    objective.update(100.0)
    objective.update(200.0)
    assert objective.lambda_.item() == 1.0
    objective.update(4.0)
    assert objective.lambda_.item() == 2.0  # 1 + 0.25 * 4
    objective.update(1000.0)
    objective.update(1000.0)
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


def test_lambda_and_step_counter_resume_from_the_state_dict():
    objective = Aphynity(lambda_0=1.0, tau_2=0.5, n_iter=3)
    for loss in [1.0, 2.0, 4.0, 8.0]:  # λ = 1 + 0.5 * 4 = 3, 4 steps (1 into the next cycle)
        objective.update(loss)
    state = objective.state_dict()
    assert set(state) == {"lambda_", "steps"}
    assert state["lambda_"].item() == 3.0 and state["steps"].item() == 4

    resumed = Aphynity(lambda_0=1.0, tau_2=0.5, n_iter=3)
    resumed.load_state_dict(state)
    assert resumed.lambda_.item() == 3.0 and int(resumed.steps) == 4
    # The cycle continues where it stopped: λ moves at the 6th update, not the 3rd after resuming.
    for original in (objective, resumed):
        original.update(100.0)
        assert original.lambda_.item() == 3.0
        original.update(2.0)
        assert original.lambda_.item() == 4.0


def test_lambda_is_saved_with_the_model_that_holds_the_objective():
    model = nn.Module()
    model.objective = Aphynity(lambda_0=2.0, tau_2=1.0)
    model.objective.update(0.5)
    state = model.state_dict()
    assert state["objective.lambda_"].item() == 2.5 and state["objective.steps"].item() == 1
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
        ({"lambda_0": -1.0}, "got -1.0, 0.001, 1"),
        ({"tau_2": -0.5}, "got 1.0, -0.5, 1"),
        ({"n_iter": 0}, "got 1.0, 0.001, 0"),
        ({"n_iter": -2}, "got 1.0, 0.001, -2"),
    ],
)
def test_aphynity_rejects_bad_settings(kwargs, shown):
    with pytest.raises(ValueError, match="need lambda_0 >= 0, tau_2 >= 0, n_iter >= 1") as info:
        Aphynity(**kwargs)
    assert str(info.value).endswith(shown)


def test_aphynity_accepts_zero_lambda_and_tau():
    objective = Aphynity(lambda_0=0.0, tau_2=0.0, n_iter=1)
    assert objective.lambda_.item() == 0.0
