"""Lazy reading: training on a multi-file archive never holds the archive in memory.

Measured as the scaling of the peak: a child process reads its own peak resident set
(``VmHWM``, reset after the imports through ``/proc/self/clear_refs``; ``ru_maxrss`` would
not do, Linux carries it over from the forking parent) while it computes the statistics and
masks and trains one epoch, once on one file and once on four. If the data streamed through
memory, the two peaks differ by far less than the three extra files; if any stage held the
archive, they would differ by about their size.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import xarray as xr

NT, NY, NX, FILES = 150, 256, 256, 4  # 4 files x 39 MB of float32

CHILD = textwrap.dedent("""
    import re, sys
    import lightning.pytorch as pl, torch
    from hybrid.data.datamodule import TrajectoryDataModule
    from hybrid.physics.advection_diffusion import AdvectionDiffusion
    from hybrid.train import HybridModule

    def resident(key):
        status = open("/proc/self/status").read()
        return int(re.search(key + r":\\s+(\\d+) kB", status).group(1)) * 1024

    torch.set_num_threads(1)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # the peak restarts from the current resident set
    start = resident("VmRSS")
    dm = TrajectoryDataModule(sys.argv[1], ["c"], window=3, stride=3, batch_size=4,
                              max_memory_mb=8)
    model = HybridModule(AdvectionDiffusion(dm.grid, kappa=100.0))
    pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
               enable_progress_bar=False, enable_model_summary=False).fit(model, dm)
    print("GROWTH", resident("VmHWM") - start, "WINDOWS", len(dm.splits["train"]))
""")


def _write_archive(folder) -> int:
    """``FILES`` hourly files of a drifting field; returns one file's size in bytes."""
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
    return NT * NY * NX * 4


def _start(pattern: str) -> subprocess.Popen:
    """One child on the files matching ``pattern``; both children run at once (each measures
    its own peak), so that on two cores the second costs no extra wall time."""
    command = [sys.executable, "-c", CHILD, pattern]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _peak_growth(child: subprocess.Popen, files: int) -> int:
    out, err = child.communicate(timeout=600)
    assert child.returncode == 0, err[-2000:]
    fields = out.split()
    windows = int(fields[fields.index("WINDOWS") + 1])
    assert windows == (files * NT * 0.8 - 3) // 3 + 1  # the whole training split was seen
    return int(fields[fields.index("GROWTH") + 1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_one_epoch_stays_within_a_memory_budget(tmp_path):
    """Statistics, masks and an epoch of training on four files peak within half of three files'
    size of the same on one file: memory does not grow with the archive. Half is the midpoint of
    the two hypotheses: streaming adds nothing per file (measured 0.10 of their size), holding
    the archive adds at least the files themselves (measured 1.24 with everything loaded); the
    fixed costs (dask's thread pool, the allocator's arenas) vary by some 10-30 MB from run to
    run, which a quarter (29 MB) did not always absorb inside the full suite."""
    file_size = _write_archive(tmp_path)
    children = _start(str(tmp_path / "part0.nc")), _start(str(tmp_path / "part*.nc"))
    try:
        one, four = _peak_growth(children[0], 1), _peak_growth(children[1], FILES)
    finally:
        for child in children:  # a no-op for a finished child
            child.kill()
            child.wait()
    extra = (FILES - 1) * file_size
    assert four - one < 0.5 * extra, f"{(four - one) / 2**20:.0f} MiB more for 4 files than 1"
