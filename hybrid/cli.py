"""The ``hybrid`` command: ``hybrid simulate`` (and, later, the Lightning subcommands)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

USER_ERRORS = (ValueError, FileExistsError, FileNotFoundError, OSError, KeyError)


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


COMMANDS: dict[str, Callable[[Sequence[str]], None]] = {"simulate": simulate_main}


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``hybrid`` console script and ``python -m hybrid``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        sys.exit(f"usage: hybrid {{{','.join(COMMANDS)}}} ...  (got {argv[:1] or 'nothing'})")
    try:
        COMMANDS[argv[0]](argv[1:])
    except USER_ERRORS as err:
        sys.exit(f"hybrid {argv[0]}: error: {err}")
