"""Lazy reading: training on a multi-file archive never holds the archive in memory."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import xarray as xr

NT, NY, NX, FILES = 400, 256, 256, 3  # 3 files x 105 MB = 315 MB of float32

CHILD = textwrap.dedent("""
    import resource, sys
    import lightning.pytorch as pl, torch
    from hybrid.data.datamodule import TrajectoryDataModule
    from hybrid.physics.advection_diffusion import AdvectionDiffusion
    from hybrid.train import HybridModule

    torch.set_num_threads(1)
    dm = TrajectoryDataModule(sys.argv[1], ["c"], window=3, stride=3, batch_size=4,
                              max_memory_mb=8)
    model = HybridModule(AdvectionDiffusion(dm.grid, kappa=100.0))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
               enable_progress_bar=False, enable_model_summary=False).fit(model, dm)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print("GROWTH_KB", after - before, "WINDOWS", len(dm.splits["train"]))
""")


def _write_archive(folder) -> int:
    """Three hourly files of a drifting field; returns the archive's size in bytes."""
    x = np.arange(NX) * 1e4
    for k in range(FILES):
        hours = pd.date_range("2000-01-01", periods=NT, freq="h") + pd.Timedelta(hours=NT * k)
        phase = (np.arange(NT) + NT * k)[:, None, None] * 0.01
        c = np.sin(2 * np.pi * x[None, None, :] / x[-1] + phase) + np.zeros((NT, NY, NX))
        xr.Dataset(
            {"c": (("time", "y", "x"), c.astype(np.float32), {"units": "1"})},
            coords={
                "time": hours,
                "y": ("y", x, {"units": "m"}),
                "x": ("x", x, {"units": "m", "periodic": 1}),
            },
        ).to_netcdf(folder / f"part{k}.nc")
    return NT * NY * NX * 4 * FILES


def test_one_epoch_stays_within_a_memory_budget(tmp_path):
    """Peak memory grows by well under the archive's size while every window is read once
    (statistics, masks and an epoch of training all stream)."""
    size = _write_archive(tmp_path)
    run = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path / "part*.nc")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    fields = run.stdout.split()
    growth = int(fields[fields.index("GROWTH_KB") + 1]) * 1024
    windows = int(fields[fields.index("WINDOWS") + 1])
    assert windows == (FILES * NT * 0.8 - 3) // 3 + 1  # the whole training split was seen
    assert growth < 0.5 * size, f"peak memory grew by {growth / 2**20:.0f} MiB"
