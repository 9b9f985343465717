"""Rate–accuracy: task accuracy against actual bpp for every way of sending images to the machine.

Every function takes the task's metric names (:mod:`taskcodec.tasks.registry`: e.g. ``top1`` and
``top5`` for classification), so the tables and plots follow whatever a task declares.

The kinds of points (``kind`` column): the classical codecs and the pretrained
(human-oriented) and task-fine-tuned learned codecs, decoded and classified by
the frozen task model (seed 000); the scalable codecs of seed 002, whose base
layer alone gives the task model its outputs; and the compressed-domain classifiers of
seed 004, which classify the decoded latents ŷ, σ̂ without reconstructing pixels
(``latent``: trained on the cached latents of a pretrained codec; ``joint``: its
encoder fine-tuned together with the classifier, on real bitstreams).

A point's accuracy is the task's metric over all its images (:meth:`Task.summarize
<taskcodec.tasks.registry.Task.summarize>`, as the evaluation stages record it), so
detection's is the mAP of the point, not a mean of per-image APs; its rate is the bits
the task receives (the task layers alone for a codec that carries the task model).
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import FormatStrFormatter  # noqa: E402
import pandas as pd  # noqa: E402

from taskcodec.report.plots import save_png  # noqa: E402
from taskcodec.errors import UserError  # noqa: E402
from taskcodec.metrics import bd_rate  # noqa: E402
from taskcodec.report.tables import overlap, size_label  # noqa: E402



def point_columns(metrics: list[str]) -> list[str]:
    """The columns of rate_accuracy.csv for a task with ``metrics``: ``bpp`` is the rate the task receives,
    ``bpp_image`` the image receiver's (PSNR's), the same but for a codec that carries the task model."""
    return ["kind", "codec", "point", "images", "bpp", *metrics, "bpp_image", "psnr", "mse", "feature_mse",
            "psnr_salient", "psnr_background", "image_size", "run_id"]


#: slack when comparing an accuracy with a target computed in floating point (far below 1 / any test set's size)
ACCURACY_TOLERANCE = 1e-9

STYLES = {"classical": {"marker": "s", "linestyle": "--"}, "pretrained": {"marker": "o", "linestyle": "-"},
          "finetuned": {"marker": "D", "linestyle": "-"}, "latent": {"marker": "^", "linestyle": "-."},
          "joint": {"marker": "v", "linestyle": "-."}, "scalable": {"marker": "P", "linestyle": "-"}}


def decoded_points(per_image: pd.DataFrame, kind: str, metrics: list[str],
                   set_metrics: dict[tuple[str, float], dict[str, float]]) -> pd.DataFrame:
    """One row per codec point of per-image evaluations whose reconstructions the task model measured.

    The task's ``metrics`` of a point are its values over the point's whole set, ``set_metrics[(codec,
    point)]`` (an evaluation's ``summary.json`` ``task_metrics``: mean average precision for detection, the
    mean of the per-image scores for classification); the other measures are means over the images. ``bpp``
    is the rate the task receives: ``bpp_task`` for a codec that carries the task model (its task layers
    alone), else the image's ``bpp``, which is also ``bpp_image``.
    """
    frame = per_image.assign(mse=lambda t: 255.0**2 * 10 ** (-t["psnr"] / 10), bpp_image=per_image["bpp"])
    if "bpp_task" in frame.columns:
        frame["bpp"] = frame["bpp_task"].fillna(frame["bpp"])
    grouped = frame.groupby(["codec", "point"], sort=True)
    means = [name for name in ("bpp_image", "psnr", "mse", "feature_mse", "psnr_salient", "psnr_background")
             if name in frame.columns]
    points = grouped.agg(images=("image_id", "count"), bpp=("bpp", "mean"),
                         **{name: (name, "mean") for name in means}, run_id=("run_id", "first")).reset_index()
    for name in metrics:
        points[name] = [_set_metric(set_metrics, codec, point, name) for codec, point in zip(points["codec"],
                                                                                             points["point"])]
    points["image_size"] = [size_label(group["height"], group["width"]) for _, group in grouped]
    return points.assign(kind=kind).reindex(columns=point_columns(metrics))


def _set_metric(set_metrics: dict[tuple[str, float], dict[str, float]], codec: str, point: float,
                name: str) -> float:
    """The value of metric ``name`` over the images of one codec point, from its evaluation's summary."""
    values = set_metrics.get((codec, float(point)))
    if values is None:
        raise UserError(f"the evaluation of {codec} at {point:g} has no task metrics over its images (summary.json "
                        "task_metrics); it predates them: rerun it (snakemake --forcerun evaluate_codec "
                        "evaluate_finetuned evaluate_scalable evaluate_classical)")
    return float(values[name])


