"""``hybrid evaluate``: forecasts from every test start over all leads, scored against baselines.

Writes into ``DIR`` (atomically: built in a temporary folder beside it, then renamed; an existing
``DIR`` is replaced only with ``overwrite``): ``metrics.json`` (the schema of DESIGN.md),
``metrics.nc``, ``forecast.nc`` (CF-1.8, dims ``time`` = initialisation and
``prediction_timedelta`` = lead, then the data's spatial dims), PNG plots and ``summary.md``.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from torch import Tensor
from tqdm.auto import tqdm

from hybrid import metrics
from hybrid.data.datamodule import TrajectoryDataModule, load_trajectories
from hybrid.data.io import grid_from_dataset, open_trajectories, spatial_dims, time_axis
from hybrid.data.trajectories import season_of
from hybrid.data.windows import TrajectoryWindows
from hybrid.dynamics import HybridField, rollout
from hybrid.physics.parameters import physical_parameters
from hybrid.train import HybridModule


@dataclass
class Forecasts:
    """Forecasts ``[N, L, C, *grid]`` of each method from the same ``N`` starts (truth included),
    with ``t``: ``[L]`` lead times (s), and where each start is (``sample``, ``start`` frame)."""

    truth: Tensor
    methods: dict[str, Tensor]
    t: Tensor
    starts: list[tuple[int, int]]


def test_windows(
    model_data: dict, data_path: str | None, lead_steps: int | None
) -> tuple[TrajectoryWindows, xr.Dataset, xr.DataArray]:
    """The evaluation windows: all of ``data_path`` (or of the run's ``test_path``), else the
    run's own test split; ``lead_steps + 1`` frames each (default: the run's eval window).
    Also the dataset and the dates of the windows' frame axis."""
    variables = model_data["variables"]
    window = (
        (lead_steps + 1) if lead_steps else (model_data.get("eval_window") or model_data["window"])
    )
    path = data_path or model_data.get("test_path")
    if path:
        ds = open_trajectories(path, variables)
        y, valid = load_trajectories(ds, variables)
        t = torch.as_tensor(time_axis(ds["time"]))
        return TrajectoryWindows(y, t, window, 1, valid), ds, ds["time"]
    accepted = inspect.signature(TrajectoryDataModule).parameters  # hparams carry CLI keys too
    settings = {k: v for k, v in model_data.items() if k in accepted}
    dm = TrajectoryDataModule(**{**settings, "eval_window": window})
    dm.setup()
    if "test" not in dm.splits:
        raise ValueError("the run has no test split: pass --data.path FILE to evaluate on")
    return dm.splits["test"], dm.dataset, dm.split_times["test"]


def climatology_forecast(state: dict, times: xr.DataArray, windows: TrajectoryWindows) -> Tensor:
    """The training climatology at each window's target dates, ``[N, L, C, *grid]``."""
    mean = state["mean"]  # [P, C, *grid]
    period = torch.from_numpy(season_of(times, state["kind"]))  # [T]
    frames = torch.tensor([s for _, s in windows.index])[:, None] + torch.arange(windows.window)
    return mean[period[frames]].nan_to_num(0.0)


def check_compatible(model: HybridModule, ds: xr.Dataset, variables: list[str]) -> None:
    """The data must have the trained variables on the trained grid."""
    grid = grid_from_dataset(ds, variables[0])
    trained = getattr(model.physics, "grid", None) if model.physics is not None else None
    shape = None if grid is None else tuple(grid.shape)
    if trained is not None and tuple(trained.shape) != shape:
        raise ValueError(
            f"the checkpoint was trained on a {tuple(trained.shape)} grid; the data "
            f"has {shape} ({spatial_dims(ds[variables[0]])})"
        )
    if model.active.numel() and shape != tuple(model.active.shape):
        raise ValueError(
            f"the checkpoint was trained on a {tuple(model.active.shape)} grid; the "
            f"data has {shape}"
        )


@torch.no_grad()
def forecast(model: HybridModule, windows: TrajectoryWindows, batch_size: int = 64) -> Forecasts:
    """Roll the model, the prior alone (correction off) and persistence from every window start."""
    model.eval()
    physics_only = HybridField(model.physics) if model.physics is not None else None
    loader = torch.utils.data.DataLoader(windows, batch_size=batch_size)
    out: dict[str, list[Tensor]] = {"truth": [], "model": [], "persistence": [], "physics": []}
    for t, y in tqdm(loader, desc="forecasting", unit="batch"):
        y0 = y[:, 0]
        out["truth"].append(y)
        out["model"].append(model(y0, t[0]))
        out["persistence"].append(y0[:, None].expand_as(y))
        if physics_only is not None and model.correction is not None:
            out["physics"].append(rollout(physics_only, y0, t[0], **model.solver))
    stacked = {k: torch.cat(v) for k, v in out.items() if v}
    truth = stacked.pop("truth")
    return Forecasts(truth, stacked, t[0].double(), list(windows.index))


