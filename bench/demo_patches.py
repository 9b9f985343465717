"""How many patches per step the demo's later codecs train on: the scalable codecs (seed 002), the pyramid codec
(seed 001) and the fine-tuned codecs (seed 000), each trained as the workflow trains it, with 16 patches per step (the
demo's recipe before this study) and with 8 patches per step at more steps, measured on the validation split with
real bitstreams.

``.venv/bin/python bench/demo_patches.py [--variants batch16 batch8-steps1.25x ...]``

The demo's pretrained codecs reach about the same validation BD-rate in two thirds of the training time with 8 patches
per step and 1.25x the steps (bench/demo_lambdas.py); this study asks whether the codecs trained after them behave
alike. Every variant runs the workflow (``snakemake --configfile params.yaml <overlay>``, the overlay setting
``steps`` and ``batch_size`` of ``scalable.train``, ``variable_rate.train`` and ``finetune.train``, and
``results_dir``) into its own results folder, ``bench/results/demo-patches/<variant>``, asking only for the
validation evaluations of those codecs. Per codec point the table has its training steps and seconds (CPU time on
CPU: compare them only between variants run one after another on an otherwise idle machine) and patches per step,
as its model recorded them, the image's bpp (from the bytes), size and PSNR and, for a codec made for a task, the
bits that task receives and its primary metric, in ``bench/results-summary/demo-patches.csv`` (by variant, kind,
codec and point; the rows of other variants stay); bench/summary.py puts it in bench/README.md."""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

from taskcodec.artifacts import load_checkpoint
from taskcodec.evaluation import read_table
from taskcodec.sweeps import (SCALABLE, TUNED, VARIABLE, VARIABLE_POINT, finetune_points, scalable_points,
                              variable_rate_points)

ROOT = Path(__file__).resolve().parents[1]
OUT = Path("bench/results/demo-patches")
SUMMARY = ROOT / "bench/results-summary/demo-patches.csv"
#: the demo's steps per codec before this study (16 patches per step), by params section
STEPS_BEFORE = {"scalable": 400, "variable_rate": 800, "finetune": 300}
#: patches per step and the factor on the steps before, by variant
VARIANTS = {"batch16": (16, 1.0), "batch8-steps1.25x": (8, 1.25), "batch8-steps1.5x": (8, 1.5)}


def overlay(variant: str, out: Path) -> dict:
    """The params a variant changes: steps and patches per step of every section, and its results folder."""
    batch, factor = VARIANTS[variant]
    return {"results_dir": str(out), **{section: {"train": {"steps": round(steps * factor), "batch_size": batch}}
                                        for section, steps in STEPS_BEFORE.items()}}


def curves(params: dict) -> list[dict]:
    """Every codec point the study measures: its model's folder, its validation evaluation (relative to the results
    folder) and the task it is made for (None: the image alone), in the workflow's own paths (taskcodec.sweeps)."""
    scalable = [{"model": Path("scalable", SCALABLE.format(**point)),
                 "eval": Path("eval", "scalable", SCALABLE.format(**point), "val"), "task": params["scalable"]["task"]}
                for point in scalable_points(params)]
    pyramid = [{"model": Path("variable_rate", VARIABLE.format(**point)),
                "eval": Path("eval", "variable_rate", VARIABLE_POINT.format(**point), "val"), "task": None}
               for point in variable_rate_points(params)]
    tuned = [{"model": Path("finetuned", TUNED.format(**point)),
              "eval": Path("eval", "finetuned", TUNED.format(**point), "val"), "task": point["task"]}
             for point in finetune_points(params)]
    return scalable + pyramid + tuned


def results_folder(variant: str) -> Path:
    return ROOT / OUT / variant


def command(variant: str, params: dict) -> list[str]:
    """The workflow's command line for a variant's validation evaluations (its overlay written beside them)."""
    out = results_folder(variant)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "overlay.yaml"
    path.write_text(yaml.safe_dump(overlay(variant, out)))
    targets = [str(out / curve["eval"]) for curve in curves(params)]
    return [sys.executable, "-m", "snakemake", *targets, "--profile", "workflow/profiles/local",
            "--configfile", "params.yaml", str(path)]


def run(variant: str, params: dict) -> None:
    subprocess.run(command(variant, params), check=True, cwd=ROOT)


def rows(variant: str, params: dict, out: Path) -> list[dict]:
    """One row per codec point of a variant's results folder."""
    from taskcodec.tasks.registry import TASKS

    found = []
    for curve in curves(params):
        folder = out / curve["eval"]
        summary = json.loads((folder / "summary.json").read_text())
        metrics = json.loads((out / curve["model"] / "metrics.json").read_text())
        trained = load_checkpoint(out / curve["model"] / "model.pt", mmap=True)["params"]
        images = read_table(folder / "per_image.csv")
        row = {"variant": variant, "kind": summary["kind"], "codec": summary["codec"], "point": summary["point"],
               "model": curve["model"].as_posix(), "steps": metrics["steps"], "batch_size": trained["batch_size"],
               "train_seconds": round(metrics["train_seconds"], 1), "images": len(images),
               "image_size": ", ".join(sorted({f"{h}×{w}" for h, w in zip(images["height"], images["width"])})),
               "bpp": round(summary["bpp"], 4), "psnr": round(summary["psnr"], 2), "task": "", "metric": "",
               "task_bpp": math.nan, "task_value": math.nan}
        if curve["task"] is not None:
            measured = json.loads((folder / "task" / curve["task"] / "summary.json").read_text())
            metric = TASKS[curve["task"]].primary_metric
            row.update(task=curve["task"], metric=metric, task_bpp=round(measured.get("bpp_task", measured["bpp"]), 4),
                       task_value=round(measured[metric], 4))
        found.append(row)
    return found


def merged(table: pd.DataFrame) -> pd.DataFrame:
    """``table``'s rows with the committed summary's rows of other variants, by variant (as in VARIANTS; others
    last), then kind, codec and point."""
    if SUMMARY.is_file():
        committed = pd.read_csv(SUMMARY, keep_default_na=False, na_values=[""])
        table = pd.concat([committed[~committed["variant"].isin(table["variant"])], table], ignore_index=True)
    known = list(VARIANTS)
    order = table["variant"].map(lambda variant: known.index(variant) if variant in known else len(known))
    return (table.assign(order=order).sort_values(["order", "kind", "codec", "point"], kind="stable")
            .drop(columns="order").reset_index(drop=True))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS),
                        help="the variants to run (default: all; the others' committed rows stay)")
    args = parser.parse_args(argv)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for variant in args.variants:
        run(variant, params)
    table = merged(pd.DataFrame([row for variant in args.variants
                                 for row in rows(variant, params, results_folder(variant))]))
    table.to_csv(SUMMARY, index=False)
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
