"""A reduced run of scripts/reproduce_aphynity.py (one seed, a few epochs): the table's format
and APHYNITY's correction smaller than the naive hybrid's."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location(
        "reproduce", ROOT / "scripts/reproduce_aphynity.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_reduced_table(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)  # the configs are read from configs/
    table = _script().main(
        [
            "--output",
            str(tmp_path),
            "--datasets",
            "pendulum",
            "--methods",
            "sum_incomplete",
            "aphynity_incomplete",
            "--seeds",
            "0",
            "--epochs",
            "30",
            "--n-train",
            "10",
            "--n-test",
            "5",
        ]
    )
    rows = {r["method"]: r for r in table}
    assert set(rows) == {"sum_incomplete", "aphynity_incomplete"}
    for r in rows.values():
        assert r["mse"][0] > 0 and r["log10_mse"] < 2 and r["wall_s"][0] > 0
        assert r["param_error_pct"] is not None
    assert rows["aphynity_incomplete"]["paper"] == (-7.86, 4.0, 132.0)
    assert (
        rows["aphynity_incomplete"]["correction_norm"][0]
        < rows["sum_incomplete"]["correction_norm"][0]
    )
    md = (tmp_path / "results.md").read_text()
    assert "| pendulum | aphynity_incomplete |" in md and "log10 / ln" in md
    assert json.loads((tmp_path / "results.json").read_text())["runs"][0]["val_curve"]
    assert (tmp_path / "val_mse_vs_time.png").stat().st_size > 1000
    assert "| dataset | method |" in capsys.readouterr().out
