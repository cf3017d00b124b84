"""The square's symmetries: a group, a symmetry of Gray-Scott (and not of an anisotropic field),
refused where the grid breaks it, and applied to training windows only."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from hybrid.data.environments import EnvironmentDataModule, simulate_environments
from hybrid.data.io import write_netcdf
from hybrid.data.protocols import build
from hybrid.data.symmetry import ORDER, DihedralAugmented, dihedral, inverse, symmetry_problem
from hybrid.physics.gray_scott import GrayScott
from hybrid.physics.grid import Grid
from hybrid.physics.operators import laplacian

ELEMENTS = range(ORDER)


def _generic(n: int = 5) -> torch.Tensor:
    """A square with no symmetry of its own: distinct entries."""
    return torch.randperm(n * n, generator=torch.Generator().manual_seed(0)).reshape(n, n).double()


def _index(image: torch.Tensor, a: torch.Tensor) -> int:
    """Which element maps ``a`` to ``image``."""
    (k,) = [k for k in ELEMENTS if torch.equal(dihedral(a, k), image)]
    return k


def _box(dy=1.0, periodic=(True, True), active=None) -> Grid:
    return Grid.regular_box(8, 8, 1.0, dy, periodic=periodic, active=active)


def _one_land_cell() -> np.ndarray:
    active = np.ones((8, 8), dtype=bool)
    active[2, 5] = False
    return active


def test_eight_distinct_elements_with_the_identity_first():
    a = _generic()
    images = [dihedral(a, k) for k in ELEMENTS]
    assert torch.equal(images[0], a)
    assert all(not torch.equal(p, q) for p, q in itertools.combinations(images, 2))


def test_closed_under_composition_with_inverses():
    a = _generic()
    table = [[_index(dihedral(dihedral(a, j), k), a) for k in ELEMENTS] for j in ELEMENTS]
    for row in table:  # a Latin square: each product is an element, each element once per row
        assert sorted(row) == list(ELEMENTS)
    for k in ELEMENTS:
        assert torch.equal(dihedral(dihedral(a, k), inverse(k)), a)
    assert sum(inverse(k) == k for k in ELEMENTS) == 6  # identity, half turn and 4 reflections


def test_acts_on_the_last_two_axes_only():
    y = torch.randn(3, 4, 2, 6, 6)
    for k in ELEMENTS:
        mapped = dihedral(y, k)
        assert mapped.shape == y.shape
        assert torch.equal(mapped[1, 2, 0], dihedral(y[1, 2, 0], k))
    with pytest.raises(ValueError, match="elements 0..7"):
        dihedral(y, 8)


@pytest.mark.parametrize("k", ELEMENTS)
def test_gray_scott_commutes_with_every_element(k):
    """f(g·y) = g·f(y): the 9-point Laplacian is isotropic and the reaction is pointwise."""
    torch.set_default_dtype(torch.float64)
    try:
        f = GrayScott(F=0.03, k=0.062)
        y = torch.rand(2, 2, 16, 16, generator=torch.Generator().manual_seed(k))
        with torch.no_grad():
            assert torch.allclose(f(0.0, dihedral(y, k)), dihedral(f(0.0, y), k), atol=1e-14)
    finally:
        torch.set_default_dtype(torch.float32)


@pytest.mark.parametrize("periodic", [(True, True), (False, False)])
def test_the_flux_form_laplacian_commutes_on_a_symmetric_box(periodic):
    """Where :func:`symmetry_problem` says yes, the grid's own no-flux walls map onto themselves."""
    grid = _box(periodic=periodic).double()
    assert symmetry_problem(grid, (8, 8)) is None
    f = torch.rand(3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    for k in ELEMENTS:
        mapped = laplacian(dihedral(f, k), grid)
        assert torch.allclose(mapped, dihedral(laplacian(f, grid), k), atol=1e-12)
    lopsided = _box(periodic=(True, False)).double()  # refused, and rightly: it does not commute
    assert (
        laplacian(dihedral(f, 1), lopsided) - dihedral(laplacian(f, lopsided), 1)
    ).abs().max() > 0.1


def test_an_anisotropic_field_does_not_commute():
    """The negative control: ∂u/∂x (one-sided, along x only) changes under a quarter turn."""
    y = torch.rand(16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(1))

    def f(u):
        return u.roll(-1, -1) - u

    for k in (1, 3, 4, 6):  # the maps that swap the axes
        assert (f(dihedral(y, k)) - dihedral(f(y), k)).abs().max() > 0.1


def test_a_square_periodic_evenly_spaced_box_is_symmetric():
    assert symmetry_problem(_box(), (1, 2, 8, 8)) is None
    assert symmetry_problem(_box(periodic=(False, False)), (8, 8)) is None


@pytest.mark.parametrize(
    ("grid", "shape", "message"),
    [
        (None, (8, 6), "square"),
        (_box(dy=2.0), (8, 8), "spacing"),
        (_box(periodic=(True, False)), (8, 8), "periodic"),
        (_box(active=_one_land_cell()), (8, 8), "active"),
        (Grid.regular_line(8, 1.0), (8, 8), "2-D box"),
        (Grid.latlon(np.arange(8.0), np.arange(8.0) - 4), (8, 8), "2-D box"),
    ],
)
def test_grids_that_break_the_symmetry_are_named(grid, shape, message):
    assert message in symmetry_problem(grid, shape)


@pytest.fixture(scope="module")
def gs_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("gs")
    spec = build("gray_scott")
    spec.environments[0].n_times = {"train": 4, "test": 4}
    paths = {}
    for split, n in (("train", 1), ("test", 2)):
        ds = simulate_environments(spec, split, n_samples=n)
        paths[split] = str(write_netcdf(ds, root / f"gs_{split}.nc"))
    paths["rectangle"] = str(write_netcdf(ds.isel(x=slice(0, 16)), root / "gs_rectangle.nc"))
    return paths


def _module(path, test_path=None, **kwargs) -> EnvironmentDataModule:
    dm = EnvironmentDataModule(path, ["u", "v"], window=3, test_path=test_path, **kwargs)
    dm.setup()
    return dm


def test_training_windows_are_mapped_by_every_element(gs_files):
    plain = _module(gs_files["train"])
    mapped = _module(gs_files["train"], augment="dihedral")
    base = plain.splits["train"]
    loader = mapped.train_dataloader()
    assert isinstance(loader.dataset, DihedralAugmented)
    windows = [base[j] for j in range(len(base))]  # ([E, W], [E, W, C, n, n]); 2 of them
    seen = set()
    for _ in range(20):
        for t, y in loader:  # batch 1: [E, W], [E, W, C, n, n] environment-major
            hits = [
                (j, k)
                for j, (_, w) in enumerate(windows)
                for k in ELEMENTS
                if torch.equal(dihedral(w, k), y)
            ]
            assert len(hits) == 1  # one window of the file under one element
            seen.add(hits[0][1])
            assert torch.equal(t, windows[0][0])  # times are not mapped
    assert seen == set(ELEMENTS)


def test_the_same_seed_draws_the_same_elements(gs_files):
    def draws():
        dm = _module(gs_files["train"], augment="dihedral", seed=3)
        return torch.cat([y for _ in range(4) for _, y in dm.train_dataloader()])

    assert torch.equal(draws(), draws())


def test_validation_and_test_windows_are_never_mapped(gs_files):
    plain = _module(gs_files["train"], gs_files["test"])
    mapped = _module(gs_files["train"], gs_files["test"], augment="dihedral")
    for loader in ("val_dataloader", "test_dataloader"):
        for (_, a), (_, b) in zip(getattr(plain, loader)(), getattr(mapped, loader)(), strict=True):
            assert torch.equal(a, b)
    assert torch.equal(plain.statistics()["std"], mapped.statistics()["std"])


def test_a_rectangle_is_refused_and_a_bad_choice_named(gs_files):
    with pytest.raises(ValueError, match=r"dihedral needs .*square, got \(32, 16\)"):
        _module(gs_files["rectangle"], augment="dihedral")
    _module(gs_files["rectangle"])  # without augmentation it is fine
    with pytest.raises(ValueError, match="augment must be one of"):
        EnvironmentDataModule(gs_files["train"], ["u", "v"], augment="rotate")
