"""Compare LEADS, CoDA, one-for-all and one-per-environment on LEADS's benchmarks, and adapt to a
held-out environment, with the configs in ``configs/leads/``.

For each dataset the script simulates the protocol (``hybrid simulate``'s, into
``data/generated/leads/``) if missing, trains each method (``hybrid environments fit``), scores
whole test trajectories per environment (``hybrid evaluate-environments``: LEADS's test MSE) and
prints one table: test MSE, its spread over environments, wall time, and LEADS's published figure
(its README) beside it. With ``--adapt`` it also trains LEADS, CoDA and LEADS with the LV prior
on environments 0-8 of Lotka-Volterra and fits the held-out environment 9 from its one
trajectory, the shared part frozen, and reports its test MSE against the in-distribution
environments', and both wall times.

    python scripts/reproduce_leads.py --datasets lv --output runs/leads            # LV, 4 methods
    python scripts/reproduce_leads.py --datasets lv --methods leads --adapt --epochs 300
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from hybrid.cli import main
from hybrid.data.environments import simulate_environments
from hybrid.data.io import write_netcdf
from hybrid.data.protocols import build
from hybrid.environments.evaluate import evaluate_environments

ROOT = Path(__file__).resolve().parents[1]
PROTOCOL = {"lv": "lotka_volterra", "gs": "gray_scott", "ns": "navier_stokes"}
PUBLISHED = {"lv": {"leads": 1.16e-3}, "gs": {"leads": 2.08e-3}, "ns": {"leads": 5.95e-3}}
# physics_leads: the LV prior as f (β, δ shared, α, γ per environment) with LEADS's g_e.
METHODS = ["leads", "coda", "one_for_all", "one_per_environment", "physics_leads"]


def ensure_data(dataset: str) -> None:
    """Simulate ``data/generated/leads/<dataset>_{train,test}.nc`` unless present."""
    for split in ("train", "test"):
        path = ROOT / "data" / "generated" / "leads" / f"{dataset}_{split}.nc"
        if not path.exists():
            write_netcdf(simulate_environments(build(PROTOCOL[dataset]), split), path)


def fit(config: str, root: Path, extra: list[str]) -> tuple[Path, float]:
    """``hybrid environments fit``; the run's ``last.ckpt`` and its wall time (s)."""
    start = time.perf_counter()
    main(
        ["environments", "fit", "--config", config, "--trainer.default_root_dir", str(root), *extra]
    )
    wall = time.perf_counter() - start
    return max(root.rglob("last.ckpt"), key=lambda p: p.stat().st_mtime), wall


def parameter_error(report: dict) -> float | None:
    """Largest relative error of the learned physical parameters over environments, or None."""
    errors = []
    for name, got in report["parameters"].items():
        true = report["true_parameters"].get(name.rsplit(".", 1)[-1])
        if true is not None:
            got = got if isinstance(got, list) else [got] * len(true)
            errors += [abs(g - t) / abs(t) for g, t in zip(got, true, strict=True)]
    return max(errors) if errors else None


def score(ckpt: Path) -> dict:
    report = evaluate_environments(ckpt)
    per_env = report["mse_per_environment"]
    return {
        "mse": report["mse"],
        "min": min(per_env),
        "max": max(per_env),
        "per_env": per_env,
        "parameter_error": parameter_error(report),
    }


def compare(dataset: str, methods: list[str], epochs: list[str], out: Path) -> list[dict]:
    rows = []
    for method in methods:
        config = f"configs/leads/{dataset}_{method}.yaml"
        if not (ROOT / config).exists():
            print(f"no {config}: {method} skipped on {dataset}")
            continue
        ckpt, wall = fit(config, out / f"{dataset}_{method}", epochs)
        row = {"dataset": dataset, "method": method, "wall_s": wall, **score(ckpt)}
        row["published"] = PUBLISHED[dataset].get(method)
        rows.append(row)
    return rows


def adapt(method: str, epochs: list[str], adapt_epochs: list[str], out: Path) -> dict:
    """Train on LV environments 0-8, adapt to 9 from its one trajectory."""
    nine = [
        "--data.environments", "[0,1,2,3,4,5,6,7,8]", "--model.n_environments", "9",
        "--model.correction.init_args.specific.init_args.n_environments", "9",
    ]  # fmt: skip
    if method.startswith("physics"):
        nine += ["--model.physics.init_args.n_environments", "9"]
    ckpt, wall = fit(f"configs/leads/lv_{method}.yaml", out / f"lv_{method}_0-8", epochs + nine)
    trained = score(ckpt)
    config = f"configs/leads/lv_adapt_{method}.yaml"
    new, adapt_wall = fit(
        config, out / f"lv_{method}_adapt_9", adapt_epochs + ["--model.adapt_from", str(ckpt)]
    )
    held_out = score(new)
    return {
        "held_out_parameter_error": held_out["parameter_error"],
        "method": method,
        "in_distribution_mse": trained["mse"],
        "held_out_mse": held_out["mse"],
        "ratio": held_out["mse"] / trained["mse"],
        "train_wall_s": wall,
        "adapt_wall_s": adapt_wall,
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| dataset | method | test MSE | per environment (min–max) | parameter error | wall (s) "
        "| published |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        pub = f"{r['published']:.2e}" if r["published"] else "—"
        err = "—" if r["parameter_error"] is None else f"{100 * r['parameter_error']:.2f} %"
        lines.append(
            f"| {r['dataset']} | {r['method']} | {r['mse']:.2e} | {r['min']:.1e}–{r['max']:.1e} "
            f"| {err} | {r['wall_s']:.0f} | {pub} |"
        )
    return "\n".join(lines)


def adapt_table(rows: list[dict]) -> str:
    lines = [
        "| method | in-distribution MSE (0-8) | held-out 9 MSE | ratio | train (s) | adapt (s) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['in_distribution_mse']:.2e} | {r['held_out_mse']:.2e} "
            f"| {r['ratio']:.2f} | {r['train_wall_s']:.0f} | {r['adapt_wall_s']:.0f} |"
        )
    return "\n".join(lines)


def _epochs(n: int | None) -> list[str]:
    """Overrides for ``n`` epochs, validated (and so checkpointed as ``last.ckpt``) at the end."""
    return (
        []
        if n is None
        else ["--trainer.max_epochs", str(n), "--trainer.check_val_every_n_epoch", str(n)]
    )


def main_cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="*", default=["lv"], choices=sorted(PROTOCOL))
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    parser.add_argument("--epochs", type=int, help="override every config's max_epochs")
    parser.add_argument("--adapt", action="store_true", help="also adapt to LV environment 9")
    parser.add_argument("--adapt-epochs", type=int, help="override the adaptation's max_epochs")
    parser.add_argument("--output", type=Path, default=Path("runs/leads"))
    args = parser.parse_args()
    epochs, adapt_epochs = _epochs(args.epochs), _epochs(args.adapt_epochs)
    rows, adapted = [], []
    for dataset in args.datasets:
        ensure_data(dataset)
        rows += compare(dataset, args.methods, epochs, args.output)
    if args.adapt:
        ensure_data("lv")
        adapted = [
            adapt(m, epochs, adapt_epochs, args.output)
            for m in args.methods
            if m in ("leads", "coda", "physics_leads")
        ]
    report = table(rows) + ("\n\n" + adapt_table(adapted) if adapted else "")
    print(report)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "results.md").write_text(report + "\n")
    (args.output / "results.json").write_text(
        json.dumps({"rows": rows, "adapt": adapted}, indent=1)
    )


if __name__ == "__main__":
    main_cli()
