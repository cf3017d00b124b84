"""Training step of our APHYNITY hybrids beside a plain restatement of the paper's code, per system.

For reaction-diffusion, the damped wave and the pendulum, one process times, step by step in
turn (so that load from other processes hits both alike):

* ``ref``: a plain PyTorch restatement of the reference implementation (yuan-yin/APHYNITY,
  written from reading it; none of its code is used): its prior (sigmoid/scaled parameters,
  stencils as ``conv2d`` on ``F.pad``), its ``ConvNetEstimator(2, 16)`` (3x3 conv, BatchNorm
  without running statistics, ReLU, x3, NCHW, zero padding) or ``MLP(2, 200)`` for the pendulum,
  torchdiffeq ``rk4`` at the data step, ``MSE + mean ‖F_a‖²`` along the true states, Adam;
* ``ours``: ``HybridModule`` (the same step as ``HybridModule.training_step``: rollout,
  channel-weighted MSE, ‖F_a‖² along the true states, APHYNITY, Adam, λ update) with the incomplete
  prior of ``hybrid.physics`` and the *same network*: ``ConvNet(2, 16, padding="zeros",
  init="default", normalise=False)``, the reference's estimator exactly, or ``MLP(2, 200,
  normalise=False)`` (``--network project``: the project's defaults, ``ConvNet`` circular on the
  periodic square and both networks on normalised states with a zero last layer);
* ``code`` (reaction-diffusion, with ``--reference DIR``): the reference code itself, imported from
  a copy of ``yuan-yin/APHYNITY`` the user fetched (none of it is in this project).

The process sets glibc's allocator as the ``hybrid`` command does
(:func:`hybrid.allocator.keep_freed_memory`), for every side alike; ``HYBRID_MALLOC=system``
measures them all on glibc's defaults instead.

The table reports each side's best step (load only ever slows a step down), ``ref/ours`` (the
speed-up), the conv FLOPs of the network per step (forward + backward ≈ 3x forward, over the
``4 (T-1)`` rk4 evaluations of ``B`` states and the ``B T`` true states of the norm), and the
fraction of the machine's convolution roofline that ours reaches: the same FLOPs divided by the
step time, over the forward+backward rate of a channels-last 16->16 3x3 convolution on
``[512, 16, 32, 32]`` measured in the same run. For the pendulum: µs per field evaluation (a
step's time over its ``4 (T-1)`` evaluations, backward included) and the part of it the MLP's
matmuls need at the rate a ``[B, 200] x [200, 200]`` matmul runs at here.

The wave row runs at batch 16 unless ``--batch`` says otherwise: at the protocol's 64 each side
needs ~16 GB without checkpointing. ``--memory`` runs one step of the full wave protocol (batch
64, 64², 25 frames, the configs' ``ResNet(2, 16)``) in child processes and reports their peak
resident memory, with the correction checkpointed (``hybrid.dynamics.Checkpointed``) at batch 64,
and at batch 8 checkpointed and direct (batch 64 direct needs ~21 GB). Example:
``python scripts/bench_train.py --threads 2``; ``--systems rd --batch 64 --steps 3
--reference /tmp/APHYNITY``.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.profiler import ProfilerActivity, profile, record_function
from torchdiffeq import odeint

from hybrid.allocator import keep_freed_memory
from hybrid.dynamics import Checkpointed, rollout
from hybrid.models import MLP, ConvNet, ResNet
from hybrid.objectives import Aphynity
from hybrid.physics.pendulum import DampedPendulum, FrictionlessPendulum
from hybrid.physics.reaction_diffusion import DiffusionOnly, ReactionDiffusion
from hybrid.physics.wave import DampedWave, UndampedWave
from hybrid.train import HybridModule

DT = 0.1  # reaction-diffusion's data step (kept for the tests of make_data)
LENGTH = 2.0  # side of reaction-diffusion's [-1, 1]² box

Batch = tuple[Tensor, Tensor]  # t: [B, W], y: [B, W, C, *grid], as the data module yields

# ------------------------------------------------------------------ the reference, restated


class RefReactionDiffusion(nn.Module):
    """The paper's incomplete RD prior: ``(a Δu, b Δv)``, ``a = sigmoid(a_org) 1e-2``, 5-point
    Laplacian as a conv on a circularly padded channel, one channel at a time."""

    def __init__(self, dx: float) -> None:
        super().__init__()
        lap = torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]]) / dx**2
        self.register_buffer("lap", lap.view(1, 1, 3, 3))
        self.a_org, self.b_org = nn.Parameter(torch.tensor(-2.0)), nn.Parameter(torch.tensor(-2.0))

    def forward(self, y: Tensor) -> Tensor:
        du = F.conv2d(F.pad(y[:, :1], (1, 1, 1, 1), mode="circular"), self.lap)
        dv = F.conv2d(F.pad(y[:, 1:], (1, 1, 1, 1), mode="circular"), self.lap)
        a, b = torch.sigmoid(self.a_org) * 1e-2, torch.sigmoid(self.b_org) * 1e-2
        return torch.cat([a * du, b * dv], dim=1)


class RefWave(nn.Module):
    """The paper's incomplete wave prior: ``(w_t, c² Δw)``, ``c = 100 c_org``, Δ the second-order
    stencil as two convs, zero on the border."""

    def __init__(self) -> None:
        super().__init__()
        ddx = torch.tensor([[0.0, 0, 0], [1, -2, 1], [0, 0, 0]]).view(1, 1, 3, 3)
        self.register_buffer("ddx", ddx)
        self.register_buffer("ddy", ddx.transpose(-1, -2).contiguous())
        self.c_org = nn.Parameter(torch.tensor(3.6))

    def forward(self, y: Tensor) -> Tensor:
        w = y[:, :1].clone()
        lap = F.pad(F.conv2d(w, self.ddx) + F.conv2d(w, self.ddy), (1, 1, 1, 1))
        return torch.cat([y[:, 1:2], (self.c_org * 100) ** 2 * lap], dim=1)


class RefPendulum(nn.Module):
    """The paper's frictionless pendulum: ``(p, -ω0² sin q)``."""

    def __init__(self) -> None:
        super().__init__()
        self.omega0_sq = nn.Parameter(torch.tensor(0.2))

    def forward(self, y: Tensor) -> Tensor:
        return torch.cat([y[:, 1:2], -self.omega0_sq * torch.sin(y[:, 0:1])], dim=1)