def set_metrics_of(summaries: list[dict]) -> dict[tuple[str, float], dict[str, float]]:
    """``(codec, point)`` → the task's metrics over that point's images, from evaluations' ``summary.json``."""
    return {(summary["codec"], float(point["point"])): point
            for summary in summaries for point in summary.get("task_metrics", [])}


def classifier_points(records: list[dict], kind: str, image_size: str, metrics: list[str]) -> pd.DataFrame:
    """Rows for compressed-domain classifiers from their ``metrics.json`` (one per codec point; ``test_<metric>``)."""
    rows = [{"kind": kind, "codec": f"{m['codec']} {kind} cResNet", "point": m["lmbda"],
             "images": m["test_images"] if "test_images" in m else m["images"]["test"], "bpp": m["bpp"],
             **{name: math.nan if m[f"test_{name}"] is None else m[f"test_{name}"] for name in metrics},
             "image_size": image_size, "run_id": m["run_id"]} for m in records]
    return pd.DataFrame(rows).reindex(columns=point_columns(metrics))


def accuracy_envelope(curve: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The points of a rate–accuracy curve that beat every cheaper point (accuracy strictly rising with bpp).

    Accuracy saturates and is noisy (a test split of N images has only N + 1 values), so a curve often
    repeats or loses accuracy at a higher rate; the bits needed for an accuracy are those of its
    cheapest point reaching it, which is what BD-rate at equal accuracy then interpolates.
    """
    curve = curve.sort_values("bpp")
    best = curve[metric].cummax().shift(fill_value=-np.inf)
    return curve[curve[metric] > best]


def bd_rate_accuracy(points: pd.DataFrame, method: str, metric: str) -> pd.DataFrame:
    """BD-rate (%) at equal ``metric`` (the task's primary accuracy) of every learned curve against every classical one:
    the bits saved (negative) for the same accuracy, over the accuracy range both curves cover
    (on each curve's :func:`accuracy_envelope`), beside the width of that range in points (``overlap_points``;
    the note flags one under 1 point)."""
    rows = []
    anchors = points[points["kind"] == "classical"]
    tests = points[points["kind"] != "classical"]
    for (kind, test_name), test in tests.groupby(["kind", "codec"], sort=False):
        test = accuracy_envelope(test, metric)
        column = f"bd_rate_{metric}"
        for anchor_name, anchor in anchors.groupby("codec"):
            anchor = accuracy_envelope(anchor, metric)
            row = {"kind": kind, "codec": test_name, "anchor": anchor_name, "note": ""}
            try:
                row[column] = bd_rate(anchor["bpp"].to_numpy(), 100 * anchor[metric].to_numpy(),
                                      test["bpp"].to_numpy(), 100 * test[metric].to_numpy(), method=method)
            except ValueError as err:
                row[column], row["note"] = math.nan, str(err)
            row["overlap_points"] = overlap(100 * anchor[metric].to_numpy(), 100 * test[metric].to_numpy())
            if not row["note"] and math.isnan(row[column]):
                row["note"] = "accuracy ranges do not overlap"
            elif not row["note"] and row["overlap_points"] < 1.0:
                row["note"] = "accuracy overlap under 1 point"
            rows.append(row)
    return pd.DataFrame(rows).reindex(columns=["kind", "codec", "anchor", column, "overlap_points", "note"])


def bits_for_accuracy(points: pd.DataFrame, target: float, metric: str) -> pd.DataFrame:
    """For every curve, the bpp at which its ``metric`` first reaches ``target`` (NaN if it never does).

    Along the curve in order of bpp, the first measured point at or above ``target``; when a
    point below it precedes that one, the crossing is interpolated between the two, linearly in
    the metric against log bpp (the axis of the rate–accuracy plots). ``measured_bpp`` is that first
    point itself. Accuracies are fractions of a finite test set, so a point exactly on the
    target counts as reaching it even when ``target`` carries float rounding from its
    subtraction. One column ``share_of_<codec>`` per classical codec: each curve's bpp as a
    fraction of that codec's (0.1 = a tenth of its bits; NaN where either never reaches it).
    """
    rows = []
    for (kind, codec), curve in points.groupby(["kind", "codec"], sort=False):
        curve = curve.sort_values("bpp")
        bpp, score = curve["bpp"].to_numpy(float), curve[metric].to_numpy(float)
        reached = np.flatnonzero(score >= target - ACCURACY_TOLERANCE)
        crossing = measured = math.nan
        if len(reached):
            i = reached[0]
            measured = crossing = bpp[i]
            if i > 0 and score[i] > score[i - 1] and bpp[i - 1] > 0:
                fraction = (target - score[i - 1]) / (score[i] - score[i - 1])
                crossing = float(np.exp(np.log(bpp[i - 1]) + fraction * (np.log(bpp[i]) - np.log(bpp[i - 1]))))
        rows.append({"kind": kind, "codec": codec, f"target_{metric}": target, "bpp": crossing,
                     "measured_bpp": measured})
    table = pd.DataFrame(rows)
    anchors = table[table["kind"] == "classical"]
    for anchor, anchor_bpp in zip(anchors["codec"], anchors["bpp"]):
        table[f"share_of_{anchor}"] = table["bpp"] / anchor_bpp
    return table


def scalable_savings(needed: pd.DataFrame) -> pd.DataFrame:
    """The bits each scalable codec's task layers save at the :func:`bits_for_accuracy` target against every
    other learned curve (seed 002 reports 55 % against Choi & Bajić's codec): ``saving_percent`` =
    100·(1 − bpp / ``against_bpp``); NaN where either curve never reaches the target."""
    learned = needed[needed["kind"].isin(["pretrained", "finetuned", "scalable"])]
    rows = [{"codec": own["codec"], "against": other["codec"], "against_kind": other["kind"], "bpp": own["bpp"],
             "against_bpp": other["bpp"], "saving_percent": 100 * (1 - own["bpp"] / other["bpp"])}
            for _, own in needed[needed["kind"] == "scalable"].iterrows()
            for _, other in learned.iterrows() if other["codec"] != own["codec"]]
    return pd.DataFrame(rows, columns=["codec", "against", "against_kind", "bpp", "against_bpp", "saving_percent"])


def metric_by_group(items: pd.DataFrame, points: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The task's ``metric`` per group (VQA: per question type) of every codec point and of the uncompressed
    images: ``items`` has one row per scored item (``kind``, ``codec``, ``point``, ``group``, ``score``; from
    :meth:`Task.breakdown <taskcodec.tasks.registry.Task.breakdown>`), averaged over the items of each group,
    with the point's ``bpp`` from ``points`` (rate_accuracy.csv; none for the uncompressed images)."""
    table = (items.groupby(["kind", "codec", "point", "group"], sort=False, dropna=False)
             .agg(items=("score", "count"), **{metric: ("score", "mean")}).reset_index())
    table = table.merge(points[["kind", "codec", "point", "bpp"]], on=["kind", "codec", "point"], how="left")
    return table.reindex(columns=["kind", "codec", "point", "bpp", "group", "items", metric])


def rate_accuracy_plot(points: pd.DataFrame, uncompressed: dict, metric: str, title: str, path: Path) -> None:
    """Top-1 (or top-5) against actual bpp, one line per curve, the uncompressed accuracy as a horizontal line."""
    fig, ax = plt.subplots(figsize=(7.5, 5))
    # more curves than the default cycle's 10 colours are common: tab20's 10 dark hues first, then their light pairs
    colors = plt.get_cmap("tab20").colors[::2] + plt.get_cmap("tab20").colors[1::2]
    for i, ((kind, codec), curve) in enumerate(points.groupby(["kind", "codec"], sort=False)):
        curve = curve.sort_values("bpp")
        ax.plot(curve["bpp"], 100 * curve[metric], label=codec, linewidth=1.5, markersize=4,
                color=colors[i % len(colors)], **STYLES[kind])
    if uncompressed.get(metric) is not None:
        ax.axhline(100 * uncompressed[metric], color="black", linewidth=1, label="uncompressed")
    ax.set_xscale("log")
    for axis_formatter in (ax.xaxis.set_major_formatter, ax.xaxis.set_minor_formatter):
        axis_formatter(FormatStrFormatter("%g"))  # 0.3, 0.5, 1, 2 rather than 3×10⁻¹
    ax.set_xlabel("bits per pixel the task receives (actual, from file sizes; log scale)")
    ax.set_ylabel(f"{metric} accuracy (%)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_png(fig, path)
