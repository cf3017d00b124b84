"""Warm start and Gauss-Newton steps for the prior's physical parameters.

Before gradient training, :func:`warm_start` fits the prior's parameters to the training data by
Levenberg-Marquardt in the coordinates they are stored in (``log_``, ``scaled_``), on a bounded
subsample of short stretches (``horizon + 1`` frames), weighing channels and cells as the
configured objective does and ignoring inactive cells:

1. a first guess from the centred finite-difference tendency (:func:`fit_tendency`, the
   least-norm split APHYNITY converges to; cheap, but biased by ``O(dt²)`` on coarse steps);
2. the fit of ``horizon``-step rollouts of the whole field (prior plus the current correction)
   from the better of the first guess and the initial values, which is exact for any step.

During training, :func:`refit_physics` repeats step 2 at the end of every epoch with the network
held fixed: for the physics objective that is the minimiser of the loss, for APHYNITY the
minimiser over θ of ``‖F_a‖² + λ L_traj`` (``F_a`` does not depend on θ). Gauss-Newton steps are
invariant to the parameters' scales, so the defaults work for any prior (see NOTES, Convergence).
"""

from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path

import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor, nn
from torch.func import functional_call

from hybrid.dynamics import HybridField, rollout, substep_size
from hybrid.identifiability import (
    MAX_PARAMETERS,
    finite_difference_tendency,
    fit_tendency,
    levenberg_marquardt,
    residual_weight,
    unflatten,
)
from hybrid.physics.parameters import scalar_parameters

MAX_VALUES = 2**16  # state values in the subsample: each LM iteration integrates them P + 1 times
HORIZON = 2  # rollout steps per stretch: two steps also give the centred first guess


