"""The ``hybrid`` command: ``fit|validate|test`` (LightningCLI), ``evaluate``, ``predict``,
``simulate`` and ``sample``, all parsed by jsonargparse from typed signatures (one help style,
``--config`` files and ``--print_config`` everywhere).

The only module that imports ``lightning.pytorch.cli``. Priors and networks are injected by
``class_path`` (a user's own prior in their own package works unchanged); those that take a
``grid`` get the data's grid from :class:`~hybrid.train.HybridModule`, so nobody types ``dx``.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from hybrid.allocator import keep_freed_memory

USER_ERRORS = (ValueError, FileExistsError, FileNotFoundError, PermissionError)


def simulate(
    dataset: str,
    *,
    output: Path,
    split: str = "train",
    n_samples: int | None = None,
    seed: int = 0,
    overwrite: bool = False,
    plot: bool = True,
) -> None:
    """Simulate a dataset by its protocol to CF NetCDF, with a PNG preview beside it.

    Args:
        dataset: protocol name (``hybrid.data.protocols.DATASETS``: pendulum, advection_diffusion…;
            ``ENVIRONMENT_DATASETS``: lotka_volterra, gray_scott… with an ``environment`` dim).
        output: NetCDF file to write.
        split: ``train`` or ``test``.
        n_samples: trajectories (default: the protocol's).
        seed: random seed of the initial conditions.
        overwrite: replace an existing output.
        plot: also write ``OUTPUT.png``.
    """
    from hybrid.data.environments import EnvironmentSpec, first_environment, simulate_environments
    from hybrid.data.io import refuse_to_replace, write_netcdf
    from hybrid.data.protocols import build
    from hybrid.data.simulate import simulate_dataset
    from hybrid.plots import plot_dataset

    spec, output = build(dataset), Path(output)  # build names the datasets; the split is checked
    # before integrating (hybrid.data.simulate.initial_states)
    refuse_to_replace(output, overwrite)
    if isinstance(spec, EnvironmentSpec):  # several environments: an `environment` dim
        ds = simulate_environments(spec, split, seed=seed, n_samples=n_samples)
    else:
        ds = simulate_dataset(spec, split, seed=seed, n_samples=n_samples)
    write_netcdf(ds, output, overwrite=overwrite)
    print(f"wrote {output} ({dict(ds.sizes)})")
    if plot:
        # the state's variables (a protocol's forcing variables may lack the sample dim)
        first = first_environment(ds) if isinstance(spec, EnvironmentSpec) else ds[list(spec.names)]
        print(f"wrote {plot_dataset(first, output.with_suffix('.png'))}")


def evaluate(**options) -> None:
    """``hybrid.evaluate.evaluate`` (whose signature and docstring are this command's), then its
    summary."""
    from hybrid.evaluate import evaluate as run

    report, output = run(**options), options["output"]
    print((Path(output) / "summary.md").read_text())
    print(f"model beats (every lead after the first): {report['model_beats']}")
    print(f"wrote {output}/: metrics.json metrics.nc forecast.nc summary.md *.png")


def predict(**options) -> None:
    """``hybrid.evaluate.predict`` (whose signature and docstring are this command's)."""
    from hybrid.evaluate import predict as run

    print(f"wrote {run(**options)}")


def sample(name: str, *, output: Path, overwrite: bool = False) -> None:
    """Copy a real climate file shipped on PyPI (``ostia``: OSTIA monthly SST).

    Args:
        name: sample name.
        output: NetCDF file to write.
        overwrite: replace an existing output.
    """
    from hybrid.data.samples import copy_sample

    print(f"wrote {copy_sample(name, output, overwrite=overwrite)}")


def evaluate_environments(
    *, ckpt_path: Path, output: Path, data_path: str | None = None, overwrite: bool = False
) -> None:
    """Score a ``hybrid environments fit`` run per environment (whole test trajectories from
    their first frame) and write ``OUTPUT`` (JSON): MSE per environment, learned and true
    physical parameters.

    Args:
        ckpt_path: checkpoint of a ``hybrid environments fit`` run.
        output: JSON file to write.
        data_path: NetCDF test file with an ``environment`` dim (default: the run's test data).
        overwrite: replace an existing output.
    """
    from hybrid.data.io import refuse_to_replace
    from hybrid.environments.evaluate import evaluate_environments as run
    from hybrid.environments.evaluate import write_report

    refuse_to_replace(Path(output), overwrite)
    report = run(ckpt_path, data_path)
    print(f"test MSE {report['mse']:.3e}; per environment:", end=" ")
    print(" ".join(f"{v:.2e}" for v in report["mse_per_environment"]))
    print(f"wrote {write_report(report, output)}")


COMMANDS: dict[str, Callable[..., None]] = {
    "simulate": simulate,
    "evaluate": evaluate,
    "predict": predict,
    "sample": sample,
    "evaluate-environments": evaluate_environments,
}
LIGHTNING = ("fit", "validate", "test")
ENVIRONMENTS = "environments"  # `hybrid environments fit|validate|test`: several at once


def function_main(name: str, argv: Sequence[str]) -> None:
    """Parse ``argv`` against the signature of ``COMMANDS[name]`` and call it."""
    from jsonargparse import ArgumentParser

    func = signature = COMMANDS[name]
    if name in ("evaluate", "predict"):  # the library's own signature and help, as options
        signature = getattr(importlib.import_module("hybrid.evaluate"), name)
    doc = signature.__doc__.split("\n\n")[0]
    parser = ArgumentParser(prog=f"hybrid {name}", description=doc)
    parser.add_argument("--config", action="config", help="YAML file of these arguments")
    parser.add_function_arguments(signature, as_positional=signature is func)
    cfg = parser.parse_args(list(argv))
    func(**{k: v for k, v in vars(cfg).items() if k not in ("config", "__path__")})


def lightning_main(argv: Sequence[str], *, run: bool = True, environments: bool = False):
    """``hybrid fit|validate|test --config X.yaml [--dotted.overrides]``: LightningCLI on
    :class:`~hybrid.train.HybridModule` and :class:`~hybrid.data.datamodule.TrajectoryDataModule`;
    with ``environments``, ``hybrid environments fit|validate|test --config configs/leads/X.yaml``
    on :class:`~hybrid.environments.EnvironmentModule` and
    :class:`~hybrid.data.environments.EnvironmentDataModule` (``--model.adapt_from CKPT``
    adapts a trained model to new environments with its shared part frozen). Keeps
    ``last.ckpt`` and ``best-epoch=N.ckpt``, the lowest validation MSE so far.

    With ``run=False`` (no subcommand in ``argv``), only builds and returns the CLI: its
    ``model``, ``datamodule`` and ``trainer`` as the config makes them (used by scripts).
    """
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.cli import LightningCLI

    if environments:
        from hybrid.data.environments import EnvironmentDataModule as data
        from hybrid.environments import EnvironmentModule as model

        if run and (not argv or argv[0] not in LIGHTNING):
            usage = f"hybrid environments {{{','.join(LIGHTNING)}}} --config X.yaml"
            raise ValueError(f"usage: {usage}")
    else:
        from hybrid.data.datamodule import TrajectoryDataModule as data
        from hybrid.train import HybridModule as model
    best = ModelCheckpoint(monitor="val/mse", mode="min", filename="best-{epoch}")
    return LightningCLI(
        model,
        data,
        args=None if list(argv) == sys.argv[1:] else list(argv),  # Lightning warns on both
        trainer_defaults={"callbacks": [ModelCheckpoint(save_last=True), best]},
        auto_configure_optimizers=False,
        run=run,
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``hybrid`` console script and ``python -m hybrid``."""
    # OpenMP threads that spin while waiting stall badly when another process shares the cores
    # (a training step measured 2.8x slower on a loaded 2-core machine); let them sleep, unless
    # the user chose. Set by the command, not on import: a library must not change its host.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    keep_freed_memory()  # freed tensors stay in the heap: no page faults per step
    from hybrid.train import NonFiniteLossError

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in (*COMMANDS, *LIGHTNING, ENVIRONMENTS):
        names = ",".join((*LIGHTNING, *COMMANDS, ENVIRONMENTS))
        sys.exit(f"usage: hybrid {{{names}}} ... [-h]  (got {argv[:1] or 'nothing'})")
    try:
        if argv[0] in COMMANDS:
            function_main(argv[0], argv[1:])
        elif argv[0] == ENVIRONMENTS:
            lightning_main(argv[1:], environments=True)
        else:
            lightning_main(argv)
    except (*USER_ERRORS, NonFiniteLossError) as err:
        sys.exit(f"hybrid {argv[0]}: error: {err}")
