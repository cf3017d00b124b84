"""`hybrid evaluate` on a flow-estimator run: forecasts from the last observed frame, the
estimated flow scored against the file's true velocity, and the arrows plot."""

from __future__ import annotations

import json

import pytest
import torch

from hybrid.cli import main
from hybrid.data.io import write_netcdf
from hybrid.data.protocols import build
from hybrid.data.simulate import simulate_dataset
from hybrid.evaluate import Forecasts, flow_report, true_flow
from hybrid.physics.grid import Grid


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A few training steps of configs/moving_flow/flow.yaml on tiny moving-flow files."""
    tmp = tmp_path_factory.mktemp("flow_evaluate")
    spec = build("moving_flow")
    spec.n_times = {"train": 9, "test": 9}
    paths = {}
    for split, n in (("train", 3), ("test", 2)):
        ds = simulate_dataset(spec, split, n_samples=n, progress=False)
        paths[split] = str(write_netcdf(ds, tmp / f"{split}.nc"))
    main(
        ["fit", "--config", "configs/moving_flow/flow.yaml", "--data.path", paths["train"],
         "--data.test_path", paths["test"], "--data.window=6", "--data.eval_window=7",
         "--data.batch_size=2", "--trainer.max_steps=2", "--trainer.logger=false",
         "--trainer.enable_progress_bar=false", "--trainer.default_root_dir", str(tmp)]
    )  # fmt: skip
    return {"ckpt": str(next(tmp.rglob("last.ckpt"))), "tmp": tmp, **paths}


def test_evaluate_scores_the_estimated_flow_and_plots_it(run):
    out = run["tmp"] / "eval"
    main(["evaluate", "--ckpt_path", run["ckpt"], "--output", str(out)])
    report = json.loads((out / "metrics.json").read_text())
    # 7-frame windows, 4 read by the estimator: forecasts of 4 frames from the 4th
    assert report["lead_time_s"] == [0.0, 10800.0, 21600.0, 32400.0]
    assert report["n_forecasts"] == 2 * (9 - 7 + 1)
    assert report["rmse"]["model"][0] == 0.0 and report["rmse"]["persistence"][0] == 0.0
    assert {"correlation", "rmse", "mean_speed", "all_cells"} <= set(report["flow"])
    assert -1.0 <= report["flow"]["correlation"] <= 1.0
    assert (out / "flow.png").stat().st_size > 1000


def test_an_aphynity_correction_on_a_flow_prior_is_evaluated(run):
    """APHYNITY's correction on top of the estimated flow: ``hybrid evaluate`` reports ‖F_a‖²
    and leaves out ‖F_a‖/‖F_p‖, which a flow held per window cannot give on stacked states
    (it crashed on the shapes before)."""
    tmp = run["tmp"] / "aphynity"
    main(
        ["fit", "--config", "configs/moving_flow/flow.yaml", "--data.path", run["train"],
         "--data.test_path", run["test"], "--data.window=6", "--data.eval_window=7",
         "--data.batch_size=2", "--trainer.max_steps=2", "--trainer.logger=false",
         "--model.objective=hybrid.objectives.Aphynity",
         '--model.correction={"class_path": "hybrid.models.ResNet", '
         '"init_args": {"channels": 1, "hidden": 4, "blocks": 1}}',
         "--trainer.enable_progress_bar=false", "--trainer.default_root_dir", str(tmp)]
    )  # fmt: skip
    out = tmp / "eval"
    main(["evaluate", "--ckpt_path", str(next(tmp.rglob("last.ckpt"))), "--output", str(out)])
    report = json.loads((out / "metrics.json").read_text())
    assert report["correction_norm"] >= 0.0 and "correction_ratio" not in report
    assert {"correlation", "rmse"} <= set(report["flow"])


def test_the_true_flow_scores_perfectly_at_the_forecast_starts(run):
    """The report's truth is the file's velocity at each forecast's start frame: scoring it as
    the estimate gives correlation 1 and RMSE 0, and a frame late it does not."""
    ds = simulate_dataset(build("moving_flow"), "test", n_samples=2, progress=False)
    grid = Grid.regular_box(32, 32, 10e3)
    starts = [(0, 3), (1, 5)]
    truth = torch.as_tensor(ds.c.values[[0, 1], [3, 5]], dtype=torch.float32)[:, None, None]
    f = Forecasts(truth=truth, methods={}, t=torch.zeros(1), starts=starts)
    u, v = true_flow(ds, starts)
    report = flow_report((u, v), f, ds, grid)
    assert report["correlation"] == pytest.approx(1.0) and report["rmse"] == pytest.approx(0.0)
    late = flow_report(true_flow(ds, [(0, 4), (1, 6)]), f, ds, grid)
    assert late["correlation"] < 0.9999 and late["rmse"] > 1e-3
