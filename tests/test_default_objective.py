"""A user's own prior and network with no objective named: the default (APHYNITY) must keep the
whole missing term in the correction and the prior at APHYNITY's optimum.

Data: the damped spring ``x' = v, v' = −k x − α v`` (k = 1, α = 0.2); the user's prior is the
undamped spring (``tests/user_priors.py::Spring``, from k0 = 0.5), the correction an MLP, the
missing term ``S = (0, −α v)``. At a finite multiplier the minimiser of ``‖F_a‖² + λ L_traj``
keeps ``F_a = λc/(1 + λc) S`` (``c`` the trajectory loss's curvature along ``S``). Measured with
the reference code's τ₂ = 1e-3 (the old default), λ stays at 1.001 and ``F_a`` keeps 0.34 of
``S`` (so c ≈ 0.51 on these windows); with the default τ₂ = 1000, λ reaches ~160, where that
fraction is 0.99.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hybrid.cli import main
from hybrid.data.io import trajectories_to_dataset, write_netcdf
from hybrid.identifiability import least_norm_parameters, norm_weight
from hybrid.train import HybridModule

K, ALPHA, DT, FRAMES, SAMPLES = 1.0, 0.2, 0.25, 24, 32


def spring_trajectories() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(t [T], y [S, T, 2], A [2, 2])``: exact solutions ``y(t) = exp(A t) y0``."""
    a = torch.tensor([[0.0, 1.0], [-K, -ALPHA]], dtype=torch.float64)
    y0 = torch.randn(SAMPLES, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    t = torch.arange(FRAMES, dtype=torch.float64) * DT
    y = torch.stack([y0 @ torch.linalg.matrix_exp(a * s).T for s in t], 1)
    return t, y, a


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> tuple[HybridModule, torch.Tensor, torch.Tensor]:
    tmp = tmp_path_factory.mktemp("spring")
    t, y, a = spring_trajectories()
    path = write_netcdf(trajectories_to_dataset(y, t, ["x", "v"]), tmp / "spring.nc")
    config = tmp / "spring.yaml"
    config.write_text(
        "model:\n"
        "  physics: {class_path: user_priors.Spring, init_args: {k: 0.5}}\n"
        "  correction: {class_path: hybrid.models.MLP, init_args: {state_dim: 2}}\n"
        f"data: {{path: {path}, variables: [x, v], window: 10, stride: 5, batch_size: 32}}\n"
        "trainer: {max_epochs: 40, logger: false, enable_progress_bar: false}\n"
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(Path(__file__).parent))
        main(["fit", "--config", str(config), "--trainer.default_root_dir", str(tmp / "run"),
              "--trainer.accelerator", "cpu"])  # fmt: skip
        model = HybridModule.load_from_checkpoint(next((tmp / "run").rglob("last.ckpt")))
    torch.set_num_threads(threads)
    return model, y.flatten(0, 1), a


def test_the_default_correction_keeps_the_whole_missing_term(fitted):
    """``F_a ≈ F − F_p(θ̂)``, what the fitted prior misses (mostly ``−α v``): its projection
    on that term near 1, its relative error small."""
    model, states, a = fitted
    assert type(model.objective).__name__ == "Aphynity" and float(model.objective.lambda_) > 100
    with torch.no_grad():
        fa = model.correction(None, states.float()).double()
        missing = states @ a.T - model.physics.double()(None, states)
    along = float((fa * missing).sum() / missing.square().sum())
    error = float((fa - missing).square().sum().sqrt() / missing.square().sum().sqrt())
    assert along == pytest.approx(0.99, abs=0.02)  # 0.983 measured; 0.34 at λ ≈ 1
    assert error < 0.05  # 0.023 measured


def test_the_default_prior_lands_on_aphynitys_optimum(fitted):
    """θ at the least-norm split of the true tendency in the objective's norm (k* = 0.981)."""
    model, states, a = fitted
    from user_priors import Spring

    weight = norm_weight(states, "scaled", model.tendency_std.double())
    k_star = least_norm_parameters(Spring(0.5), states, states @ a.T, weight=weight)["k"]
    assert k_star == pytest.approx(0.981, abs=1e-3)
    assert float(model.physics.log_k.exp()) == pytest.approx(k_star, rel=0.01)
