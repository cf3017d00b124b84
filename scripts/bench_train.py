"""Training throughput of the APHYNITY reaction-diffusion hybrid, in trajectories per second.

The model is the ``aphynity`` configuration of the benchmark: the incomplete prior
``DiffusionOnly`` plus a ``ResNet(2, hidden=16)`` correction, ``Aphynity(lambda_0=1, tau_2=1e-3)``,
Adam at ``lr=1e-3``, fixed-step ``rk4`` at the data step (0.1) over a window of the whole
trajectory (30 frames, i.e. 29 steps and 116 evaluations of the hybrid field per trajectory).

The data are realistic but made once, cheaply: the true FitzHugh-Nagumo model
(``ReactionDiffusion``, APHYNITY's parameters) integrated with ``rk4`` from ``u, v ~ U[0, 1)``,
as in the reaction-diffusion protocol; the network's scalings and the loss weights are set from
them as the data module would. Batches are cut before any timing and sit on the device.

What one *step* is: ``zero_grad``, the forward rollout from ``y[:, 0]``, the trajectory loss and
the correction norm ``‖F_a‖²`` along the true states, the APHYNITY loss, ``backward``, the Adam
step and the update of λ (``float(L_traj)``, a host sync), exactly the maths of
``HybridModule.training_step`` in a plain PyTorch loop. The same module is then trained by a
Lightning ``Trainer`` (``fit`` with ``max_steps``, no logger, checkpoint or progress bar) on the
same device-resident batches (a ``DataLoader`` with ``batch_size=None`` over them); its step
time is the interval between consecutive ``on_train_batch_end`` callbacks, so it includes every
hook, ``self.log`` and the loop's bookkeeping, but not the trainer's start-up.

Timing: ``--warmup`` untimed steps, then ``--steps`` timed ones (``torch.cuda.synchronize``
around each on CUDA); the table reports the *best* step (the machine may be shared, and load only
ever slows a step down), and ``med/best`` the ratio of the median to the best as a noise gauge.

How to read the table:

* ``batch``: trajectories (windows of ``--frames`` frames) per step;
* ``ms/step``: best plain-loop step, split into ``fwd`` (rollout plus losses) and ``bwd``
  (``backward`` plus the optimiser step and the λ update), both from that best step;
* ``cpu ms``: the least process CPU time (``time.process_time``, all threads) of a timed step.
  With one thread on a loaded machine it is the step's cost without the waits for a core
  (``cpu ms`` well below ``ms/step`` means the process was time-sliced); with several threads
  it adds their busy time, spinning included;
* ``traj/s``: ``batch / (s/step)``, the training throughput; higher is better. An epoch of the
  protocol's 1600 training trajectories takes ``1600 / traj/s`` seconds;
* ``L traj/s``: the same through Lightning, and ``overhead``: Lightning's step time over the plain
  loop's (1.00 = no framework cost; above 1, the share Lightning adds); ``ovh cpu``: the same
  ratio of CPU times, steadier than the wall-clock one when other processes compete for the cores;
* the ``adjoint`` section: the same step with ``adjoint=True`` (torchdiffeq's adjoint, which
  integrates the augmented system backwards with the same rk4 steps instead of storing the graph),
  for one batch size; its ``bwd`` then holds the backward integration.

On the CPU, throughput depends strongly on ``--threads`` and on other load: on a machine whose
cores are shared, OpenMP threads that spin while waiting for each other can make two threads far
slower than one (``OMP_WAIT_POLICY=PASSIVE`` avoids that); the header prints the policy.

Example: ``python scripts/bench_train.py --batch-sizes 16 64 --device cpu --threads 1``;
``--compile`` times ``torch.compile`` of the correction network.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import time
import warnings
from collections.abc import Callable
from functools import partial
from itertools import pairwise

import lightning.pytorch as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from hybrid.dynamics import rollout
from hybrid.models import ResNet
from hybrid.objectives import Aphynity
from hybrid.physics.reaction_diffusion import DiffusionOnly, ReactionDiffusion
from hybrid.train import HybridModule

DT = 0.1  # the protocol's data step
LENGTH = 2.0  # side of the [-1, 1]² box

Batch = tuple[Tensor, Tensor]  # t: [B, W], y: [B, W, C, n, n], as the data module yields

# ------------------------------------------------------------------ data and model


def make_data(n: int, size: int, frames: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``[n, frames, 2, size, size]`` trajectories of the true model from ``u, v ~ U[0, 1)``."""
    model = ReactionDiffusion(size=size, length=LENGTH).to(device=device, dtype=dtype)
    y0 = torch.rand((n, 2, size, size), generator=torch.Generator().manual_seed(0), dtype=dtype)
    t = DT * torch.arange(frames, dtype=dtype, device=device)
    with torch.no_grad():
        return rollout(model, y0.to(device), t, method="rk4")