def ref_convnet(channels: int = 2, hidden: int = 16) -> nn.Sequential:
    """The paper's ConvNetEstimator: conv-BN-ReLU, conv-BN-ReLU, conv (zero padding, NCHW)."""
    bn = partial(nn.BatchNorm2d, track_running_stats=False)
    return nn.Sequential(
        *(nn.Conv2d(channels, hidden, 3, padding=1, bias=False), bn(hidden), nn.ReLU(True)),
        *(nn.Conv2d(hidden, hidden, 3, padding=1, bias=False), bn(hidden), nn.ReLU(True)),
        nn.Conv2d(hidden, channels, 3, padding=1),
    )


def ref_mlp(channels: int = 2, hidden: int = 200) -> nn.Sequential:
    return nn.Sequential(
        *(nn.Linear(channels, hidden), nn.ReLU(True), nn.Linear(hidden, hidden), nn.ReLU(True)),
        nn.Linear(hidden, channels),
    )


class RefField(nn.Module):
    """``f(t, y) = prior(y) + net(y)`` (the paper's DerivativeEstimator)."""

    def __init__(self, prior: nn.Module, net: nn.Module) -> None:
        super().__init__()
        self.prior, self.net = prior, net

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        return self.prior(y) + self.net(y)


def ref_step(field: RefField, opt: torch.optim.Optimizer, batch: Batch) -> None:
    """The paper's step: rk4 at the data step, MSE + mean ‖F_a‖² along the true states, Adam."""
    t, y = batch
    pred = odeint(field, y[:, 0], t[0], method="rk4").movedim(0, 1)  # [B, T, C, ...]
    fa = field.net(y.flatten(0, 1))  # [B T, C, ...]
    loss = F.mse_loss(pred, y) + (fa.norm(p=2, dim=1) ** 2).mean()
    loss.backward()
    opt.step()
    opt.zero_grad()


