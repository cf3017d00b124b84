"""Matplotlib figures. Each function takes data, writes one PNG and returns its path."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402


def _save(fig: plt.Figure, path: str | os.PathLike) -> Path:
    """Save atomically (temporary name, then rename) and close."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
    return path


def plot_dataset(ds: xr.Dataset, path: str | os.PathLike, *, sample: int = 0) -> Path:
    """Overview of a trajectory dataset: snapshots of each field of one sample at four times,
    or, for ODE states, every variable against time for a few samples."""
    names = list(ds.data_vars)
    seconds = (ds["time"] - ds["time"][0]).values / np.timedelta64(1, "s")
    if ds[names[0]].ndim == 2:  # (sample, time): an ODE
        fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.2), squeeze=False)
        for ax, name in zip(axes[0], names, strict=False):
            ax.plot(seconds, ds[name].isel(sample=slice(0, 8)).values.T, lw=1)
            ax.set(xlabel="time", ylabel=f"{name} [{ds[name].attrs.get('units', '')}]")
        return _save(fig, path)
    if ds[names[0]].ndim == 3:  # (sample, time, x): a Hovmöller diagram
        return _save(_hovmoller(ds, names, seconds, sample), path)
    frames = np.linspace(0, ds.sizes["time"] - 1, 4).astype(int)
    fig, axes = plt.subplots(len(names), 4, figsize=(13, 3 * len(names)), squeeze=False)
    for row, name in zip(axes, names, strict=False):
        field = ds[name].isel(sample=sample)
        lo, hi = float(field.min()), float(field.max())
        for ax, k in zip(row, frames, strict=False):
            im = ax.imshow(
                field.isel(time=k).values, origin="lower", vmin=lo, vmax=hi, cmap="RdBu_r"
            )
            ax.set_title(f"{name}, t = {seconds[k]:.4g} s", fontsize=9)
            ax.set_xticks([]), ax.set_yticks([])
        fig.colorbar(im, ax=row.tolist(), shrink=0.8, label=ds[name].attrs.get("units", ""))
    return _save(fig, path)


def _hovmoller(ds: xr.Dataset, names: list[str], seconds: np.ndarray, sample: int) -> plt.Figure:
    """Time (up) against the one spatial dim (across), one panel per variable."""
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 5), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        field = ds[name].isel(sample=sample)  # [time, x]
        x = ds[field.dims[-1]].values
        extent = (x[0], x[-1], seconds[0] / 86400, seconds[-1] / 86400)
        im = ax.imshow(field.values, origin="lower", aspect="auto", extent=extent, cmap="RdBu_r")
        ax.set(xlabel=field.dims[-1], ylabel="time [days]", title=name)
        fig.colorbar(im, ax=ax, shrink=0.8, label=ds[name].attrs.get("units", ""))
    return fig


def plot_error_by_lead(report: dict, path: str | os.PathLike) -> Path:
    """RMSE against lead time, one line per method (model and baselines), one panel per variable."""
    lead = np.array(report["lead_time_s"])
    unit, scale = _time_unit(lead[-1])
    names = list(report["variables"])
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        for method, rmse in report["variables"][name]["rmse"].items():
            ax.plot(
                lead / scale,
                rmse,
                marker="o",
                ms=3,
                label=method,
                lw=2.2 if method == "model" else 1.2,
            )
        ax.set(xlabel=f"lead time [{unit}]", ylabel=f"RMSE of {name}", title=name)
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(fig, path)


