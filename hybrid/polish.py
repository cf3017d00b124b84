"""The end of APHYNITY's training reached directly: the network fitted by L-BFGS, the prior fixed.

APHYNITY minimises ``‖F_a‖² + λ L_traj`` and raises ``λ ← λ + τ₂ L_traj`` after each batch: dual
ascent on the constraint ``L_traj = 0``. The loss is non-negative and its constraint is met only
in the limit, so the multiplier that enforces it is infinite: λ must grow without bound, and it
grows by ``τ₂ L_traj`` a batch, more slowly the better the fit. First-order training therefore
spends most of its steps on the last decades of ``L_traj`` with the physical parameters long
settled at the least-norm split (:mod:`hybrid.identifiability`).

The polish takes that limit at once. In each of the last ``polish_epochs`` epochs, on each batch:

1. **re-split** (APHYNITY only): the prior's parameters become the least-norm split of the
   current hybrid field ``F_h = F_p(θ) + F_a`` on the batch's true states,
   ``θ ← argmin_θ Σ_y ‖F_h(y) − F_p(θ; y)‖²`` in the objective's norm of ``‖F_a‖²``
   (:func:`hybrid.identifiability.fit_tendency`, Gauss-Newton). Where the hybrid fits the
   trajectories, ``F_h`` is the true tendency on those states, so this is APHYNITY's optimum
   (:mod:`hybrid.identifiability`) read from a field trained through the solver, far more
   accurate than finite differences at a coarse data step; first-order training approaches it
   only as fast as the network sheds what the prior can carry;
2. **fit**: the network minimises ``L_traj`` alone (λ = ∞) with θ fixed, by L-BFGS with a
   strong-Wolfe line search (Nocedal & Wright 2006, Alg. 7.5), which converges superlinearly on
   the smooth, deterministic least-squares problem a full batch gives. A re-split that moved θ
   starts a fresh L-BFGS history (its curvature pairs belonged to another θ).

Alternating the two converges to a θ that is the least-norm split of a field that fits the data.
λ is not updated and the per-epoch refit of the prior (:mod:`hybrid.warm_start`) does not run.
Other objectives (the naive sum, the network alone) skip the re-split: they define no split.

L-BFGS needs the same loss at every call of an iteration, so it is meant for data that fit in
one batch (the ODE benchmarks); with several batches each takes its own L-BFGS step, a noisy
variant. It is the trainer's second optimiser, so its steps count and its history is
checkpointed like Adam's.
Measured on the APHYNITY pendulum (NOTES, session 4).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import Tensor, nn

from hybrid.identifiability import fit_tendency, norm_weight
from hybrid.objectives import Aphynity
from hybrid.warm_start import has_physics_to_fit

ITERATIONS = 50  # L-BFGS iterations (and at most 1.25× as many loss evaluations) per batch
HISTORY = 50  # curvature pairs kept
SPLIT_VALUES = 2**16  # state values the re-split reads at most (a strided subsample beyond)


def polishing(module: nn.Module) -> bool:
    """Whether this epoch is one of the last ``module.polish_epochs`` of the trainer's
    ``max_epochs`` (a run bounded by steps only does not polish)."""
    n, trainer = module.polish_epochs, module.trainer
    if not n or trainer.max_epochs is None or trainer.max_epochs < 0:
        return False
    return trainer.current_epoch >= trainer.max_epochs - n


def make_polisher(correction: nn.Module) -> torch.optim.LBFGS:
    """L-BFGS over the network's trainable parameters (the trainer's second optimiser)."""
    return torch.optim.LBFGS(
        [p for p in correction.parameters() if p.requires_grad],
        lr=1.0,
        max_iter=ITERATIONS,
        history_size=HISTORY,
        line_search_fn="strong_wolfe",
        tolerance_grad=0.0,  # stop on the iteration budget or a step that changes nothing
        tolerance_change=1e-12,
    )


def resplit(module: nn.Module, y: Tensor) -> bool:
    """Set the prior's trainable parameters to the least-norm split of the hybrid field on the
    states ``y`` ``[B, W, C, *grid]`` (step 1 of the module docstring); ``False`` (nothing done)
    when the objective is not APHYNITY or the prior has nothing to fit
    (:func:`~hybrid.warm_start.has_physics_to_fit`)."""
    physics, objective = module.physics, module.objective
    if not isinstance(objective, Aphynity) or not has_physics_to_fit(module):
        return False
    states = y.flatten(0, 1)  # [N, C, *grid]
    states = states[:: max(1, states.numel() // SPLIT_VALUES)]
    with torch.no_grad():
        field = module.field(None, states)
    weight = norm_weight(states, objective.norm, module.tendency_std)
    mask = module.cell_weights()
    fitted = fit_tendency(physics, states, field, weight=weight, mask=mask)
    reduce = module.trainer.strategy.reduce  # under DDP each rank splits its own batch: average
    with torch.no_grad():
        for p, q in zip(physics.parameters(), fitted.parameters(), strict=True):
            if p.requires_grad:
                p.copy_(reduce(q.to(p), reduce_op="mean"))
    return True


def polish_step(
    module: nn.Module, optimizer, y: Tensor, loss: Callable[[], dict[str, Tensor]]
) -> dict[str, Tensor]:
    """The re-split on the batch's states ``y``, then one step of the polisher
    (:func:`make_polisher`, as Lightning wraps it, so that it counts as a training step) on
    ``L_traj`` (``loss()["traj_loss"]``, recomputed at every evaluation); returns ``loss()`` at
    the step's end, detached, for logging. A step that fails (L-BFGS's line search overflowing,
    a non-finite loss) is undone with a warning: the network keeps its values, training goes on."""
    if resplit(module, y):
        getattr(optimizer, "optimizer", optimizer).state.clear()  # a fresh L-BFGS history

    def closure() -> Tensor:
        optimizer.zero_grad()
        traj = loss()["traj_loss"]
        module.manual_backward(traj)
        return traj.detach()

    lbfgs = getattr(optimizer, "optimizer", optimizer)
    params = [p for group in lbfgs.param_groups for p in group["params"]]
    before = [p.detach().clone() for p in params]
    try:
        optimizer.step(closure)
        failed = None
    except RuntimeError as error:  # e.g. a line search that extrapolated past float range
        failed = str(error)
    with torch.no_grad():
        out = {k: v.detach() for k, v in loss().items()}
    if failed is None and not torch.isfinite(out["traj_loss"]):
        failed = "a non-finite trajectory loss"
    if failed is None:
        return out
    warnings.warn(f"polish step skipped ({failed}); the network keeps its values", stacklevel=2)
    with torch.no_grad():
        for p, old in zip(params, before, strict=True):
            p.copy_(old)
        lbfgs.state.clear()
        return {k: v.detach() for k, v in loss().items()}
