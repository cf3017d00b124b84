"""``ValidationClock``: time to accuracy and the stability criterion, on made-up histories."""

from __future__ import annotations

import pytest

from hybrid.callbacks import ValidationClock


def _clock(values: list[float], params: list[dict] | None = None) -> ValidationClock:
    clock = ValidationClock()
    clock.history = [(10.0 * i, i, v) for i, v in enumerate(values)]
    clock.parameters = params or [{} for _ in values]
    return clock


def test_worst_jump_is_the_largest_ratio_to_the_running_best_after_the_skip():
    # 10 validations, skip the first one: best 1.0, then 0.5, a spike to 4.0 (8× the best 0.5)
    clock = _clock([1.0, 0.5, 0.6, 4.0, 0.4, 0.3, 0.3, 0.2, 0.2, 0.1])
    assert clock.worst_jump(skip=0.1) == pytest.approx(8.0)
    # skipping half of them leaves a monotone tail (0.3, 0.3, 0.2, 0.2, 0.1): a repeat reads 1
    assert clock.worst_jump(skip=0.5) == pytest.approx(1.0)
    assert _clock([1.0]).worst_jump() is None


def test_time_to_parameters_needs_every_parameter_within_tolerance():
    params = [{"a": 2.0, "b": 1.0}, {"a": 1.05, "b": 1.5}, {"a": 1.03, "b": 0.99}]
    clock = _clock([1.0, 1.0, 1.0], params)
    assert clock.time_to_parameters({"a": 1.0, "b": 1.0}, rel=0.04) == 20.0
    assert clock.time_to_parameters({"a": 1.0}, rel=0.06) == 10.0
    assert clock.time_to_parameters({"a": 1.0}, rel=0.01) is None
