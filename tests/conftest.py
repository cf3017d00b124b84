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
