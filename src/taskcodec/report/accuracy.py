"""Rate–accuracy: task accuracy against actual bpp for every way of sending images to the machine.

The kinds of points (``kind`` column): the classical codecs and the pretrained
(human-oriented) and task-fine-tuned learned codecs, decoded and classified by
the frozen task model (seed 000); and the compressed-domain classifiers of
seed 004, which classify the decoded latents ŷ, σ̂ without reconstructing pixels
(``latent``: trained on the cached latents of a pretrained codec; ``joint``: its
encoder fine-tuned together with the classifier, on real bitstreams).
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

from taskcodec import io  # noqa: E402
from taskcodec.metrics import bd_rate  # noqa: E402
from taskcodec.report.tables import size_label  # noqa: E402

POINT_COLUMNS = ["kind", "codec", "point", "images", "bpp", "top1", "top5", "psnr", "mse", "feature_mse",
                 "psnr_salient", "psnr_background", "image_size", "run_id"]
#: slack when comparing an accuracy with a target computed in floating point (far below 1 / any test set's size)
ACCURACY_TOLERANCE = 1e-9

STYLES = {"classical": {"marker": "s", "linestyle": "--"}, "pretrained": {"marker": "o", "linestyle": "-"},
          "task-tuned": {"marker": "D", "linestyle": "-"}, "latent": {"marker": "^", "linestyle": "-."},
          "joint": {"marker": "v", "linestyle": "-."}}


def decoded_points(per_image: pd.DataFrame, kind: str) -> pd.DataFrame:
    """One row per codec point of per-image evaluations whose reconstructions were classified."""
    frame = per_image.assign(mse=lambda t: 255.0**2 * 10 ** (-t["psnr"] / 10))
    grouped = frame.groupby(["codec", "point"], sort=True)
    points = grouped.agg(images=("image_id", "count"), bpp=("bpp", "mean"), top1=("top1", "mean"),
                         top5=("top5", "mean"), psnr=("psnr", "mean"), mse=("mse", "mean"),
                         feature_mse=("feature_mse", "mean"), psnr_salient=("psnr_salient", "mean"),
                         psnr_background=("psnr_background", "mean"),
                         run_id=("run_id", "first")).reset_index()
    points["image_size"] = [size_label(group["height"], group["width"]) for _, group in grouped]
    return points.assign(kind=kind).reindex(columns=POINT_COLUMNS)


def classifier_points(metrics: list[dict], kind: str, image_size: str) -> pd.DataFrame:
    """Rows for compressed-domain classifiers from their ``metrics.json`` (one per codec point)."""
    rows = [{"kind": kind, "codec": f"{m['codec'] if kind == 'latent' else m['arch']}/N{m['N']}-M{m['M']} {kind} cResNet",
             "point": m["lmbda"], "images": m["test_images"] if "test_images" in m else m["images"]["test"],
             "bpp": m["bpp"], "top1": m["test_top1"], "top5": math.nan if m["test_top5"] is None else m["test_top5"],
             "image_size": image_size, "run_id": m["run_id"]} for m in metrics]
    return pd.DataFrame(rows).reindex(columns=POINT_COLUMNS)


def accuracy_envelope(curve: pd.DataFrame) -> pd.DataFrame:
    """The points of a rate–accuracy curve that beat every cheaper point (accuracy strictly rising with bpp).

    Accuracy saturates and is noisy (a test split of N images has only N + 1 values), so a curve often
    repeats or loses accuracy at a higher rate; the bits needed for an accuracy are those of its
    cheapest point reaching it, which is what BD-rate at equal accuracy then interpolates.
    """
    curve = curve.sort_values("bpp")
    best = curve["top1"].cummax().shift(fill_value=-np.inf)
    return curve[curve["top1"] > best]


def bd_rate_accuracy(points: pd.DataFrame, method: str) -> pd.DataFrame:
    """BD-rate (%) at equal top-1 accuracy of every learned curve against every classical one:
    the bits saved (negative) for the same accuracy, over the accuracy range both curves cover
    (on each curve's :func:`accuracy_envelope`)."""
    rows = []
    anchors = points[points["kind"] == "classical"]
    tests = points[points["kind"] != "classical"]
    for (kind, test_name), test in tests.groupby(["kind", "codec"], sort=False):
        test = accuracy_envelope(test)
        for anchor_name, anchor in anchors.groupby("codec"):
            anchor = accuracy_envelope(anchor)
            row = {"kind": kind, "codec": test_name, "anchor": anchor_name, "note": ""}
            try:
                row["bd_rate_top1"] = bd_rate(anchor["bpp"].to_numpy(), 100 * anchor["top1"].to_numpy(),
                                              test["bpp"].to_numpy(), 100 * test["top1"].to_numpy(), method=method)
            except ValueError as err:
                row["bd_rate_top1"], row["note"] = math.nan, str(err)
            if not row["note"] and math.isnan(row["bd_rate_top1"]):
                row["note"] = "accuracy ranges do not overlap"
            rows.append(row)
    return pd.DataFrame(rows).reindex(columns=["kind", "codec", "anchor", "bd_rate_top1", "note"])


def bits_for_accuracy(points: pd.DataFrame, target: float) -> pd.DataFrame:
    """For every curve, the bpp at which its top-1 first reaches ``target`` (NaN if it never does).

    Along the curve in order of bpp, the first measured point at or above ``target``; when a
    point below it precedes that one, the crossing is interpolated between the two, linearly in
    top-1 against log bpp (the axis of the rate–accuracy plots). ``measured_bpp`` is that first
    point itself. Accuracies are fractions of a finite test set, so a point exactly on the
    target counts as reaching it even when ``target`` carries float rounding from its
    subtraction. One column ``share_of_<codec>`` per classical codec: each curve's bpp as a
    fraction of that codec's (0.1 = a tenth of its bits; NaN where either never reaches it).
    """
    rows = []
    for (kind, codec), curve in points.groupby(["kind", "codec"], sort=False):
        curve = curve.sort_values("bpp")
        bpp, top1 = curve["bpp"].to_numpy(float), curve["top1"].to_numpy(float)
        reached = np.flatnonzero(top1 >= target - ACCURACY_TOLERANCE)
        crossing = measured = math.nan
        if len(reached):
            i = reached[0]
            measured = crossing = bpp[i]
            if i > 0 and top1[i] > top1[i - 1] and bpp[i - 1] > 0:
                fraction = (target - top1[i - 1]) / (top1[i] - top1[i - 1])
                crossing = float(np.exp(np.log(bpp[i - 1]) + fraction * (np.log(bpp[i]) - np.log(bpp[i - 1]))))
        rows.append({"kind": kind, "codec": codec, "target_top1": target, "bpp": crossing, "measured_bpp": measured})
    table = pd.DataFrame(rows)
    anchors = table[table["kind"] == "classical"]
    for anchor, anchor_bpp in zip(anchors["codec"], anchors["bpp"]):
        table[f"share_of_{anchor}"] = table["bpp"] / anchor_bpp
    return table


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
    ax.set_xlabel("bits per pixel (actual, from file sizes; log scale)")
    ax.set_ylabel(f"{metric} accuracy (%)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def top_predictions(logits: np.ndarray, class_names: list[str], k: int = 3) -> str:
    """The ``k`` most probable classes with their softmax confidences, one per line."""
    probabilities = np.exp(logits - logits.max())
    probabilities /= probabilities.sum()
    order = np.argsort(-probabilities)[:k]
    return "\n".join(f"{class_names[i]} {100 * probabilities[i]:.0f}%" for i in order)
