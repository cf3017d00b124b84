"""How priors store their physical parameters, and how they are read back."""

from __future__ import annotations

import pytest
import torch

from hybrid.physics.advection_diffusion import AdvectionDiffusion, ConstantVelocity
from hybrid.physics.grid import Grid
from hybrid.physics.parameters import physical_parameters, register_scaled
from hybrid.physics.shallow_water import BetaPlane, FPlane, ShallowWater, SphereCoriolis


def _shallow_water(**kw) -> ShallowWater:
    return ShallowWater(Grid.regular_box(8, 8, 5e4), **kw)


def test_physical_parameters_reads_log_scaled_and_plain_storage():
    sw = _shallow_water(g=9.81, H=100.0, r=2e-6, coriolis=BetaPlane(f0=-1e-4, beta=2e-11))
    got = {k: float(v) for k, v in physical_parameters(sw).items()}
    assert got == pytest.approx(
        {"g": 9.81, "H": 100.0, "r": 2e-6, "coriolis.f0": -1e-4, "coriolis.beta": 2e-11}
    )
    ad = AdvectionDiffusion(Grid.regular_box(8, 8, 1.0), kappa=3.0, velocity=ConstantVelocity(1.0))
    assert set(physical_parameters(ad)) == {"kappa", "velocity.u", "velocity.v"}


def test_scaled_parameters_are_stored_near_one_and_keep_their_sign():
    sw = _shallow_water(r=0.0, coriolis=FPlane(f0=-1e-4))
    assert float(sw.coriolis.scaled_f0.detach()) == -1.0
    assert float(sw.coriolis.f0) == pytest.approx(-1e-4)
    assert float(sw.scaled_r.detach()) == 0.0
    assert float(sw.scale_r) == pytest.approx(1e-6)  # zero: stored against the typical size
    assert float(SphereCoriolis().omega) == pytest.approx(7.292e-5)
    with pytest.raises(ValueError, match="typical size of x must be positive"):
        register_scaled(torch.nn.Module(), "x", 0.0, 0.0)


def test_adam_moves_a_scaled_parameter_by_a_fraction_of_its_size():
    """Adam's first step is ``lr`` in the stored number: 1 % of f0 at lr 1e-2, where storing f0
    itself would move it by 1e-2 s⁻¹, a hundred times its size."""
    coriolis = FPlane(f0=1e-4)
    opt = torch.optim.Adam(coriolis.parameters(), lr=1e-2)
    coriolis.f0.backward()  # any gradient: Adam's first step has size lr
    opt.step()
    assert float(coriolis.f0) == pytest.approx(0.99e-4, rel=1e-6)


def test_scaled_parameters_survive_dtype_changes_and_state_dicts():
    sw = _shallow_water(r=3e-6, coriolis=FPlane(f0=1.2e-4)).double()
    assert sw.r.dtype == torch.float64 and float(sw.r) == pytest.approx(3e-6)
    fresh = _shallow_water(coriolis=FPlane()).double()
    fresh.load_state_dict(sw.state_dict())
    assert float(fresh.coriolis.f0) == pytest.approx(1.2e-4) and float(fresh.r) == pytest.approx(
        3e-6
    )
