"""Simulate a prior (or any vector field) to trajectories, and the datasets' generation protocols.

A :class:`SimulationSpec` fixes what the APHYNITY paper's protocol fixes: the true model, the grid,
the output times, how many train/test trajectories, the initial-condition distribution and a
high-accuracy solver. :func:`simulate_dataset` turns one into a CF-1.8 ``xr.Dataset`` with the true
parameters as ``true_<name>`` attributes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import xarray as xr
from torch import Tensor, nn
from tqdm.auto import tqdm

from hybrid.data.io import grid_coords, trajectories_to_dataset
from hybrid.dynamics import rollout
from hybrid.physics.parameters import scalar_parameters

SPLITS = ("train", "test")


@dataclass
class SimulationSpec:
    """The protocol of one synthetic dataset.

    Attributes:
        model: the true vector field (prior plus any term the prior lacks).
        prior: the module whose parameters are reported as ``true_<name>``.
        names, units: one per state channel.
        dt: output step (s).
        n_times: output times per split (the wave protocol's test record is shorter).
        n_samples: trajectories per split.
        initial_condition: ``(rng, n) -> y0 [n, *S]``.
        coords: spatial coordinates (``y, x`` or ``lat, lon``), empty for ODEs.
        solver: keyword arguments of :func:`hybrid.dynamics.rollout`.
        observe: ``(rng, y [N, T, *S]) -> y``, what an instrument does to the true trajectories
            (noise, missing frames as NaN), applied after integration; None keeps them exact.
        forcings: ``t [T] (s) -> {name: (dims, values)}``, variables that drive the model and
            are written beside the state (dims ``time`` and the grid's, or ``time`` alone).
    """

    model: nn.Module
    prior: nn.Module
    names: Sequence[str]
    units: Sequence[str]
    dt: float
    n_times: dict[str, int]
    n_samples: dict[str, int]
    initial_condition: Callable[[np.random.Generator, int], Tensor]
    coords: dict[str, xr.DataArray] = field(default_factory=dict)
    solver: dict = field(default_factory=lambda: {"method": "dopri5", "rtol": 1e-8, "atol": 1e-8})
    description: str = ""
    observe: Callable[[np.random.Generator, Tensor], Tensor] | None = None
    forcings: Callable[[np.ndarray], dict[str, tuple[tuple[str, ...], np.ndarray]]] | None = None


@torch.no_grad()
def simulate(
    model: nn.Module, y0: Tensor, t: Tensor, *, chunk: int = 256, progress: bool = True, **solver
) -> Tensor:
    """Integrate ``model`` from each initial state, ``chunk`` trajectories at a time, in float64.

    Args:
        y0: ``[N, *S]``; t: ``[T]``.
    Returns:
        ``[N, T, *S]`` in float64.
    """
    model = model.double()
    y0, t = y0.double(), t.double()
    starts = range(0, y0.shape[0], chunk)
    bar = tqdm(starts, desc="simulating", unit="chunk", disable=not progress)
    return torch.cat([rollout(model, y0[i : i + chunk], t, **solver) for i in bar])


def true_parameters(prior: nn.Module) -> dict[str, float]:
    """``{"true_<name>": value}`` for every scalar physical parameter of ``prior``."""
    return {f"true_{k}": v for k, v in scalar_parameters(prior).items()}


def initial_states(
    spec: SimulationSpec, split: str, seed: int, n_samples: int | None
) -> tuple[np.random.Generator, Tensor, Tensor]:
    """The split's random stream (independent streams of one ``seed`` per split), ``n_samples``
    initial states ``[N, *S]`` (default the protocol's number) and the output times ``[T]`` (s).

    Raises:
        ValueError: an unknown ``split``, or ``n_samples < 1``.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    n = spec.n_samples[split] if n_samples is None else n_samples
    if n < 1:
        raise ValueError(f"n_samples must be at least 1, got {n}")
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    t = torch.arange(spec.n_times[split], dtype=torch.float64) * spec.dt
    return rng, spec.initial_condition(rng, n), t


def simulate_dataset(
    spec: SimulationSpec,
    split: str,
    *,
    seed: int = 0,
    n_samples: int | None = None,
    progress: bool = True,
) -> xr.Dataset:
    """Trajectories of ``spec`` for ``split`` (``train`` or ``test``) as a CF-1.8 dataset, from
    :func:`initial_states`."""
    rng, y0, t = initial_states(spec, split, seed, n_samples)
    y = simulate(spec.model, y0, t, progress=progress, **spec.solver)
    if spec.observe is not None:
        y = spec.observe(rng, y)
    attrs = {
        "title": spec.description,
        "source": f"hybrid simulate ({type(spec.prior).__module__}.{type(spec.prior).__name__})",
        "split": split,
        "seed": seed,
        **true_parameters(spec.prior),
    }
    ds = trajectories_to_dataset(
        y,
        t,
        spec.names,
        coords=spec.coords,
        units=dict(zip(spec.names, spec.units, strict=False)),
        attrs=attrs,
    )
    forcings = spec.forcings(t.numpy()) if spec.forcings is not None else {}
    return ds.assign({k: (dims, np.asarray(v, np.float32)) for k, (dims, v) in forcings.items()})


def box_coords(
    grid_shape: tuple[int, int], dx: float, *, periodic: bool = True
) -> dict[str, xr.DataArray]:
    """``y, x`` coordinates (m) of a box of ``grid_shape`` cells of size ``dx``, from the origin."""
    ny, nx = grid_shape
    xs, ys = np.arange(nx) * dx, np.arange(ny) * dx
    return grid_coords("box", xs, ys, periodic=(periodic, periodic))
