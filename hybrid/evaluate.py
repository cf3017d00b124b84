"""``hybrid evaluate``: forecasts from every test start over all leads, scored against baselines.

Writes into ``DIR`` (atomically: built in a temporary folder beside it, then renamed; an existing
``DIR`` is replaced only with ``overwrite``): ``metrics.json`` (the schema of DESIGN.md),
``metrics.nc``, ``forecast.nc`` (CF-1.8, dims ``time`` = initialisation and
``prediction_timedelta`` = lead, then the data's spatial dims), PNG plots and ``summary.md``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
import xarray as xr
from lightning.pytorch.callbacks import BasePredictionWriter
from torch import Tensor

from hybrid import metrics
from hybrid.data.climatology import climatology_at
from hybrid.data.datamodule import TrajectoryDataModule
from hybrid.data.io import replacing, spatial_dims
from hybrid.data.trajectories import LazyTrajectories
from hybrid.data.windows import TrajectoryWindows
from hybrid.flow import ReadsPast
from hybrid.models.forced import give_forcings, reads_forcing
from hybrid.models.seasonal import give_dates, reads_date
from hybrid.physics.parameters import scalar_parameters
from hybrid.train import HybridModule


@dataclass
class Forecasts:
    """Forecasts ``[N, L, C, *grid]`` of each method from the same ``N`` starts (truth included),
    with ``t``: ``[L]`` lead times (s), and where each start is (``sample``, ``start`` frame).
    For a model of anomalies, ``offset`` is the climatology ``c`` ``[N, L, C, *grid]`` that was
    added to its states (:func:`in_physical_units`); None otherwise."""

    truth: Tensor
    methods: dict[str, Tensor]
    t: Tensor
    starts: list[tuple[int, int]]
    offset: Tensor | None = None

    def model_states(self) -> Tensor:
        """The true states as the model saw them: ``truth - offset`` for anomalies."""
        return self.truth if self.offset is None else self.truth - self.offset


def in_physical_units(f: Forecasts, clim: Tensor) -> Forecasts:
    """Forecasts of anomalies ``a`` as forecasts of the state ``y = c + a``: the truth and
    every forecast of the model get the climatology ``clim`` ``[N, L, C, *grid]`` added back,
    and persistence becomes the state's own, ``y(t0)`` (not ``c(t) + a(t0)``), so that the
    baselines are those of a model of the state."""
    truth = f.truth + clim
    methods = {k: v + clim for k, v in f.methods.items() if k != "persistence"}
    methods["persistence"] = truth[:, :1].expand_as(truth)
    return Forecasts(truth, methods, f.t, f.starts, clim)


def restore(
    ckpt_path: str | Path, data_path: str | None, lead_steps: int | None, batch_size: int
) -> tuple[HybridModule, TrajectoryDataModule]:
    """The model and its data module as the run saved them (``weights_only`` loads), with the
    test split on ``data_path`` (all its windows) when given, and windows of ``lead_steps + 1``
    frames when given."""
    if not Path(ckpt_path).exists():
        raise ValueError(f"{ckpt_path}: no such checkpoint")
    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    if not checkpoint.get("datamodule_hyper_parameters"):
        raise ValueError(f"{ckpt_path}: no data settings in the checkpoint (not a hybrid fit run)")
    overrides = {"batch_size": batch_size}
    if data_path:
        overrides["test_path"] = data_path
    if lead_steps:
        overrides["eval_window"] = lead_steps + 1
    dm = TrajectoryDataModule.load_from_checkpoint(ckpt_path, map_location="cpu", **overrides)
    model = HybridModule.load_from_checkpoint(ckpt_path, map_location="cpu")
    return model, dm


class ForecastWriter(BasePredictionWriter):
    """Collects ``predict_step``'s forecasts; at the end of the epoch, holds them as
    :class:`Forecasts` and writes the model's as CF NetCDF to ``path`` (``forecast.nc``)."""

    def __init__(
        self,
        path: Path,
        windows: TrajectoryWindows,
        times: xr.DataArray,
        ds: xr.Dataset,
        names: list[str],
        offset: Tensor | None = None,
    ) -> None:
        super().__init__(write_interval="epoch")
        self.path, self.windows, self.times, self.ds, self.names = path, windows, times, ds, names
        # [N, W, C, *grid]: the climatology, when the model forecasts anomalies
        self.offset = offset
        self.forecasts: Forecasts | None = None

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices) -> None:
        stacked = {k: torch.cat([p[k] for p in predictions]) for k in predictions[0]}
        truth = stacked.pop("truth")
        t = self.windows[0][0].double()  # [L] lead times (s), from 0
        past = len(t) - truth.shape[1]  # frames a flow estimator read before each forecast
        starts = [(n, s + past) for n, s in self.windows.index]
        self.forecasts = Forecasts(truth, stacked, t[past:] - t[past], starts)
        if self.offset is not None:
            self.forecasts = in_physical_units(self.forecasts, self.offset[:, past:])
        forecast_dataset(self.forecasts, self.ds, self.times, self.names).to_netcdf(self.path)


