"""The datasets ``hybrid simulate`` can generate, each a function returning its protocol.

The three APHYNITY benchmarks follow the official code of Yin et al. (ICLR 2021) exactly: sizes,
steps, numbers of trajectories and initial-condition distributions (time in the paper's units).
The advection-diffusion and shallow-water sets are ``hybrid``'s defaults, in SI units.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from hybrid.data.environments import EnvironmentSpec
from hybrid.data.io import grid_coords
from hybrid.data.simulate import SimulationSpec, box_coords
from hybrid.dynamics import HybridField, rollout
from hybrid.physics.advection_diffusion import AdvectionDiffusion, ConstantVelocity
from hybrid.physics.decay import LinearDecay
from hybrid.physics.gray_scott import GrayScott
from hybrid.physics.grid import Grid
from hybrid.physics.growth import LocalGrowth
from hybrid.physics.lotka_volterra import LotkaVolterra
from hybrid.physics.moving_flow import MovingFlowTracer, streamfunction_velocity
from hybrid.physics.moving_flow_latlon import TurningFlowTracer, band_streamfunction_velocity
from hybrid.physics.navier_stokes import NavierStokes, leads_forcing
from hybrid.physics.pendulum import ALPHA, OMEGA0_SQ, DampedPendulum
from hybrid.physics.reaction_diffusion import ReactionDiffusion
from hybrid.physics.shallow_water import FPlane, ShallowWater, geostrophic_velocity
from hybrid.physics.source import SteadySource
from hybrid.physics.wave import DampedWave

HOUR, DAY = 3600.0, 86400.0


def _tensor(a: np.ndarray) -> Tensor:
    return torch.as_tensor(a, dtype=torch.float64)


def reaction_diffusion() -> SimulationSpec:
    """FitzHugh-Nagumo on a 32² periodic grid of [-1, 1]²; u, v ~ U[0, 1); 30 frames at 0.1."""
    prior = ReactionDiffusion(a=1e-3, b=5e-3, k=5e-3, size=32, length=2.0)
    return SimulationSpec(
        model=prior,
        prior=prior,
        names=("u", "v"),
        units=("1", "1"),
        dt=0.1,
        n_times={"train": 30, "test": 30},
        n_samples={"train": 1600, "test": 320},
        initial_condition=lambda rng, n: _tensor(rng.random((n, 2, 32, 32))),
        coords=box_coords((32, 32), 2.0 / 32),
        description="APHYNITY reaction-diffusion (FitzHugh-Nagumo), a=1e-3 b=5e-3 k=5e-3",
    )


def _gaussian_pulse(rng: np.random.Generator, n: int, size: int = 64) -> Tensor:
    """APHYNITY wave initial state: w = exp(-|x - m|²/s), s~U(10,100), m ~ U{20..39}²; w_t = 0."""
    y, x = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    w = np.empty((n, 2, size, size))
    for i in range(n):
        s, (mx, my) = rng.uniform(10, 100), rng.integers(20, 40, size=2)
        w[i, 0], w[i, 1] = np.exp(-((x - mx) ** 2 + (y - my) ** 2) / s), 0.0
    return _tensor(w)


def wave() -> SimulationSpec:
    """Damped wave c=330, k=50 on 64² (dx=1): one record per split, 225 (train) / 75 (test)
    frames at 1e-3, cut into windows of 25 (200 train, 50 test) by the data module."""
    prior = DampedWave(c=330.0, k=50.0, size=64, dx=1.0)
    return SimulationSpec(
        model=prior,
        prior=prior,
        names=("w", "w_t"),
        units=("1", "s-1"),
        dt=1e-3,
        n_times={"train": 225, "test": 75},
        n_samples={"train": 1, "test": 1},
        initial_condition=_gaussian_pulse,
        coords=box_coords((64, 64), 1.0, periodic=False),
        solver={"method": "rk4", "step_size": 1e-4},  # the paper: rk4 at 1e-3; we sub-step 10x
        description="APHYNITY damped wave, c=330 k=50",
    )


def _pendulum_state(rng: np.random.Generator, n: int) -> Tensor:
    """APHYNITY pendulum initial state: a random direction with radius ~ U[1.3, 2.3)."""
    y0 = rng.random((n, 2)) * 2 - 1
    radius = rng.random((n, 1)) + 1.3
    return _tensor(y0 / np.linalg.norm(y0, axis=1, keepdims=True) * radius)


def pendulum() -> SimulationSpec:
    """Damped pendulum ω0² = (2π/6)², α = 0.2 (the reference code's defaults); 25 + 25
    trajectories of 40 frames at 0.5."""
    prior = DampedPendulum(omega0_sq=OMEGA0_SQ, alpha=ALPHA)
    return SimulationSpec(
        model=prior,
        prior=prior,
        names=("theta", "omega"),
        units=("rad", "rad s-1"),
        dt=0.5,
        n_times={"train": 40, "test": 40},
        n_samples={"train": 25, "test": 25},
        initial_condition=_pendulum_state,
        solver={"method": "dopri5", "rtol": 1e-10, "atol": 1e-10},
        description="APHYNITY damped pendulum",
    )


def _smooth_field(rng: np.random.Generator, n: int, size: int, modes: int = 3) -> np.ndarray:
    """Random periodic fields ``Σ a sin(2π(k·x)/L + φ)`` with integer |k| <= modes, amplitude ~1."""
    x = np.arange(size) / size
    out = np.zeros((n, size, size))
    for i in range(n):
        for _ in range(4):
            kx, ky = rng.integers(-modes, modes + 1, size=2)
            a, phase = rng.normal(0, 0.5), rng.uniform(0, 2 * np.pi)
            out[i] += a * np.sin(2 * np.pi * (kx * x[None, :] + ky * x[:, None]) + phase)
    return out


def _transport_spec(model_extra, description: str) -> SimulationSpec:
    """A tracer on a 32² periodic box of 10 km cells, κ = 800 m²/s, (u, v) = (0.4, -0.2) m/s,
    plus ``model_extra(grid)``, the term the transport prior lacks; 64 + 16 trajectories of 40
    frames at 3 h."""
    dx, n = 10e3, 32
    grid = Grid.regular_box(n, n, dx)
    prior = AdvectionDiffusion(grid, kappa=800.0, velocity=ConstantVelocity(u=0.4, v=-0.2))
    return SimulationSpec(
        model=HybridField(prior, model_extra(grid)),
        prior=prior,
        names=("c",),
        units=("kg m-3",),
        dt=3 * HOUR,
        n_times={"train": 40, "test": 40},
        n_samples={"train": 64, "test": 16},
        initial_condition=lambda rng, m: _tensor(2 + _smooth_field(rng, m, n))[:, None],
        coords=box_coords((n, n), dx),
        description=description,
    )


def source_pattern(grid: Grid, amplitude: float = 1e-6) -> Tensor:
    """``S = A sin(2πx/L) cos(2πy/L)`` (kg m⁻³ s⁻¹): emission and deposition of zero net mass."""
    ny, nx = grid.shape
    x = torch.arange(nx, dtype=torch.float64) / nx
    y = torch.arange(ny, dtype=torch.float64)[:, None] / ny
    return amplitude * torch.sin(2 * math.pi * x) * torch.cos(2 * math.pi * y)


def advection_diffusion() -> SimulationSpec:
    """The default: transport plus a steady source/sink pattern the prior lacks.

    The tracer's response to the source correlates with the source, so the source is not exactly
    orthogonal to the transport directions ``∇²c``, ``∂c/∂x``, ``∂c/∂y``, and APHYNITY's least-norm
    split biases κ by an amount growing as the amplitude squared (measured with
    :func:`hybrid.identifiability.least_norm_parameters` on the training data: 16 % at 4e-6,
    4 % at 2e-6, 1.1 % at 1e-6). At 1e-6 every parameter's bias is below 1.5 %."""
    return _transport_spec(
        lambda g: SteadySource(source_pattern(g)),
        "tracer advection-diffusion with a steady source pattern (1e-6)",
    )


def advection_diffusion_decay() -> SimulationSpec:
    """Transport plus first-order decay γ = 1/(3 days) the prior lacks. Decay is not orthogonal
    to diffusion (⟨c, ∇²c⟩ < 0), so here APHYNITY's least-norm split biases κ upward."""
    return _transport_spec(
        lambda g: LinearDecay(gamma=1 / (3 * DAY)),
        "tracer advection-diffusion with first-order decay gamma=1/(3 days)",
    )


def shallow_water() -> SimulationSpec:
    """Rotating shallow water on a 32² periodic f-plane of 50 km cells, H=100 m, f0=1e-4 s⁻¹,
    drag 1e-6 s⁻¹; geostrophically balanced random bumps (~0.5 m) plus unbalanced noise;
    32 + 8 trajectories of 48 frames at 1 h."""
    dx, n = 50e3, 32
    grid = Grid.regular_box(n, n, dx)
    prior = ShallowWater(grid, g=9.81, H=100.0, r=1e-6, coriolis=FPlane(f0=1e-4))

    def initial_condition(rng: np.random.Generator, m: int) -> Tensor:
        eta = _tensor(0.5 * _smooth_field(rng, m, n, modes=2))
        u, v = geostrophic_velocity(eta, grid.double(), 9.81, 1e-4)
        noise = _tensor(0.05 * _smooth_field(rng, m, n, modes=2))
        return torch.stack((eta + noise, u, v), dim=1)

    return SimulationSpec(
        model=prior,
        prior=prior,
        names=("eta", "u", "v"),
        units=("m", "m s-1", "m s-1"),
        dt=HOUR,
        n_times={"train": 48, "test": 48},
        n_samples={"train": 32, "test": 8},
        initial_condition=initial_condition,
        coords=box_coords((n, n), dx),
        solver={"method": "rk4", "step_size": 300.0},  # 12 sub-steps per hour, ~1/5 of stable
        description="rotating shallow water, f-plane, periodic box",
    )


def moving_flow() -> SimulationSpec:
    """A tracer carried by a drifting incompressible flow (de Bézenac et al. 2018's setting with
    a known flow), the true velocity saved beside it as ``u``, ``v``.

    32² periodic box of 10 km cells, κ = 200 m²/s, upwind transport; per trajectory a random
    streamfunction of modes |k| <= 2 scaled to an RMS speed of 0.3 m/s, whose pattern drifts at
    (0.1, 0.05) m/s (:class:`~hybrid.physics.moving_flow.MovingFlowTracer`); tracer ``2 + Σ``
    modes |k| <= 4;
    64 + 16 trajectories of 24 frames at 3 h (longer, the stirred tracer loses its large
    scales). Train on ``variables: [c]``."""
    dx, n = 10e3, 32
    grid = Grid.regular_box(n, n, dx)
    model = MovingFlowTracer(grid, kappa=200.0, drift=(0.1, 0.05), max_speed=2.0, scheme="upwind")

    def initial_condition(rng: np.random.Generator, m: int) -> Tensor:
        c = _tensor(2 + _smooth_field(rng, m, n, modes=4))
        u, v = streamfunction_velocity(_tensor(_smooth_field(rng, m, n, modes=2)), grid.double())
        rms = (u.square() + v.square()).mean((-2, -1), keepdim=True).sqrt().clamp_min(1e-30)
        return torch.stack((c, 0.3 * u / rms, 0.3 * v / rms), dim=1)  # [m, 3, n, n]

    return SimulationSpec(
        model=model,
        prior=model,
        names=("c", "u", "v"),
        units=("kg m-3", "m s-1", "m s-1"),
        dt=3 * HOUR,
        n_times={"train": 24, "test": 24},
        n_samples={"train": 64, "test": 16},
        initial_condition=initial_condition,
        coords=box_coords((n, n), dx),
        solver={"method": "rk4", "step_size": 900.0},
        description="tracer in a drifting incompressible flow, true velocity as u, v",
    )


HOVMOLLER_SPEED = 5.0  # m/s eastward, the waves' propagation speed
HOVMOLLER_GROWTH = 1 / (40 * DAY)  # 1/s, peak growth (decay) rate over 90°E (90°W)


def _eastward_waves(rng: np.random.Generator, n: int, lon: np.ndarray) -> Tensor:
    """``Σ_{k=1..4} a_k sin(k λ + φ_k)``, ``a_k ~ N(0, (10/k)²)`` W m⁻²: ``[n, 1, nx]``."""
    lam = np.deg2rad(lon)
    out = np.zeros((n, 1, lon.size))
    for i in range(n):
        for k in range(1, 5):
            out[i, 0] += rng.normal(0, 10 / k) * np.sin(k * lam + rng.uniform(0, 2 * np.pi))
    return _tensor(out)


def _noise_and_missing_days(noise: float, missing: float):
    """Observation: Gaussian noise of ``noise`` (W m⁻²) on every value, and a share ``missing``
    of the days (never the first) lost whole: NaN frames."""

    def observe(rng: np.random.Generator, y: Tensor) -> Tensor:
        y = y + noise * _tensor(rng.standard_normal(tuple(y.shape)))
        lost = rng.random(y.shape[:2]) < missing  # [N, T]
        lost[:, 0] = False
        y[torch.as_tensor(lost)] = float("nan")
        return y

    return observe


def hovmoller() -> SimulationSpec:
    """Daily OLR-like anomalies on the equator's circle of 2.5° longitudes (a Hovmöller diagram):
    waves of zonal wavenumbers 1-4 carried east at ``U = 5 m/s`` (κ = 2e4 m²/s), growing over
    the Indian Ocean and West Pacific and decaying over the East Pacific and Atlantic,
    ``∂c/∂t = -U ∂c/∂x + κ ∂²c/∂x² + σ0 sin(λ) c`` with ``σ0 = 1/(40 days)``
    (:class:`~hybrid.physics.growth.LocalGrowth`, which the transport prior lacks); noise of
    0.5 W m⁻² and 3 % of the days missing (NaN frames). One record per split: 720 days (train),
    360 (test). Train on ``variables: [olr]``."""
    lon = np.arange(144) * 2.5
    grid = Grid.latlon(0.0, lon)
    prior = AdvectionDiffusion(grid, kappa=2e4, velocity=ConstantVelocity(HOVMOLLER_SPEED, None))
    growth = LocalGrowth(HOVMOLLER_GROWTH * torch.sin(torch.deg2rad(torch.as_tensor(lon))))
    return SimulationSpec(
        model=HybridField(prior, growth),
        prior=prior,
        names=("olr",),
        units=("W m-2",),
        dt=DAY,
        n_times={"train": 720, "test": 360},
        n_samples={"train": 1, "test": 1},
        initial_condition=lambda rng, n: _eastward_waves(rng, n, lon),
        coords=grid_coords("latlon", lon, 0.0),
        solver={"method": "rk4", "step_size": 3 * HOUR},
        description="eastward waves (U = 5 m/s) growing over 0-180E, decaying over 180-360E",
        observe=_noise_and_missing_days(noise=0.5, missing=0.03),
    )


# -- a forced field: the forcing is a variable of the file ----------------------------------------
FORCED_RATE, FORCED_GAIN = 1 / (10 * DAY), 1e-5  # r (1/s) and a (K/s per unit of forcing)
FORCED_PERIODS = ((40 * DAY, 1.0, 0.0), (29 * DAY, 0.7, 1.0))  # g(t) = Σ A sin(2πt/P + φ)


def forcing_index(t: np.ndarray) -> np.ndarray:
    """``g(t) = sin(2πt/40 d) + 0.7 sin(2πt/29 d + 1)``, ``t`` in s: a climate-index-like series."""
    return sum(
        amp * np.sin(2 * np.pi * t / period + phase) for period, amp, phase in FORCED_PERIODS
    )


def forcing_pattern(n: int) -> np.ndarray:
    """``h(x) = 1 + 0.5 sin(2πx/L)`` on an ``n × n`` box, ``[n, n]``."""
    return np.broadcast_to(1 + 0.5 * np.sin(2 * np.pi * np.arange(n) / n), (n, n)).copy()


class ForcedDecayTruth(torch.nn.Module):
    """``dT/dt = -r T + a g(t) h(x)``: relaxation driven by the forcing ``F = g h``."""

    def __init__(self, pattern: np.ndarray, r: float = FORCED_RATE, a: float = FORCED_GAIN):
        super().__init__()
        self.r, self.a = r, a
        self.register_buffer("pattern", _tensor(pattern))

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        g = float(forcing_index(np.asarray(float(t))))
        return -self.r * y + self.a * g * self.pattern


def forced_decay_exact(y0: np.ndarray, t: np.ndarray, pattern: np.ndarray) -> np.ndarray:
    """The exact solution ``T(t) = e^{-rt} T0 + a h ∫_0^t e^{-r(t-s)} g(s) ds``, by
    ``∫_0^t e^{-r(t-s)} sin(ωs+φ) ds = [r sin(ωt+φ) - ω cos(ωt+φ) - e^{-rt}(r sin φ - ω cos φ)]
    / (r² + ω²)``; ``y0``: ``[N, *grid]``, ``t``: ``[T]`` (s) -> ``[N, T, *grid]``."""
    r, decay = FORCED_RATE, np.exp(-FORCED_RATE * t)
    integral = np.zeros_like(t)
    for period, amp, phase in FORCED_PERIODS:
        w, arg = 2 * np.pi / period, 2 * np.pi * t / period + phase
        start = r * np.sin(phase) - w * np.cos(phase)
        integral += amp * (r * np.sin(arg) - w * np.cos(arg) - decay * start) / (r**2 + w**2)
    tt = (slice(None),) + (None,) * pattern.ndim
    return decay[tt] * y0[:, None] + FORCED_GAIN * integral[tt] * pattern


def forced_decay() -> SimulationSpec:
    """A temperature-like field on an 8² periodic box of 100 km cells relaxing at ``r = 1/(10
    days)`` and driven by a forcing the file holds: ``dT/dt = -r T + a F``, ``F(t, x) = g(t) h(x)``
    (:func:`forcing_index`, :func:`forcing_pattern`), ``a = 1e-5 K/s``. The file has the
    forcing ``F`` on the grid and the index ``g`` as a series in time alone; the prior is
    ``-r T`` (:class:`LinearDecay`). 8 + 4 trajectories of 120 daily frames, on the same
    forcing (time from 2000-01-01), from random smooth starts of about 1 K. Train on
    ``variables: [T]``, ``forcings: [F]``."""
    n, dx = 8, 100e3
    pattern = forcing_pattern(n)

    def forcings(t: np.ndarray) -> dict[str, tuple[tuple[str, ...], np.ndarray]]:
        g = forcing_index(t)
        return {"F": (("time", "y", "x"), g[:, None, None] * pattern), "g": (("time",), g)}

    return SimulationSpec(
        model=ForcedDecayTruth(pattern),
        prior=LinearDecay(gamma=FORCED_RATE),
        names=("T",),
        units=("K",),
        dt=DAY,
        n_times={"train": 120, "test": 120},
        n_samples={"train": 8, "test": 4},
        initial_condition=lambda rng, m: _tensor(_smooth_field(rng, m, n))[:, None],
        coords=box_coords((n, n), dx),
        solver={"method": "rk4", "step_size": DAY / 8},
        description="relaxation r = 1/(10 days) driven by a forcing F = g(t) h(x) in the file",
        forcings=forcings,
    )


# -- many environments (LEADS, Yin et al. 2021; CoDA, Kirchmeyer et al. 2022) -------------------
LV_ENVIRONMENTS = [(0.5, 0.5), (0.25, 0.5), (0.75, 0.5), (1.0, 0.5), (0.5, 0.25)]
LV_ENVIRONMENTS += [(0.5, 0.75), (0.5, 1.0), (0.25, 0.25), (0.75, 0.75), (1.0, 1.0)]  # (α, γ)
GS_ENVIRONMENTS = [(0.037, 0.060), (0.030, 0.062), (0.039, 0.058)]  # (F, k)
NS_FORCINGS = [((1, 1), (1, 1)), ((1, 1), (1, 2)), ((1, 1), (2, 1)), ((1, 2), (2, 1))]


def _environment_spec(priors: list, template: dict, description: str) -> EnvironmentSpec:
    specs = [SimulationSpec(model=p, prior=p, **template) for p in priors]
    return EnvironmentSpec(specs, description)


def lotka_volterra() -> EnvironmentSpec:
    """LEADS's Lotka-Volterra: β = δ = 0.5, 10 environments of (α, γ); (x, y)₀ ~ U[1, 2)²;
    20 frames at 0.5; 1 training and 32 test trajectories per environment."""
    template = dict(
        names=("x", "y"),
        units=("1", "1"),
        dt=0.5,
        n_times={"train": 20, "test": 20},
        n_samples={"train": 1, "test": 32},
        initial_condition=lambda rng, n: _tensor(rng.random((n, 2)) + 1.0),
        solver={"method": "dopri5", "rtol": 1e-10, "atol": 1e-10},
    )
    priors = [LotkaVolterra(alpha=a, beta=0.5, gamma=g, delta=0.5) for a, g in LV_ENVIRONMENTS]
    return _environment_spec(priors, template, "LEADS Lotka-Volterra, 10 environments of (α, γ)")


def _gray_scott_blocks(rng: np.random.Generator, n: int, size: int = 32) -> Tensor:
    """LEADS's Gray-Scott start: u = 0.95, v = 0.05, then 3 squares of side 3 with u = 0, v = 1."""
    y = np.empty((n, 2, size, size))
    y[:, 0], y[:, 1] = 0.95, 0.05
    r = size // 10
    for i in range(n):
        for _ in range(3):
            a, b = rng.integers(0, size - r, size=2)
            y[i, 0, a : a + r, b : b + r], y[i, 1, a : a + r, b : b + r] = 0.0, 1.0
    return _tensor(y)


def gray_scott() -> EnvironmentSpec:
    """LEADS's Gray-Scott: D_u = 0.2097, D_v = 0.105, 3 environments of (F, k), 32² periodic
    grid of unit spacing; 10 frames at 40; 1 training and 32 test trajectories per environment."""
    template = dict(
        names=("u", "v"),
        units=("1", "1"),
        dt=40.0,
        n_times={"train": 10, "test": 10},
        n_samples={"train": 1, "test": 32},
        initial_condition=_gray_scott_blocks,
        coords=box_coords((32, 32), 1.0),
        solver={"method": "rk4", "step_size": 0.5},
    )
    priors = [GrayScott(F=f, k=k) for f, k in GS_ENVIRONMENTS]
    return _environment_spec(priors, template, "LEADS Gray-Scott, 3 environments of (F, k)")


def gaussian_random_field(rng: np.random.Generator, n: int, size: int = 32) -> Tensor:
    """LEADS's (FNO's) vorticity start: a periodic Gaussian field of spectrum
    ``(4π²|k|² + τ²)^(−α/2)``, α = 2.5, τ = 7, zero mean: ``[n, size, size]``."""
    alpha, tau = 2.5, 7.0
    k = np.fft.fftfreq(size, 1.0 / size)
    k2 = k[:, None] ** 2 + k[None, :] ** 2
    sigma = tau ** (0.5 * (2 * alpha - 2))
    sqrt_eig = size**2 * math.sqrt(2.0) * sigma * (4 * math.pi**2 * k2 + tau**2) ** (-alpha / 2)
    sqrt_eig[0, 0] = 0.0
    coeff = rng.standard_normal((n, size, size)) + 1j * rng.standard_normal((n, size, size))
    return _tensor(np.fft.ifft2(sqrt_eig * coeff / math.sqrt(2)).real)


def navier_stokes() -> EnvironmentSpec:
    """LEADS's forced Navier-Stokes: ν = 1e-3 on 32², 4 forcings (:data:`NS_FORCINGS`); starts
    are Gaussian random fields spun up for 30 time units under the first forcing; 10 frames at
    1; 8 training and 32 test trajectories per environment. rk4 at 0.01 (the reference:
    Crank-Nicolson at 1e-3)."""
    solver = {"method": "rk4", "step_size": 0.01}
    spin_up = NavierStokes(leads_forcing(32, *NS_FORCINGS[0]), nu=1e-3).double()

    def initial_condition(rng: np.random.Generator, n: int) -> Tensor:
        w0 = gaussian_random_field(rng, n)[:, None]
        with torch.no_grad():
            return rollout(spin_up, w0, torch.tensor([0.0, 30.0]), **solver)[:, -1]

    template = dict(
        names=("w",),
        units=("1",),
        dt=1.0,
        n_times={"train": 10, "test": 10},
        n_samples={"train": 8, "test": 32},
        initial_condition=initial_condition,
        coords=box_coords((32, 32), 1.0 / 32),
        solver=solver,
    )
    priors = [NavierStokes(leads_forcing(32, *f), nu=1e-3) for f in NS_FORCINGS]
    return _environment_spec(priors, template, "LEADS forced Navier-Stokes, 4 forcings")


def pendulum_environments() -> EnvironmentSpec:
    """The damped pendulum under 4 environments of (ω0², α) (a physics-prior case): 4 training
    and 8 test trajectories of 40 frames at 0.5 per environment."""
    values = [(OMEGA0_SQ, ALPHA), (0.5 * OMEGA0_SQ, ALPHA), (1.5 * OMEGA0_SQ, 0.1)]
    values += [(OMEGA0_SQ, 0.3)]  # (ω0², α)
    template = dict(
        names=("theta", "omega"),
        units=("rad", "rad s-1"),
        dt=0.5,
        n_times={"train": 40, "test": 40},
        n_samples={"train": 4, "test": 8},
        initial_condition=_pendulum_state,
        solver={"method": "dopri5", "rtol": 1e-10, "atol": 1e-10},
    )
    priors = [DampedPendulum(omega0_sq=w, alpha=a) for w, a in values]
    return _environment_spec(priors, template, "damped pendulum, 4 environments of (ω0², α)")


def build(name: str) -> SimulationSpec | EnvironmentSpec:
    """The protocol ``name`` (a key of :data:`DATASETS` or :data:`ENVIRONMENT_DATASETS`), built
    in float64 so true parameters are exact."""
    protocols = {**DATASETS, **ENVIRONMENT_DATASETS}
    if name not in protocols:
        raise ValueError(f"unknown dataset {name!r}; choose from {sorted(protocols)}")
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        return protocols[name]()
    finally:
        torch.set_default_dtype(old)


DATASETS = {
    "reaction_diffusion": reaction_diffusion,
    "wave": wave,
    "pendulum": pendulum,
    "advection_diffusion": advection_diffusion,
    "advection_diffusion_decay": advection_diffusion_decay,
    "shallow_water": shallow_water,
    "moving_flow": moving_flow,
    "hovmoller": hovmoller,
    "forced_decay": forced_decay,
}
# Protocols of several environments (files with an `environment` dim, hybrid.data.environments).
ENVIRONMENT_DATASETS = {
    "lotka_volterra": lotka_volterra,
    "gray_scott": gray_scott,
    "navier_stokes": navier_stokes,
    "pendulum_environments": pendulum_environments,
}


def _band_modes(
    rng: np.random.Generator, n: int, lat: np.ndarray, lon: np.ndarray, modes: tuple[int, int, int]
) -> Tensor:
    """``Σ a sin(m λ + α) cos(k π (φ - φ_s) / (φ_n - φ_s) + β)`` over ``terms`` random modes,
    ``m < zonal``, ``k < meridional`` (``modes = (terms, zonal, meridional)``),
    ``a ~ N(0, 0.5²)``: ``[n, ny, nx]``."""
    terms, zonal, meridional = modes
    lam = np.deg2rad(lon)[None, :]
    s = (lat - lat[0]) / (lat[-1] - lat[0])  # 0 at the south row, 1 at the north row
    out = np.zeros((n, lat.size, lon.size))
    for i in range(n):
        for _ in range(terms):
            m, k = rng.integers(0, zonal), rng.integers(0, meridional)
            a, alpha, beta = rng.normal(0, 0.5), *rng.uniform(0, 2 * np.pi, 2)
            out[i] += a * np.sin(m * lam + alpha) * np.cos(k * np.pi * s + beta)[:, None]
    return _tensor(out)


def moving_flow_latlon() -> SimulationSpec:
    """The moving-flow protocol on a lat-lon band: 20°S-20°N, 16 latitudes of 2.5° by 72
    longitudes of 5° (closed in longitude, walls at the edges), no land.

    Per trajectory a random streamfunction (zonal wavenumbers 0-3, tapered to zero at the walls)
    made a flow by :func:`~hybrid.physics.moving_flow_latlon.band_streamfunction_velocity`
    (divergence-free on the sphere's metric), scaled to an RMS speed of 1 m/s, whose pattern turns
    east at Ω = 0.3 m/s / R (:class:`~hybrid.physics.moving_flow_latlon.TurningFlowTracer`);
    κ = 5e3 m²/s, upwind; tracer ``2 + Σ`` modes. 64 + 16 trajectories of 24 daily frames, the
    true ``u``, ``v`` beside ``c``. Train on ``variables: [c]``."""
    lat, lon = np.arange(16) * 2.5 - 18.75, np.arange(72) * 5.0
    grid = Grid.latlon(lat, lon)
    model = TurningFlowTracer(grid, kappa=5e3, omega=0.3 / grid.radius, max_speed=4.0,
                              scheme="upwind")  # fmt: skip

    def initial_condition(rng: np.random.Generator, m: int) -> Tensor:
        c = 2 + _band_modes(rng, m, lat, lon, (8, 7, 5))
        walls = np.sin(np.pi * (np.arange(16) + 0.5) / 16)[:, None]  # ψ → 0 towards the walls
        psi = _band_modes(rng, m, lat, lon, (4, 4, 3)) * _tensor(walls)
        u, v = band_streamfunction_velocity(psi, grid.double())
        rms = (u.square() + v.square()).mean((-2, -1), keepdim=True).sqrt().clamp_min(1e-30)
        return torch.stack((c, u / rms, v / rms), dim=1)  # [m, 3, 16, 72], RMS speed 1 m/s

    return SimulationSpec(
        model=model,
        prior=model,
        names=("c", "u", "v"),
        units=("kg m-3", "m s-1", "m s-1"),
        dt=DAY,
        n_times={"train": 24, "test": 24},
        n_samples={"train": 64, "test": 16},
        initial_condition=initial_condition,
        coords=grid_coords("latlon", lon, lat),
        solver={"method": "rk4", "step_size": 6 * HOUR},
        description="tracer in an incompressible flow turning on a lat-lon band, true u, v",
    )


DATASETS["moving_flow_latlon"] = moving_flow_latlon