def plot_forecast_maps(
    truth, pred, t, names: list[str], path: str | os.PathLike, *, sample: int = 0
) -> Path:
    """Truth, forecast and error of one forecast at three leads, per variable (fields only);
    for ODE states, the forecast and true trajectories of a few starts."""
    truth, pred, t = np.asarray(truth), np.asarray(pred), np.asarray(t)
    unit, scale = _time_unit(t[-1])
    if truth.ndim == 3:  # [N, L, C]: ODE states
        fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.4), squeeze=False)
        for c, (ax, name) in enumerate(zip(axes[0], names, strict=True)):
            for n in range(min(4, truth.shape[0])):
                (line,) = ax.plot(t / scale, truth[n, :, c], lw=1)
                ax.plot(t / scale, pred[n, :, c], "--", color=line.get_color(), lw=1)
            ax.set(xlabel=f"lead time [{unit}]", ylabel=name, title=f"{name}: truth — forecast --")
        return _save(fig, path)
    leads = sorted({1, len(t) // 2, len(t) - 1})
    if truth.ndim == 4:  # [N, L, C, nx]: a 1-D grid
        return _save(_profiles(truth, pred, t, names, leads, sample), path)
    fig, axes = plt.subplots(
        3 * len(names), len(leads), squeeze=False, figsize=(3.4 * len(leads), 9 * len(names))
    )
    for c, name in enumerate(names):
        lo, hi = truth[sample, :, c].min(), truth[sample, :, c].max()
        err = np.abs(pred[sample, :, c] - truth[sample, :, c]).max()
        for j, k in enumerate(leads):
            panels = (
                ("truth", truth[sample, k, c], lo, hi, "viridis"),
                ("forecast", pred[sample, k, c], lo, hi, "viridis"),
                ("error", pred[sample, k, c] - truth[sample, k, c], -err, err, "RdBu_r"),
            )
            for i, (label, field, vmin, vmax, cmap) in enumerate(panels):
                ax = axes[3 * c + i, j]
                im = ax.imshow(field, origin="lower", vmin=vmin, vmax=vmax, cmap=cmap)
                ax.set_title(f"{name} {label}, lead {t[k] / scale:.3g} {unit}", fontsize=8)
                ax.set_xticks([]), ax.set_yticks([])
                fig.colorbar(im, ax=ax, shrink=0.7)
    return _save(fig, path)


def _profiles(truth, pred, t, names: list[str], leads: list[int], sample: int) -> plt.Figure:
    """Truth (solid) and forecast (dashed) along a 1-D grid at a few leads, per variable."""
    unit, scale = _time_unit(t[-1])
    fig, axes = plt.subplots(1, len(names), figsize=(6 * len(names), 3.6), squeeze=False)
    for c, (ax, name) in enumerate(zip(axes[0], names, strict=True)):
        for k in leads:
            (line,) = ax.plot(truth[sample, k, c], lw=1, label=f"lead {t[k] / scale:.3g} {unit}")
            ax.plot(pred[sample, k, c], "--", color=line.get_color(), lw=1)
        ax.set(xlabel="cell", ylabel=name, title=f"{name}: truth — forecast --")
        ax.legend(fontsize=8)
    return fig


def plot_parameters(report: dict, path: str | os.PathLike) -> Path:
    """Learned physical parameters relative to the true ones (or their values if unknown)."""
    names = list(report["parameters"])
    true = report.get("true_parameters", {})
    ratio = [report["parameters"][k] / true[k] if true.get(k) else np.nan for k in names]
    fig, ax = plt.subplots(figsize=(1.2 * len(names) + 3, 3.2))
    ax.bar(names, ratio, color="tab:blue")
    ax.axhline(1.0, color="k", lw=1, ls="--")
    ax.set(ylabel="learned / true", title="physical parameters")
    for i, k in enumerate(names):
        ax.annotate(f"{report['parameters'][k]:.4g}", (i, 0), ha="center", va="bottom", fontsize=8)
    return _save(fig, path)


def plot_flow(
    field, u, v, path: str | os.PathLike, *, true_flow=None, stride: int | None = None
) -> Path:
    """A tracer field ``[ny, nx]`` with the estimated flow ``(u, v)`` as arrows (and the true one,
    when given, in a second panel on the same arrow scale)."""
    field, u, v = (np.asarray(a) for a in (field, u, v))
    if field.ndim == 1:  # a 1-D grid: the tracer and the speed along it
        return _save(_flow_profile(field, u, true_flow), path)
    panels = [("estimated flow", u, v)]
    if true_flow is not None:
        panels.append(("true flow", *(np.asarray(a) for a in true_flow)))
    ny, nx = field.shape
    step = stride or max(1, max(ny, nx) // 16)
    jj, ii = np.mgrid[0:ny:step, 0:nx:step]
    scale = max(float(np.sqrt(a**2 + b**2).max()) for _, a, b in panels) * max(ny, nx) / step / 1.5
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.4), squeeze=False)
    for ax, (title, a, b) in zip(axes[0], panels, strict=True):
        ax.imshow(field, origin="lower", cmap="viridis")
        ax.quiver(ii, jj, a[::step, ::step], b[::step, ::step], scale=scale or 1.0, color="w")
        ax.set_title(f"{title} (max {np.sqrt(a**2 + b**2).max():.3g} m/s)", fontsize=9)
        ax.set_xticks([]), ax.set_yticks([])
    return _save(fig, path)


def _flow_profile(field: np.ndarray, u: np.ndarray, true_flow) -> plt.Figure:
    """The tracer ``[nx]`` and the estimated (and true) speed ``u`` along a 1-D grid."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 5), sharex=True)
    top.plot(field, color="k", lw=1)
    top.set(ylabel="tracer", title="tracer at the forecast's start")
    bottom.plot(u, label="estimated u")
    if true_flow is not None:
        bottom.plot(np.asarray(true_flow[0]), "--", label="true u")
    bottom.set(xlabel="cell", ylabel="u [m/s]")
    bottom.legend(fontsize=8)
    return fig


def _time_unit(seconds: float) -> tuple[str, float]:
    """A readable unit for a time span: s, h or days."""
    if seconds >= 3 * 86400:
        return "days", 86400.0
    if seconds >= 3 * 3600:
        return "h", 3600.0
    return "s", 1.0
