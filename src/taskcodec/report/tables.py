"""Aggregate per-image measurements into rate–distortion points and BD-rate tables."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from taskcodec.errors import UserError
from taskcodec.metrics import bd_or_reason, bd_quality, bd_rate

#: the ``kind`` values of learned codec points (the others: classical, reference)
LEARNED_KINDS = ("pretrained", "finetuned", "scalable", "variable-rate")


def size_label(heights: pd.Series, widths: pd.Series) -> str:
    """Image sizes of a group as 'W×H' (several sizes joined by ', ')."""
    sizes = sorted({f"{w}×{h}" for h, w in zip(heights, widths)})
    return ", ".join(sizes)


def rd_points(per_image: pd.DataFrame) -> pd.DataFrame:
    """One row per codec point: mean bpp, estimated bpp, PSNR, MS-SSIM and NIQE over images, image size, and the
    MLflow run id of the evaluation job that measured it. NIQE is the mean over the images that have one (NaN:
    none has, e.g. all under 96 pixels a side, or ``niqe`` missing from tables written before it was measured)."""
    if "niqe" not in per_image:
        per_image = per_image.assign(niqe=math.nan)
    grouped = per_image.groupby(["kind", "codec", "point"], sort=True)
    points = grouped.agg(images=("image_id", "count"), bpp=("bpp", "mean"), bpp_estimated=("bpp_estimated", "mean"),
                         psnr=("psnr", "mean"), ms_ssim=("ms_ssim", "mean"), niqe=("niqe", "mean"),
                         run_id=("run_id", "first")).reset_index()
    points["image_size"] = [size_label(group["height"], group["width"]) for _, group in grouped]
    return points


def ms_ssim_db(values: np.ndarray | pd.Series) -> np.ndarray:
    """MS-SSIM on a dB scale, −10·log10(1 − MS-SSIM), as BD-rate on MS-SSIM is usually reported."""
    return -10 * np.log10(np.clip(1 - np.asarray(values, dtype=float), 1e-12, None))


def load_reference_curves(folder: Path) -> pd.DataFrame:
    """CompressAI-format result JSONs (``{"name", "results": {"bpp", "psnr-rgb", "ms-ssim-rgb"}}``) as points.

    Curves are labelled by file name, since several files may share a ``name`` (e.g. CPU and GPU runs).
    """
    rows = []
    for path in sorted(folder.glob("*.json")):
        try:
            results = json.loads(path.read_text())["results"]
            bpp, psnr = results["bpp"], results["psnr-rgb"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise UserError(f"reference curve {path} is not a CompressAI result file ({err}); fix or remove it") from None
        ms_ssim = results.get("ms-ssim-rgb", [math.nan] * len(bpp))
        for i, rate in enumerate(bpp):
            rows.append({"kind": "reference", "codec": f"{path.stem} (published)", "point": i, "bpp": rate,
                         "psnr": psnr[i], "ms_ssim": ms_ssim[i]})
    return pd.DataFrame(rows)


#: BD-rates over a quality overlap narrower than this (dB) are flagged in the table's note
NARROW_OVERLAP_DB = 1.0


def overlap(anchor: np.ndarray, test: np.ndarray) -> float:
    """Width of the quality range two curves share (≤ 0: none); BD values average over it alone."""
    return float(min(np.max(anchor), np.max(test)) - max(np.min(anchor), np.min(test)))


def bd_rate_table(points: pd.DataFrame, method: str) -> pd.DataFrame:
    """BD-rate (%) on PSNR and on MS-SSIM (dB), and BD-PSNR (dB), of every learned curve against every classical
    one, each beside the width of the quality overlap it averages over (``overlap_psnr_db``,
    ``overlap_ms_ssim_db``); the note flags overlaps under :data:`NARROW_OVERLAP_DB`."""
    rows = []
    learned = points[points["kind"].isin(LEARNED_KINDS)]
    anchors = points[points["kind"] == "classical"]
    measures = (("bd_rate_psnr", bd_rate, "psnr", np.asarray), ("bd_rate_ms_ssim", bd_rate, "ms_ssim", ms_ssim_db),
                ("bd_psnr_db", bd_quality, "psnr", np.asarray))
    for test_name, test in learned.groupby("codec"):
        for anchor_name, anchor in anchors.groupby("codec"):
            row = {"codec": test_name, "anchor": anchor_name, "note": ""}
            for column, function, metric, transform in measures:
                row[column], reason = bd_or_reason(function, anchor["bpp"].to_numpy(), transform(anchor[metric]),
                                                   test["bpp"].to_numpy(), transform(test[metric]), method=method)
                row["note"] = reason or row["note"]
            row["overlap_psnr_db"] = overlap(anchor["psnr"].to_numpy(), test["psnr"].to_numpy())
            row["overlap_ms_ssim_db"] = overlap(ms_ssim_db(anchor["ms_ssim"]), ms_ssim_db(test["ms_ssim"]))
            if not row["note"] and math.isnan(row["bd_rate_psnr"]):
                row["note"] = "PSNR ranges do not overlap"
            elif not row["note"] and row["overlap_psnr_db"] < NARROW_OVERLAP_DB:
                row["note"] = f"PSNR overlap under {NARROW_OVERLAP_DB:g} dB"
            rows.append(row)
    columns = ["codec", "anchor", "bd_rate_psnr", "overlap_psnr_db", "bd_rate_ms_ssim", "overlap_ms_ssim_db",
               "bd_psnr_db", "note"]
    return pd.DataFrame(rows).reindex(columns=columns)
