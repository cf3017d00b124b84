"""``hybrid environments fit`` and ``evaluate-environments`` (every config of ``configs/leads/``
fits one batch in ``tests/test_configs.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hybrid.cli import main
from hybrid.data.environments import simulate_environments
from hybrid.data.io import write_netcdf
from hybrid.data.protocols import build

LEADS = Path(__file__).resolve().parents[1] / "configs" / "leads"


@pytest.fixture(scope="module")
def lv_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("lv_cli")
    spec = build("lotka_volterra")
    for env in spec.environments:
        env.solver = {"method": "dopri5", "rtol": 1e-7, "atol": 1e-7}
    return [
        str(write_netcdf(simulate_environments(spec, s, n_samples=n), root / f"lv_{s}.nc"))
        for s, n in (("train", 1), ("test", 2))
    ]


def test_fit_then_evaluate_per_environment(lv_files, tmp_path):
    config = str(LEADS / "lv_leads.yaml")
    data = ["--data.path", lv_files[0], "--data.test_path", lv_files[1]]
    main(["environments", "fit", "--config", config, *data, "--trainer.max_epochs", "2",
          "--trainer.default_root_dir", str(tmp_path)])  # fmt: skip
    ckpt = next(tmp_path.rglob("last.ckpt"))
    torch.load(ckpt, weights_only=True)
    out = tmp_path / "eval.json"
    main(["evaluate-environments", "--ckpt_path", str(ckpt), "--output", str(out)])
    report = json.loads(out.read_text())
    assert len(report["mse_per_environment"]) == 10
    assert report["mse"] == pytest.approx(sum(report["mse_per_environment"]) / 10)
    assert report["true_parameters"]["alpha"][3] == 1.0


def test_data_without_environments_is_one_clear_error(tiny_nc, tmp_path, capsys):
    train, _ = tiny_nc("pendulum", n=2, n_test=1)
    config = str(LEADS / "lv_leads.yaml")
    with pytest.raises(SystemExit, match="has no `environment` dimension"):
        main(["environments", "fit", "--config", config, "--data.path", train,
              "--data.variables", "[theta, omega]", "--trainer.max_epochs", "1",
              "--trainer.default_root_dir", str(tmp_path)])  # fmt: skip