def statistics_of(y: Tensor) -> dict[str, Tensor]:
    """``mean``, ``std`` and ``tendency_std`` per channel, as ``TrajectoryDataModule`` computes."""
    dims = [0, 1, 3, 4]
    dydt = (y[:, 1:] - y[:, :-1]) / DT
    return {
        "mean": y.mean(dims),
        "std": y.std(dims, correction=0),
        "tendency_std": dydt.pow(2).mean(dims).sqrt(),
    }


def make_module(args: argparse.Namespace, stats: dict[str, Tensor], adjoint: bool) -> HybridModule:
    """The ``aphynity`` hybrid, on the device, with the data's statistics set."""
    prior = DiffusionOnly(size=args.size, length=LENGTH)
    correction = ResNet(2, hidden=16, grid=prior.grid)
    module = HybridModule(
        prior,
        correction,
        Aphynity(lambda_0=1.0, tau_2=1e-3),
        method="rk4",
        adjoint=adjoint,
        optimizer=partial(torch.optim.Adam, lr=1e-3),
    )
    module = module.to(device=args.device, dtype=args.dtype)
    module.set_statistics(**stats)
    if args.compile:
        if adjoint:  # the adjoint differentiates the field with retain_graph=True
            torch._functorch.config.donated_buffer = False
        correction.compile(dynamic=False)
    return module


def make_batches(y: Tensor, batch: int, count: int) -> list[Batch]:
    """``count`` batches of ``batch`` trajectories, cycling through ``y``."""
    n, frames = y.shape[:2]
    t = (DT * torch.arange(frames, dtype=y.dtype, device=y.device)).expand(batch, frames)
    index = torch.arange(count * batch, device=y.device) % n
    return [(t, y[i]) for i in index.view(count, batch)]


# ------------------------------------------------------------------ the plain loop


def synchronizer(device: torch.device) -> Callable[[], None]:
    """A barrier that waits for queued device work (a no-op on the CPU)."""
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def forward_loss(module: HybridModule, batch: Batch) -> tuple[Tensor, Tensor]:
    """APHYNITY loss and trajectory loss of one batch (``HybridModule._shared_step``'s maths)."""
    t, y = batch
    pred = module(y[:, 0], t[0])
    traj = module.trajectory_loss(pred, y)
    corr, _ = module.correction_sq(y)
    return module.objective(traj, corr), traj


def timed_step(
    module: HybridModule, opt: torch.optim.Optimizer, batch: Batch, sync: Callable[[], None]
) -> tuple[float, float, float]:
    """One optimisation step; returns its forward and backward + update seconds (wall clock),
    and the process CPU seconds of the whole step."""
    sync()
    start, cpu = time.perf_counter(), time.process_time()
    opt.zero_grad(set_to_none=True)
    loss, traj = forward_loss(module, batch)
    sync()
    middle = time.perf_counter()
    loss.backward()
    opt.step()
    module.objective.update(float(traj.detach()))
    sync()
    return middle - start, time.perf_counter() - middle, time.process_time() - cpu


def time_plain(module: HybridModule, batches: list[Batch], warmup: int) -> dict[str, float]:
    """Best and median step of the plain loop, with the best step's forward/backward split."""
    module.train()
    opt = module.configure_optimizers()
    sync = synchronizer(module.device)
    splits = [timed_step(module, opt, b, sync) for b in batches][warmup:]
    walls = [fwd + bwd for fwd, bwd, _ in splits]
    fwd, bwd, _ = splits[walls.index(min(walls))]
    cpu = min(c for *_, c in splits)
    return {
        "step": fwd + bwd,
        "fwd": fwd,
        "bwd": bwd,
        "median": statistics.median(walls),
        "cpu": cpu,
    }


# ------------------------------------------------------------------ through Lightning


class StepTimer(pl.Callback):
    """Records the wall and CPU times at the end of every training batch (after a device sync)."""

    def __init__(self, sync: Callable[[], None]) -> None:
        self.sync, self.ends = sync, []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.sync()
        self.ends.append((time.perf_counter(), time.process_time()))


def time_lightning(module: HybridModule, batches: list[Batch], warmup: int) -> dict[str, float]:
    """Best and median step of ``Trainer.fit``: gaps between consecutive batch ends."""
    timer = StepTimer(synchronizer(module.device))
    trainer = pl.Trainer(
        accelerator="gpu" if module.device.type == "cuda" else "cpu",
        devices=1,
        max_steps=len(batches),
        callbacks=[timer],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # few batches, no workers: irrelevant here
        trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None))
    gaps = [(b[0] - a[0], b[1] - a[1]) for a, b in pairwise(timer.ends)][warmup:]
    walls = [wall for wall, _ in gaps]
    return {"step": min(walls), "median": statistics.median(walls), "cpu": min(c for _, c in gaps)}


# ------------------------------------------------------------------ one configuration