def forecast(model: HybridModule, dm: TrajectoryDataModule, path: Path) -> Forecasts:
    """Roll the model, the prior alone (correction off) and persistence from every test window
    start through ``trainer.predict``; the model's forecasts are written to ``path``, in the
    state's units (climatology added back) when the model forecasts anomalies. A model that
    reads forcings is driven by the test file's forcing over the whole lead (prescribed, as in
    a reanalysis-driven or scenario run: :mod:`hybrid.models.forced`)."""
    dm.setup("predict")
    if "test" not in dm.splits:
        raise ValueError("the run has no test split: pass --data_path FILE to evaluate on")
    ds, windows, times = dm.test_source(), dm.splits["test"], dm.split_times["test"]
    offset = climatology_forecast(dm.climatology, times, windows) if dm.anomaly else None
    writer = ForecastWriter(path, windows, times, ds, dm.variables, offset)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        callbacks=[writer],
        enable_checkpointing=False,
        enable_model_summary=False,
    )
    trainer.predict(model, datamodule=dm, return_predictions=False)
    return writer.forecasts


def climatology_forecast(state: dict, times: xr.DataArray, windows: TrajectoryWindows) -> Tensor:
    """The training climatology at each window's target dates, ``[N, L, C, *grid]``; NaN only at
    cells never observed (land), read as 0 like the truth there."""
    clim = climatology_at(state, times)  # [T, C, *grid]
    frames = torch.tensor([s for _, s in windows.index])[:, None] + torch.arange(windows.window)
    return clim[frames].nan_to_num(0.0)


def damped_persistence(state: dict, clim: Tensor, truth: Tensor) -> Tensor | None:
    """``c(t0 + l) + ρ_l (y(t0) - c(t0))``: the initial anomaly damped by its lag-``l`` regression
    on the training period (``state["damping"]``: ``[lags + 1, C]``); ``clim``, ``truth``:
    ``[N, L, C, *grid]``. None when the training run stored fewer lags than the forecast needs."""
    rho = state.get("damping")
    leads = clim.shape[1]
    if rho is None or rho.shape[0] < leads:
        return None
    rho = rho[:leads].view(1, leads, -1, *[1] * (clim.ndim - 3))  # [1, L, C, 1, ...]
    return clim + rho * (truth[:, :1] - clim[:, :1])


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


def forecast_dates(model: HybridModule, windows, f: Forecasts) -> None:
    """Hand a correction that reads the date the phase of the year of each forecast's first
    frame (:class:`hybrid.data.datamodule.DatedWindows`), for :func:`correction_size`."""
    if model.correction is not None and reads_date(model.correction):
        phase = windows.phase[[s for _, s in f.starts]]  # [N]
        give_dates(model.correction, phase, torch.full_like(phase, windows.year), f.t)


