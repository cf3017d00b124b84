"""A smoothed seasonal climatology: a mean and a few annual harmonics, defined on every date.

Per cell and channel, the climatology is

    c(f) = a_0 + Σ_{k=1..K} (a_k cos 2πkf + b_k sin 2πkf),

where ``f`` in ``[0, 1)`` is the fraction of the year of a date in its own calendar. The
coefficients are fitted by least squares to the training record, skipping missing values, so
a day of the year the training years never saw (31 December of a leap year after non-leap
years, 30 February on ``360_day``) still gets the smooth seasonal value, never an invented 0.
The state is plain tensors and strings, so it travels in checkpoints loaded with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import numpy as np
import torch
import xarray as xr
from torch import Tensor

from hybrid.data.io import calendar_of, time_in_seconds, time_step
from hybrid.data.trajectories import LazyTrajectories

KINDS = ("dayofyear", "month")
MIN_EIGENVALUE = 1e-6  # of the normal matrix per observation: below, a cell keeps only its mean


def year_fraction(time: xr.DataArray, kind: str) -> np.ndarray:
    """The place of each date in its year, ``f`` in ``[0, 1)``: ``[T]``.

    ``kind="dayofyear"``: ``f = (dayofyear - 1 + time of day) / days in that year`` (365 or 366
    on the standard calendar, 360 on ``360_day``, ...). ``kind="month"``: the middle of the
    month, ``f = (month - 1/2) / 12``, whatever day a monthly value is dated.

    Raises:
        ValueError: an unknown ``kind``, or times that are not calendar dates.
    """
    if kind not in KINDS:
        raise ValueError(f"climatology kind must be one of {KINDS}, got {kind!r}")
    if calendar_of(time) is None:
        raise ValueError(f"a climatology needs calendar dates, got {time.dtype} times")
    dt = time.dt
    if kind == "month":
        return (dt.month.values - 0.5) / 12.0
    seconds = dt.hour.values * 3600.0 + dt.minute.values * 60.0 + dt.second.values
    return (dt.dayofyear.values - 1 + seconds / 86400.0) / dt.days_in_year.values


def harmonic_basis(f: np.ndarray, harmonics: int) -> np.ndarray:
    """``φ(f) = [1, cos 2πf, sin 2πf, …, cos 2πKf, sin 2πKf]``: ``[T]`` → ``[T, 2K+1]``."""
    k = np.arange(1, harmonics + 1)
    angle = 2 * np.pi * np.asarray(f, np.float64)[:, None] * k  # [T, K]
    pairs = np.stack([np.cos(angle), np.sin(angle)], -1).reshape(len(angle), -1)  # [T, 2K]
    return np.concatenate([np.ones((len(angle), 1)), pairs], 1)


def climatology_kind(time: xr.DataArray) -> str | None:
    """``"month"`` when the record steps by whole calendar months (monthly, seasonal, yearly),
    ``"dayofyear"`` for finer steps, None when the record covers less than a year (its span
    plus one step is under 360 days) or its times are not calendar dates."""
    if calendar_of(time) is None or time.size < 2:
        return None
    _, unit = time_step(time)
    span_and_step = time_in_seconds(time)[-1] * time.size / (time.size - 1)  # s, mean step
    if span_and_step < 360 * 86400.0:
        return None
    return "month" if unit == "month" else "dayofyear"


def fit_climatology(
    y: LazyTrajectories,
    time: xr.DataArray,
    *,
    harmonics: int = 3,
    kind: str | None = None,
    valid: np.ndarray | None = None,
) -> dict[str, object]:
    """Least-squares fit of the mean and ``harmonics`` annual harmonics, per cell and channel.

    Solves, for each cell and channel, the normal equations ``(Σ_t φ_t φ_tᵀ) a = Σ_t φ_t y_t``
    over its observed values (finite, in a ``valid`` frame), accumulated block by block of time
    (``LazyTrajectories.blocks``), in float64. The number of harmonics is cut to what the
    sampled times of year support, ``K ≤ (d - 1) // 2`` with ``d`` distinct months or days of
    the year (a yearly record gives its mean, ``K = 0``). A cell never observed is NaN; a cell
    observed at too few times of year (normal matrix per observation with an eigenvalue under
    ``MIN_EIGENVALUE``) keeps only its mean.

    Args:
        y: ``[N, T, C, *grid]`` with NaN where missing; all ``N`` trajectories share ``time``.
        time: ``[T]`` calendar dates of ``y``'s frames.
        harmonics: ``K``, the number of annual harmonics.
        kind: ``"dayofyear"`` or ``"month"``; default :func:`climatology_kind` of ``time``.
        valid: ``[N, T]`` frames to use (default all).

    Returns:
        ``{"kind": str, "harmonics": int, "coefficients": Tensor [2K+1, C, *grid] (float32)}``,
        the state :func:`climatology_at` evaluates.

    Raises:
        ValueError: ``time`` not matching ``y``, not dates, ``harmonics < 0``, or no record of
            a year for the default ``kind``.
    """
    kind = _check_fit_inputs(y, time, harmonics, kind)
    f = year_fraction(time, kind)
    k = min(harmonics, (_distinct_times_of_year(time, kind) - 1) // 2)
    basis = harmonic_basis(f, k)  # [T, P]
    valid = np.ones(y.shape[:2], bool) if valid is None else np.asarray(valid, bool)
    a, b, count = _normal_equations(y, basis, valid)
    coef = _solve(a, b, count)  # [C, G, P]
    coef = coef.transpose(2, 0, 1).reshape(basis.shape[1], *y.shape[2:])  # [P, C, *grid]
    return {"kind": kind, "harmonics": k, "coefficients": torch.from_numpy(coef).float()}


def _check_fit_inputs(y: LazyTrajectories, time: xr.DataArray, harmonics: int, kind) -> str:
    if time.size != y.shape[1]:
        raise ValueError(f"time has {time.size} dates for {y.shape[1]} frames")
    if harmonics < 0:
        raise ValueError(f"harmonics must be non-negative, got {harmonics}")
    kind = kind or climatology_kind(time)
    if kind is None:
        raise ValueError(
            f"no climatology: the record ({time.values[0]} to {time.values[-1]}) is not calendar "
            "dates covering a year; pass `kind` to fit anyway"
        )
    return kind


def _distinct_times_of_year(time: xr.DataArray, kind: str) -> int:
    values = time.dt.month.values if kind == "month" else time.dt.dayofyear.values
    return len(np.unique(values))


def _normal_equations(
    y: LazyTrajectories, basis: np.ndarray, valid: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``A = Σ m φφᵀ``: ``[C, G, P, P]``, ``b = Σ m φ y``: ``[C, G, P]`` and the count ``Σ m``:
    ``[C, G]`` over observed values ``m`` (``G`` cells; ``[C, 1]`` for ODE states)."""
    c, p = y.shape[2], basis.shape[1]
    g = int(np.prod(y.shape[3:]))
    a, b, count = np.zeros((c, g, p, p)), np.zeros((c, g, p)), np.zeros((c, g))
    for n, s, block in y.blocks():
        own = block.shape[0] - (s + block.shape[0] < y.shape[1])  # the last frame is the next's
        x = block[:own].reshape(own, c, g).astype(np.float64)  # [F, C, G]
        seen = np.isfinite(x) & valid[n, s : s + own, None, None]
        x = np.where(seen, x, 0.0)
        phi = basis[s : s + own]  # [F, P]
        a += np.einsum("fcg,fp,fq->cgpq", seen, phi, phi, optimize=True)
        b += np.einsum("fcg,fp->cgp", x, phi, optimize=True)
        count += seen.sum(0)
    return a, b, count


