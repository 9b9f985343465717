"""Condense one pipeline run's rate–distortion report into the small summary a benchmark commits.

``python bench/collect.py --results bench/results/kodak --dataset kodak --out bench/results-summary/kodak.json``

Reads ``<results>/report/<dataset>/rd_points.csv`` and ``bd_rate.csv`` (the report stage's tables) and the
``metrics.json`` of every pretrained codec under ``<results>/codecs`` (steps and CPU seconds of training, the
final validation loss) with its checkpoint's ``init`` (how its sweep was trained), and writes: every measured
point (bpp from bytes, estimated bpp, PSNR, MS-SSIM, image size), the BD-rates with the width of the overlap
each averages over, each learned curve's PSNR span, and (with
``--references``, CompressAI's published result files) the published curves' BD-rates against the
classical codecs measured in this run, as a yardstick.

For the test split of a run with the machine branch it also keeps, under ``machine.<task>`` for each task,
the rate–accuracy points of the learned codecs (``report/machine/<task>/tradeoff.csv``: the bits the task
receives and its primary metric beside the image's bits and PSNR), the uncompressed task model's test value,
every curve's bits and task value (``rate_accuracy``: classical codecs and compressed-domain classifiers too), the
bits each curve needs to come within 2 points of it, the scalable codecs' savings at that target and their
redundancy over training (the report's ``bits_for_accuracy``, ``savings`` and ``redundancy`` tables), a VQA
study's question-only baseline (``<results>/blind/metrics.json``, with the vqa task) and the compressed-domain
speed comparison (``<results>/speed.csv``, with classification), each when present. For a run with variable-rate codecs (seed 001) it keeps their points, each model's training cost,
and their BD-rates against the single-rate curves of the same run and, with ``--single-rate`` (a committed
summary of single-rate codecs on the same dataset, e.g. kodak-m64.json), against those. bench/summary.py turns these
files into the numbers of README.md and bench/README.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from taskcodec.artifacts import load_checkpoint
from taskcodec.evaluation import read_table
from taskcodec.report.tables import bd_rate_table, load_reference_curves


def _rounded(frame: pd.DataFrame, digits: int = 4) -> list[dict]:
    return json.loads(frame.round(digits).to_json(orient="records"))


def training(codecs: Path) -> pd.DataFrame:
    """Steps and seconds of training of every pretrained codec, its final validation loss R + λ·255²·D on the
    study's validation split (its metrics.json) and where its training started (``codec.train.init`` in its
    checkpoint: null, a checkpoint, or ``neighbour`` / ``smaller_neighbour`` in a chained sweep) and its
    ``spike_guard`` (None also for checkpoints older than the key), by codec id and λ."""
    rows = []
    for path in sorted(codecs.glob("*/*/lmbda*/metrics.json")):
        metrics = json.loads(path.read_text())
        params = load_checkpoint(path.with_name("model.pt"), mmap=True)["params"]
        rows.append({"codec": f"{path.parents[2].name}/{path.parents[1].name}", "point": metrics["lmbda"],
                     "steps": metrics["steps"], "train_seconds": round(metrics["train_seconds"], 1),
                     "val_loss": metrics["val"]["loss"], "init": params["init"],
                     "spike_guard": params.get("spike_guard")})
    return pd.DataFrame(rows, columns=["codec", "point", "steps", "train_seconds", "val_loss", "init", "spike_guard"])


def published(points: pd.DataFrame, references: Path, method: str = "pchip") -> list[dict]:
    """BD-rates of the published curves in ``references`` against this run's classical codecs."""
    curves = load_reference_curves(references).assign(kind="pretrained")
    table = bd_rate_table(pd.concat([points[points["kind"] == "classical"], curves], ignore_index=True), method)
    return _rounded(table.fillna({"note": ""}))


def variable_rate(results: Path, points: pd.DataFrame, single_rate: Path | None, method: str = "pchip") -> dict | None:
    """Variable-rate curves: points, training cost per model, BD-rates against single-rate curves, or None."""
    curves = points[points["kind"] == "variable-rate"]
    if curves.empty:
        return None
    anchors = [points[points["kind"] == "pretrained"].assign(codec=lambda f: f["codec"] + " (this run)")]
    committed = None
    if single_rate is not None:
        committed = pd.DataFrame(json.loads(single_rate.read_text())["learned"])
        anchors.append(committed.assign(codec=committed["codec"] + f" ({single_rate.name})"))
    versus = pd.concat([curves, *[anchor.assign(kind="classical") for anchor in anchors]], ignore_index=True)
    costs = []
    for path in sorted((results / "variable_rate").glob("*/*/metrics.json")):
        metrics = json.loads(path.read_text())
        val = metrics["val"]
        costs.append({"codec": f"{path.parents[1].name}/{path.parent.name}", "steps": metrics["steps"],
                      "train_seconds": round(metrics["train_seconds"], 1),
                      "val_points": [[round(val[f"bpp_p{k}"], 3), round(val[f"psnr_p{k}"], 2)]
                                     for k in range(len(metrics["lmbda"]))]})
    single = training(results / "codecs")
    columns = ["codec", "point", "images", "image_size", "bpp", "bpp_estimated", "psnr", "ms_ssim", "niqe"]
    return {"points": _rounded(curves.reindex(columns=columns)), "training": costs,
            "single_rate_train_seconds": round(float(single["train_seconds"].sum()), 1),
            "committed_single_rate": None if committed is None else {
                "summary": single_rate.name, "train_seconds": round(float(committed["train_seconds"].sum()), 1)},
            "bd_rate_vs_single_rate": _rounded(bd_rate_table(versus, method).fillna({"note": ""}))}