def forecast_forcings(model: HybridModule, windows, f: Forecasts, rows: int = 4096) -> None:
    """Hand a correction that reads forcings the test file's forcing over the leads of the
    forecasts whose states :func:`correction_size` samples (the first ``rows`` of them)."""
    if model.correction is None or not reads_forcing(model.correction):
        return
    lead = f.truth.shape[1]
    starts = f.starts[: -(-rows // lead)]
    frames = [torch.from_numpy(windows.forcing[n, slice(s, s + lead)]) for n, s in starts]
    give_forcings(model.correction, torch.stack(frames), f.t)  # [N', L, n, *grid]


def correction_size(model: HybridModule, truth: Tensor) -> dict[str, float]:
    """``‖F_a‖²`` along the true states (data units, as APHYNITY reports it) and ``‖F_a‖/‖F_p‖``;
    not the ratio for a prior that reads the past (a flow estimated per window, held only for
    the last batch's windows, cannot be applied to the stacked states)."""
    if model.correction is None:
        return {"correction_norm": 0.0}
    states = truth.flatten(0, 1)[:4096]  # [N*L, C, *grid], a bounded sample
    reads_past = model.physics is not None and any(
        isinstance(m, ReadsPast) for m in model.physics.modules()
    )
    with torch.no_grad():
        fa = model.correction(None, states)
        out = {"correction_norm": float(fa.pow(2).flatten(1).sum(1).mean())}
        if model.physics is not None and not reads_past:
            fp = model.physics(torch.zeros(()), states)
            out["correction_ratio"] = float(fa.norm() / fp.norm().clamp_min(1e-30))
    return out


def parameters_report(model: HybridModule, attrs: dict) -> dict:
    """Learned scalar physical parameters, and their relative error against ``true_<name>``."""
    learned = {} if model.physics is None else scalar_parameters(model.physics)
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


def estimated_flow(
    model: HybridModule, windows: TrajectoryWindows, batch_size: int
) -> tuple[Tensor, Tensor] | None:
    """The velocity a :class:`~hybrid.models.flow.FlowEstimator` estimates from each window's
    past frames, ``(u, v)`` each ``[N, ny, nx]`` (m/s); None when the model has none."""
    from hybrid.flow import observe_past
    from hybrid.models.flow import FlowEstimator

    estimators = [m for m in model.modules() if isinstance(m, FlowEstimator)]
    if not estimators:
        return None
    parts: list[tuple[Tensor, Tensor]] = []
    with torch.no_grad():
        for t, y in torch.utils.data.DataLoader(windows, batch_size=batch_size):
            observe_past(model.field, model.grid, t, y)
            u, *v = estimators[0]()  # v is absent on a 1-D grid: zero there
            parts.append((u[:, 0], v[0][:, 0] if v else torch.zeros_like(u[:, 0])))
    return torch.cat([u for u, _ in parts]), torch.cat([v for _, v in parts])


def velocity_dataset(dm: TrajectoryDataModule) -> xr.Dataset | None:
    """The true velocity ``u``, ``v`` of the test file (``test_path``), cut like the data; None
    when there is no test file (the test windows' samples would not be the file's) or it holds
    no ``u``, ``v`` (real data: :func:`open_trajectories` names the missing variables)."""
    from hybrid.data.io import open_trajectories

    if not dm.test_path:
        return None
    try:
        return open_trajectories(
            dm.test_path, ["u", "v"], region=dm.region, time_range=dm.time_range
        )
    except ValueError as err:
        if "u" in str(err) or "v" in str(err):
            return None
        raise


def true_flow(ds: xr.Dataset | None, starts: list[tuple[int, int]]) -> tuple[Tensor, Tensor] | None:
    """The velocity ``u``, ``v`` at each forecast's start (sample, frame) of ``ds``,
    ``[N, ny, nx]`` each, missing values as 0; None without ``ds``."""
    if ds is None:
        return None
    uv = LazyTrajectories(ds, ["u", "v"])  # missing values read as 0
    frames = torch.from_numpy(np.stack([uv[n, slice(s, s + 1)][0] for n, s in starts]))
    return frames[:, 0], frames[:, 1]  # [N, ny, nx] each


def flow_report(flow: tuple[Tensor, Tensor], f: Forecasts, ds: xr.Dataset | None, grid) -> dict:
    """The estimated flow's mean speed, and, given the true velocity ``ds``, its
    correlation and RMSE (:func:`hybrid.flow.flow_scores`) over the cells where the tracer (the
    first variable at the forecast's start) has a gradient, and over all active cells."""
    from hybrid.flow import flow_scores, gradient_mask

    u, v = flow
    out = {"mean_speed": float((u.square() + v.square()).sqrt().mean())}
    truth = true_flow(ds, f.starts)
    if truth is not None:
        mask = gradient_mask(f.truth[:, 0, 0].to(grid.area), grid)
        out.update(flow_scores(u, v, *truth, grid, mask))
        out["all_cells"] = flow_scores(u, v, *truth, grid)
    return out


def write_flow_plot(
    path: Path, flow: tuple[Tensor, Tensor], f: Forecasts, ds: xr.Dataset | None
) -> None:
    """Arrows of the estimated (and true, when known) flow over the tracer at a forecast's start."""
    from hybrid import plots

    truth = true_flow(ds, f.starts[:1])
    plots.plot_flow(
        f.truth[0, 0, 0],
        flow[0][0],
        flow[1][0],
        path,
        true_flow=None if truth is None else (truth[0][0], truth[1][0]),
    )


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
    coords.update({k: c for k, c in ds.coords.items() if c.ndim == 0})  # a circle's latitude
    out = xr.Dataset(
        {
            v: (("time", "prediction_timedelta", *spatial), pred[:, :, c], ds[v].attrs)
            for c, v in enumerate(names)
        },
        coords=coords,
    )
    out.attrs.update(Conventions="CF-1.8", title="hybrid forecasts", source="hybrid evaluate")
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


def write_outputs(tmp: Path, report: dict, f: Forecasts) -> None:
    """Everything but ``forecast.nc`` (written by :class:`ForecastWriter`) into ``tmp``."""
    from hybrid import plots

    (tmp / "metrics.json").write_text(json.dumps(report, indent=2))
    metrics_dataset(report).to_netcdf(tmp / "metrics.nc")
    plots.plot_error_by_lead(report, tmp / "error_by_lead.png")
    plots.plot_forecast_maps(
        f.truth, f.methods["model"], f.t, list(report["variables"]), tmp / "forecast_maps.png"
    )
    if report["parameters"]:
        plots.plot_parameters(report, tmp / "parameters.png")
    (tmp / "summary.md").write_text(summary_markdown(report))


def format_lead(seconds: float) -> str:
    """A lead time in the largest unit it reaches, 3 significant digits: ``10800 -> "3 h"``,
    a mean month ``2629746 -> "30.4 d"``, ``45 -> "45 s"``."""
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"


def summary_markdown(report: dict) -> str:
    """A short Markdown table: RMSE at a few leads per method, and the learned parameters."""
    leads = report["lead_time_s"]
    picks = sorted({1, len(leads) // 2, len(leads) - 1} & set(range(len(leads))))
    lines = [
        "| method | " + " | ".join(f"RMSE @ {format_lead(leads[k])}" for k in picks) + " |",
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


def predict(
    ckpt_path: str | Path,
    output: str | Path,
    *,
    data_path: str | None = None,
    lead_steps: int | None = None,
    batch_size: int = 64,
    overwrite: bool = False,
) -> Path:
    """Forecast from every test start over all leads and write them as CF NetCDF OUTPUT
    (dims ``time`` = initialisation, ``prediction_timedelta`` = lead, then the data's own).

    The ``forecast.nc`` of :func:`evaluate`, alone.

    Args:
        ckpt_path: checkpoint of a ``hybrid fit`` run.
        output: NetCDF file to write (under a temporary name, renamed at the end).
        data_path: NetCDF file(s) to forecast from (default: the run's test data).
        lead_steps: forecast length in data steps (default: the run's eval window).
        batch_size: forecasts per batch.
        overwrite: replace an existing output.
    """
    with replacing(output, overwrite) as tmp:
        forecast(*restore(ckpt_path, data_path, lead_steps, batch_size), tmp)
    return Path(output)


def evaluate(
    ckpt_path: str | Path,
    output: str | Path,
    *,
    data_path: str | None = None,
    lead_steps: int | None = None,
    batch_size: int = 64,
    overwrite: bool = False,
) -> dict:
    """Forecast from every test start over all leads, score against the baselines, and write
    ``metrics.json``, ``metrics.nc``, ``forecast.nc``, ``summary.md`` and plots into OUTPUT.

    Returns the ``metrics.json`` report.

    Args:
        ckpt_path: checkpoint of a ``hybrid fit`` run.
        output: folder to write (built beside it and renamed at the end).
        data_path: NetCDF file(s) to evaluate on (default: the run's test data).
        lead_steps: forecast length in data steps (default: the run's eval window).
        batch_size: forecasts per batch.
        overwrite: replace an existing output folder.
    """
    with replacing(output, overwrite, folder=True) as tmp:
        model, dm = restore(ckpt_path, data_path, lead_steps, batch_size)
        f = forecast(model, dm, tmp / "forecast.nc")
        windows, times = dm.splits["test"], dm.split_times["test"]
        clim = climatology_forecast(dm.climatology, times, windows) if dm.climatology else None
        if clim is not None:
            clim = clim[:, clim.shape[1] - f.truth.shape[1] :]  # from the forecasts' first frame
            f.methods["climatology"] = clim
            damped = damped_persistence(dm.climatology, clim, f.truth)
            if damped is not None:
                f.methods["damped_persistence"] = damped
        ds = dm.test_source()
        forecast_dates(model, windows, f)
        forecast_forcings(model, windows, f)
        report = {
            "lead_time_s": f.t.tolist(),
            **score(f, metrics.cell_weights(dm.grid), dm.variables, clim),
            **parameters_report(model, ds.attrs),
            **correction_size(model, f.model_states()),
            "n_forecasts": len(f.starts),
        }
        report["model_beats"] = beats(report["rmse"])
        flow = estimated_flow(model, windows, batch_size)
        if flow is not None:
            velocity = velocity_dataset(dm)
            report["flow"] = flow_report(flow, f, velocity, dm.grid)
        write_outputs(tmp, report, f)
        if flow is not None:
            write_flow_plot(tmp / "flow.png", flow, f, velocity)
    return report