def score(
    f: Forecasts, weights: Tensor | None, names: list[str], clim: Tensor | None = None
) -> dict:
    """Per-lead metrics of every method: overall RMSE over variables, per-variable tables, and
    the anomaly correlation against the climatology ``clim`` when there is one."""
    per_variable: dict[str, dict] = {v: {} for v in names}
    overall: dict[str, list[float]] = {}
    acc: dict[str, list[float]] = {}
    for method, pred in f.methods.items():
        mse = metrics.mse(pred, f.truth, weights)  # [L, C]
        overall[method] = mse.mean(1).sqrt().tolist()
        table = {
            "rmse": mse.sqrt(),
            "mae": metrics.mae(pred, f.truth, weights),
            "bias": metrics.bias(pred, f.truth, weights),
            "nrmse": metrics.nrmse(pred, f.truth, weights),
        }
        if clim is not None and method != "climatology":
            table["acc"] = metrics.acc(pred, f.truth, clim, weights)
            acc[method] = table["acc"].mean(1).tolist()
        for c, v in enumerate(names):
            for key, value in table.items():
                per_variable[v].setdefault(key, {})[method] = value[:, c].tolist()
    return {"rmse": overall, **({"acc": acc} if acc else {}), "variables": per_variable}


def correction_size(model: HybridModule, truth: Tensor) -> dict[str, float]:
    """``‖F_a‖²`` along the true states (data units, as APHYNITY reports it) and ``‖F_a‖/‖F_p‖``."""
    if model.correction is None:
        return {"correction_norm": 0.0}
    states = truth.flatten(0, 1)[:4096]  # [N*L, C, *grid], a bounded sample
    with torch.no_grad():
        fa = model.correction(None, states)
        out = {"correction_norm": float(fa.pow(2).flatten(1).sum(1).mean())}
        if model.physics is not None:
            fp = model.physics(torch.zeros(()), states)
            out["correction_ratio"] = float(fa.norm() / fp.norm().clamp_min(1e-30))
    return out


def parameters_report(model: HybridModule, attrs: dict) -> dict:
    """Learned scalar physical parameters, and their relative error against ``true_<name>``."""
    learned = (
        {k: float(v) for k, v in physical_parameters(model.physics).items() if v.numel() == 1}
        if model.physics is not None
        else {}
    )
    true = {k[5:]: float(v) for k, v in attrs.items() if k.startswith("true_")}
    return {
        "parameters": learned,
        "parameter_error": metrics.relative_error(learned, true),
        "true_parameters": {k: v for k, v in true.items() if k in learned},
    }


def beats(rmse: dict[str, list[float]]) -> dict[str, bool]:
    """Whether the model's RMSE is below each baseline's at every lead beyond the first."""
    return {
        m: bool(np.all(np.array(rmse["model"][1:]) < np.array(r[1:])))
        for m, r in rmse.items()
        if m != "model"
    }


def forecast_dataset(
    f: Forecasts, ds: xr.Dataset, times: xr.DataArray, names: list[str]
) -> xr.Dataset:
    """The model's forecasts as CF-1.8 NetCDF: ``(time, prediction_timedelta, *spatial)``."""
    spatial = spatial_dims(ds[names[0]])
    pred = f.methods["model"].numpy()
    init = times.values[[s for _, s in f.starts]]
    lead = (f.t.numpy() * 1e9).astype("timedelta64[ns]")
    coords = {
        "time": ("time", init, {"standard_name": "forecast_reference_time"}),
        "prediction_timedelta": ("prediction_timedelta", lead, {"long_name": "lead time"}),
        "sample": ("time", np.array([n for n, _ in f.starts])),
    }
    coords.update({d: ds[d] for d in spatial})
    out = xr.Dataset(
        {
            v: (("time", "prediction_timedelta", *spatial), pred[:, :, c], ds[v].attrs)
            for c, v in enumerate(names)
        },
        coords=coords,
    )
    out.attrs = {
        "Conventions": "CF-1.8",
        "title": "hybrid forecasts",
        "source": "hybrid evaluate",
    }
    for v in ("time", "prediction_timedelta"):
        out[v].encoding["dtype"] = "float64"
    return out


