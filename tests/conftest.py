"""Shared fixtures: float64 for numerics, a seeded RNG, tiny NetCDF writers."""

from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.fixture
def float64():
    """Run a numerics test in float64, restoring the default dtype afterwards."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.fixture
def rng() -> np.random.Generator:
    torch.manual_seed(0)
    return np.random.default_rng(0)


@pytest.fixture
def tiny_nc(tmp_path):
    """Write small simulated train/test files of a protocol: ``tiny_nc("pendulum", n=4)``."""
    from hybrid.data.io import write_netcdf
    from hybrid.data.protocols import build
    from hybrid.data.simulate import simulate_dataset

    def make(name: str, n: int = 4, n_test: int = 2, **overrides) -> tuple[str, str]:
        spec = build(name)
        for key, value in overrides.items():
            setattr(spec, key, value)
        paths = []
        for split, count in (("train", n), ("test", n_test)):
            ds = simulate_dataset(spec, split, n_samples=count, progress=False)
            paths.append(str(write_netcdf(ds, tmp_path / f"{name}_{split}.nc")))
        return tuple(paths)

    return make
