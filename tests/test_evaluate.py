"""`hybrid evaluate`: metrics.json schema, CF forecast file, plots, safety of outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from hybrid.cli import main
from hybrid.data.io import write_netcdf
from hybrid.data.protocols import build
from hybrid.data.simulate import simulate_dataset
from hybrid.train import HybridModule


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A checkpoint of a few steps on tiny advection-diffusion data, and its test file."""
    tmp = tmp_path_factory.mktemp("evaluate")
    spec = build("advection_diffusion")
    spec.n_times = {"train": 12, "test": 12}
    paths = {}
    for split, n in (("train", 4), ("test", 3)):
        ds = simulate_dataset(spec, split, n_samples=n, progress=False)
        paths[split] = str(write_netcdf(ds, tmp / f"{split}.nc"))
    main(
        [
            "fit",
            "--config",
            "configs/quickstart.yaml",
            "--data.path",
            paths["train"],
            "--data.test_path",
            paths["test"],
            "--data.window",
            "4",
            "--data.eval_window",
            "6",
            "--data.stride",
            "4",
            "--trainer.max_steps",
            "3",
            "--model.warm_start",  # the warm start has its own tests; not this one's subject
            "false",
            "--trainer.logger",
            "false",
            "--trainer.enable_progress_bar",
            "false",
            "--trainer.default_root_dir",
            str(tmp),
        ]
    )
    return {"ckpt": str(next(tmp.rglob("last.ckpt"))), "tmp": tmp, **paths}


def test_outputs_and_metrics_schema(run):
    out = run["tmp"] / "eval"
    main(["evaluate", "--ckpt_path", run["ckpt"], "--output", str(out)])
    report = json.loads((out / "metrics.json").read_text())
    assert len(report["lead_time_s"]) == 6 and report["lead_time_s"][1] == 3 * 3600.0
    assert set(report["rmse"]) == {"model", "persistence", "physics"}
    assert all(len(v) == 6 for v in report["rmse"].values())
    assert report["rmse"]["persistence"][0] == 0.0 and report["rmse"]["model"][0] == 0.0
    assert set(report["parameters"]) == {"kappa", "velocity.u", "velocity.v"}
    assert set(report["parameter_error"]) == {"kappa", "velocity.u", "velocity.v"}
    truth = report["true_parameters"]["kappa"]
    err = abs(report["parameters"]["kappa"] - truth) / truth
    assert report["parameter_error"]["kappa"] == pytest.approx(err)
    assert report["n_forecasts"] == 3 * (12 - 6 + 1)
    assert "correction_ratio" in report
    for name in (
        "metrics.nc",
        "forecast.nc",
        "summary.md",
        "error_by_lead.png",
        "forecast_maps.png",
        "parameters.png",
    ):
        assert (out / name).stat().st_size > 0, name
    assert "RMSE @" in (out / "summary.md").read_text()


