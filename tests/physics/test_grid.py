"""Grid geometry: exact spherical areas, periodicity, orientation, masks and error messages."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from hybrid.physics import operators
from hybrid.physics.grid import EARTH_RADIUS, Grid

R = EARTH_RADIUS


def _centres(start: float, stop: float, n: int) -> np.ndarray:
    """``n`` cell centres evenly filling ``[start, stop]`` (degrees)."""
    step = (stop - start) / n
    return start + step * (np.arange(n) + 0.5)


def test_global_one_degree_areas_sum_to_sphere(float64):
    grid = Grid.latlon(_centres(-90, 90, 180), _centres(0, 360, 360))
    total = grid.area.sum().item()
    assert total == pytest.approx(4 * math.pi * R**2, rel=1e-12)
    assert grid.area_weights().sum().item() == pytest.approx(1.0, rel=1e-12)


@pytest.mark.parametrize(
    ("lat_edges", "lon_edges", "n_lat", "n_lon"),
    [((10, 50), (0, 60), 20, 30), ((-35, -5), (100, 103), 12, 6), ((60, 89), (0, 90), 29, 45)],
)
def test_regional_areas_sum_to_spherical_rectangle(float64, lat_edges, lon_edges, n_lat, n_lon):
    lat, lon = _centres(*lat_edges, n_lat), _centres(*lon_edges, n_lon)
    grid = Grid.latlon(lat, lon)
    phi1, phi2 = np.deg2rad(lat_edges)
    exact = R**2 * np.deg2rad(lon_edges[1] - lon_edges[0]) * (math.sin(phi2) - math.sin(phi1))
    assert grid.area.sum().item() == pytest.approx(exact, rel=1e-12)
    # each row is an exact band: area is constant along longitude
    assert torch.equal(grid.area, grid.area[:, :1].expand_as(grid.area))


def _dateline_global() -> np.ndarray:
    lon = np.arange(170, 530) % 360.0  # 170..359, 0..169
    return np.where(lon > 180, lon - 360, lon)  # 170..180, -179..-1, 0..169


@pytest.mark.parametrize(
    ("lon", "periodic"),
    [
        (np.arange(0.0, 360.0), True),
        (np.arange(-180.0, 180.0), True),
        (_dateline_global(), True),
        (np.arange(0.0, 360.0, 2.5), True),
        (np.arange(0.0, 60.0), False),
        (np.arange(0.0, 359.0), False),  # one column short of the circle
        (np.array([170.0, 175.0, 180.0, -175.0, -170.0]), False),  # regional across the dateline
    ],
    ids=["0..359", "-180..179", "dateline", "2.5deg", "regional", "short", "regional-dateline"],
)
def test_longitude_periodicity(lon, periodic):
    grid = Grid.latlon(np.arange(-60.0, 61.0, 10.0), lon)
    assert grid.periodic == (False, periodic)
    assert bool(grid.open_east[:, -1].all()) is periodic


def test_dateline_grid_has_the_same_geometry_as_a_zero_based_one(float64):
    lat = np.arange(-60.0, 61.0, 10.0)
    a, b = Grid.latlon(lat, _dateline_global()), Grid.latlon(lat, np.arange(0.0, 360.0))
    for name in ("area", "dx_east", "len_east", "len_north", "w_east", "w_north", "open_east"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), rtol=1e-12, atol=0)


@pytest.fixture
def latlon_pair(float64):
    """The same masked regional grid built with ascending and with descending latitude."""
    lat, lon = _centres(10, 50, 12), _centres(0, 60, 15)
    active = np.ones((12, 15), dtype=bool)
    active[4:6, 5:9] = False
    up = Grid.latlon(lat, lon, active=active)
    down = Grid.latlon(lat[::-1], lon, active=active[::-1].copy())
    return up, down


def test_descending_latitude_reverses_areas(latlon_pair):
    up, down = latlon_pair
    torch.testing.assert_close(down.area, up.area.flip(0), rtol=1e-12, atol=0)
    assert (down.dy_north < 0).all() and (up.dy_north > 0).all()


def test_descending_latitude_gives_flipped_laplacian_and_gradient(latlon_pair, rng):
    up, down = latlon_pair
    f = torch.tensor(rng.standard_normal((2, 12, 15)))
    flip = lambda x: x.flip(-2)  # noqa: E731
    lap_up, lap_down = operators.laplacian(f, up), operators.laplacian(flip(f), down)
    torch.testing.assert_close(lap_down, flip(lap_up), rtol=1e-11, atol=1e-22)
    for g_up, g_down in zip(
        operators.gradient(f, up), operators.gradient(flip(f), down), strict=True
    ):
        torch.testing.assert_close(g_down, flip(g_up), rtol=1e-11, atol=1e-18)
    u, v = (torch.tensor(rng.standard_normal((12, 15))) for _ in range(2))
    adv_up = operators.advection_centred(f, u, v, up)
    adv_down = operators.advection_centred(flip(f), flip(u), flip(v), down)
    torch.testing.assert_close(adv_down, flip(adv_up), rtol=1e-11, atol=1e-18)


def test_pole_centred_rows_become_inactive_with_a_warning(float64):
    lat = np.arange(-90.0, 91.0, 2.0)
    with pytest.warns(UserWarning, match="pole"):
        grid = Grid.latlon(lat, np.arange(0.0, 360.0, 4.0))
    assert grid.active[[0, -1]].sum() == 0
    assert grid.active[1:-1].all()
    assert grid.area.sum().item() == pytest.approx(4 * math.pi * R**2, rel=1e-12)
    lap = operators.laplacian(torch.ones(grid.shape) + grid.sin_lat, grid)
    assert torch.isfinite(lap).all() and (lap[[0, -1]] == 0).all()


def test_no_warning_without_pole_rows():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Grid.latlon(np.arange(-89.0, 90.0, 2.0), np.arange(0.0, 360.0, 4.0))


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: Grid.regular_box(4, 4, 0.0), "dx and dy must be positive"),
        (lambda: Grid.regular_box(4, 4, -1.0), "dx and dy must be positive"),
        (lambda: Grid.regular_box(4, 4, 1.0, dy=0.0), "dx and dy must be positive"),
        (lambda: Grid.regular_box(1, 4, 1.0), "nx and ny must be at least 2"),
        (lambda: Grid.box([0, 1, 0.5, 2], [0, 1]), "x must be strictly monotonic"),
        (lambda: Grid.box([0, 1], [0, 0, 0]), "y must be strictly monotonic"),
        (lambda: Grid.box([0, 1, 3], [0, 1]), "x must be evenly spaced"),
        (lambda: Grid.box([0.0], [0, 1]), "x must be a 1-D array of at least 2"),
        (lambda: Grid.box([0, np.nan], [0, 1]), "x contains non-finite"),
        (lambda: Grid.latlon([0, 1, 3], [0, 1]), "lat must be evenly spaced"),
        (lambda: Grid.latlon([0, 2, 1], [0, 1]), "lat must be strictly monotonic"),
        (lambda: Grid.box([0, 1, 2], [0, 1], active=np.ones((3, 2), bool)), "grid shape"),
        (lambda: Grid.box([0, 1, 2], [0, 1], active=np.ones((2, 3))), "must be boolean"),
        (lambda: Grid.box([0, 1, 2], [0, 1], active=np.zeros((2, 3), bool)), "no active cell"),
        (lambda: Grid.latlon([80, 90, 100], [0, 1]), r"lat must lie in \[-90, 90\]"),
        (lambda: Grid.latlon([0, 1], [10, 9, 8]), "lon must ascend"),
        (lambda: Grid.latlon([0, 1], np.arange(0.0, 370.0, 10.0)), "more than 360"),
        (lambda: Grid.latlon([0, 1], [0, 1], radius=0.0), "radius must be positive"),
    ],
)
def test_invalid_geometry_raises(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def _expected_open(active: np.ndarray, axis: int, periodic: bool) -> np.ndarray:
    """Face ``k -> k+1`` along ``axis`` is open iff both cells are active and not across a wall."""
    ny, nx = active.shape
    out = np.zeros_like(active)
    for j in range(ny):
        for i in range(nx):
            jn, i_n = (j + 1, i) if axis == 0 else (j, i + 1)
            wall = (jn == ny) if axis == 0 else (i_n == nx)
            if wall and not periodic:
                continue
            out[j, i] = active[j, i] and active[jn % ny, i_n % nx]
    return out


@pytest.mark.parametrize("periodic", [(False, False), (True, False), (False, True), (True, True)])
def test_faces_are_closed_at_walls_and_around_masked_cells(periodic):
    active = np.ones((5, 6), dtype=bool)
    active[2, 3] = False  # an island
    active[0, 0] = False  # a cell on two edges
    grid = Grid.regular_box(6, 5, 1.0, periodic=periodic, active=active)
    east, north = grid.open_east.numpy(), grid.open_north.numpy()
    np.testing.assert_array_equal(east, _expected_open(active, 1, periodic[1]))
    np.testing.assert_array_equal(north, _expected_open(active, 0, periodic[0]))
    # spot checks of the island's four faces and the walls
    assert east[2, 3] == east[2, 2] == north[2, 3] == north[1, 3] == 0
    assert bool(east[1:, -1].all()) is periodic[1] and bool(north[-1, 1:].all()) is periodic[0]
    assert (grid.inv_area[~torch.from_numpy(active)] == 0).all()


def test_min_spacing_is_cached_and_forgotten_on_load(float64):
    coarse, fine = Grid.regular_box(4, 4, 2.0), Grid.regular_box(4, 4, 1.0)
    assert coarse.min_spacing() == 2.0  # cached now
    coarse.load_state_dict(fine.state_dict())
    assert coarse.min_spacing() == 1.0
