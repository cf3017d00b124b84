"""Smoke test of scripts/bench_physics.py: tiny sizes, one repeat, torch and NumPy agree."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_physics.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_physics", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_main_tiny(bench, dtype, capsys):
    argv = ["--sizes", "8", "16", "--repeats", "1", "--device", "cpu", "--peak-mib", "4"]
    results = bench.main([*argv, "--dtype", dtype, "--batch", "2"])
    assert set(results) == {"advection", "shallow_water"}
    for rows in results.values():
        assert [r["n"] for r in rows] == [8, 16]
        for r in rows:
            assert r["rel"] < (1e-5 if dtype == "float32" else 1e-12)
            assert all(r[k] > 0 for k in ("t_rhs", "n_rhs", "t_rk4", "n_rk4", "passes"))
        assert math.isfinite(bench.exponent(rows, "t_rhs"))
    out = capsys.readouterr().out
    assert out.startswith("# torch ") and "cost exponent" in out


def test_rk4_step_is_exact_for_linear_growth(bench):
    """RK4 on dy/dt = y reproduces the Taylor series of exp(dt) to fourth order."""
    dt = 0.1
    expected = 1 + dt + dt**2 / 2 + dt**3 / 6 + dt**4 / 24
    assert bench.rk4_step(lambda y: y, 1.0, dt) == pytest.approx(expected, rel=1e-14)
