"""Throughput of the physics priors' right-hand sides in torch against a plain NumPy reference.

What is measured, for each prior and each periodic ``N x N`` box (``Grid.regular_box``):

* ``rhs``: one evaluation of ``prior(t, y)`` under ``torch.no_grad()``;
* ``rk4``: one classical Runge-Kutta step (four evaluations plus the stage updates), written once
  in :func:`rk4_step` and applied identically to torch tensors and NumPy arrays, so that it measures
  the prior and not a solver's bookkeeping;
* the same two for a NumPy implementation of the *same* flux-form scheme (``np.roll`` stencils, the
  grid's own precomputed weights ``w_east``, ``inv_area``, ``len_east * open_east``, ...), written
  here as the reference and checked, before any timing, to agree with the torch prior on a random
  state (the max relative difference is printed; float32 must agree to ~1e-5).

Timing: a warm-up, then the best of ``--repeats`` measurements with ``time.perf_counter``; each
measurement averages enough back-to-back calls to last ~20 ms (``torch.cuda.synchronize`` brackets
it on CUDA). The NumPy reference always runs on the CPU, single-threaded (NumPy's element-wise
kernels do not use threads), in the same process and run as the torch prior.

How to read the table:

* ``Mcell/s``: millions of grid cells updated per second = ``batch * N² / time`` (a cell update is
  the whole state of that cell: one tracer, or ``eta, u, v`` for shallow water). Higher is better.
* ``ratio``: torch / NumPy throughput; above 1 means torch is faster than the reference.
* ``bw``: achieved fraction of the device's memory bandwidth for the RHS = counted bytes / time /
  peak. The bytes are counted, not guessed: every aten kernel run by one RHS is intercepted and the
  sizes of its tensor inputs and outputs are summed (each unfused element-wise kernel reads its
  operands and writes its result once). The ``passes`` column is that count in units of one
  ``[batch, N, N]`` field; ``fused`` in the prior's header line is the count a single fused kernel
  would need at batch 1 (read the state and the grid weights once, write the tendency once). The
  peak is measured by timing a large device-to-device copy, ``tensor.clone()`` on CUDA (bandwidth =
  2 x bytes / time). On the CPU the fields of these
  sizes stay in cache, so ``bw`` may exceed 1 there; it is meant for CUDA. With ``--compile`` the
  eager count no longer describes the kernels, and ``passes`` is the fused count instead (``bw``
  is then a lower bound).
* ``faults``: minor page faults of the process per torch RHS call (CPU allocator behaviour: glibc
  returning freed temporaries to the OS makes every new one fault its pages in again).
* ``cost exponent``: slope of ``log(time)`` against ``log(cells)`` (``np.polyfit``) over all the
  sizes and over the largest two; 1 is linear cost, below 1 means fixed per-call overheads (Python
  and dispatch, ~5 us per torch op) still matter at the small sizes.

Example: ``python scripts/bench_physics.py --sizes 64 128 256 512 --repeats 5 --device auto``;
add ``--compile`` to time ``torch.compile(prior)`` instead of the eager prior.
"""

from __future__ import annotations

import argparse
import math
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from hybrid.physics.advection_diffusion import AdvectionDiffusion, ConstantVelocity
from hybrid.physics.grid import Grid
from hybrid.physics.shallow_water import FPlane, ShallowWater

DX = 1.0e3  # m, cell size of the benchmark boxes
MIN_SECONDS = 0.02  # each timed measurement lasts at least this long


# ------------------------------------------------------------------ NumPy reference stencils


def np_east(f: np.ndarray) -> np.ndarray:
    """Mirror of ``operators.east``: ``f[..., j, i+1]`` with periodic wrap."""
    return np.roll(f, -1, axis=-1)


def np_north(f: np.ndarray) -> np.ndarray:
    """Mirror of ``operators.north``: ``f[..., j+1, i]`` with periodic wrap."""
    return np.roll(f, -1, axis=-2)


def np_net_outflow(fe: np.ndarray, fn: np.ndarray, w: dict[str, np.ndarray]) -> np.ndarray:
    """Mirror of ``operators.net_outflow``."""
    return (fe - np.roll(fe, 1, axis=-1) + fn - np.roll(fn, 1, axis=-2)) * w["inv_area"]


