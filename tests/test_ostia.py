"""The real-data example: OSTIA monthly SST from iris-sample-data, trained and evaluated."""

from __future__ import annotations

import json

import pytest

from hybrid.cli import main

pytest.importorskip("iris_sample_data", reason="the `ostia` extra is not installed")


def test_ostia_example_end_to_end(tmp_path):
    """One step (a batch of 2) of configs/sst_ostia.yaml, then evaluation against persistence
    and the training-period climatology (the record spans more than two years). No assertion
    reads the trained weights: the prior has no parameter, and the model's lead 0 is its start."""
    sst = tmp_path / "sst.nc"
    main(["sample", "ostia", "--output", str(sst)])
    main(
        [
            "fit",
            "--config",
            "configs/sst_ostia.yaml",
            "--data.path",
            str(sst),
            "--trainer.max_steps",
            "1",
            "--data.batch_size",
            "2",
            "--trainer.logger",
            "false",
            "--trainer.enable_progress_bar",
            "false",
            "--trainer.default_root_dir",
            str(tmp_path),
        ]
    )
    ckpt = next(tmp_path.rglob("last.ckpt"))
    main(["evaluate", "--ckpt_path", str(ckpt), "--output", str(tmp_path / "eval")])
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    methods = {"model", "persistence", "physics", "climatology", "damped_persistence"}
    assert set(report["rmse"]) == methods
    assert set(report["acc"]) == methods - {"climatology"}
    # damped persistence starts as persistence and relaxes towards the climatology
    assert report["rmse"]["damped_persistence"][0] == pytest.approx(0, abs=1e-6)
    assert report["rmse"]["damped_persistence"][-1] < report["rmse"]["persistence"][-1]
    assert report["rmse"]["persistence"][0] == 0 and report["acc"]["model"][0] == pytest.approx(1)
    assert 0 < report["rmse"]["climatology"][1] < 2.0  # kelvin
    assert report["n_forecasts"] > 0 and report["lead_time_s"][1] == pytest.approx(
        30.44 * 86400, rel=1e-3
    )
    # the prior alone (LagDecay with the training split's lag regression, typed in the config to
    # 4 digits) is the damped persistence that hybrid evaluate fits on the same split
    damped = report["rmse"]["damped_persistence"]
    assert report["rmse"]["physics"] == pytest.approx(damped, rel=2e-3)
