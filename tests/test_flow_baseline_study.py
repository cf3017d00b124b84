"""Issue 17 on the moving-flow data, trained to convergence (slow: five 40-epoch fits, ~1 h on 2
busy CPU cores): the flow model against the paper's data-only baseline (the next-frame U-Net),
the constant-velocity hybrid and persistence at every lead 1-10; and APHYNITY's correction on
top of the flow against the same correction under the naive sum.

Every test window (14 frames) is forecast from its 4th frame by every method (the flow model and
the next-frame U-Net read frames 1-4); ``‖F_a‖²/‖F_p‖²`` is summed over the true states of those
forecasts, with the flow each window's past gives. Also a script:

    PYTHONPATH=. python tests/test_flow_baseline_study.py [--root runs/flow_baseline]
    PYTHONPATH=. python tests/test_flow_baseline_study.py --ckpts flow=A.ckpt unet_next_frame=B.ckpt
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from hybrid.dynamics import rollout
from hybrid.flow import flow_scores, gradient_mask, observe_past
from hybrid.models.flow import FlowEstimator
from hybrid.physics import operators
from hybrid.train import HybridModule

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("flow_study", ROOT / "tests" / "test_flow_study.py")
study = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(study)  # simulate_files, fit, windows_of, forecast: the same protocol
CONFIGS = ("flow", "unet_next_frame", "constant_velocity", "flow_aphynity", "flow_sum")
EPOCHS = 40
REFINE_STEPS = 3  # configs/moving_flow/flow_refined.yaml's refine_steps


class HeldFlow(nn.Module):
    """A given velocity ``(u, v)``, ``[N, 1, ny, nx]`` each, held as the estimator holds its own."""

    def __init__(self, u: Tensor, v: Tensor) -> None:
        super().__init__()
        self.u, self.v = u, v

    def forward(self) -> tuple[Tensor, Tensor]:
        return self.u, self.v


@torch.no_grad()
def true_flow_held(flow: HybridModule, t: Tensor, y: Tensor, u: Tensor, v: Tensor) -> Tensor:
    """RMSE per lead of the flow model's prior carrying each window's 4th frame with the true
    velocity at that frame, held over the rollout (the floor of a flow held, not re-estimated)."""
    prior = copy.deepcopy(flow.physics)
    prior.velocity = HeldFlow(u[:, None], v[:, None])
    tt, yy = (
        t[:, study.FRAMES - 1 :] - t[:, study.FRAMES - 1 : study.FRAMES],
        y[:, study.FRAMES - 1 :],
    )
    pred = rollout(prior, yy[:, 0], tt[0], **flow.solver)
    return (pred - yy).square().mean((0, 2, 3, 4)).sqrt()


@torch.no_grad()
def reestimated(model: HybridModule, t: Tensor, y: Tensor) -> Tensor | None:
    """RMSE per lead of the flow model re-estimating its flow at every data step from the last
    ``k`` frames, its own forecasts among them (the paper's protocol), instead of holding the
    first estimate; None for a model without an estimator."""
    estimator = next((m for m in model.modules() if isinstance(m, FlowEstimator)), None)
    if estimator is None or model.correction is not None:
        return None
    k, frames = estimator.frames, list(y[:, : study.FRAMES].unbind(1))  # [N, C, ny, nx] each
    dt = t[0, 1:2] - t[0, :1]
    for _ in range(study.LEADS):
        estimator.observe(torch.stack(frames[-k:], 1), model.grid)
        frames.append(model(frames[-1], torch.cat((0 * dt, dt)))[:, -1])
    pred = torch.stack(frames[study.FRAMES - 1 :], 1)
    return (pred - y[:, study.FRAMES - 1 :]).square().mean((0, 2, 3, 4)).sqrt()


@torch.no_grad()
def scaled(model: HybridModule, t: Tensor, y: Tensor, alphas=(0.9, 1.1, 1.2)) -> dict | None:
    """RMSE per lead with the held estimate multiplied by each ``alpha``: whether the forecast
    would gain from a faster flow (None without an estimator, or with a correction)."""
    estimator = next((m for m in model.modules() if isinstance(m, FlowEstimator)), None)
    if estimator is None or model.correction is not None:
        return None
    tt, yy = observe_past(model.field, model.grid, t, y)
    flow, out = estimator(), {}
    for alpha in alphas:
        estimator._flow = tuple(alpha * w for w in flow)
        out[alpha] = (model(yy[:, 0], tt[0]) - yy).square().mean((0, 2, 3, 4)).sqrt().tolist()
    estimator._flow = flow
    return out


def along_gradient(u_hat, v_hat, u, v, c, grid) -> dict:
    """RMS error of the estimate's component along ``∇c`` and across it, weighted by ``|∇c|²``
    (``(ŵ - w)·∇c``: what a one-step forecast sees), relative to the true component's RMS."""
    gx, gy = operators.gradient(c, grid)
    along, across = (u_hat - u) * gx + (v_hat - v) * gy, (v_hat - v) * gx - (u_hat - u) * gy
    rel = {
        "along_error": along.square().mean() / (u * gx + v * gy).square().mean(),
        "across_error": across.square().mean() / (v * gx - u * gy).square().mean(),
    }
    return {k: float(x.sqrt()) for k, x in rel.items()}


@torch.no_grad()
def flow_of(model: HybridModule, t: torch.Tensor, y: torch.Tensor, u, v) -> dict | None:
    """Correlation and RMSE of the flow estimated from each window's past against the true one
    at its 4th frame, over cells with a tracer gradient, and both RMS speeds; None for a model
    without an estimator."""
    estimator = next((m for m in model.modules() if isinstance(m, FlowEstimator)), None)
    if estimator is None:
        return None
    observe_past(model.field, model.grid, t, y)
    u_hat, v_hat = (w[:, 0] for w in estimator())
    mask = gradient_mask(y[:, study.FRAMES - 1, 0], model.grid)
    speed = {  # RMS over every cell and window (m/s)
        "rms_speed": float((u_hat.square() + v_hat.square()).mean().sqrt()),
        "true_rms_speed": float((u.square() + v.square()).mean().sqrt()),
    }
    last = y[:, study.FRAMES - 1, 0]
    aperture = along_gradient(u_hat, v_hat, u, v, last, model.grid)
    return {**flow_scores(u_hat, v_hat, u, v, model.grid, mask), **speed, **aperture}


@torch.no_grad()
def correction_of(model: HybridModule, t: torch.Tensor, y: torch.Tensor) -> dict | None:
    """``‖F_a‖²`` and ``‖F_p‖²`` (mean over the forecasts' true states and cells, data units)
    and their ratio, with the flow each window's past gives; None without both parts."""
    if model.physics is None or model.correction is None:
        return None
    _, states = observe_past(model.field, model.grid, t, y)  # [N, 11, 1, ny, nx]
    fa = model.correction(None, states)
    fp = torch.stack([model.physics(None, states[:, i]) for i in range(states.shape[1])], 1)
    sq = {"fa_sq": float(fa.square().mean()), "fp_sq": float(fp.square().mean())}
    return {**sq, "ratio": sq["fa_sq"] / sq["fp_sq"]}


def refined_copies(models: dict[str, HybridModule], steps: int) -> dict[str, HybridModule]:
    """A copy of each model with a :class:`FlowEstimator`, its estimate refined on the observed
    frames by ``steps`` Gauss-Newton steps (the estimator's other refinement options kept)."""
    out = {}
    for name, model in models.items():
        if any(isinstance(m, FlowEstimator) for m in model.modules()):
            out[f"{name} refined"] = copy.deepcopy(model)
            for m in out[f"{name} refined"].modules():
                if isinstance(m, FlowEstimator):
                    m.refinement["steps"] = steps
    return out


def score(models: dict[str, HybridModule], test: str) -> dict:
    """RMSE per lead 0..10 of each model and persistence from the same starts; flow and
    correction scores where a model has them."""
    t, y, u, v = study.windows_of(test)
    rmse = {name: study.forecast(m, t, y).tolist() for name, m in models.items()}
    last = y[:, study.FRAMES - 1]
    rmse["persistence"] = (y[:, study.FRAMES - 1 :] - last[:, None]).square().mean((0, 2, 3, 4))
    rmse["persistence"] = rmse["persistence"].sqrt().tolist()
    if "flow" in models:
        rmse["flow re-estimated each step"] = reestimated(models["flow"], t, y).tolist()
        rmse["true flow held"] = true_flow_held(models["flow"], t, y, u, v).tolist()
    flows = {k: flow_of(m, t, y, u, v) for k, m in models.items()}
    corrections = {k: correction_of(m, t, y) for k, m in models.items()}
    return {
        "rmse": rmse,
        "flow": {k: f for k, f in flows.items() if f is not None},
        "correction": {k: c for k, c in corrections.items() if c is not None},
        "n_forecasts": int(y.shape[0]),
        "scaled": scaled(models["flow"], t, y) if "flow" in models else None,
    }


def run_study(root: Path, epochs: int = EPOCHS) -> dict:
    """Simulate the protocol into ``root``, train the five configs there for ``epochs``, score
    them and, as ``"NAME refined"``, each flow model with its estimate refined on the observed
    frames (``REFINE_STEPS`` Gauss-Newton steps, ``flow_refined.yaml``'s)."""
    root.mkdir(parents=True, exist_ok=True)
    train, test = study.simulate_files(root)
    models = {
        name: study.fit(f"configs/moving_flow/{name}.yaml", root, train, test,
                        f"--trainer.max_epochs={epochs}")
        for name in CONFIGS
    }  # fmt: skip
    return score({**models, **refined_copies(models, REFINE_STEPS)}, test)


@pytest.mark.slow
@pytest.mark.xfail(
    reason="issue 17's criterion as measured (2026-12-02, NOTES sessions 5 and 7): the flow "
    "refined on the observed frames beats the next-frame U-Net at every lead 1-10 (the network's "
    "estimate alone does not); flow correlation 0.897 under APHYNITY, unrefined",
    strict=False,
)
def test_the_flow_model_beats_the_papers_baseline_and_aphynity_stays_minimal(tmp_path):
    torch.set_num_threads(2)
    r = run_study(tmp_path)
    rmse = {k: torch.tensor(v) for k, v in r["rmse"].items()}
    for baseline in ("persistence", "constant_velocity", "unet_next_frame"):
        assert (rmse["flow refined"][1:] < rmse[baseline][1:]).all(), (baseline, r["rmse"])
    assert r["flow"]["flow refined"]["correlation"] >= 0.9
    assert r["flow"]["flow_aphynity"]["correlation"] >= 0.9
    c = r["correction"]
    assert c["flow_aphynity"]["ratio"] < 0.1 * c["flow_sum"]["ratio"], c


def print_report(r: dict) -> None:
    print(f"{r['n_forecasts']} forecasts; RMSE of c per lead (3 h steps)")
    print("| method | " + " | ".join(str(k) for k in range(1, study.LEADS + 1)) + " |")
    print("| --- |" + " --- |" * study.LEADS)
    for name, values in r["rmse"].items():
        print(f"| {name} | " + " | ".join(f"{x:.4f}" for x in values[1:]) + " |")
    for name, f in r["flow"].items():
        print(
            f"flow {name}: correlation {f['correlation']:.3f}, rmse {f['rmse']:.3f} m/s, "
            f"RMS speed {f['rms_speed']:.3f} (true {f['true_rms_speed']:.3f}) m/s; "
            f"|grad c|-weighted error along / across the gradient {f['along_error']:.3f} / "
            f"{f['across_error']:.3f} of the true component"
        )
    for alpha, values in (r["scaled"] or {}).items():
        print(
            f"flow x {alpha}: RMSE at leads 1 / 5 / 10 "
            + " / ".join(f"{values[k]:.4f}" for k in (1, 5, 10))
        )
    for name, c in r["correction"].items():
        print(
            f"correction {name}: |F_a|^2 {c['fa_sq']:.3e}, |F_p|^2 {c['fp_sq']:.3e}, "
            f"ratio {c['ratio']:.3e}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=ROOT / "runs" / "flow_baseline")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--ckpts", nargs="+", metavar="NAME=CKPT", help="score these instead")
    parser.add_argument("--test", default="data/generated/moving_flow/test.nc")
    parser.add_argument(
        "--refine", type=int, default=0, metavar="STEPS",
        help="also score each flow model with its estimate refined on the past (STEPS)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.ckpts:
        paths = dict(item.split("=", 1) for item in args.ckpts)
        models = {
            k: HybridModule.load_from_checkpoint(p, map_location="cpu").eval()
            for k, p in paths.items()
        }
        models.update(refined_copies(models, args.refine) if args.refine else {})
        report = score(models, args.test)
    else:
        report = run_study(args.root, args.epochs)
    print_report(report)
