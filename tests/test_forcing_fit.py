"""Slow: a network hybrid with the forcing as input beats the same network without it.

On ``dT/dt = -r T + a g(t) h(x)`` (the ``forced_decay`` protocol) the prior ``-r T`` is known
and fixed; the missing term is the forcing's, which the state alone does not tell (``g`` is a
sum of two incommensurate periods, and windows start anywhere in it). The same small ResNet is
fitted with and without the forcing channel, by the same steps on the same windows, and scored
by the rollout MSE on the validation trajectories.
"""

from __future__ import annotations

import pytest
import torch

from hybrid.data.datamodule import TrajectoryDataModule
from hybrid.data.io import write_netcdf
from hybrid.data.protocols import FORCED_RATE, build
from hybrid.data.simulate import simulate_dataset
from hybrid.models import ResNet
from hybrid.models.forced import Forced
from hybrid.physics.decay import LinearDecay
from hybrid.train import HybridModule

pytestmark = pytest.mark.slow


def fitted_val_mse(dm: TrajectoryDataModule, correction, steps: int, seed: int) -> float:
    """Validation rollout MSE (K²) of ``-r T + correction()`` after ``steps`` Adam steps on
    every training window at once."""
    torch.manual_seed(seed)
    model = HybridModule(LinearDecay(FORCED_RATE), correction(), freeze_physics=True)
    model.set_statistics(**dm.statistics())
    batch = next(iter(dm.train_dataloader()))
    opt = torch.optim.Adam(model.correction.parameters(), lr=3e-3)
    for _ in range(steps):
        opt.zero_grad()
        t, y = model.observe(batch)
        model.trajectory_loss(model(y[:, 0], t[0]), y).backward()
        opt.step()
    with torch.no_grad():
        t, y = model.observe(next(iter(dm.val_dataloader())))
        return float((model(y[:, 0], t[0]) - y).square().mean())


def test_the_forcing_input_beats_the_same_network_without_it(tmp_path):
    """100 steps, seeds 0 and 1 (measured, busy 2-core CPU): validation MSE 0.0081 and 0.0152
    K² with the forcing, 6.29 and 6.22 without (the prior alone: 6.30). Asserted: with the
    forcing below a tenth of without, for both seeds."""
    spec = build("forced_decay")
    path = write_netcdf(
        simulate_dataset(spec, "train", n_samples=4, progress=False), tmp_path / "f.nc"
    )
    dm = TrajectoryDataModule(
        str(path), ["T"], window=8, stride=4, forcings=["F"], val_fraction=0.25, batch_size=1000
    )
    dm.setup()
    for seed in (0, 1):
        forced = fitted_val_mse(dm, lambda: Forced(ResNet(2, hidden=8, blocks=1), 1), 100, seed)
        plain = fitted_val_mse(dm, lambda: ResNet(1, hidden=8, blocks=1), 100, seed)
        print(f"seed {seed}: validation MSE {forced:.4g} K² with the forcing, {plain:.4g} without")
        assert forced < 0.1 * plain, (seed, forced, plain)