def test_rmse_and_correction_norm_match_an_independent_numpy_computation(run):
    """metrics.json against NumPy on the files themselves: the model's RMSE from forecast.nc and
    the test file, persistence from the test file alone (mean over starts and cells before the
    square root), and ‖F_a‖² of the reloaded network on the true states."""
    out = run["tmp"] / "eval_numpy"
    main(["evaluate", "--ckpt_path", run["ckpt"], "--output", str(out)])
    report = json.loads((out / "metrics.json").read_text())
    fc = xr.open_dataset(out / "forecast.nc")
    c = xr.open_dataset(run["test"]).c.values  # [sample, time, y, x]
    first = np.searchsorted(xr.open_dataset(run["test"]).time.values, fc.time.values)
    truth = np.stack([c[n, s : s + 6] for n, s in zip(fc.sample.values, first, strict=True)])
    model = fc.c.values.astype(np.float64)  # [N, L, y, x]
    rmse = np.sqrt(((model - truth) ** 2).mean((0, 2, 3)))
    persistence = np.sqrt(((truth - truth[:, :1]) ** 2).mean((0, 2, 3)))
    np.testing.assert_allclose(report["rmse"]["model"], rmse, rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(report["rmse"]["persistence"], persistence, rtol=1e-5, atol=1e-9)
    net = HybridModule.load_from_checkpoint(run["ckpt"]).correction
    with torch.no_grad():
        fa = net(None, torch.from_numpy(truth.reshape(-1, 1, *truth.shape[2:])).float())
    norm = fa.double().square().flatten(1).sum(1).mean()  # Σ over cells, mean over states
    assert report["correction_norm"] == pytest.approx(float(norm), rel=1e-4)
    assert report["correction_norm"] > 0  # the run trained the network off its zero start


def test_predict_writes_the_forecast_file_of_evaluate(run):
    """`hybrid predict` writes exactly evaluate's forecast.nc, alone, and never overwrites."""
    main(["evaluate", "--ckpt_path", run["ckpt"], "--output", str(run["tmp"] / "eval_p")])
    out = run["tmp"] / "predicted.nc"
    main(["predict", "--ckpt_path", run["ckpt"], "--output", str(out)])
    xr.testing.assert_identical(
        xr.open_dataset(out), xr.open_dataset(run["tmp"] / "eval_p" / "forecast.nc")
    )
    with pytest.raises(SystemExit, match="exists; pass --overwrite"):
        main(["predict", "--ckpt_path", run["ckpt"], "--output", str(out)])
    assert not list(out.parent.glob(".predicted*"))


def test_forecast_file_is_cf_and_starts_at_the_initial_states(run):
    out = run["tmp"] / "eval_cf"
    main(["evaluate", "--ckpt_path", run["ckpt"], "--output", str(out)])
    fc = xr.open_dataset(out / "forecast.nc")
    truth = xr.open_dataset(run["test"])
    assert fc.attrs["Conventions"] == "CF-1.8"
    assert fc.c.dims == ("time", "prediction_timedelta", "y", "x")
    assert fc.c.attrs["units"] == truth.c.attrs["units"]
    assert fc.prediction_timedelta.values[1] == np.timedelta64(3, "h")
    first = fc.isel(time=0)  # sample 0 from its first frame
    np.testing.assert_allclose(
        first.c.isel(prediction_timedelta=0),
        truth.c.isel(sample=int(first.sample), time=0),
        rtol=1e-6,
    )
    assert fc.time.values[1] == truth.time.values[1]  # the second start, one step later


def test_existing_output_is_kept_unless_asked(run, capsys):
    out = run["tmp"] / "eval_keep"
    out.mkdir()
    (out / "precious.txt").write_text("keep")
    with pytest.raises(SystemExit, match="exists; pass --overwrite"):
        main(["evaluate", "--ckpt_path", run["ckpt"], "--output", str(out)])
    assert (out / "precious.txt").read_text() == "keep"
    main(["evaluate", "--ckpt_path", run["ckpt"], "--output", str(out), "--overwrite", "true"])
    assert (out / "metrics.json").exists() and not (out / "precious.txt").exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".eval_keep")]


def test_other_variables_or_grid_exit_with_a_message(run, tmp_path):
    other = build("shallow_water")
    other.n_times = {"train": 8, "test": 8}
    path = write_netcdf(
        simulate_dataset(other, "test", n_samples=1, progress=False), tmp_path / "sw.nc"
    )
    with pytest.raises(SystemExit, match=r"variables \['c'\] not found; present"):
        main(
            [
                "evaluate",
                "--ckpt_path",
                run["ckpt"],
                "--output",
                str(tmp_path / "o"),
                "--data_path",
                str(path),
            ]
        )
    big = build("advection_diffusion")
    big.n_times = {"train": 8, "test": 8}
    ds = simulate_dataset(big, "test", n_samples=1, progress=False).isel(x=slice(0, 16))
    small = write_netcdf(ds, tmp_path / "small.nc")
    with pytest.raises(SystemExit, match=r"trained on a \(32, 32\) grid; the data has \(32, 16\)"):
        main(
            [
                "evaluate",
                "--ckpt_path",
                run["ckpt"],
                "--output",
                str(tmp_path / "o"),
                "--data_path",
                str(small),
            ]
        )
    assert not (tmp_path / "o").exists()


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="nope.ckpt: no such checkpoint"):
        main(
            [
                "evaluate",
                "--ckpt_path",
                str(tmp_path / "nope.ckpt"),
                "--output",
                str(tmp_path / "o"),
            ]
        )


def test_compare_checkpoints_script(run, capsys):
    """Two checkpoints (here the same run under two labels) on the same data: one table, one
    plot; a checkpoint compared with itself has identical rows."""
    import importlib.util

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location(
        "compare", root / "scripts/compare_checkpoints.py"
    )
    compare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compare)
    out = run["tmp"] / "compare"
    reports = compare.main(
        [
            "--ckpt",
            f"a={run['ckpt']}",
            f"b={run['ckpt']}",
            "--data_path",
            run["test"],
            "--lead_steps",
            "4",
            "--output",
            str(out),
        ]
    )
    assert reports["a"]["rmse"]["model"] == reports["b"]["rmse"]["model"]
    text = (out / "comparison.md").read_text()
    assert "| a |" in text and "| b |" in text and "| persistence |" in text
    assert (out / "comparison.png").stat().st_size > 1000
    assert "RMSE @" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (10800.0, "3 h"),
        (86400.0 * 30, "30 d"),
        (2629746.0, "30.4 d"),  # a mean Gregorian month
        (90.0, "1.5 min"),
        (45.0, "45 s"),
        (0.0, "0 s"),
    ],
)
def test_leads_read_in_the_largest_whole_unit(seconds, text):
    from hybrid.evaluate import format_lead

    assert format_lead(seconds) == text