def reference_code_step(directory: Path, s: System):
    """One training step of the reference code itself (``yuan-yin/APHYNITY``, a copy the user
    fetched to ``directory``; imported from there, nothing of it is in this project), as
    ``APHYNITYExperiment._forward`` computes it on reaction-diffusion: its ``Forecaster`` with
    ``ReactionDiffusionParamPDE`` and ``ConvNetEstimator(2, 16)``, rk4 over the window, MSE +
    ``‖F_a‖²`` along the true states (its ``get_derivatives``), Adam. Batches arrive in the
    reference loader's layout ``[B, C, T, *grid]``."""
    if not (directory / "forecasters.py").is_file():
        raise SystemExit(
            f"--reference {directory}: no forecasters.py there (a yuan-yin/APHYNITY copy)"
        )
    sys.path.insert(0, str(directory))
    from forecasters import Forecaster  # noqa: PLC0415
    from networks import ConvNetEstimator, ReactionDiffusionParamPDE  # noqa: PLC0415

    prior = ReactionDiffusionParamPDE(dx=LENGTH / s.size, is_complete=False)
    net = Forecaster(prior, ConvNetEstimator(2, 16), True)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)

    def step(batch: Batch) -> None:
        t, y = batch
        states = y.movedim(1, 2).contiguous()  # [B, C, T, *grid], as its loader yields
        pred = net(states[:, :, 0], t[0])
        loss = F.mse_loss(pred, states)
        loss_op = (net.model_aug.get_derivatives(states).norm(p=2, dim=1) ** 2).mean()
        (loss + loss_op).backward()
        opt.step()
        opt.zero_grad()

    return step


# ------------------------------------------------------------------ the systems


@dataclass
class System:
    """One benchmark: data step, frames, protocol batch, and how to build each side."""

    name: str
    dt: float
    frames: int
    batch: int
    size: int  # grid points per axis; 0 for an ODE


SYSTEMS = {
    "rd": System("reaction-diffusion", DT, 30, 64, 32),
    "wave": System("wave", 1e-3, 25, 16, 64),  # the protocol's 64 needs ~16 GB per side direct
    "pendulum": System("pendulum", 0.5, 40, 25, 0),
}