def np_face_velocity(u, v, w: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mirror of ``operators.face_velocity`` (a uniform 0-d velocity is broadcast to the grid)."""
    u, v = (np.broadcast_to(x, np.broadcast_shapes(x.shape, w["inv_area"].shape)) for x in (u, v))
    ue = 0.5 * (u + np_east(u)) * w["len_east"] * w["open_east"]
    vn = 0.5 * (v + np_north(v)) * w["len_north"] * w["open_north"]
    return ue, vn


def np_gradient(f: np.ndarray, w: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mirror of ``operators.gradient``."""
    gx = w["open_east"] * (np_east(f) - f) / w["dx_east"]
    gy = w["open_north"] * (np_north(f) - f) / w["dy_north"]
    fx = 0.5 * (gx + np.roll(gx, 1, axis=-1))
    fy = 0.5 * (gy + np.roll(gy, 1, axis=-2))
    return fx * w["active"], fy * w["active"]


def np_laplacian(f: np.ndarray, w: dict[str, np.ndarray]) -> np.ndarray:
    """Mirror of ``operators.laplacian``."""
    return np_net_outflow(w["w_east"] * (np_east(f) - f), w["w_north"] * (np_north(f) - f), w)


def np_advection_centred(c: np.ndarray, u, v, w: dict[str, np.ndarray]) -> np.ndarray:
    """Mirror of ``operators.advection_centred``."""
    ue, vn = np_face_velocity(u, v, w)
    return -np_net_outflow(ue * 0.5 * (c + np_east(c)), vn * 0.5 * (c + np_north(c)), w)


def np_advection_diffusion(c: np.ndarray, p: dict[str, Any]) -> np.ndarray:
    """Mirror of ``AdvectionDiffusion.forward`` (centred scheme)."""
    return p["kappa"] * np_laplacian(c, p) + np_advection_centred(c, p["u"], p["v"], p)


def np_shallow_water(y: np.ndarray, p: dict[str, Any]) -> np.ndarray:
    """Mirror of ``ShallowWater.forward`` with an f-plane (``p["f0"]``)."""
    eta, u, v = y[..., 0, :, :], y[..., 1, :, :], y[..., 2, :, :]
    detadt = np_advection_centred(p["H"] + eta, u, v, p)
    (ux, uy), (vx, vy) = np_gradient(u, p), np_gradient(v, p)
    eta_x, eta_y = np_gradient(eta, p)
    f = u * p["tan_lat"] / p["radius"] + p["f0"]
    dudt = -(u * ux + v * uy) + f * v - p["g"] * eta_x - p["r"] * u
    dvdt = -(u * vx + v * vy) - f * u - p["g"] * eta_y - p["r"] * v
    return np.stack((detadt, dudt * p["active"], dvdt * p["active"]), axis=-3)


def rk4_step(f: Callable, y, dt: float):
    """One classical RK4 step of ``dy/dt = f(y)``; works on tensors and arrays alike."""
    k1 = f(y)
    k2 = f(y + 0.5 * dt * k1)
    k3 = f(y + 0.5 * dt * k2)
    k4 = f(y + dt * k3)
    return y + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)


# ------------------------------------------------------------------ the benchmarked cases


@dataclass
class Case:
    """One prior on one grid: the torch module, the NumPy reference and their states."""

    torch_rhs: Callable[[Tensor], Tensor]
    numpy_rhs: Callable[[np.ndarray], np.ndarray]
    y_torch: Tensor
    y_numpy: np.ndarray
    dt: float
    field_bytes: int  # bytes of one [batch, N, N] field


def grid_weights(grid: Grid) -> dict[str, Any]:
    """The grid buffers the stencils use, as NumPy arrays of the grid's dtype."""
    names = ("inv_area", "w_east", "w_north", "len_east", "len_north", "open_east", "open_north")
    names += ("dx_east", "dy_north", "active", "tan_lat")
    return {k: as_numpy(getattr(grid, k)) for k in names} | {"radius": grid.radius}