def training_stretches(module: nn.Module, horizon: int = HORIZON) -> tuple[Tensor, Tensor]:
    """A bounded, evenly spread subsample of ``horizon + 1``-frame stretches of the training
    windows: ``(t [horizon + 1], y [S, horizon + 1, C, *grid])``, land set to 0."""
    train = module.trainer.datamodule.splits["train"]
    t, y = train[0][:2]  # (t, y) or (t, y, date)
    horizon = min(horizon, len(t) - 1)
    starts = range(0, len(t) - horizon, horizon)  # non-overlapping stretches of a window
    per_stretch = y[0].numel() * horizon
    wanted = max(1, min(len(train) * len(starts), MAX_VALUES // per_stretch))
    picks = torch.linspace(0, len(train) * len(starts) - 1, wanted).round().long().unique()
    chosen, out = set(picks.tolist()), []
    for i in sorted({p // len(starts) for p in chosen}):
        y = train[i][1]
        out += [
            y[k : k + horizon + 1] for j, k in enumerate(starts) if i * len(starts) + j in chosen
        ]
    return t[: horizon + 1].double(), torch.nan_to_num(torch.stack(out).double())


def objective_weights(module: nn.Module) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """The configured objective's norms: per-channel weights of the trajectory loss (None for a
    plain MSE), of the correction norm (``scaled``: each tendency's spread, whose optimum is the
    least-norm split; ``l2``: none; ``l2_normalized`` weighs each state by ``1/|y|²``, which a
    per-channel weight cannot say: taken as ``l2`` here), and the cell (area) weights."""
    objective = module.objective
    weighted = objective.weighted and module.channel_weight.numel()
    traj = module.channel_weight if weighted else None
    spread = module.tendency_std if module.tendency_std.numel() else None
    if module.correction is None:
        norm = traj
    else:
        norm = spread.pow(-2) if objective.norm == "scaled" and spread is not None else None
    return traj, norm, module.cell_weights()


def rollout_fit(
    field: nn.Module, t: Tensor, y: Tensor, weight, mask, *, step_size=None, iterations=20
) -> tuple[dict[str, Tensor], float]:
    """Fit ``field.physics``' trainable parameters (stored coordinates) so that rk4 rollouts of
    ``field`` from ``y[:, 0]`` over ``t`` match ``y[:, 1:]``; returns stored values and the loss."""
    theta = {
        f"physics.{n}": p.detach().double()
        for n, p in field.physics.named_parameters()
        if p.requires_grad
    }
    w = residual_weight(y[:, 1:].shape, weight, mask).to(y.device)
    dt = float(t[1] - t[0])
    options = {"step_size": substep_size(dt, field.stable_dt(), step_size)}

    def residual(x: Tensor) -> Tensor:
        params = unflatten(x, theta)

        def f(s: Tensor, state: Tensor) -> Tensor:
            return functional_call(field, params, (s, state))

        pred = rollout(f, y[:, 0], t, method="rk4", options=options)  # [S, H + 1, C, *grid]
        return (w * (pred[:, 1:] - y[:, 1:])).flatten()

    x0 = torch.cat([v.flatten() for v in theta.values()])
    # No graph: under grad mode the network's trainable weights would make autograd
    # keep every sub-step's activations of each rollout (18 GB on OSTIA, NOTES session 4).
    with torch.no_grad():
        x, loss = levenberg_marquardt(residual, x0, iterations=iterations, rtol=1e-6)
    return unflatten(x, theta), loss


def warm_start(module: nn.Module) -> dict:
    """Fit ``module.physics`` to the training data before training (module docstring); writes
    the parameters in place and returns what it found, in physical units, and how long it took."""
    start = time.perf_counter()
    physics = module.physics
    before = scalar_parameters(physics)
    t, y = training_stretches(module)
    traj_w, norm_w, mask = objective_weights(module)
    field = _double_copy(module.field)
    guess = field.physics
    if len(t) >= 3:
        states, tendency = finite_difference_tendency(y, float(t[1] - t[0]))
        guess = fit_tendency(guess, states, tendency, weight=norm_w, mask=mask, iterations=10)
    candidates = {"initial": field.physics, "tendency": guess}
    losses = {k: _loss(_with_physics(field, p), t, y, traj_w, mask) for k, p in candidates.items()}
    best = min(losses, key=lambda k: losses[k] if math.isfinite(losses[k]) else math.inf)
    field = _with_physics(field, candidates[best])
    stored, loss = rollout_fit(field, t, y, traj_w, mask, step_size=module.solver["step_size"])
    module.field.load_state_dict(stored, strict=False)  # the prior's fitted parameters
    return {
        "seconds": time.perf_counter() - start,
        "states": int(y.shape[0]),
        "initial": before,
        "tendency_guess": scalar_parameters(guess),
        "found": scalar_parameters(physics),
        "rollout_mse": {"initial": losses["initial"], "guess": losses["tendency"], "found": loss},
    }


def refit_physics(module: nn.Module, t: Tensor, y: Tensor) -> float:
    """One Gauss-Newton fit (a few iterations) of the prior with the current network held
    fixed, on the warm start's stretches; returns the rollout loss."""
    traj_w, _, mask = objective_weights(module)
    field = _double_copy(module.field)
    stored, loss = rollout_fit(
        field, t, y, traj_w, mask, step_size=module.solver["step_size"], iterations=5
    )
    module.field.load_state_dict(stored, strict=False)
    return loss


def save_report(report: dict, trainer) -> Path | None:
    """Write ``warm_start.json`` beside the run's logs and send the figures to the logger."""
    if trainer.logger is not None:
        flat = {f"warm_start/{k}": v for k, v in report["found"].items()}
        trainer.logger.log_metrics({**flat, "warm_start/seconds": report["seconds"]}, step=0)
    log_dir = trainer.log_dir  # a broadcast: every rank calls it (default_root_dir if no logger)
    checkpoints = getattr(trainer.checkpoint_callback, "dirpath", None)
    folder = log_dir if trainer.loggers else checkpoints  # beside the logs, else the checkpoints
    if not trainer.is_global_zero or folder is None:
        return None  # a run that writes nothing gets no report file either
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "warm_start.json"
    path.write_text(json.dumps(report, indent=1))
    return path


def has_physics_to_fit(module: nn.Module) -> bool:
    """A prior with 1..MAX_PARAMETERS trainable scalars."""
    return module.physics is not None and 0 < _n_trainable(module.physics) <= MAX_PARAMETERS


def _n_trainable(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _double_copy(field: HybridField) -> HybridField:
    """A float64 CPU copy (the subsample is small; the trainable flags are kept)."""
    return copy.deepcopy(field).double().cpu()


def _with_physics(field: HybridField, physics: nn.Module) -> HybridField:
    return HybridField(physics, field.correction)


def _loss(field, t, y, weight, mask) -> float:
    w = residual_weight(y[:, 1:].shape, weight, mask).to(y.device)
    dt = float(t[1] - t[0])
    options = {"step_size": substep_size(dt, field.stable_dt(), None)}
    with torch.no_grad():
        pred = rollout(field, y[:, 0], t, method="rk4", options=options)
    return float((w * (pred[:, 1:] - y[:, 1:])).pow(2).mean())


def start_of_fit(module: nn.Module) -> None:
    """``HybridModule.on_fit_start``: the warm start, unless it is off, there is nothing to fit,
    or the run resumes from a checkpoint (whose parameters are already trained)."""
    module.warm_start_report = {}
    if getattr(module.trainer.datamodule, "splits", None) is None:
        if module.warm_start and module.physics is not None:
            rank_zero_info("no warm start: it reads the training windows of a TrajectoryDataModule")
        return
    if not (module.warm_start and has_physics_to_fit(module)):
        if module.warm_start and module.physics is not None and _n_trainable(module.physics):
            rank_zero_warn(
                f"no warm start: the prior has {_n_trainable(module.physics)} trainable scalars, "
                f"more than {MAX_PARAMETERS}; its parameters are left to the optimiser"
            )
        return
    module._stretches = training_stretches(module)
    if module.trainer.ckpt_path is not None:
        return
    report = warm_start(module)
    path = save_report(report, module.trainer)
    module.warm_start_report = report
    found = ", ".join(f"{k}={v:.6g}" for k, v in report["found"].items())
    where = f" (saved in {path})" if path else ""
    rank_zero_info(f"warm start of the prior in {report['seconds']:.1f} s: {found}{where}")


def end_of_batch(module: nn.Module, batch_idx: int) -> None:
    """``HybridModule.on_train_batch_end``: after an epoch's last batch (so that validation and
    the checkpoint see it), a Gauss-Newton fit of the prior with the network held fixed."""
    stretches = getattr(module, "_stretches", None)
    if stretches is not None and batch_idx == module.trainer.num_training_batches - 1:
        refit_physics(module, *stretches)