def _solve(a: np.ndarray, b: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Coefficients ``[C, G, P]``: ``A⁻¹ b`` where ``A / count`` is well conditioned, the mean
    ``b_0 / count`` alone where it is not, NaN where ``count`` is 0."""
    coef = np.full(b.shape, np.nan)
    seen = count > 0
    coef[seen] = 0.0
    coef[seen, 0] = b[seen, 0] / count[seen]
    smallest = np.linalg.eigvalsh(a[seen] / count[seen][:, None, None])[:, 0]
    ok = np.zeros_like(seen)
    ok[seen] = smallest > MIN_EIGENVALUE
    coef[ok] = np.linalg.solve(a[ok], b[ok][..., None])[..., 0]
    return coef


def climatology_at(state: dict[str, object], time: xr.DataArray) -> Tensor:
    """The climatology of ``state`` (from :func:`fit_climatology`) at any dates of any calendar.

    ``c(t) = Σ_p φ_p(f(t)) a_p``: ``time`` ``[T]`` → ``[T, C, *grid]`` in the coefficients'
    dtype (NaN only at cells never observed in training).

    Raises:
        ValueError: a state missing ``kind``, ``harmonics`` or ``coefficients`` or with
            ``2K+1`` not matching the coefficients, or times that are not dates.
    """
    missing = [key for key in ("kind", "harmonics", "coefficients") if key not in state]
    if missing:
        raise ValueError(f"climatology state lacks {missing}; it has {sorted(state)}")
    coef, k = state["coefficients"], int(state["harmonics"])
    if coef.shape[0] != 2 * k + 1:
        raise ValueError(f"{k} harmonics need {2 * k + 1} coefficients, got {coef.shape[0]}")
    if not isinstance(time, xr.DataArray):
        time = xr.DataArray(np.asarray(time), dims="time")
    phi = torch.from_numpy(harmonic_basis(year_fraction(time, str(state["kind"])), k))  # [T, P]
    return torch.einsum("tp,p...->t...", phi, coef.double()).to(coef.dtype)


def lag_regression(
    y: LazyTrajectories, time: xr.DataArray, state: dict, valid: np.ndarray, max_lag: int
) -> Tensor:
    """Damped-persistence coefficients ``ρ_l = Σ a(t) a(t+l) / Σ a(t)²`` of the anomalies
    ``a = y - c`` from the climatology ``state``, per lag ``l = 0..max_lag`` and channel, pooled
    over cells and valid frame pairs: ``[max_lag + 1, C]`` (``ρ_0 = 1``). The damped-persistence
    forecast is then ``c(t0 + l) + ρ_l a(t0)`` (for an AR(1) anomaly with coefficient φ,
    ``ρ_l → φ^l``). ``time`` ``[T]`` are the dates of ``y``'s frames; ``valid`` ``[N, T]``."""
    num, den = np.zeros((2, max_lag + 1, y.shape[2]))
    for n in range(y.shape[0]):
        past: list[np.ndarray | None] = []  # anomalies of the last max_lag frames, newest last
        for t in range(y.shape[1]):
            frame = y.raw(n, slice(t, t + 1))[0]  # [C, *grid], NaN where missing
            clim = climatology_at(state, time.isel(time=[t]))[0].numpy()
            a = np.nan_to_num(frame - clim) if valid[n, t] else None
            past = (past + [a])[-(max_lag + 1) :]
            for lag, old in enumerate(reversed(past)):
                if a is not None and old is not None:
                    axes = tuple(range(1, a.ndim))
                    num[lag] += (old * a).sum(axes)
                    den[lag] += (old * old).sum(axes)
    return torch.from_numpy(num / np.maximum(den, 1e-300)).float()


class Anomalies(LazyTrajectories):
    """The anomalies ``a(t) = y(t) - c(t)`` of trajectories from a climatology, read lazily.

    A :class:`~hybrid.data.trajectories.LazyTrajectories` (``shape``, ``isel``, ``raw``,
    indexing, ``blocks``) whose ``raw`` subtracts ``c``, so windows, statistics and the warm
    start read anomalies unchanged: ``raw`` gives ``[F, C, *grid]`` float32 with NaN where ``y``
    is missing or the climatology undefined (cells never observed in training), indexing reads
    those as 0.
    The forecast of a state ``a`` is ``c + a``: for values within a factor two of their
    climatology (temperatures in kelvin) ``y - c`` is exact in floating point (Sterbenz), so
    ``c + (y - c) == y`` bit for bit.

    Args:
        y: ``[N, T, C, *grid]`` lazy trajectories, all ``N`` sharing ``time``.
        time: ``[T]`` calendar dates of ``y``'s frames.
        state: a climatology from :func:`fit_climatology`.
    """

    def __init__(self, y: LazyTrajectories, time: xr.DataArray, state: dict[str, object]) -> None:
        # not LazyTrajectories.__init__: the frames come from ``y``; indexing and ``load`` are
        # inherited and read them through :meth:`raw`
        if time.size != y.shape[1]:
            raise ValueError(f"time has {time.size} dates for {y.shape[1]} frames")
        self.y, self.time, self.state = y, time, state
        self.shape, self.ndim = y.shape, y.ndim

    def isel(self, samples=slice(None), frames=slice(None)) -> Anomalies:
        """A lazy subset of trajectories and frames."""
        return Anomalies(self.y.isel(samples, frames), self.time.isel(time=frames), self.state)

    def climatology(self, frames: slice) -> np.ndarray:
        """``c`` at ``frames``: ``[F, C, *grid]`` float32 (NaN at cells never observed)."""
        return climatology_at(self.state, self.time.isel(time=frames)).float().numpy()

    def raw(self, n: int, frames: slice) -> np.ndarray:
        """``[F, C, *grid]`` anomalies, NaN where missing."""
        return self.y.raw(n, frames) - self.climatology(frames)

    def blocks(self):
        """The blocks of :meth:`LazyTrajectories.blocks`, as anomalies."""
        for n, s, block in self.y.blocks():
            yield n, s, block - self.climatology(slice(s, s + block.shape[0]))
