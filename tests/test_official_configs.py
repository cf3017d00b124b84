"""``configs/<benchmark>/official/`` hold the reference code's settings (``yuan-yin/APHYNITY``,
``train_aphynity.py`` and ``networks.py``), transcribed here as a table: a config that drifts from
the reference fails, whatever it still trains to."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SIGMOID_START = 1e-2 / (1 + math.exp(2.0))  # sigmoid(-2) 1e-2: a_org = b_org = k_org = -2

CONV_ESTIMATOR = {
    "class_path": "hybrid.models.ConvNet",
    "init_args": {
        "channels": 2,
        "hidden": 16,
        "padding": "zeros",
        "init": "default",
        "normalise": False,
    },
}
PENDULUM_MLP = {
    "class_path": "hybrid.models.MLP",
    "init_args": {
        "state_dim": 2,
        "hidden": 200,
        "init": "orthogonal",
        "gain": 0.2,
        "normalise": False,
    },
}

# benchmark: (tau_1 = Adam lr, tau_2, n_iter, min_op, network, {prior: initial parameters})
REFERENCE = {
    "reaction_diffusion": (
        1e-3,
        1e-3,
        1,
        "l2",
        CONV_ESTIMATOR,
        {
            "aphynity_incomplete": {"a": SIGMOID_START, "b": SIGMOID_START},
            "aphynity_complete": {"a": SIGMOID_START, "b": SIGMOID_START, "k": SIGMOID_START},
        },
    ),
    "wave": (
        1e-4,
        1e-3,
        3,
        "l2",
        CONV_ESTIMATOR,
        {  # c = c_org 100 with c_org = 3.6; k_org = 45
            "aphynity_incomplete": {"c": 360.0},
            "aphynity_complete": {"c": 360.0, "k": 45.0},
        },
    ),
    "pendulum": (
        1e-3,
        1.0,
        5,
        "l2_normalized",
        PENDULUM_MLP,
        {
            "aphynity_incomplete": {"omega0_sq": 0.2},
            "aphynity_complete": {"omega0_sq": 0.2, "alpha": 0.1},
        },
    ),
}
CASES = [(b, name) for b, spec in REFERENCE.items() for name in spec[-1]]


@pytest.mark.parametrize(("benchmark", "name"), CASES, ids=[f"{b}/{n}" for b, n in CASES])
def test_official_config_is_the_reference_setup(benchmark: str, name: str):
    lr, tau_2, n_iter, norm, network, start = REFERENCE[benchmark]
    model = yaml.safe_load(
        (ROOT / "configs" / benchmark / "official" / f"{name}.yaml").read_text()
    )["model"]
    assert model["objective"] == {
        "class_path": "hybrid.objectives.OfficialAphynity",
        "init_args": {"lambda_0": 1.0, "tau_2": tau_2, "n_iter": n_iter, "norm": norm},
    }
    assert model["optimizer"] == {"class_path": "torch.optim.Adam", "init_args": {"lr": lr}}
    assert model["correction"] == network
    assert model["method"] == "rk4" and "step_size" not in model  # rk4 at the data step
    assert model["warm_start"] is False and model["stabilise"] is False
    assert "scheduler" not in model and "polish_epochs" not in model
    physics = model["physics"]["init_args"]
    assert physics.keys() == start[name].keys()
    for key, value in start[name].items():
        assert physics[key] == pytest.approx(value, rel=1e-3), key