def make_data(n: int, size: int, frames: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``[n, frames, 2, size, size]`` reaction-diffusion trajectories from ``u, v ~ U[0, 1)``."""
    model = ReactionDiffusion(size=size, length=LENGTH).to(device=device, dtype=dtype)
    y0 = torch.rand((n, 2, size, size), generator=torch.Generator().manual_seed(0), dtype=dtype)
    t = DT * torch.arange(frames, dtype=dtype, device=device)
    with torch.no_grad():
        return rollout(model, y0.to(device), t, method="rk4")


def system_data(key: str, s: System, n: int) -> Tensor:
    """``[n, frames, 2, ...]`` trajectories of each system's true model (float32, CPU)."""
    if key == "rd":
        return make_data(n, s.size, s.frames, torch.float32, torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    t = s.dt * torch.arange(s.frames)
    if key == "wave":  # Gaussian pulses at rest, as the protocol draws them
        yy, xx = torch.meshgrid(torch.arange(s.size), torch.arange(s.size), indexing="ij")
        m = torch.randint(s.size // 3, 2 * s.size // 3, (n, 2, 1, 1), generator=gen)
        width = 10 + 90 * torch.rand(n, 1, 1, generator=gen)
        w = torch.exp(-((xx - m[:, 0]) ** 2 + (yy - m[:, 1]) ** 2) / width)
        y0, model = torch.stack((w, torch.zeros_like(w)), 1), DampedWave(size=s.size)
        opts = {"method": "rk4", "step_size": 1e-4}
    else:
        angle = 2 * torch.pi * torch.rand(n, generator=gen)
        radius = 1.3 + torch.rand(n, generator=gen)
        y0 = torch.stack((radius * angle.cos(), radius * angle.sin()), -1)
        model, opts = DampedPendulum(), {"method": "rk4", "step_size": s.dt / 10}
    with torch.no_grad():
        return rollout(model, y0, t, **opts)


def statistics_of(y: Tensor, dt: float = DT) -> dict[str, Tensor]:
    """``mean``, ``std`` and ``tendency_std`` per channel, as ``TrajectoryDataModule`` computes."""
    dims = [d for d in range(y.ndim) if d != 2]
    dydt = (y[:, 1:] - y[:, :-1]) / dt
    return {
        "mean": y.mean(dims),
        "std": y.std(dims, correction=0),
        "tendency_std": dydt.pow(2).mean(dims).sqrt(),
    }


def make_batches(y: Tensor, batch: int, count: int, dt: float = DT) -> list[Batch]:
    """``count`` batches of ``batch`` trajectories, cycling through ``y``."""
    n, frames = y.shape[:2]
    t = (dt * torch.arange(frames, dtype=y.dtype, device=y.device)).expand(batch, frames)
    index = torch.arange(count * batch, device=y.device) % n
    return [(t, y[i]) for i in index.view(count, batch)]


def ours_module(
    key: str, s: System, stats: dict[str, Tensor], checkpoint: bool, network: str = "reference"
) -> HybridModule:
    """Our hybrid with the reference's network: incomplete prior + ConvNet / MLP, APHYNITY.

    ``network="reference"`` is the reference's network exactly: its ``ConvNetEstimator`` (zero
    padding, PyTorch's initialisation, raw states) or its pendulum MLP on raw states;
    ``"project"`` the project's defaults (``ConvNet`` circular on the periodic
    reaction-diffusion square; both on normalised states with a zero last layer)."""
    exact = network == "reference"
    if key == "pendulum":
        init = {"init": "orthogonal", "normalise": False} if exact else {}
        prior, net = FrictionlessPendulum(), MLP(2, hidden=200, **init)
    else:
        prior = DiffusionOnly(size=s.size) if key == "rd" else UndampedWave(size=s.size)
        grid = prior.grid if key == "rd" else wall_grid(s.size)
        init = {"init": "default", "normalise": False, "padding": "zeros"} if exact else {}
        net = ConvNet(2, hidden=16, grid=grid, **init)
    module = HybridModule(
        prior,
        Checkpointed(net) if checkpoint else net,
        Aphynity(lambda_0=1.0, tau_2=1e-3),
        method="rk4",
        optimizer=partial(torch.optim.Adam, lr=1e-3),
    )
    module.set_statistics(**stats)
    return module


def wall_grid(size: int):
    from hybrid.physics.grid import Grid

    return Grid.regular_box(size, size, 1.0, periodic=False)


def ref_field(key: str, s: System) -> RefField:
    if key == "pendulum":
        return RefField(RefPendulum(), ref_mlp())
    prior = RefReactionDiffusion(LENGTH / s.size) if key == "rd" else RefWave()
    return RefField(prior, ref_convnet())


def ours_step(module: HybridModule, opt: torch.optim.Optimizer, batch: Batch) -> None:
    """``HybridModule._shared_step``'s maths, backward, Adam, then the λ update."""
    t, y = batch
    pred = module(y[:, 0], t[0])
    traj = module.trajectory_loss(pred, y)
    corr, _ = module.correction_sq(y)
    module.objective(traj, corr).backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    module.objective.update(float(traj.detach()))


# ------------------------------------------------------------------ rates of the machine


def best_time(fn, repeats: int = 3) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def conv_roofline(batch: int = 512, size: int = 32, repeats: int = 5) -> float:
    """FLOP/s of a channels-last 16->16 3x3 conv on ``[512, 16, 32, 32]``, forward and both
    backward products (best of ``repeats``): the rate the networks' main layer can reach here."""
    x = torch.randn(batch, 16, size + 2, size + 2).to(memory_format=torch.channels_last)
    conv = nn.Conv2d(16, 16, 3, bias=False).to(memory_format=torch.channels_last)
    x.requires_grad_()

    def step() -> None:
        out = conv(x)
        out.backward(torch.ones_like(out))

    return 3 * 2 * batch * 16 * 16 * 9 * size**2 / best_time(step, repeats)


def matmul_rate(batch: int, hidden: int = 200) -> float:
    a, w = torch.randn(batch, hidden), torch.randn(hidden, hidden)
    return 2 * batch * hidden * hidden * 20 / best_time(lambda: [a @ w for _ in range(20)])


def network_flops(key: str, s: System, batch: int) -> float:
    """Forward FLOPs of the network over one step's states (rollout evaluations + the norm)."""
    states = batch * (4 * (s.frames - 1) + s.frames)
    if key == "pendulum":
        return 2.0 * states * (2 * 200 + 200 * 200 + 200 * 2)
    return 2.0 * states * 9 * s.size**2 * (2 * 16 + 16 * 16 + 16 * 2)


# ------------------------------------------------------------------ one system


def bench(key: str, args: argparse.Namespace) -> dict[str, float]:
    s = SYSTEMS[key]
    if args.size:
        s = System(s.name, s.dt, args.frames or s.frames, s.batch, s.size and args.size)
    elif args.frames:
        s = System(s.name, s.dt, args.frames, s.batch, s.size)
    batch = args.batch or s.batch
    y = system_data(key, s, batch)
    batches = make_batches(y, batch, args.warmup + args.steps, s.dt)
    torch.manual_seed(0)
    ours = ours_module(key, s, statistics_of(y, s.dt), args.checkpoint, args.network).train()
    ours_opt = ours.configure_optimizers()
    if args.compile:
        ours.correction.compile(dynamic=False)
    ref = ref_field(key, s).train()
    ref_opt = torch.optim.Adam(ref.parameters(), lr=1e-3)
    sides = {"ref": partial(ref_step, ref, ref_opt), "ours": partial(ours_step, ours, ours_opt)}
    if args.reference and key == "rd":
        sides["code"] = reference_code_step(args.reference, s)
    times = {name: [] for name in sides}
    for b in batches:  # in turn, so that load hits every side alike
        for name, step in sides.items():
            start = time.perf_counter()
            step(b)
            times[name].append(time.perf_counter() - start)
    row = {"system": key, "batch": batch, "frames": s.frames, "size": s.size}
    row |= {name: min(v[args.warmup :]) for name, v in times.items()}
    flops = 3 * network_flops(key, s, batch)
    row["gflop"] = flops / 1e9
    if key == "pendulum":
        evals = 4 * (s.frames - 1)
        row["us_eval"] = row["ours"] / evals * 1e6
        row["us_eval_ref"] = row["ref"] / evals * 1e6
        row["us_eval_matmul"] = flops / evals / matmul_rate(batch) * 1e6
    else:
        rate = conv_roofline()
        row["conv_gflops"] = rate / 1e9
        row["roofline"], row["roofline_ref"] = flops / row["ours"] / rate, flops / row["ref"] / rate
    return row


# ------------------------------------------------------------------ where a step goes


def _label(module: nn.Module, name: str) -> None:
    """Mark each forward call of ``module`` as ``name`` in the profiler."""
    spans = []
    module.register_forward_pre_hook(lambda *_: spans.append(record_function(name).__enter__()))
    module.register_forward_hook(lambda *_: spans.pop().__exit__(None, None, None))


def profile_step(key: str, args: argparse.Namespace) -> dict[str, float]:
    """One step of ours under ``torch.profiler``: seconds per part (prior, network in the
    rollout, solver bookkeeping, loss and the norm call, backward, optimiser)."""
    s = SYSTEMS[key]
    batch = args.batch or s.batch
    y = system_data(key, s, batch)
    module = ours_module(key, s, statistics_of(y, s.dt), args.checkpoint, args.network).train()
    opt = module.configure_optimizers()
    t, yb = make_batches(y, batch, 1, s.dt)[0]
    ours_step(module, opt, (t, yb))  # warm-up
    _label(module.physics, "prior")
    _label(module.correction, "network")
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        with record_function("rollout"):
            pred = module(yb[:, 0], t[0])
        with record_function("losses"):
            traj = module.trajectory_loss(pred, yb)
            corr, _ = module.correction_sq(yb)
            loss = module.objective(traj, corr)
        with record_function("backward"):
            loss.backward()
        with record_function("optimiser"):
            opt.step()
            opt.zero_grad(set_to_none=True)
            module.objective.update(float(traj.detach()))
    spans = {e.key: e.cpu_time_total / 1e6 for e in prof.key_averages() if e.key in PARTS}
    return spans


PARTS = ("rollout", "prior", "network", "losses", "backward", "optimiser")


# ------------------------------------------------------------------ peak memory of the wave step


def wave_memory_child(batch: int, checkpoint: bool) -> None:
    """One step of the wave protocol with the configs' ResNet; prints peak RSS in GB."""
    s = SYSTEMS["wave"]
    y = system_data("wave", s, batch)
    prior = UndampedWave(c=200.0, size=s.size)
    net = ResNet(2, hidden=16, grid=wall_grid(s.size))
    module = HybridModule(
        prior, Checkpointed(net, chunk=8) if checkpoint else net, Aphynity(), method="rk4"
    )
    module.set_statistics(**statistics_of(y, s.dt))
    ours_step(module, module.configure_optimizers(), make_batches(y, batch, 1, s.dt)[0])
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)


def wave_memory(batch: int, checkpoint: bool) -> float:
    cmd = [sys.executable, __file__, "--memory-child", str(batch)]
    cmd += ["--checkpoint"] if checkpoint else []
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=os.environ)
    return float(out.stdout.split()[-1])


# ------------------------------------------------------------------ report

HEADER = (
    f"{'system':>18} {'batch':>5} {'ref s':>8} {'ours s':>8} {'ref/ours':>8} {'code s':>8}"
    f" {'code/ours':>9} {'GFLOP':>7} {'roofline ours (ref) of':>24} {'epoch 1600':>10}"
)


def print_row(row: dict[str, float]) -> None:
    roof = f"{'-':>24}"
    if "roofline" in row:
        ours, ref, rate = row["roofline"], row["roofline_ref"], row["conv_gflops"]
        roof = f"{f'{ours:.0%} ({ref:.0%}) of {rate:.0f} GF/s':>24}"
    code = f"{'-':>8} {'-':>9}"
    if "code" in row:
        code = f"{row['code']:>8.3f} {row['code'] / row['ours']:>9.2f}"
    epoch = 1600 / row["batch"] * row["ours"]
    print(
        f"{SYSTEMS[row['system']].name:>18} {row['batch']:>5} {row['ref']:>8.3f}"
        f" {row['ours']:>8.3f} {row['ref'] / row['ours']:>8.2f} {code} {row['gflop']:>7.1f}"
        f" {roof} {epoch:>9.0f}s",
        flush=True,
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--systems", nargs="+", choices=list(SYSTEMS), default=list(SYSTEMS))
    parser.add_argument("--batch", type=int, default=0, help="default: each protocol's")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per side")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument(
        "--size", type=int, default=0, help="grid points per axis (default: protocol)"
    )
    parser.add_argument(
        "--frames", type=int, default=0, help="frames per window (default: protocol)"
    )
    parser.add_argument(
        "--network",
        choices=("reference", "project"),
        default="reference",
        help="ours with the reference's network exactly, or with the project's defaults",
    )
    parser.add_argument(
        "--reference",
        type=Path,
        default=None,
        help="a copy of yuan-yin/APHYNITY: also time its own reaction-diffusion step",
    )
    parser.add_argument("--checkpoint", action="store_true", help="checkpoint our correction")
    parser.add_argument("--compile", action="store_true", help="torch.compile our correction")
    parser.add_argument("--memory", action="store_true", help="peak memory of the wave protocol")
    parser.add_argument("--profile", action="store_true", help="where a step of ours goes")
    parser.add_argument("--memory-child", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or args.batch < 0 or args.frames == 1:
        parser.error("need --steps >= 1, --warmup >= 0, --batch >= 0, --frames >= 2")
    return args


def main(argv: list[str] | None = None) -> list[dict[str, float]]:
    """Run the benchmark; returns one row per system (for tests and notebooks)."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    kept = keep_freed_memory()  # as the `hybrid` command does (HYBRID_MALLOC=system: not)
    if args.memory_child:
        wave_memory_child(args.memory_child, args.checkpoint)
        return []
    if args.profile:
        for key in args.systems:
            p = profile_step(key, args)
            print(
                f"# profile of ours, {SYSTEMS[key].name} (s in the profiler): "
                + ", ".join(f"{k} {v:.2f}" for k, v in p.items())
            )
        return []
    if args.memory:  # first, while this process's heap is small
        print("# wave protocol (64², 25 frames, ResNet(2, 16)), peak RSS of one step:")
        for batch, ckpt in ((64, True), (8, True), (8, False)):
            gb = wave_memory(batch, ckpt)
            print(f"#   batch {batch:>2} {'checkpointed' if ckpt else 'direct':>12}: {gb:.2f} GB")
    print(
        f"# torch {torch.__version__}, threads {torch.get_num_threads()}, float32, CPU;"
        f" best of {args.steps} steps each after {args.warmup} warm-up, taken in turn;"
        f" checkpoint {args.checkpoint}, compile {args.compile}, network {args.network},"
        f" allocator {'kept' if kept else 'system'}\n{HEADER}"
    )
    rows = []
    for key in args.systems:
        rows.append(bench(key, args))
        print_row(rows[-1])
        if "us_eval" in rows[-1]:
            r = rows[-1]
            print(
                f"# pendulum: {r['us_eval']:.0f} µs per field evaluation"
                f" (ref {r['us_eval_ref']:.0f}), of which the MLP's matmuls need"
                f" {r['us_eval_matmul']:.0f} µs"
            )
    return rows


if __name__ == "__main__":
    main()
