"""Lightning callbacks of the toolkit."""

from __future__ import annotations

import time

import lightning.pytorch as pl


class ValidationClock(pl.Callback):
    """Records ``(wall seconds since fit start, epoch, validation MSE)`` at every validation,
    for time-to-accuracy curves; read ``history`` after ``fit``."""

    def __init__(self, metric: str = "val/mse") -> None:
        self.metric = metric
        self.history: list[tuple[float, int, float]] = []
        self._start = 0.0

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.metric)
        if value is not None and not trainer.sanity_checking:
            self.history.append(
                (time.perf_counter() - self._start, trainer.current_epoch, float(value))
            )

    def time_to(self, target: float) -> float | None:
        """Wall seconds at which the metric first reached ``target`` (None if it never did)."""
        return next((t for t, _, v in self.history if v <= target), None)