def as_numpy(t: Tensor) -> np.ndarray:
    """A detached CPU copy (0-d tensors become 0-d arrays of the same dtype)."""
    return t.detach().cpu().numpy()


def random_state(shape: tuple[int, ...], scale: float, dtype: torch.dtype) -> Tensor:
    """A seeded standard-normal state times ``scale``, on the CPU."""
    return scale * torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=dtype)


def make_case(model: nn.Module, params: dict, numpy_rhs: Callable, y: Tensor) -> Case:
    """Wraps a torch prior and its NumPy mirror around the same state."""
    t0 = torch.zeros((), dtype=y.dtype, device=model.grid.area.device)
    with torch.no_grad():
        dt = 0.5 * model.stable_dt()
    return Case(
        torch_rhs=lambda s: model(t0, s),
        numpy_rhs=lambda s: numpy_rhs(s, params),
        y_torch=y.to(t0.device),
        y_numpy=y.numpy(),
        dt=dt,
        field_bytes=y[..., 0, :, :].numel() * y.element_size(),
    )


def make_advection(n: int, batch: int, dtype: torch.dtype, device: torch.device) -> Case:
    """Centred advection-diffusion of one tracer, uniform velocity, on a periodic ``n x n`` box."""
    grid = Grid.regular_box(n, n, DX)
    model = AdvectionDiffusion(grid, 50.0, ConstantVelocity(1.0, 0.5), scheme="centred")
    model = model.to(device=device, dtype=dtype)
    u, v = (as_numpy(x) for x in model.velocity())
    params = grid_weights(model.grid) | {"kappa": as_numpy(model.kappa), "u": u, "v": v}
    y = random_state((batch, 1, n, n), 1.0, dtype)
    return make_case(model, params, np_advection_diffusion, y)


def make_shallow_water(n: int, batch: int, dtype: torch.dtype, device: torch.device) -> Case:
    """Shallow water on an f-plane with drag, periodic ``n x n`` box, random ``(eta, u, v)``."""
    grid = Grid.regular_box(n, n, DX)
    model = ShallowWater(grid, g=9.81, H=100.0, r=1e-5, coriolis=FPlane(1e-4))
    model = model.to(device=device, dtype=dtype)
    scalars = {"g": model.g, "H": model.H, "r": model.r, "f0": model.coriolis.f0}
    params = grid_weights(model.grid) | {k: as_numpy(x) for k, x in scalars.items()}
    y = random_state((batch, 3, n, n), 0.1, dtype)
    return make_case(model, params, np_shallow_water, y)


PRIORS: dict[str, tuple[Callable[..., Case], int]] = {
    # name: (factory, field passes of an ideal fused RHS kernel at batch 1)
    # advection-diffusion: read c and 7 weights (inv_area, w_e, w_n, len_e, len_n, open_e,
    # open_n), write dc/dt.
    "advection": (make_advection, 9),
    # shallow water: read eta, u, v and 9 weights (inv_area, len_e, len_n, open_e, open_n, dx_e,
    # dy_n, active, tan_lat), write the three tendencies.
    "shallow_water": (make_shallow_water, 15),
}


# ------------------------------------------------------------------ measurement


def synchronizer(device: torch.device) -> Callable[[], None]:
    """A barrier that waits for queued device work (a no-op on the CPU)."""
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def calls_per_measurement(fn: Callable[[], object], sync: Callable[[], None]) -> int:
    """Warms ``fn`` up and returns how many back-to-back calls last about ``MIN_SECONDS``."""
    fn(), fn()
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return max(1, math.ceil(MIN_SECONDS / max(time.perf_counter() - start, 1e-9)))


def measure(fn: Callable[[], object], calls: int, sync: Callable[[], None]) -> float:
    """Mean seconds per call over ``calls`` back-to-back calls."""
    sync()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    sync()
    return (time.perf_counter() - start) / calls


