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
