"""Compare several checkpoints on the same data: one table and one plot.

Each checkpoint is evaluated with ``hybrid evaluate`` (same test windows, same baselines) into
``OUTPUT/<label>/``; the script then prints the RMSE of every model and baseline at a few leads,
the learned parameters and correction sizes, and draws RMSE against lead time for all of them in
``OUTPUT/comparison.png`` (table also in ``OUTPUT/comparison.md``).

    python scripts/compare_checkpoints.py --ckpt aphynity=runs/a/last.ckpt sum=runs/b/last.ckpt \\
        --data_path data/generated/advection_diffusion/test.nc --output runs/compare
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from hybrid.evaluate import evaluate  # noqa: E402


def parse_labelled(items: list[str]) -> dict[str, str]:
    """``label=path`` pairs (a bare path is labelled by its position)."""
    out = {}
    for i, item in enumerate(items):
        label, sep, path = item.partition("=")
        out[label if sep else f"ckpt{i}"] = path if sep else item
    return out


def rows_of(reports: dict[str, dict]) -> list[tuple[str, list[float]]]:
    """One RMSE-by-lead row per checkpoint, then each baseline once (from the first report)."""
    rows = [(label, r["rmse"]["model"]) for label, r in reports.items()]
    first = next(iter(reports.values()))
    rows += [(name, v) for name, v in first["rmse"].items() if name != "model"]
    return rows


def table(reports: dict[str, dict]) -> str:
    """Markdown: RMSE at the first, middle and last lead; parameters and ‖F_a‖² per checkpoint."""
    leads = next(iter(reports.values()))["lead_time_s"]
    picks = sorted({1, len(leads) // 2, len(leads) - 1})
    head = "| forecast | " + " | ".join(f"RMSE @ {leads[k]:.4g} s" for k in picks)
    lines = [head + " | parameters | ‖F_a‖² |", "|" + " --- |" * (len(picks) + 3)]
    for label, rmse in rows_of(reports):
        report = reports.get(label)
        params = (
            ", ".join(f"{k}={v:.4g}" for k, v in report["parameters"].items()) if report else ""
        )
        norm = f"{report['correction_norm']:.3g}" if report else ""
        lines.append(
            f"| {label} | "
            + " | ".join(f"{rmse[k]:.4g}" for k in picks)
            + f" | {params} | {norm} |"
        )
    return "\n".join(lines) + "\n"


def plot(reports: dict[str, dict], path: Path) -> None:
    lead = next(iter(reports.values()))["lead_time_s"]
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, rmse in rows_of(reports):
        ax.plot(lead, rmse, marker="o", ms=3, label=label, ls="-" if label in reports else "--")
    ax.set(xlabel="lead time [s]", ylabel="RMSE (all variables)", title="checkpoints compared")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", nargs="+", required=True, help="label=path.ckpt ...")
    p.add_argument(
        "--data_path",
        default=None,
        help="evaluate all on this file (default: each run's own test data)",
    )
    p.add_argument("--lead_steps", type=int, default=None)
    p.add_argument("--output", type=Path, required=True)
    p.add_argument("--overwrite", action="store_true")
    args = p.parse_args(argv)
    reports = {
        label: evaluate(
            path,
            str(args.output / label),
            data_path=args.data_path,
            lead_steps=args.lead_steps,
            overwrite=args.overwrite,
        )
        for label, path in parse_labelled(args.ckpt).items()
    }
    leads = {tuple(r["lead_time_s"]) for r in reports.values()}
    if len(leads) != 1:
        raise SystemExit(
            "the checkpoints were evaluated on different lead times: pass "
            "--data_path and --lead_steps so they share the test windows"
        )
    text = table(reports)
    (args.output / "comparison.md").write_text(text)
    plot(reports, args.output / "comparison.png")
    print(text)
    return reports


if __name__ == "__main__":
    main()
