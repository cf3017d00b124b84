"""The stability criterion of training runs, read from Lightning's CSV logs: the worst jump of the
validation MSE above its running best after the first 10 % of the validations (a spike to 10×
the best reads 10; the convergence issue asks for at most 10), with the best and last values.

    hybrid fit --config configs/advection_diffusion/aphynity.yaml \\
        --trainer.logger lightning.pytorch.loggers.CSVLogger --trainer.logger.save_dir runs/ad
    python scripts/stability.py runs/ad/lightning_logs/version_0/metrics.csv
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from hybrid.callbacks import ValidationClock


def validation_curve(path: Path, metric: str = "val/mse") -> list[tuple[int, float]]:
    """``(epoch, value)`` of every row of ``path`` that has ``metric``."""
    with path.open() as f:
        rows = [r for r in csv.DictReader(f) if r.get(metric)]
    if not rows:
        raise SystemExit(f"{path}: no {metric!r} column with values (was validation run?)")
    return [(int(r["epoch"]), float(r[metric])) for r in rows]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("metrics", type=Path, nargs="+", help="metrics.csv of CSVLogger runs")
    p.add_argument("--skip", type=float, default=0.1, help="share of validations not judged")
    args = p.parse_args(argv)
    print("| run | validations | best val MSE | last | max val / running best |")
    print("| --- | --- | --- | --- | --- |")
    for path in args.metrics:
        if not path.is_file():
            raise SystemExit(f"{path}: no such file")
        clock = ValidationClock()
        clock.history = [(0.0, e, v) for e, v in validation_curve(path)]
        values = [v for _, _, v in clock.history]
        jump = clock.worst_jump(args.skip)
        shown = "—" if jump is None else f"{jump:.2f}"
        print(f"| {path} | {len(values)} | {min(values):.3g} | {values[-1]:.3g} | {shown} |")


if __name__ == "__main__":
    main()
