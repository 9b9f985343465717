"""Stage: the pipeline's headline numbers in one place, for DVC metrics and plots.

``python -m taskcodec.stages.summarize --report results/report/test results/report/kodak
--metrics results/summary/metrics.json --rate-distortion results/summary/rate_distortion.csv``

``metrics.json`` holds, per evaluation dataset, every learned codec point's
bpp, PSNR, MS-SSIM and NIQE (null: not measured) and every BD-rate against the
classical anchors (null where the curves do not overlap); ``dvc metrics show/diff`` read it.
``rate_distortion.csv`` holds the test split's points of every codec (one
``series`` per curve) for ``dvc plots show``. With ``--machine`` (the
rate–accuracy report of each task), ``metrics.json`` also holds, under ``machine.<task>``,
the task's primary metric (top-1; detection: mAP@0.5 over the point's images)
uncompressed and at every point, against the bits the task receives, and the BD-rates
at equal accuracy, and ``rate_accuracy.csv`` the rate–accuracy points of every task
(its ``task`` column; empty without the machine branch).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from taskcodec import artifacts
from taskcodec.errors import UserError
from taskcodec.evaluation import read_table
from taskcodec.report.tables import LEARNED_KINDS
from taskcodec.stages.cli import run
from taskcodec.tracking import stage_run

PLOTTED_DATASET = "test"
RD_COLUMNS = ["series", "kind", "point", "bpp", "psnr", "ms_ssim", "niqe", "image_size"]


def rate_accuracy_columns(metrics: list[str]) -> list[str]:
    """Columns of rate_accuracy.csv for tasks with ``metrics`` (none without the machine branch)."""
    return ["task", "series", "kind", "point", "bpp", *metrics, "psnr", "feature_mse", "image_size"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m taskcodec.stages.summarize", description=__doc__.splitlines()[0])
    parser.add_argument("--report", type=Path, nargs="+", required=True, help="report folders, one per dataset")
    parser.add_argument("--metrics", type=Path, required=True, help="metrics.json to write")
    parser.add_argument("--rate-distortion", type=Path, required=True, help="rate_distortion.csv to write")
    parser.add_argument("--machine", type=Path, nargs="*", default=[],
                        help="rate–accuracy report folders, one per task (machine branch)")
    parser.add_argument("--rate-accuracy", type=Path, required=True, help="rate_accuracy.csv to write")
    return parser


def _number(value: Any) -> float | None:
    """A float for JSON, with NaN as null."""
    value = float(value)
    return None if math.isnan(value) else value


#: what a learned point's value is, by kind (a scalable codec's curve runs along λ_task at one λ)
POINT_NAMES = {"scalable": "task"}


def dataset_metrics(points: pd.DataFrame, bd: pd.DataFrame) -> dict[str, Any]:
    """Learned points and BD-rates of one dataset's report as nested dicts."""
    learned = points[points["kind"].isin(LEARNED_KINDS)]
    return {
        "learned": {f"{row.codec}@{POINT_NAMES.get(row.kind, 'lmbda')}{row.point:g}": {
                        "bpp": _number(row.bpp), "psnr": _number(row.psnr), "ms_ssim": _number(row.ms_ssim),
                        "niqe": _number(getattr(row, "niqe", math.nan))}  # reports written before NIQE: null
                    for row in learned.itertuples()},
        "bd_rate_psnr": {f"{row.codec} vs {row.anchor}": _number(row.bd_rate_psnr) for row in bd.itertuples()},
        "bd_rate_ms_ssim": {f"{row.codec} vs {row.anchor}": _number(row.bd_rate_ms_ssim) for row in bd.itertuples()},
    }


def machine_metrics(points: pd.DataFrame, bd: pd.DataFrame, task: dict[str, Any]) -> dict[str, Any]:
    """The task's primary metric at every rate–accuracy point and the BD-rates at equal accuracy, as nested
    dicts; ``task`` is the machine report's summary.json."""
    metric = task["primary_metric"]
    return {
        f"uncompressed_{metric}": task[f"uncompressed_{metric}"],
        "points": {f"{row['codec']}@{row['point']:g}": {"bpp": _number(row["bpp"]), metric: _number(row[metric])}
                   for _, row in points.iterrows()},
        f"bd_rate_{metric}": {f"{row['codec']} vs {row['anchor']}": _number(row[f"bd_rate_{metric}"])
                              for _, row in bd.iterrows()},
    }


def main(argv: Sequence[str] | None = None) -> Path:
    args = build_parser().parse_args(argv)
    folders = {folder.name: folder for folder in args.report}
    if PLOTTED_DATASET not in folders:
        raise UserError(f"summarize needs the '{PLOTTED_DATASET}' report among --report {' '.join(map(str, args.report))}")
    summary = {name: dataset_metrics(read_table(folder / "rd_points.csv"), read_table(folder / "bd_rate.csv"))
               for name, folder in folders.items()}
    curves = read_table(folders[PLOTTED_DATASET] / "rd_points.csv")
    tasks, metrics = [], []
    for folder in args.machine:
        points = read_table(folder / "rate_accuracy.csv")
        task = artifacts.read_json(folder / "summary.json")
        summary.setdefault("machine", {})[task["task"]] = machine_metrics(
            points, read_table(folder / "bd_rate_accuracy.csv"), task)
        tasks.append(points.assign(task=task["task"], series=points["codec"]))
        metrics += [metric for metric in task["metrics"] if metric not in metrics]
    accuracy = pd.concat(tasks, ignore_index=True) if tasks else pd.DataFrame()
    accuracy = accuracy.reindex(columns=rate_accuracy_columns(metrics))
    with stage_run("summarize", {}, {"datasets": sorted(summary)}) as tracked:
        artifacts.write_json(args.metrics, summary)
        with artifacts.atomic_path(args.rate_distortion) as tmp:
            curves.assign(series=curves["codec"]).reindex(columns=RD_COLUMNS).to_csv(tmp, index=False)
        with artifacts.atomic_path(args.rate_accuracy) as tmp:
            accuracy.to_csv(tmp, index=False)
        tracked.log_metrics({"datasets": len(folders), "rate_distortion_points": len(curves),
                             "rate_accuracy_points": len(accuracy)})
        for path in (args.metrics, args.rate_distortion, args.rate_accuracy):
            tracked.log_artifact(path)
    return args.metrics


if __name__ == "__main__":
    run(main)
