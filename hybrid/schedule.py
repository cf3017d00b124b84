"""Learning-rate schedule and gradient clipping that keep hybrid training stable by default.

Measured on the APHYNITY pendulum (NOTES, Convergence): with a constant Adam rate the validation
MSE jumped from its best back by up to 60× several times in the first half of training. Two
standard remedies, applied when the model has a network and the trainer sets none of its own:

* a linear warm-up over the first :data:`WARMUP` of the steps, then a cosine decay to
  :data:`FLOOR` of the configured rate (Loshchilov & Hutter 2017), set on every parameter group;
* clipping the gradient norm at :data:`CLIP` times its running mean, so that one outlier batch
  cannot throw the network (a fixed threshold would not follow APHYNITY's growing λ).
"""

from __future__ import annotations

import math

import torch
from torch import nn

WARMUP, FLOOR, CLIP, MEMORY = 0.05, 0.02, 3.0, 0.9


def lr_factor(step: int, total: float) -> float:
    """Warm-up from ``1/warm-up steps`` to 1, then cosine to :data:`FLOOR` at ``total``."""
    warmup = max(1, math.ceil(WARMUP * total)) if math.isfinite(total) else 1
    if step < warmup:
        return (step + 1) / warmup
    if not math.isfinite(total):
        return 1.0
    progress = min(1.0, (step - warmup) / max(1.0, total - warmup))
    return FLOOR + (1 - FLOOR) * 0.5 * (1 + math.cos(math.pi * progress))


def wanted(module: nn.Module) -> bool:
    """A network is trained, ``model.stabilise`` is on and no clipping was configured
    (``model.gradient_clip``)."""
    return (
        module.correction is not None
        and getattr(module, "stabilise", True)
        and getattr(module, "gradient_clip", None) is None
    )


def schedule_lr(module: nn.Module) -> None:
    """Before each optimiser step: the rate of every group at this step of the schedule (a
    batch takes the objective's ``steps_per_batch`` steps, so an epoch-bounded run takes that
    many times the trainer's batches)."""
    if not wanted(module):
        return
    trainer = module.trainer
    total = float(trainer.estimated_stepping_batches)
    if trainer.max_steps == -1:  # epoch-bounded: the Adam epochs, before any polish
        total *= module.objective.steps_per_batch
        total *= 1 - getattr(module, "polish_epochs", 0) / trainer.max_epochs
    factor = lr_factor(module.global_step, total)
    for group in module.trainer.optimizers[0].param_groups:  # not the polisher's (polish.py)
        group.setdefault("initial_lr", group["lr"])
        group["lr"] = group["initial_lr"] * factor


def clip_outliers(module: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """``on_before_optimizer_step``: clip the gradient norm at :data:`CLIP` × its running mean
    (not L-BFGS's, the polisher's: its line search needs the true gradient)."""
    if not wanted(module) or isinstance(optimizer, torch.optim.LBFGS):
        return
    params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
    mean = getattr(module, "_grad_norm_mean", None)
    limit = math.inf if mean is None else CLIP * mean
    norm = float(torch.nn.utils.clip_grad_norm_(params, limit))
    if math.isfinite(norm):
        kept = min(norm, limit)
        module._grad_norm_mean = kept if mean is None else MEMORY * mean + (1 - MEMORY) * kept
