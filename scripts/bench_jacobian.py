"""The warm start's Jacobian: central differences against PyTorch's forward mode, side by side.

For each prior, the residual is the warm start's (:func:`hybrid.warm_start.rollout_fit`): rk4
rollouts of two data steps of the prior alone, from a batch of states, minus the states reached by
the true parameters, as a function of the prior's stored parameters ``x [P]`` (float64). Timed in
one process, best of ``--repeats``:

* ``plain``: one evaluation of the residual;
* ``forward``: the ``P`` columns by ``torch.func.jvp`` (what the warm start used until now);
* ``central``: the ``P`` columns by central differences (:func:`hybrid.identifiability.jacobian`,
  ``2P + 1`` plain evaluations);
* ``ratio``: forward / central (above 1: central differences are faster);
* ``max rel diff``: ``max |J_central − J_forward| / max |J_forward|``, the agreement of the two.

Usage: ``python scripts/bench_jacobian.py [--repeats 3] [--batch 8]``.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.func import functional_call, jvp

from hybrid.dynamics import rollout
from hybrid.identifiability import jacobian
from hybrid.physics.advection_diffusion import AdvectionDiffusion, ConstantVelocity
from hybrid.physics.grid import Grid
from hybrid.physics.pendulum import DampedPendulum
from hybrid.physics.shallow_water import FPlane, ShallowWater


def priors(batch: int) -> dict[str, tuple[torch.nn.Module, torch.Tensor, float]]:
    """name: (prior in float64, initial states [batch, C, *grid], data step in s)."""
    g = torch.Generator().manual_seed(0)
    box = Grid.regular_box(32, 32, 50e3)
    transport = AdvectionDiffusion(box, kappa=300.0, velocity=ConstantVelocity(0.3, -0.2))
    water = ShallowWater(box, H=100.0, r=1e-6, coriolis=FPlane(1e-4))
    return {
        "pendulum": (DampedPendulum(0.3, 0.1).double(), torch.randn(batch, 2, generator=g), 0.5),
        "advection-diffusion 32²": (
            transport.double(),
            torch.randn(batch, 1, 32, 32, generator=g),
            3 * 3600.0,
        ),
        "shallow water 32²": (
            water.double(),
            0.1 * torch.randn(batch, 3, 32, 32, generator=g),
            600.0,
        ),
    }


def residual_of(prior: torch.nn.Module, y0: torch.Tensor, dt: float):
    """``x ↦ rollout(prior(x), y0) − rollout(prior(x0), y0)``, flat; and ``x0``."""
    names = [n for n, p in prior.named_parameters() if p.requires_grad]
    x0 = torch.cat([prior.get_parameter(n).detach().double().flatten() for n in names])
    t = torch.tensor([0.0, dt, 2 * dt], dtype=torch.float64)
    stable = float(prior.stable_dt()) if hasattr(prior, "stable_dt") else dt
    options = {"step_size": min(dt, stable)}

    def states(x: torch.Tensor) -> torch.Tensor:
        params = {n: x[i].reshape(prior.get_parameter(n).shape) for i, n in enumerate(names)}

        def f(s, y):
            return functional_call(prior, params, (s, y))

        return rollout(f, y0.double(), t, method="rk4", options=options)[:, 1:].flatten()

    target = states(x0).detach()
    return (lambda x: states(x) - target), x0


def forward_mode(residual, x: torch.Tensor) -> torch.Tensor:
    basis = torch.eye(len(x), dtype=x.dtype)
    return torch.stack([jvp(residual, (x,), (basis[i],))[1] for i in range(len(x))], 1)


def best_time(fn, args: tuple, repeats: int) -> float:
    fn(*args)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}")
    print(
        f"{'prior':26s} {'P':>3s} {'plain ms':>9s} {'forward ms':>11s} {'central ms':>11s}"
        f" {'ratio':>6s} {'max rel diff':>13s}"
    )
    for name, (prior, y0, dt) in priors(args.batch).items():
        residual, x = residual_of(prior, y0, dt)
        j_fwd, (j_cd, _) = forward_mode(residual, x), jacobian(residual, x)
        diff = float((j_cd - j_fwd).abs().max() / j_fwd.abs().max())
        plain = best_time(residual, (x,), args.repeats)
        fwd = best_time(forward_mode, (residual, x), args.repeats)
        cd = best_time(jacobian, (residual, x), args.repeats)
        print(
            f"{name:26s} {len(x):3d} {plain * 1e3:9.2f} {fwd * 1e3:11.1f} {cd * 1e3:11.1f}"
            f" {fwd / cd:6.1f} {diff:13.1e}"
        )


if __name__ == "__main__":
    main()