def machine(results: Path) -> dict[str, dict]:
    """Each task's rate–accuracy summary (:func:`task_summary`), by task; none without the machine branch."""
    reports = sorted((results / "report" / "machine").glob("*/tradeoff.csv"))
    return {tradeoff.parent.name: task_summary(results, tradeoff) for tradeoff in reports}


def task_summary(results: Path, tradeoff: Path) -> dict:
    """The learned codecs' rate–accuracy points of one task on the test split and the uncompressed model's value."""
    task = json.loads((results / "task" / tradeoff.parent.name / "metrics.json").read_text())
    from taskcodec.tasks.registry import TASKS

    metric = TASKS[task["task"]].primary_metric
    points = read_table(tradeoff)[["kind", "codec", "point", "bpp", metric, "bpp_image", "psnr"]]
    report = tradeoff.parent
    curves = read_table(report / "rate_accuracy.csv")
    measured = curves.iloc[0]
    tables = {name: _rounded(read_table(report / f"{name}.csv"))
              for name in ("bits_for_accuracy", "savings", "redundancy", "by_group")
              if (report / f"{name}.csv").is_file()}
    blind = results / "blind" / "metrics.json"  # a VQA study's question-only baseline (bench/vqa/run.sh)
    baselines = ({"blind": _test_values(json.loads(blind.read_text()))}
                 if blind.is_file() and task["task"] == "vqa" else {})
    speed = results / "speed.csv"  # the compressed-domain speed comparison (bench/machine/speed.py)
    extras = {"speed": _rounded(read_table(speed))} if speed.is_file() and task["task"] == "classification" else {}
    return {"task": task["task"], "metric": metric, "uncompressed": round(task[f"test_{metric}"], 4),
            "uncompressed_metrics": _test_values(task), "images": int(measured["images"]),
            "image_size": measured["image_size"], "points": _rounded(points),
            "curves": _rounded(curves[["kind", "codec", "point", "bpp", metric]]),
            **tables, **baselines, **extras}


def _test_values(metrics: dict) -> dict:
    """A task model's test value of every metric its task declares (``test_<metric>`` of its metrics.json)."""
    return {key[len("test_"):]: round(value, 4) for key, value in metrics.items()
            if key.startswith("test_") and key != "test_loss" and value is not None}


def collect(results: Path, dataset: str, references: Path | None = None, single_rate: Path | None = None) -> dict:
    report = results / "report" / dataset
    points = read_table(report / "rd_points.csv")
    bd = read_table(report / "bd_rate.csv").fillna({"note": ""})
    learned = points[points["kind"] == "pretrained"].merge(training(results / "codecs"), on=["codec", "point"],
                                                            how="left")
    columns = ["kind", "codec", "point", "images", "image_size", "bpp", "bpp_estimated", "psnr", "ms_ssim"]
    spans = learned.groupby("codec")["psnr"].agg(lambda psnr: psnr.max() - psnr.min())
    return {
        "dataset": dataset,
        "learned": _rounded(learned[columns + ["steps", "train_seconds", "val_loss", "init", "spike_guard"]]),
        "classical": _rounded(points[points["kind"] == "classical"][columns]),
        "bd_rate": _rounded(bd),
        "psnr_span_db": {codec: round(float(span), 2) for codec, span in spans.items()},
        "published_bd_rate": published(points, references) if references is not None else [],
        "machine": machine(results) if dataset == "test" else {},
        "variable_rate": variable_rate(results, points, single_rate),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, required=True, help="the run's results_dir")
    parser.add_argument("--dataset", required=True, help="the report's dataset (test, kodak, ...)")
    parser.add_argument("--references", type=Path, help="folder of CompressAI result files (the report's references)")
    parser.add_argument("--single-rate", type=Path,
                        help="a committed summary of single-rate codecs on the same dataset, for the variable-rate BD-rates")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    summary = collect(args.results, args.dataset, args.references, args.single_rate)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