def metrics_dataset(report: dict) -> xr.Dataset:
    """``metrics.json``'s per-variable tables as NetCDF: ``<metric>(method, variable, lead_time)``,
    NaN where a method has no such score (the climatology's own ACC)."""
    names, methods = list(report["variables"]), list(report["rmse"])
    nan = [np.nan] * len(report["lead_time_s"])
    data = {}
    for key in report["variables"][names[0]]:
        table = [[report["variables"][v][key].get(m, nan) for v in names] for m in methods]
        data[key] = (("method", "variable", "lead_time"), np.array(table))
    coords = {"method": methods, "variable": names, "lead_time": report["lead_time_s"]}
    return xr.Dataset(data, coords=coords, attrs={"lead_time_units": "s"})


def write_outputs(out: Path, report: dict, fc: xr.Dataset, f: Forecasts, overwrite: bool) -> Path:
    """Write everything into a temporary folder beside ``out``, then move it into place."""
    from hybrid import plots

    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (tmp / "metrics.json").write_text(json.dumps(report, indent=2))
        metrics_dataset(report).to_netcdf(tmp / "metrics.nc")
        fc.to_netcdf(tmp / "forecast.nc")
        plots.plot_error_by_lead(report, tmp / "error_by_lead.png")
        plots.plot_forecast_maps(
            f.truth, f.methods["model"], f.t, list(report["variables"]), tmp / "forecast_maps.png"
        )
        if report["parameters"]:
            plots.plot_parameters(report, tmp / "parameters.png")
        (tmp / "summary.md").write_text(summary_markdown(report))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out


def summary_markdown(report: dict) -> str:
    """A short Markdown table: RMSE at a few leads per method, and the learned parameters."""
    leads = report["lead_time_s"]
    picks = sorted({1, len(leads) // 2, len(leads) - 1} & set(range(len(leads))))
    lines = [
        "| method | " + " | ".join(f"RMSE @ {leads[k]:.4g} s" for k in picks) + " |",
        "| --- |" + " --- |" * len(picks),
    ]
    for m, r in report["rmse"].items():
        lines.append(f"| {m} | " + " | ".join(f"{r[k]:.4g}" for k in picks) + " |")
    if report["parameters"]:
        lines += [
            "",
            "| parameter | learned | true | relative error |",
            "| --- | --- | --- | --- |",
        ]
        for k, v in report["parameters"].items():
            true = report["true_parameters"].get(k)
            err = report["parameter_error"].get(k)
            lines.append(
                f"| {k} | {v:.6g} | {'' if true is None else f'{true:.6g}'} | "
                f"{'' if err is None else f'{err:.2%}'} |"
            )
    return "\n".join(lines) + "\n"


def evaluate(
    ckpt_path: str,
    output: str,
    *,
    data_path: str | None = None,
    lead_steps: int | None = None,
    batch_size: int = 64,
    overwrite: bool = False,
) -> dict:
    """Evaluate a checkpoint; returns the ``metrics.json`` report."""
    if not Path(ckpt_path).exists():
        raise ValueError(f"{ckpt_path}: no such checkpoint")
    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    model_data = checkpoint.get("datamodule_hyper_parameters")
    clim_state = checkpoint.get(TrajectoryDataModule.__qualname__) or {}
    if not model_data:
        raise ValueError(f"{ckpt_path}: no data settings in the checkpoint (not a hybrid fit run)")
    model = HybridModule.load_from_checkpoint(ckpt_path, map_location="cpu")
    windows, ds, times = test_windows(model_data, data_path, lead_steps)
    names = list(model_data["variables"])
    check_compatible(model, ds, names)
    f = forecast(model, windows, batch_size)
    clim = climatology_forecast(clim_state, times, windows) if clim_state else None
    if clim is not None:
        f.methods["climatology"] = clim
    weights = metrics.cell_weights(grid_from_dataset(ds, names[0]))
    report = {
        "lead_time_s": f.t.tolist(),
        **score(f, weights, names, clim),
        **parameters_report(model, ds.attrs),
        **correction_size(model, f.truth),
        "n_forecasts": len(f.starts),
    }
    report["model_beats"] = beats(report["rmse"])
    write_outputs(Path(output), report, forecast_dataset(f, ds, times, names), f, overwrite)
    return report