def bench(args: argparse.Namespace, y: Tensor, batch: int, adjoint: bool) -> dict[str, float]:
    """Times one batch size (plain loop, and Lightning unless disabled or adjoint)."""
    stats = statistics_of(y)
    count = args.warmup + args.steps
    row = {"batch": batch, "adjoint": adjoint}
    plain = time_plain(
        make_module(args, stats, adjoint), make_batches(y, batch, count), args.warmup
    )
    row |= plain
    if args.lightning and not adjoint:  # one more batch: the first gap ends the second step
        batches = make_batches(y, batch, count + 1)
        light = time_lightning(make_module(args, stats, adjoint), batches, args.warmup)
        row |= {"l_step": light["step"], "l_median": light["median"], "l_cpu": light["cpu"]}
    return row


# ------------------------------------------------------------------ report

HEADER = (
    f"{'batch':>6} {'ms/step':>9} {'fwd':>8} {'bwd':>8} {'med/best':>8} {'cpu ms':>8}"
    f" {'traj/s':>8} | {'L traj/s':>8} {'overhead':>8} {'ovh cpu':>8}"
)


def print_row(row: dict[str, float]) -> None:
    """One batch size: best step, its split, noise, throughput; Lightning when measured."""
    light = f" {'-':>8} {'-':>8} {'-':>8}"
    if "l_step" in row:
        light = (
            f" {row['batch'] / row['l_step']:>8.2f} {row['l_step'] / row['step']:>8.2f}"
            f" {row['l_cpu'] / row['cpu']:>8.2f}"
        )
    print(
        f"{row['batch']:>6} {row['step'] * 1e3:>9.0f} {row['fwd'] * 1e3:>8.0f}"
        f" {row['bwd'] * 1e3:>8.0f} {row['median'] / row['step']:>8.2f} {row['cpu'] * 1e3:>8.0f}"
        f" {row['batch'] / row['step']:>8.2f} |{light}",
        flush=True,
    )


def print_header(args: argparse.Namespace) -> None:
    """Versions, threads, device, dtype and the workload of one trajectory."""
    dtype = str(args.dtype).removeprefix("torch.")
    evals = 4 * (args.frames - 1)
    print(
        f"# torch {torch.__version__}, lightning {pl.__version__}, threads"
        f" {torch.get_num_threads()}, OMP_WAIT_POLICY {os.environ.get('OMP_WAIT_POLICY', '-')},"
        f" device {args.device}, dtype {dtype}, compile {args.compile}\n"
        f"# DiffusionOnly + ResNet(2, hidden=16), aphynity, Adam 1e-3; {args.size}x{args.size},"
        f" window {args.frames} frames (rk4 at dt {DT}: {evals} field evaluations);"
        f" best of {args.steps} steps after {args.warmup} warm-up"
    )


# ------------------------------------------------------------------ command line


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--steps", type=int, default=3, help="timed steps per configuration")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", choices=["cpu", "cuda", "auto"], default="auto")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--size", type=int, default=32, help="grid points per axis")
    parser.add_argument("--frames", type=int, default=30, help="frames per window")
    parser.add_argument("--trajectories", type=int, default=0, help="default: largest batch")
    parser.add_argument("--adjoint-batch", type=int, default=None, help="default: first; 0: none")
    parser.add_argument("--no-lightning", dest="lightning", action="store_false")
    parser.add_argument("--compile", action="store_true", help="torch.compile the correction")
    args = parser.parse_args(argv)
    if min(args.batch_sizes) < 1 or args.steps < 1 or args.warmup < 0 or args.frames < 2:
        parser.error("need batch sizes >= 1, --steps >= 1, --warmup >= 0, --frames >= 2")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda requested but CUDA is not available")
    auto = "cuda" if torch.cuda.is_available() else "cpu"
    args.device = torch.device(auto if args.device == "auto" else args.device)
    args.dtype = getattr(torch, args.dtype)
    args.trajectories = args.trajectories or max(args.batch_sizes)
    if args.adjoint_batch is None:
        args.adjoint_batch = args.batch_sizes[0]
    return args


def main(argv: list[str] | None = None) -> list[dict[str, float]]:
    """Run the benchmark; returns one row per configuration (for tests and notebooks)."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)  # no "GPU available" lines
    print_header(args)
    y = make_data(args.trajectories, args.size, args.frames, args.dtype, args.device)
    print(f"\n## adjoint=False\n{HEADER}")
    rows = []
    for batch in args.batch_sizes:
        rows.append(bench(args, y, batch, adjoint=False))
        print_row(rows[-1])
    if args.adjoint_batch:
        print(f"\n## adjoint=True\n{HEADER}")
        rows.append(bench(args, y, args.adjoint_batch, adjoint=True))
        print_row(rows[-1])
    best = {r["batch"]: r["batch"] / r["step"] for r in rows if not r["adjoint"]}
    top = max(best, key=best.get)
    print(f"epoch of 1600 trajectories at batch {top}: {1600 / best[top]:.0f} s (plain loop)")
    return rows


if __name__ == "__main__":
    main()
