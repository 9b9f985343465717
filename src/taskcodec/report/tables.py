"""Aggregate per-image measurements into rate–distortion points and BD-rate tables."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from taskcodec.metrics import bd_rate


def size_label(heights: pd.Series, widths: pd.Series) -> str:
    """Image sizes of a group as 'W×H' (several sizes joined by ', ')."""
    sizes = sorted({f"{w}×{h}" for h, w in zip(heights, widths)})
    return ", ".join(sizes)


def rd_points(per_image: pd.DataFrame) -> pd.DataFrame:
    """One row per codec point: mean bpp, estimated bpp, PSNR and MS-SSIM over images, with image size."""
    grouped = per_image.groupby(["family", "codec", "point"], sort=True)
    points = grouped.agg(images=("image_id", "count"), bpp=("bpp", "mean"), bpp_estimated=("bpp_estimated", "mean"),
                         psnr=("psnr", "mean"), ms_ssim=("ms_ssim", "mean")).reset_index()
    points["image_size"] = [size_label(group["height"], group["width"]) for _, group in grouped]
    return points


def ms_ssim_db(values: np.ndarray | pd.Series) -> np.ndarray:
    """MS-SSIM on a dB scale, −10·log10(1 − MS-SSIM), as BD-rate on MS-SSIM is usually reported."""
    return -10 * np.log10(np.clip(1 - np.asarray(values, dtype=float), 1e-12, None))


def load_reference_curves(folder: Path) -> pd.DataFrame:
    """CompressAI-format result JSONs (``{"name", "results": {"bpp", "psnr-rgb", "ms-ssim-rgb"}}``) as points."""
    rows = []
    for path in sorted(folder.glob("*.json")):
        data = json.loads(path.read_text())
        results = data["results"]
        for i, bpp in enumerate(results["bpp"]):
            rows.append({"family": "reference", "codec": f"{data['name']} (published)", "point": i, "bpp": bpp,
                         "psnr": results["psnr-rgb"][i], "ms_ssim": results.get("ms-ssim-rgb", [math.nan] * (i + 1))[i]})
    return pd.DataFrame(rows)


def bd_rate_table(points: pd.DataFrame, method: str) -> pd.DataFrame:
    """BD-rate (%) of every learned curve against every classical curve, on PSNR and on MS-SSIM (dB)."""
    rows = []
    learned = points[points["family"] == "learned"]
    anchors = points[points["family"] == "classical"]
    for test_name, test in learned.groupby("codec"):
        for anchor_name, anchor in anchors.groupby("codec"):
            row = {"codec": test_name, "anchor": anchor_name}
            for metric, transform in (("psnr", np.asarray), ("ms_ssim", ms_ssim_db)):
                try:
                    row[f"bd_rate_{metric}"] = bd_rate(anchor["bpp"].to_numpy(), transform(anchor[metric]),
                                                       test["bpp"].to_numpy(), transform(test[metric]), method=method)
                except ValueError as err:
                    row[f"bd_rate_{metric}"] = math.nan
                    row["note"] = str(err)
            rows.append(row)
    columns = ["codec", "anchor", "bd_rate_psnr", "bd_rate_ms_ssim", "note"]
    return pd.DataFrame(rows).reindex(columns=columns)
