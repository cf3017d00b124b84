"""Forecast scores as pure tensor functions (WeatherBench 2 conventions), no xarray and no I/O.

Shapes: ``pred`` and ``truth`` are ``[N, L, C, *grid]``: ``N`` forecasts (start times), ``L`` lead
times, ``C`` variables, and ``*grid`` = ``(ny, nx)`` for fields or ``()`` for ODE states.
``weights`` is ``[*grid]``, non-negative, zero at masked cells, or ``None`` for a uniform mean over
the grid axes; every function normalises it to sum to 1 itself, so ``w`` below always sums to 1.
Per-lead scores come back as ``[L, C]``.

Masked cells (``weights == 0``) never reach a result, even when they hold NaN or junk: errors and
anomalies are zeroed there *before* any arithmetic that could turn a NaN into a NaN gradient.
Weights are checked for shape only (a value check would synchronise a GPU on every call).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from hybrid.physics.grid import Grid


def cell_weights(grid: Grid | None) -> Tensor | None:
    """``w_ij = A_ij m_ij / Σ A m`` (:meth:`Grid.area_weights`: cell area ``A``, active mask
    ``m``), ``[*grid]``: ``∝ cos φ`` on a lat-lon grid (WeatherBench 2), uniform over the active
    cells of a box; ``None`` without a grid (ODE states)."""
    return None if grid is None else grid.area_weights()


def _check(pred: Tensor, truth: Tensor, weights: Tensor | None) -> None:
    """Raise ``ValueError`` unless ``pred``, ``truth`` are one ``[N, L, C, *grid]`` and
    ``weights`` is ``[*grid]`` or None."""
    _check_weights(pred, weights, "pred")
    if pred.shape != truth.shape:
        raise ValueError(
            f"pred and truth must have the same shape [N, L, C, *grid], "
            f"got pred {tuple(pred.shape)} and truth {tuple(truth.shape)}"
        )


def _check_weights(x: Tensor, weights: Tensor | None, name: str = "x") -> None:
    if x.ndim < 3:
        raise ValueError(
            f"{name} must be [N, L, C, *grid] (3 or more dims), got shape {tuple(x.shape)}"
        )
    if weights is not None and weights.shape != x.shape[3:]:
        raise ValueError(
            f"weights must have the grid shape {tuple(x.shape[3:])} (the dims after [N, L, C] "
            f"of {tuple(x.shape)}), got {tuple(weights.shape)}"
        )


def _masked(x: Tensor, weights: Tensor | None) -> Tensor:
    """``x`` with zeros at masked cells (``weights == 0``), so NaN there cannot leak."""
    return x if weights is None else torch.where(weights.to(x.device) > 0, x, 0.0)


def _mean(x: Tensor, weights: Tensor | None) -> Tensor:
    """``Σ_ij w_ij x[..., i, j]`` with ``w`` normalised: ``[N, L, C, *grid] -> [N, L, C]``."""
    dims = tuple(range(3, x.ndim))
    if not dims:  # ODE state: nothing to average
        return x
    if weights is None:
        return x.mean(dims)
    w = weights.to(x)
    return (x * (w / w.sum())).sum(dims)


def spatial_mean(x: Tensor, weights: Tensor | None) -> Tensor:
    """Weighted mean over the grid axes: ``x̄[n, l, c] = Σ_ij w_ij x[n, l, c, i, j]``,
    ``[N, L, C, *grid] -> [N, L, C]`` (``x`` itself for ODE states); weights as in the module
    docstring. Raises ``ValueError`` when ``x`` has fewer than 3 dims or ``weights`` is not
    ``[*grid]``."""
    _check_weights(x, weights)
    return _mean(_masked(x, weights), weights)


def mse(pred: Tensor, truth: Tensor, weights: Tensor | None = None) -> Tensor:
    """Mean squared error: ``MSE[l, c] = 1/N Σ_n Σ_ij w_ij (pred - truth)²``, ``[L, C]``
    (shapes in the module docstring). Raises ``ValueError`` when the shapes of ``pred``,
    ``truth`` and ``weights`` disagree."""
    _check(pred, truth, weights)
    err = _masked(pred - truth, weights)
    return _mean(err.square(), weights).mean(0)


def rmse(pred: Tensor, truth: Tensor, weights: Tensor | None = None) -> Tensor:
    """Root mean squared error: ``RMSE[l, c] = sqrt(MSE[l, c])``, ``[L, C]``.

    The mean over the ``N`` starts is taken *before* the square root (WeatherBench 2), so two
    starts with errors 1 and 3 score ``sqrt((1 + 9) / 2) = sqrt(5)``, not ``(1 + 3) / 2``.
    Arguments and errors as :func:`mse`.
    """
    return mse(pred, truth, weights).sqrt()


def mae(pred: Tensor, truth: Tensor, weights: Tensor | None = None) -> Tensor:
    """Mean absolute error: ``MAE[l, c] = 1/N Σ_n Σ_ij w_ij |pred - truth|``, ``[L, C]``.

    Arguments and errors as :func:`mse`.
    """
    _check(pred, truth, weights)
    return _mean(_masked(pred - truth, weights).abs(), weights).mean(0)


def bias(pred: Tensor, truth: Tensor, weights: Tensor | None = None) -> Tensor:
    """Mean error: ``bias[l, c] = 1/N Σ_n Σ_ij w_ij (pred - truth)``, ``[L, C]``.

    Arguments and errors as :func:`mse`.
    """
    _check(pred, truth, weights)
    return _mean(_masked(pred - truth, weights), weights).mean(0)


def acc(pred: Tensor, truth: Tensor, climatology: Tensor, weights: Tensor | None = None) -> Tensor:
    """Anomaly correlation coefficient (uncentred, as WeatherBench 2), ``[L, C]``.

    With anomalies ``a = pred - clim`` and ``b = truth - clim``, on a grid it is the spatial
    correlation per forecast, averaged over the ``N`` forecasts::

        ACC[l, c] = 1/N Σ_n  Σ_ij w a b / sqrt(Σ_ij w a² · Σ_ij w b²)

    ODE states have no grid to correlate over, so there the correlation is taken over the
    ``N`` forecasts instead::

        ACC[l, c] = Σ_n a b / sqrt(Σ_n a² · Σ_n b²)

    A forecast whose anomaly has the right pattern scores 1 whatever its amplitude, its negation
    scores -1. Where an anomaly is zero everywhere (e.g. ``truth == clim``) the ratio is 0/0 = NaN.

    Args:
        pred, truth: ``[N, L, C, *grid]``.
        climatology: broadcastable to ``pred``, e.g. ``[N, L, C, *grid]`` or ``[C, *grid]``.
        weights: ``[*grid]`` cell weights or ``None`` (uniform).

    Raises:
        ValueError: shapes disagree, or ``climatology`` does not broadcast to ``pred``.
    """
    _check(pred, truth, weights)
    try:
        shape = torch.broadcast_shapes(climatology.shape, pred.shape)
    except RuntimeError:
        shape = None
    if shape != pred.shape:
        raise ValueError(
            f"climatology must broadcast to pred's shape {tuple(pred.shape)}, "
            f"got {tuple(climatology.shape)}"
        )
    a, b = _masked(pred - climatology, weights), _masked(truth - climatology, weights)
    if pred.ndim == 3:  # no grid: correlate over forecasts
        return (a * b).sum(0) / ((a * a).sum(0) * (b * b).sum(0)).sqrt()
    ab, aa, bb = (_mean(x, weights) for x in (a * b, a * a, b * b))  # [N, L, C] each
    return (ab / (aa * bb).sqrt()).mean(0)


def nrmse(pred: Tensor, truth: Tensor, weights: Tensor | None = None) -> Tensor:
    """RMSE normalised by the spread of the truth per variable: ``NRMSE[l, c] = RMSE[l, c] / σ_c``.

    ``σ_c`` is the weighted (population) standard deviation of ``truth[..., c, ...]`` over
    forecasts, leads and the grid: ``μ_c = 1/(N L) Σ_nl Σ_ij w truth``,
    ``σ_c² = 1/(N L) Σ_nl Σ_ij w (truth - μ_c)²``. Forecasting ``μ_c`` everywhere gives
    ``1/L Σ_l NRMSE[l, c]² = 1`` exactly; a constant variable (``σ_c = 0``) gives inf or NaN.
    Arguments, ``[L, C]`` result and errors as :func:`mse`.
    """
    _check(pred, truth, weights)
    grid_ones = (1,) * (truth.ndim - 3)
    t = _masked(truth, weights)
    mu = _mean(t, weights).mean((0, 1)).view(-1, *grid_ones)  # [C, *1s]
    var = _mean(_masked(t - mu, weights).square(), weights).mean((0, 1))  # [C]
    return mse(pred, truth, weights).sqrt() / var.sqrt()


def relative_error(learned: dict[str, float], true: dict[str, float]) -> dict[str, float]:
    """Relative parameter error ``|learned - true| / |true|`` for the keys found in both dicts.

    A true value of 0 has no relative error: it gives ``inf``, or 0 if ``learned`` is 0 as well.

    Args:
        learned: learned parameters by name (floats or 0-d tensors).
        true: true parameters by name.

    Returns:
        ``{name: error}`` over the shared names, in ``learned``'s order.
    """
    out = {}
    for name in (k for k in learned if k in true):
        diff, ref = abs(float(learned[name]) - float(true[name])), abs(float(true[name]))
        out[name] = diff / ref if ref > 0 else (0.0 if diff == 0 else math.inf)
    return out
