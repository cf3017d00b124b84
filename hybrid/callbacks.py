"""Lightning callbacks of the toolkit."""

from __future__ import annotations

import math
import time

import lightning.pytorch as pl


class ValidationClock(pl.Callback):
    """Records ``(wall seconds since fit start, epoch, validation MSE)`` at every validation,
    and the prior's scalar parameters then (``physics/<name>``, as logged), for time-to-accuracy
    curves; read ``history`` and ``parameters`` after ``fit``."""

    def __init__(self, metric: str = "val/mse") -> None:
        self.metric = metric
        self.history: list[tuple[float, int, float]] = []
        self.parameters: list[dict[str, float]] = []
        self._start = 0.0

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.metric)
        if value is not None and not trainer.sanity_checking:
            self.history.append(
                (time.perf_counter() - self._start, trainer.current_epoch, float(value))
            )
            self.parameters.append(
                {
                    k.removeprefix("physics/"): float(v)
                    for k, v in trainer.callback_metrics.items()
                    if k.startswith("physics/")
                }
            )

    def time_to(self, target: float) -> float | None:
        """Wall seconds at which the metric first reached ``target`` (None if it never did)."""
        return next((t for t, _, v in self.history if v <= target), None)

    def time_to_parameters(self, truth: dict[str, float], rel: float) -> float | None:
        """Wall seconds at which every parameter named in ``truth`` was first within ``rel``
        (relative) of its true value (None if never)."""
        for (t, _, _), found in zip(self.history, self.parameters, strict=True):
            if truth and all(abs(found.get(k, math.inf) / v - 1) <= rel for k, v in truth.items()):
                return t
        return None

    def worst_jump(self, skip: float = 0.1) -> float | None:
        """The largest ratio of a validation MSE to the best one before it, over the
        validations after the first ``skip`` of them: the stability criterion of a run (a spike
        of 10× reads 10). None with fewer than two validations."""
        values = [v for _, _, v in self.history]
        start = max(1, math.ceil(skip * len(values)))
        if len(values) < 2 or start >= len(values):
            return None
        best = min(values[:start])
        worst = 0.0
        for v in values[start:]:
            worst, best = max(worst, v / best), min(best, v)
        return worst
