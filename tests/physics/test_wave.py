"""Wave priors against the discrete dispersion relation, the reference border and energy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.func import functional_call

from hybrid.dynamics import rollout
from hybrid.physics.wave import DampedWave, UndampedWave, wave_dispersion, wave_energy


def plane_wave(m: int, n: int, size: int) -> torch.Tensor:
    """``cos(kx x + ky y)`` with ``kx = 2π n / N``, ``ky = 2π m / N`` at ``x = i``, ``y = j``."""
    j, i = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    return torch.cos(2 * math.pi * (m * j + n * i) / size)


MODES = [(0, 1), (2, 3), (0, 8), (5, 6)]  # (m, n); (0, 8) is the stiffest along x


def damped_mode(t: torch.Tensor, c: float, k: float, m: int, n: int, size: int) -> torch.Tensor:
    """Exact ``(w, w_t)`` amplitudes ``[T, 2]`` of the mode from ``w = 1``, ``w_t = 0``:
    ``w = exp(-kt/2) (cos ωt + k/(2ω) sin ωt)``, ``w_t = -exp(-kt/2) (ω + k²/(4ω)) sin ωt``."""
    omega = wave_dispersion(c, k, kx=2 * math.pi * n / size, ky=2 * math.pi * m / size, dx=1.0)
    envelope = torch.exp(-k * t / 2)
    w = envelope * (torch.cos(omega * t) + k / (2 * omega) * torch.sin(omega * t))
    w_t = -envelope * (omega + k**2 / (4 * omega)) * torch.sin(omega * t)
    return torch.stack((w, w_t), dim=-1) / (omega + k**2 / (4 * omega) + 1)  # scaled to <= 1


@pytest.mark.parametrize(("c", "k"), [(1.0, 0.2), (2.0, 0.5)])
def test_damped_modes_follow_dispersion_relation(float64, c, k):
    """Each mode, integrated as one batch, matches its exact damped oscillation to 1e-6."""
    size = 16
    field = DampedWave(c=c, k=k, size=size, dx=1.0, periodic=True)
    modes = torch.stack([plane_wave(m, n, size) for m, n in MODES])  # [4, 16, 16]
    t = torch.linspace(0, 4, 9)
    amplitude = torch.stack([damped_mode(t, c, k, m, n, size) for m, n in MODES])  # [4, 9, 2]
    y0 = amplitude[:, 0, :, None, None] * modes[:, None]  # [4, 2, 16, 16]
    with torch.no_grad():
        y = rollout(field, y0, t, method="rk4", step_size=0.005)  # [4, 9, 2, 16, 16]
    exact = amplitude[..., None, None] * modes[:, None, None]  # [4, 9, 2, 16, 16]
    error = (y - exact).abs().amax((-3, -2, -1)) / torch.exp(-k * t / 2)  # [4, 9], per envelope
    assert error.max() < 1e-6


@pytest.mark.parametrize(("kx", "ky"), [(1.0, 0.0), (1.0, 0.5), (0.3, 2.0)])
def test_discrete_frequency_converges_at_fourth_order(kx, ky):
    dxs = np.array([0.4, 0.2, 0.1, 0.05])
    exact = wave_dispersion(1.5, 0.0, kx, ky)
    assert exact == pytest.approx(1.5 * math.hypot(kx, ky), rel=1e-15)
    errors = [abs(wave_dispersion(1.5, 0.0, kx, ky, dx) - exact) for dx in dxs]
    slope = np.polyfit(np.log(dxs), np.log(errors), 1)[0]
    assert abs(slope - 4) < 0.3


def second_difference(f: torch.Tensor, dim: int) -> torch.Tensor:
    """The fourth-order second difference (dx = 1) on the interior ``2 : N-2`` along ``dim``."""
    n = f.shape[dim]
    s = [f.narrow(dim, start, n - 4) for start in range(5)]
    return (-s[0] + 16 * s[1] - 30 * s[2] + 16 * s[3] - s[4]) / 12


@pytest.mark.parametrize("dim", [-1, -2])
def test_non_periodic_border_is_zero(float64, dim):
    """Along each axis the Laplacian vanishes on the two outermost rows/columns, as in APHYNITY."""
    torch.manual_seed(0)
    size, c, k = 10, 2.0, 0.5
    field = DampedWave(c=c, k=k, size=size, dx=1.0, periodic=False)
    profile = torch.randn(size)
    w = profile.expand(size, size) if dim == -1 else profile[:, None].expand(size, size)
    w_t = torch.randn(size, size)
    dydt = field(0.0, torch.stack((w, w_t)))
    torch.testing.assert_close(dydt[0], w_t, rtol=0, atol=0)
    laplacian = (dydt[1] + k * w_t) / c**2
    border = torch.tensor([0, 1, size - 2, size - 1])
    assert laplacian.index_select(dim, border).abs().max() < 1e-13
    torch.testing.assert_close(laplacian.narrow(dim, 2, size - 4), second_difference(w, dim))


@pytest.mark.parametrize(("c", "seed"), [(1.0, 0), (3.0, 1)])
def test_undamped_energy_conserved(float64, c, seed):
    torch.manual_seed(seed)
    field = UndampedWave(c=c, size=16, dx=1.0, periodic=True)
    y0 = torch.randn(2, 2, 16, 16)
    with torch.no_grad():
        y = rollout(field, y0, torch.linspace(0, 1, 5), method="rk4", step_size=0.002)
    energy = wave_energy(y, c, 1.0)  # [2, 5]
    assert ((energy - energy[:, :1]).abs() / energy[:, :1]).max() < 1e-8


def test_stable_dt_matches_largest_eigenvalue(float64):
    """The checkerboard is the stiffest mode, ``-Δ4`` maps it to ``(32/3)/dx²`` times itself."""
    field = UndampedWave(c=1.0, size=8, dx=0.5, periodic=True)
    board = plane_wave(4, 4, 8)
    dydt = field(0.0, torch.stack((board, torch.zeros_like(board))))
    torch.testing.assert_close(dydt[1], -(32 / 3) / 0.25 * board)
    assert field.stable_dt() == pytest.approx(2 / (math.sqrt(32 / 3) / 0.5))
    assert DampedWave().stable_dt() == pytest.approx(2 / (330 * math.sqrt(32 / 3) + 50))


@pytest.mark.parametrize("periodic", [True, False])
def test_rk4_stable_at_stable_dt(float64, periodic):
    """At APHYNITY's c, k and dx, every eigenvalue ``λ`` of the (linear) field gives an rk4
    amplification ``|R(λ dt)| <= 1`` at ``dt = stable_dt()`` (an 8 x 8 grid keeps it small)."""
    field = DampedWave(size=8, periodic=periodic)
    basis = torch.eye(128).reshape(128, 2, 8, 8)
    with torch.no_grad():
        matrix = field(0.0, basis).reshape(128, 128).T  # the field is linear: column e_i -> A e_i
    z = torch.linalg.eigvals(matrix) * field.stable_dt()  # [128]
    amplification = (1 + z + z**2 / 2 + z**3 / 6 + z**4 / 24).abs()
    assert amplification.max() <= 1 + 1e-9
    assert z.imag.abs().max() > 1.5  # the stiffest mode is close to the limit: the bound is tight


@pytest.mark.parametrize("periodic", [True, False])
@pytest.mark.parametrize("cls", [DampedWave, UndampedWave])
def test_gradcheck_state_and_parameters(float64, cls, periodic):
    torch.manual_seed(0)
    field = cls(c=1.3, size=6, dx=0.7, periodic=periodic)
    names = [name for name, _ in field.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for p in field.parameters())
    y = torch.randn(2, 6, 6, requires_grad=True)

    def f(y, *params):
        return functional_call(field, dict(zip(names, params, strict=True)), (torch.tensor(0.0), y))

    assert torch.autograd.gradcheck(f, (y, *params))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"c": 0.0}, "c must be positive, got 0.0"),
        ({"k": -50.0}, "k must be positive, got -50.0"),
        ({"dx": 0.0}, "dx must be positive, got 0.0"),
        ({"size": 4}, "size must be at least 5, got 4"),
    ],
)
def test_damped_wave_rejects_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DampedWave(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"c": -330.0}, "c must be positive, got -330.0"),
        ({"dx": -1.0}, "dx must be positive, got -1.0"),
        ({"size": 3}, "size must be at least 5, got 3"),
    ],
)
def test_undamped_wave_rejects_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        UndampedWave(**kwargs)


def test_dispersion_rejects_overdamped_mode():
    with pytest.raises(ValueError, match="mode is not under-damped"):
        wave_dispersion(c=1.0, k=10.0, kx=0.1, ky=0.0, dx=1.0)
