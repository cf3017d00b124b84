"""Known answers for the forecast scores in ``hybrid.metrics``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hybrid import metrics
from hybrid.physics.grid import Grid

LAT, LON = np.arange(-89.5, 90, 1.0), np.arange(0.5, 360, 1.0)

# (N, L, C, *grid) shapes: an ODE state and a small field
SHAPES = [(5, 4, 2), (3, 4, 2, 6, 8)]


def _weights(shape, kind="latlon"):
    """Cell weights for the grid dims of ``shape`` (None for ODE states)."""
    if len(shape) == 3:
        return None
    ny, nx = shape[3:]
    if kind == "box":
        return metrics.cell_weights(Grid.regular_box(nx, ny, 1.0))
    lat = np.linspace(-60, 60, ny)
    return metrics.cell_weights(Grid.latlon(lat, np.arange(nx) * 360.0 / nx))


@pytest.mark.parametrize("shape", SHAPES)
def test_perfect_forecast(float64, rng, shape):
    truth = torch.randn(shape)
    clim = torch.randn(shape)
    w = _weights(shape)
    for score in (metrics.rmse, metrics.mae, metrics.bias, metrics.mse):
        out = score(truth.clone(), truth, w)
        assert out.shape == shape[1:3]
        torch.testing.assert_close(out, torch.zeros(shape[1:3]))
    torch.testing.assert_close(metrics.acc(truth.clone(), truth, clim, w), torch.ones(shape[1:3]))


@pytest.mark.parametrize("shape", SHAPES)
def test_persistence_is_exact_at_lead_zero(float64, rng, shape):
    truth = torch.randn(shape)
    persistence = truth[:, :1].expand_as(truth)  # [N, L, C, *grid]
    r = metrics.rmse(persistence, truth, _weights(shape))
    assert torch.all(r[0] == 0)
    assert torch.all(r[1:] > 0)


def test_latlon_weights_sum_to_one_and_follow_cos_lat(float64):
    w = metrics.cell_weights(Grid.latlon(LAT, LON))
    assert w.shape == (LAT.size, LON.size)
    assert float(w.sum()) == pytest.approx(1.0, abs=1e-12)
    cos = torch.cos(torch.deg2rad(torch.tensor(LAT)))[:, None].expand_as(w)
    torch.testing.assert_close(w, cos / cos.sum(), rtol=1e-4, atol=0)


def test_box_weights_give_the_plain_mean(float64, rng):
    w = metrics.cell_weights(Grid.regular_box(8, 6, 10.0))
    torch.testing.assert_close(w, torch.full((6, 8), 1 / 48))
    x = torch.randn(3, 4, 2, 6, 8)
    torch.testing.assert_close(metrics.spatial_mean(x, w), x.mean((-2, -1)))
    torch.testing.assert_close(metrics.spatial_mean(x, None), x.mean((-2, -1)))


def test_no_grid_and_unnormalised_weights(float64, rng):
    x = torch.randn(3, 4, 2)
    assert metrics.cell_weights(None) is None
    assert torch.equal(metrics.spatial_mean(x, None), x)
    # weights 3 and 1 on a 1 x 2 grid are normalised to 3/4 and 1/4
    y = torch.tensor([1.0, 5.0]).expand(3, 4, 2, 1, 2)
    out = metrics.spatial_mean(y, torch.tensor([[3.0, 1.0]]))
    torch.testing.assert_close(out, torch.full((3, 4, 2), 0.75 + 1.25))


@pytest.mark.parametrize("junk", [1e6, -3.0, math.nan, math.inf])
def test_masked_cells_change_nothing(float64, rng, junk):
    lat, lon = np.arange(-85, 90, 10.0), np.arange(5, 360, 10.0)
    active = np.ones((lat.size, lon.size), bool)
    active[2:6, 10:20] = False  # a "continent"
    w = metrics.cell_weights(Grid.latlon(lat, lon, active=active))
    assert float(w[~torch.tensor(active)].abs().sum()) == 0
    truth, pred, clim = (torch.randn(2, 3, 1, lat.size, lon.size) for _ in range(3))
    land = torch.tensor(~active)
    pred_j, truth_j = pred.clone(), truth.clone()
    pred_j[..., land], truth_j[..., land] = junk, -junk
    for score in (metrics.mse, metrics.rmse, metrics.mae, metrics.bias, metrics.nrmse):
        assert torch.equal(score(pred_j, truth_j, w), score(pred, truth, w)), score.__name__
    assert torch.equal(metrics.acc(pred_j, truth_j, clim, w), metrics.acc(pred, truth, clim, w))


def test_masked_junk_gives_finite_gradients(float64, rng):
    active = torch.tensor([[True, False], [True, True]])
    w = metrics.cell_weights(Grid.regular_box(2, 2, 1.0, active=active.numpy()))
    pred = torch.randn(2, 3, 1, 2, 2, requires_grad=True)
    truth = torch.randn(2, 3, 1, 2, 2)
    truth[..., 0, 1] = math.nan  # a missing value on the inactive cell
    metrics.mse(pred, truth, w).sum().backward()
    assert torch.isfinite(pred.grad).all()
    assert torch.all(pred.grad[..., 0, 1] == 0)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("b", [-2.5, 0.5, 3.0])
def test_constant_bias(float64, rng, shape, b):
    truth = torch.randn(shape)
    w = _weights(shape)
    pred = truth + b
    full = torch.full(shape[1:3], b)
    torch.testing.assert_close(metrics.bias(pred, truth, w), full)
    torch.testing.assert_close(metrics.rmse(pred, truth, w), full.abs())
    torch.testing.assert_close(metrics.mae(pred, truth, w), full.abs())


@pytest.mark.parametrize("grid", [(), (3, 4)])
def test_rmse_averages_over_starts_before_the_root(float64, grid):
    truth = torch.zeros(2, 1, 1, *grid)
    pred = torch.stack([torch.full((1, 1, *grid), 1.0), torch.full((1, 1, *grid), 3.0)])
    w = torch.rand(grid) + 0.1 if grid else None
    out = metrics.rmse(pred, truth, w)
    torch.testing.assert_close(out, torch.tensor([[math.sqrt(5.0)]]))
    torch.testing.assert_close(metrics.mae(pred, truth, w), torch.tensor([[2.0]]))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("scale", "expected"), [(2.0, 1.0), (0.5, 1.0), (-1.0, -1.0)])
def test_acc_ignores_amplitude_but_not_sign(float64, rng, shape, scale, expected):
    truth, clim = torch.randn(shape), torch.randn(shape)
    pred = clim + scale * (truth - clim)
    out = metrics.acc(pred, truth, clim, _weights(shape))
    torch.testing.assert_close(out, torch.full(shape[1:3], expected))


def test_acc_hand_values(float64):
    # grid 1 x 2 with weights 3:1; anomalies a = (1, 0), b = (1, 1):
    # Σwab / sqrt(Σwa² Σwb²) = 0.75 / sqrt(0.75 * 1) = sqrt(0.75)
    pred = torch.tensor([1.0, 0.0]).view(1, 1, 1, 1, 2)
    truth = torch.ones(1, 1, 1, 1, 2)
    out = metrics.acc(pred, truth, torch.zeros(()), torch.tensor([[3.0, 1.0]]))
    torch.testing.assert_close(out, torch.tensor([[math.sqrt(0.75)]]))
    # ODE states correlate over the N axis: a = (1, 0), b = (1, 1) -> 1 / sqrt(2)
    pred, truth = torch.tensor([1.0, 0.0]).view(2, 1, 1), torch.ones(2, 1, 1)
    out = metrics.acc(pred, truth, torch.zeros(1, 1, 1))
    torch.testing.assert_close(out, torch.tensor([[1 / math.sqrt(2)]]))


def test_acc_broadcasts_a_climatology(float64, rng):
    truth = torch.randn(3, 4, 2, 5, 6)
    clim = torch.randn(2, 5, 6)  # [C, *grid], one map per variable
    pred = clim + 2 * (truth - clim)
    torch.testing.assert_close(metrics.acc(pred, truth, clim), torch.ones(4, 2))


@pytest.mark.parametrize("shape", [(400, 3, 2), (50, 3, 2, 6, 8)])
def test_nrmse_of_the_mean_forecast_is_one(float64, rng, shape):
    truth = 4.0 + 3.0 * torch.randn(shape)
    w = _weights(shape)
    mu = metrics.spatial_mean(truth, w).mean((0, 1))  # [C]
    pred = mu.view(-1, *(1,) * (len(shape) - 3)).expand(shape)
    out = metrics.nrmse(pred, truth, w)
    torch.testing.assert_close(out.square().mean(0), torch.ones(2))  # exact over leads
    torch.testing.assert_close(out, torch.ones(shape[1:3]), rtol=0, atol=0.15)  # per lead


def test_relative_error():
    learned = {"kappa": 11.0, "nu": 0.5, "alpha": 0.0, "beta": 0.1, "only_learned": 1.0}
    true = {"kappa": 10.0, "nu": -0.5, "alpha": 0.0, "beta": 0.0, "only_true": 3.0}
    out = metrics.relative_error(learned, true)
    assert list(out) == ["kappa", "nu", "alpha", "beta"]
    assert out["kappa"] == pytest.approx(0.1)
    assert out["nu"] == pytest.approx(2.0)
    assert out["alpha"] == 0.0
    assert out["beta"] == math.inf
    assert metrics.relative_error({"g": torch.tensor(9.0)}, {"g": 10.0}) == pytest.approx(
        {"g": 0.1}
    )


@pytest.mark.parametrize(
    ("pred_shape", "truth_shape", "weights_shape", "match"),
    [
        ((2, 3, 1, 4, 5), (2, 3, 1, 5, 4), None, r"same shape.*\(2, 3, 1, 4, 5\).*\(2, 3, 1, 5, 4"),
        ((2, 3), (2, 3), None, r"\[N, L, C, \*grid\].*got shape \(2, 3\)"),
        ((2, 3, 1, 4, 5), (2, 3, 1, 4, 5), (5, 4), r"grid shape \(4, 5\).*got \(5, 4\)"),
        ((2, 3, 1), (2, 3, 1), (4, 5), r"grid shape \(\).*got \(4, 5\)"),
    ],
)
def test_shape_errors(pred_shape, truth_shape, weights_shape, match):
    pred, truth = torch.zeros(pred_shape), torch.zeros(truth_shape)
    w = None if weights_shape is None else torch.ones(weights_shape)
    for score in (metrics.mse, metrics.rmse, metrics.mae, metrics.bias, metrics.nrmse):
        with pytest.raises(ValueError, match=match):
            score(pred, truth, w)
    with pytest.raises(ValueError, match=match):
        metrics.acc(pred, truth, torch.zeros(()), w)


@pytest.mark.parametrize("clim_shape", [(2, 1, 4, 5), (2, 3, 1, 4, 5, 1), (5, 4)])
def test_acc_climatology_shape_error(clim_shape):
    x = torch.zeros(2, 3, 1, 4, 5)
    with pytest.raises(ValueError, match=r"climatology must broadcast to .*\(2, 3, 1, 4, 5\)"):
        metrics.acc(x, x, torch.zeros(clim_shape), None)


def test_spatial_mean_shape_error():
    with pytest.raises(ValueError, match=r"grid shape \(4, 5\).*got \(4,\)"):
        metrics.spatial_mean(torch.zeros(2, 3, 1, 4, 5), torch.ones(4))
