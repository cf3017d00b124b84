"""Forced 2-D Navier-Stokes in vorticity form on the periodic unit square, pseudo-spectral:

``∂w/∂t = −u·∇w + ν Δw + f``,  ``u = (∂ψ/∂y, −∂ψ/∂x)``,  ``−Δψ = w``.

LEADS's benchmark (after Li et al.'s FNO data): ν = 1e-3 on 32², four forcings
``f = 0.1 (sin 2π(a·X) + cos 2π(b·X))`` (:func:`leads_forcing`). The nonlinear term is
dealiased by the 2/3 rule. Unforced, a vorticity made of modes of one wavenumber ``|k|`` has no
nonlinear term and decays as ``exp(−ν 4π²|k|² t)`` (:func:`single_shell_decay`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from hybrid.physics.parameters import Positive, log_parameter


def wavenumbers(n: int) -> tuple[Tensor, Tensor]:
    """Integer wavenumbers ``(k_y, k_x)``, each ``[n, n]``: ``k_x`` varies along the last axis."""
    k = torch.fft.fftfreq(n, 1.0 / n)
    return k[:, None].expand(n, n), k[None, :].expand(n, n)


def leads_forcing(n: int, sin_k: tuple[int, int], cos_k: tuple[int, int]) -> Tensor:
    """``0.1 (sin 2π(a·X) + cos 2π(b·X))`` on the ``n x n`` grid of ``[0, 1)²``, with
    ``X = (X₀, X₁)`` the coordinates along axes 0 and 1 (LEADS's ``meshgrid``), ``a = sin_k``,
    ``b = cos_k``: ``[n, n]``."""
    x = torch.arange(n, dtype=torch.float64) / n
    x0, x1 = x[:, None], x[None, :]
    phase = [2 * math.pi * (k[0] * x0 + k[1] * x1) for k in (sin_k, cos_k)]
    return 0.1 * (torch.sin(phase[0]) + torch.cos(phase[1]))


class NavierStokes(nn.Module):
    """``∂w/∂t = −u·∇w + ν Δw + f`` for the vorticity ``w``: state ``[..., 1, n, n]``; ``t`` unused.

    Args:
        forcing: ``f``, ``[n, n]`` (a buffer; default zero), ``n`` even.
        nu: viscosity ν (learnable, positive, ``log_nu``).
        size: ``n`` when no forcing is given.
    """

    state_names = ("w",)
    nu = Positive()

    def __init__(self, forcing: Tensor | None = None, nu: float = 1e-3, size: int = 32) -> None:
        super().__init__()
        forcing = torch.zeros(size, size) if forcing is None else forcing
        forcing = torch.as_tensor(forcing, dtype=torch.get_default_dtype())
        n = forcing.shape[-1]
        if forcing.shape != (n, n) or n % 2:
            raise ValueError(f"forcing must be [n, n] with n even, got {tuple(forcing.shape)}")
        self.log_nu = log_parameter(nu, "nu")
        ky, kx = wavenumbers(n)
        lap = 4 * math.pi**2 * (kx.square() + ky.square())  # −Δ in Fourier space
        keep = (kx.abs() <= 2 * (n // 2) / 3) & (ky.abs() <= 2 * (n // 2) / 3)
        self.register_buffer("forcing", forcing)
        self.register_buffer("kx", 2j * math.pi * kx)  # ∂/∂x
        self.register_buffer("ky", 2j * math.pi * ky)  # ∂/∂y
        self.register_buffer("lap", lap)
        self.register_buffer("dealias", keep.float())

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        w_h = torch.fft.fft2(y)  # [..., 1, n, n]
        psi_h = w_h / self.lap.clamp_min(1e-30) * (self.lap > 0)
        u = torch.fft.ifft2(self.ky * psi_h).real
        v = torch.fft.ifft2(-self.kx * psi_h).real
        w_x, w_y = torch.fft.ifft2(self.kx * w_h).real, torch.fft.ifft2(self.ky * w_h).real
        advection = torch.fft.ifft2(torch.fft.fft2(u * w_x + v * w_y) * self.dealias).real
        diffusion = torch.fft.ifft2(-self.lap * w_h).real
        return -advection + self.nu * diffusion + self.forcing.to(y.dtype)


def single_shell_decay(w0: Tensor, nu: float, k_sq: float, t: Tensor) -> Tensor:
    """Exact unforced solution from ``w0`` (modes of ``|k|² = k_sq`` only): ``[..., n, n]``,
    ``t``: ``[T]`` -> ``[T, ..., n, n]``."""
    decay = torch.exp(-nu * 4 * math.pi**2 * k_sq * t)
    return decay.view(-1, *[1] * w0.ndim) * w0
