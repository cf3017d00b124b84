"""The ``hybrid`` command: ``fit|validate|test|predict`` (LightningCLI) and ``simulate``.

The only module that imports ``lightning.pytorch.cli``. Priors and networks are injected by
``class_path`` (a user's own prior in their own package works unchanged); the grid and channel
count are read from the data and linked into them, so nobody types ``dx``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

USER_ERRORS = (ValueError, FileExistsError, FileNotFoundError, PermissionError)


def _simulate_parser() -> argparse.ArgumentParser:
    from hybrid.data.protocols import DATASETS

    p = argparse.ArgumentParser(
        prog="hybrid simulate", description="Simulate a dataset by its protocol to CF NetCDF."
    )
    p.add_argument("dataset", choices=sorted(DATASETS))
    p.add_argument("--split", choices=("train", "test"), default="train")
    p.add_argument("--output", "-o", type=Path, required=True, help="NetCDF file to write")
    p.add_argument("--n-samples", type=int, default=None, help="default: the protocol's")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG beside the output")
    return p


def simulate_main(argv: Sequence[str]) -> None:
    """``hybrid simulate DATASET --output FILE.nc``: writes FILE.nc and FILE.png."""
    from hybrid.data.io import write_netcdf
    from hybrid.data.protocols import build
    from hybrid.data.simulate import simulate_dataset
    from hybrid.plots import plot_dataset

    args = _simulate_parser().parse_args(argv)
    if args.output.exists() and not args.overwrite:
        raise FileExistsError(f"{args.output} exists; pass --overwrite to replace it")
    ds = simulate_dataset(build(args.dataset), args.split, seed=args.seed, n_samples=args.n_samples)
    write_netcdf(ds, args.output, overwrite=args.overwrite)
    print(f"wrote {args.output} ({dict(ds.sizes)})")
    if not args.no_plot:
        print(f"wrote {plot_dataset(ds, args.output.with_suffix('.png'))}")


def lightning_main(argv: Sequence[str], *, run: bool = True):
    """``hybrid fit|validate|test|predict --config X.yaml [--dotted.overrides]``.

    With ``run=False`` (no subcommand in ``argv``), only builds and returns the CLI: its
    ``model``, ``datamodule`` and ``trainer`` as the config makes them (used by scripts).
    """
    import torch
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.cli import LightningCLI

    from hybrid.data.datamodule import TrajectoryDataModule
    from hybrid.physics.grid import rebuild_grid
    from hybrid.train import HybridModule

    class HybridCLI(LightningCLI):
        def add_arguments_to_parser(self, parser) -> None:
            for part in ("physics", "correction"):  # silently skipped where a class has no grid
                parser.link_arguments(
                    "data.grid", f"model.{part}.init_args.grid", apply_on="instantiate"
                )

        def instantiate_classes(self) -> None:
            # Lightning writes each linked grid into the model's hparams even where that part is
            # None (a TypeError in `_set_dict_nested`): give it a slot; HybridModule drops it.
            self._dump_config()
            model = self.config_dump.get("model") or {}
            for part in ("physics", "correction"):
                if model.get(part) is None:
                    model[part] = {"init_args": {}}
            super().instantiate_classes()

    with torch.serialization.safe_globals([rebuild_grid]):  # --ckpt_path resumes
        return HybridCLI(
            HybridModule,
            TrajectoryDataModule,
            args=None if list(argv) == sys.argv[1:] else list(argv),  # Lightning warns on both
            trainer_defaults={"callbacks": [ModelCheckpoint(save_last=True)]},
            auto_configure_optimizers=False,
            run=run,
        )


def evaluate_main(argv: Sequence[str]) -> None:
    """``hybrid evaluate --ckpt_path RUN.ckpt --output DIR``: metrics, forecasts and plots."""
    from hybrid.evaluate import evaluate

    p = argparse.ArgumentParser(prog="hybrid evaluate", description=evaluate_main.__doc__)
    p.add_argument("--ckpt_path", required=True, help="checkpoint of a `hybrid fit` run")
    p.add_argument("--output", "-o", type=Path, required=True, help="folder to write")
    p.add_argument(
        "--data.path",
        dest="data_path",
        default=None,
        help="NetCDF to evaluate on (default: the run's test data)",
    )
    p.add_argument("--lead_steps", type=int, default=None, help="default: the run's eval window")
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    args = p.parse_args(argv)
    report = evaluate(
        args.ckpt_path,
        args.output,
        data_path=args.data_path,
        lead_steps=args.lead_steps,
        batch_size=args.batch_size,
        overwrite=args.overwrite,
    )
    print((args.output / "summary.md").read_text())
    print(f"model beats (every lead after the first): {report['model_beats']}")
    print(f"wrote {args.output}/: metrics.json metrics.nc forecast.nc summary.md *.png")


def sample_main(argv: Sequence[str]) -> None:
    """``hybrid sample ostia --output FILE.nc``: copy a real climate file shipped on PyPI."""
    from hybrid.data.samples import SAMPLES, copy_sample

    p = argparse.ArgumentParser(prog="hybrid sample", description=sample_main.__doc__)
    p.add_argument("name", choices=sorted(SAMPLES))
    p.add_argument("--output", "-o", type=Path, required=True)
    p.add_argument("--overwrite", action="store_true")
    args = p.parse_args(argv)
    print(f"wrote {copy_sample(args.name, args.output, overwrite=args.overwrite)}")


COMMANDS: dict[str, Callable[[Sequence[str]], None]] = {
    "simulate": simulate_main,
    "sample": sample_main,
    "evaluate": evaluate_main,
}
LIGHTNING = ("fit", "validate", "test", "predict")


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``hybrid`` console script and ``python -m hybrid``."""
    from hybrid.train import NonFiniteLossError

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in (*COMMANDS, *LIGHTNING, "-h", "--help"):
        names = ",".join((*LIGHTNING, *COMMANDS))
        sys.exit(f"usage: hybrid {{{names}}} ...  (got {argv[:1] or 'nothing'})")
    run = COMMANDS.get(argv[0])
    try:
        run(argv[1:]) if run else lightning_main(argv)
    except (*USER_ERRORS, NonFiniteLossError) as err:
        sys.exit(f"hybrid {argv[0]}: error: {err}")
