"""Scores per environment: the MSE of whole test trajectories rolled out from their first frame
(LEADS's test metric), and the learned physical parameters beside the true ones."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor

from hybrid.data.environments import EnvironmentDataModule
from hybrid.environments.layout import by_environment
from hybrid.environments.module import EnvironmentModule
from hybrid.physics.parameters import physical_parameters


@torch.no_grad()
def mse_per_environment(model: EnvironmentModule, dm: EnvironmentDataModule) -> Tensor:
    """``[E]``: plain MSE over the test trajectories of each environment (all frames, channels
    and cells, from the first frame on)."""
    dm.setup()
    sums, count = torch.zeros(model.n_environments, dtype=torch.float64), 0
    for t, y in dm.test_dataloader():  # [E*b, W], [E*b, W, C, *grid]
        pred = model(y[:, 0], t[0])
        err = by_environment((pred - y).square(), model.n_environments)  # [E, b, W, ...]
        sums += err.flatten(2).mean(2).sum(1).double()
        count += err.shape[1]
    return sums / count


def restore(
    ckpt_path: str | Path, data_path: str | None
) -> tuple[EnvironmentModule, EnvironmentDataModule]:
    """The model and data module of a run (``weights_only`` loads), tested on ``data_path``."""
    if not Path(ckpt_path).exists():
        raise ValueError(f"{ckpt_path}: no such checkpoint")
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    if "path" not in (ckpt.get("datamodule_hyper_parameters") or {}):
        raise ValueError(f"{ckpt_path}: no data settings (not a `hybrid environments fit` run)")
    overrides = {"test_path": data_path} if data_path else {}
    dm = EnvironmentDataModule.load_from_checkpoint(ckpt_path, map_location="cpu", **overrides)
    model = EnvironmentModule.load_from_checkpoint(ckpt_path, map_location="cpu")
    return model.eval(), dm


def evaluate_environments(ckpt_path: str | Path, data_path: str | None = None) -> dict:
    """``{"mse": all, "mse_per_environment": [E], "parameters": {...}, "true_parameters"}``."""
    model, dm = restore(ckpt_path, data_path)
    per_env = mse_per_environment(model, dm)
    params = {k: v.tolist() for k, v in physical_parameters(model.field).items() if v.numel() <= 64}
    return {
        "mse": float(per_env.mean()),
        "mse_per_environment": per_env.tolist(),
        "parameters": params,
        "true_parameters": {k: v.tolist() for k, v in dm.true_parameters().items()},
        "n_environments": model.n_environments,
    }


def write_report(report: dict, output: str | Path) -> Path:
    """``report`` as JSON at ``output`` (parents made)."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=1))
    return output
