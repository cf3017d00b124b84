"""The flow estimator on the moving-flow data, trained to convergence (slow: ~15 min, 2 CPUs).

Trains configs/moving_flow/flow.yaml, constant_velocity.yaml and unet.yaml (the data-only
baseline) on the full protocol, then scores every test window's forecast from its 4th frame (the
estimator reads frames 1-4) at leads 0-10 (3 h steps), for those and persistence, on the same
starts; and the estimated velocity against the true one. Also a script:

    PYTHONPATH=. python tests/test_flow_study.py [--epochs 120] [--root runs/flow_study]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch
import xarray as xr

from hybrid.cli import main
from hybrid.data.io import write_netcdf
from hybrid.data.protocols import build
from hybrid.data.simulate import simulate_dataset
from hybrid.flow import flow_scores, gradient_mask, observe_past
from hybrid.models.flow import FlowEstimator
from hybrid.train import HybridModule

ROOT = Path(__file__).resolve().parents[1]
FRAMES, LEADS = 4, 10
WINDOW = FRAMES + LEADS  # frames of each test window


def simulate_files(root: Path) -> tuple[str, str]:
    paths = []
    for split in ("train", "test"):
        path = root / f"{split}.nc"
        if not path.exists():
            write_netcdf(simulate_dataset(build("moving_flow"), split, progress=False), path)
        paths.append(str(path))
    return paths[0], paths[1]


def fit(config: str, root: Path, train: str, test: str, *extra: str) -> HybridModule:
    out = root / Path(config).stem
    main(
        ["fit", "--config", str(ROOT / config), "--data.path", train, "--data.test_path", test,
         "--trainer.default_root_dir", str(out), "--trainer.logger=false",
         "--trainer.enable_progress_bar=false", "--trainer.accelerator=cpu", *extra]
    )  # fmt: skip
    ckpt = max(out.rglob("last.ckpt"), key=lambda p: p.stat().st_mtime)
    return HybridModule.load_from_checkpoint(ckpt, map_location="cpu").eval()


def windows_of(test: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every ``WINDOW``-frame window of the test file: ``t [N, W]``, ``c [N, W, 1, ny, nx]`` and
    the true velocity at each window's last observed frame, ``u, v [N, ny, nx]``."""
    ds = xr.open_dataset(test)
    c, u, v = (torch.tensor(ds[k].values, dtype=torch.float32) for k in ("c", "u", "v"))
    starts = range(c.shape[1] - WINDOW + 1)
    windows = torch.stack([c[:, s : s + WINDOW] for s in starts], 1).flatten(0, 1)[:, :, None]
    at = FRAMES - 1
    u0 = torch.stack([u[:, s + at] for s in starts], 1).flatten(0, 1)
    v0 = torch.stack([v[:, s + at] for s in starts], 1).flatten(0, 1)
    t = (torch.arange(WINDOW) * 3 * 3600.0).expand(windows.shape[0], WINDOW)
    return t, windows, u0, v0


@torch.no_grad()
def forecast(model: HybridModule, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """RMSE per lead ``[LEADS + 1]`` of the model's forecasts from each window's 4th frame."""
    tt, yy = observe_past(model.field, model.grid, t, y)
    if yy.shape[1] == WINDOW:  # the model reads no past: start it from the same frame
        tt, yy = tt[:, FRAMES - 1 :] - tt[:, FRAMES - 1 : FRAMES], yy[:, FRAMES - 1 :]
    pred = model(yy[:, 0], tt[0])
    return (pred - yy).square().mean((0, 2, 3, 4)).sqrt()


def study(root: Path, epochs: int = 40) -> dict:
    """Simulate the protocol into ``root``, train the three configs there, and :func:`score`."""
    root.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    train, test = simulate_files(root)
    flow = fit("configs/moving_flow/flow.yaml", root, train, test, f"--trainer.max_epochs={epochs}")
    const = fit("configs/moving_flow/constant_velocity.yaml", root, train, test)
    unet = fit("configs/moving_flow/unet.yaml", root, train, test)
    return score(flow, const, unet, test)


def score(flow: HybridModule, const: HybridModule, unet: HybridModule, test: str) -> dict:
    """RMSE per lead of each method from the same starts, and the flow's scores."""
    t, y, u, v = windows_of(test)
    rmse = {
        "flow": forecast(flow, t, y),
        "constant_velocity": forecast(const, t, y),
        "unet (data only)": forecast(unet, t, y),
    }
    last = y[:, FRAMES - 1]
    rmse["persistence"] = (y[:, FRAMES - 1 :] - last[:, None]).square().mean((0, 2, 3, 4)).sqrt()
    estimator = next(m for m in flow.modules() if isinstance(m, FlowEstimator))
    with torch.no_grad():
        observe_past(flow.field, flow.grid, t, y)
        u_hat, v_hat = (w[:, 0] for w in estimator())
    mask = gradient_mask(last[:, 0], flow.grid)
    speed = {
        "estimated": float((u_hat.square() + v_hat.square()).mean().sqrt()),
        "true": float((u.square() + v.square()).mean().sqrt()),
    }
    return {
        "rmse": {k: r.tolist() for k, r in rmse.items()},
        "flow": flow_scores(u_hat, v_hat, u, v, flow.grid, mask),
        "flow_all_cells": flow_scores(u_hat, v_hat, u, v, flow.grid),
        "rms_speed": speed,
        "kappa": {"flow": float(flow.physics.kappa.detach()),
                  "constant_velocity": float(const.physics.kappa.detach())},
        "n_forecasts": int(y.shape[0]),
    }  # fmt: skip


@pytest.mark.slow
def test_flow_estimator_beats_the_baselines_on_moving_flow(tmp_path):
    result = study(tmp_path)
    assert result["flow"]["correlation"] >= 0.9
    rmse = {k: torch.tensor(v) for k, v in result["rmse"].items()}
    for baseline in ("persistence", "constant_velocity", "unet (data only)"):
        assert (rmse["flow"][1:] < rmse[baseline][1:]).all(), (baseline, result["rmse"])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--root", type=Path, default=ROOT / "runs" / "flow_study")
    parser.add_argument(
        "--ckpts", nargs=3, metavar=("FLOW", "CONSTANT", "UNET"), help="score these instead"
    )
    parser.add_argument("--test", default="data/generated/moving_flow/test.nc")
    args = parser.parse_args()
    if args.ckpts:
        models = [
            HybridModule.load_from_checkpoint(p, map_location="cpu").eval() for p in args.ckpts
        ]
        r = score(*models, args.test)
    else:
        r = study(args.root, args.epochs)
    print("| method | " + " | ".join(f"lead {k}" for k in range(LEADS + 1)) + " |")
    print("| --- |" + " --- |" * (LEADS + 1))
    for name, values in r["rmse"].items():
        print(f"| {name} | " + " | ".join(f"{x:.4f}" for x in values) + " |")
    for key in ("flow", "flow_all_cells", "rms_speed", "kappa", "n_forecasts"):
        print(key, r[key])