def best_times(
    fns: dict[str, Callable], repeats: int, sync: Callable[[], None]
) -> dict[str, float]:
    """Best over ``repeats`` of each function's time per call (s), measured round-robin so that a
    change in the machine's load hits every function alike."""
    calls = {k: calls_per_measurement(fn, sync) for k, fn in fns.items()}
    best = dict.fromkeys(fns, math.inf)
    for _ in range(repeats):
        for k, fn in fns.items():
            best[k] = min(best[k], measure(fn, calls[k], sync))
    return best


def peak_bandwidth(device: torch.device, mib: int = 512) -> float:
    """Copy bandwidth (bytes/s) of a large device-to-device copy: ``2 x bytes / time``.

    ``tensor.clone()`` on CUDA (the caching allocator reuses the block); on the CPU a copy into a
    preallocated tensor, since a fresh allocation would also time the kernel's page faults.
    """
    x = torch.ones(mib * 2**20 // 4, dtype=torch.float32, device=device)
    y = torch.empty_like(x)
    copy = x.clone if device.type == "cuda" else (lambda: y.copy_(x))
    seconds = best_times({"copy": copy}, 5, synchronizer(device))["copy"]
    return 2 * x.numel() * x.element_size() / seconds


class ByteCounter(TorchDispatchMode):
    """Sums the bytes of the tensor inputs and outputs of every (non-view) aten kernel run."""

    def __init__(self) -> None:
        super().__init__()
        self.bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if not func.is_view:
            leaves = tree_leaves((args, kwargs, out))
            self.bytes += sum(_nbytes(t) for t in leaves if isinstance(t, Tensor))
        return out


def _nbytes(t: Tensor) -> int:
    """Bytes a kernel touches in ``t`` at least once (a broadcast view counts its storage)."""
    return min(t.numel() * t.element_size(), t.untyped_storage().nbytes())


def rhs_bytes(case: Case) -> int:
    """Memory traffic of one torch RHS, counted kernel by kernel."""
    with torch.no_grad(), ByteCounter() as counter:
        case.torch_rhs(case.y_torch)
    return counter.bytes


def page_faults(fn: Callable[[], object], calls: int = 10) -> float:
    """Minor page faults of this process per call of ``fn`` (after one warm-up call)."""
    with torch.no_grad():
        fn()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(calls):
            fn()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / calls


def check_agreement(case: Case, dtype: torch.dtype) -> float:
    """Max |torch - NumPy| / max |NumPy| of the RHS on the random state; asserts it is small."""
    with torch.no_grad():
        got = case.torch_rhs(case.y_torch).cpu().numpy()
    want = case.numpy_rhs(case.y_numpy)
    rel = float(np.abs(got - want).max() / np.abs(want).max())
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert rel < tol, f"torch and NumPy RHS differ by {rel:.2e} (relative), tolerance {tol:.0e}"
    return rel


# ------------------------------------------------------------------ one prior over the sizes


def time_case(case: Case, repeats: int, sync: Callable[[], None]) -> dict[str, float]:
    """Seconds per call of the torch and NumPy RHS and RK4 step."""
    yt, yn, dt = case.y_torch, case.y_numpy, case.dt
    fns = {
        "t_rhs": lambda: case.torch_rhs(yt),
        "n_rhs": lambda: case.numpy_rhs(yn),
        "t_rk4": lambda: rk4_step(case.torch_rhs, yt, dt),
        "n_rk4": lambda: rk4_step(case.numpy_rhs, yn, dt),
    }
    with torch.no_grad():
        return best_times(fns, repeats, sync)


def bench_prior(name: str, args: argparse.Namespace, peak: float) -> list[dict[str, float]]:
    """Check, count and time one prior at every size; prints one line per size."""
    rows = []
    for n in args.sizes:
        case = PRIORS[name][0](n, args.batch, args.dtype, args.device)
        rel = check_agreement(case, args.dtype)
        passes = rhs_bytes(case) / case.field_bytes
        if args.compile:  # the eager count no longer applies; take the fused one (a lower bound)
            case.torch_rhs = torch.compile(case.torch_rhs, dynamic=False)
            passes = PRIORS[name][1]
        row = {"n": n, "cells": args.batch * n * n, "rel": rel, "passes": passes}
        row["faults"] = page_faults(lambda c=case: c.torch_rhs(c.y_torch))
        row.update(time_case(case, args.repeats, synchronizer(args.device)))
        row["bw"] = passes * case.field_bytes / row["t_rhs"] / peak
        print_row(row)
        rows.append(row)
    return rows


# ------------------------------------------------------------------ report


HEADER = (
    f"{'N':>5} {'cells':>8} {'maxrel':>8} {'passes':>6} | {'rhs torch':>9} {'numpy':>8}"
    f" {'ratio':>6} {'bw':>6} {'faults':>6} | {'rk4 torch':>9} {'numpy':>8} {'ratio':>6}"
)


def print_row(row: dict[str, float]) -> None:
    """One size: throughputs in Mcell/s, torch/NumPy ratios and the RHS bandwidth fraction."""
    mcs = {k: row["cells"] / row[k] / 1e6 for k in ("t_rhs", "n_rhs", "t_rk4", "n_rk4")}
    print(
        f"{row['n']:>5} {row['cells']:>8} {row['rel']:>8.1e} {row['passes']:>6.1f} |"
        f" {mcs['t_rhs']:>9.1f} {mcs['n_rhs']:>8.1f} {mcs['t_rhs'] / mcs['n_rhs']:>6.2f}"
        f" {row['bw']:>6.0%} {row['faults']:>6.0f} | {mcs['t_rk4']:>9.1f} {mcs['n_rk4']:>8.1f}"
        f" {mcs['t_rk4'] / mcs['n_rk4']:>6.2f}",
        flush=True,
    )


def exponent(rows: list[dict[str, float]], key: str) -> float:
    """Slope of log(time) against log(cells); NaN with fewer than two sizes."""
    if len(rows) < 2:
        return math.nan
    cells = np.log([r["cells"] for r in rows])
    return float(np.polyfit(cells, np.log([r[key] for r in rows]), 1)[0])


def print_exponents(rows: list[dict[str, float]]) -> None:
    """The fitted cost exponents of the four timings: over all sizes / the largest two."""
    keys = {"t_rhs": "rhs torch", "n_rhs": "rhs numpy", "t_rk4": "rk4 torch", "n_rk4": "rk4 numpy"}
    fits = ", ".join(
        f"{label} {exponent(rows, k):.2f}/{exponent(rows[-2:], k):.2f}" for k, label in keys.items()
    )
    print(f"cost exponent p (time ~ cells^p), all sizes/largest two: {fits}")


# ------------------------------------------------------------------ command line


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256, 512])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", choices=["cpu", "cuda", "auto"], default="auto")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--priors", nargs="+", choices=sorted(PRIORS), default=list(PRIORS))
    parser.add_argument("--compile", action="store_true", help="time torch.compile(prior)")
    parser.add_argument("--peak-mib", type=int, default=512, help="size of the copy for the peak")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda requested but CUDA is not available")
    auto = "cuda" if torch.cuda.is_available() else "cpu"
    args.device = torch.device(auto if args.device == "auto" else args.device)
    args.dtype = getattr(torch, args.dtype)
    return args


def print_header(args: argparse.Namespace, peak: float) -> None:
    """One line: versions, threads, dtype, device, batch, compile and the measured peak."""
    dtype = str(args.dtype).removeprefix("torch.")
    print(
        f"# torch {torch.__version__}, numpy {np.__version__}, threads {torch.get_num_threads()},"
        f" dtype {dtype}, device {args.device}, batch {args.batch}, compile {args.compile},"
        f" peak copy bandwidth {peak / 1e9:.1f} GB/s; throughputs in Mcell/s"
    )


def main(argv: list[str] | None = None) -> dict[str, list[dict[str, float]]]:
    """Run the benchmark; returns the rows of every prior (for tests and notebooks)."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    peak = peak_bandwidth(args.device, args.peak_mib)
    print_header(args, peak)
    results = {}
    for name in args.priors:
        print(f"\n## {name} (fused kernel: {PRIORS[name][1]} passes)\n{HEADER}")
        results[name] = bench_prior(name, args, peak)
        print_exponents(results[name])
    return results


if __name__ == "__main__":
    main()
