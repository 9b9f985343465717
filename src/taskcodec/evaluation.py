"""Per-image rate and quality measurements shared by the learned and classical evaluations.

Beside rate, PSNR and MS-SSIM, images of a prepared (labeled) split get the
machine-side measures of :class:`TaskMeasures`: the frozen task model's
prediction on the reconstruction, the distortion of its intermediate features
against those cached for the original image (``extract_features``), and PSNR
inside and outside the salient region.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from taskcodec.data.images import load_rgb8
from taskcodec.errors import UserError
from taskcodec.metrics import ms_ssim_scales, ms_ssim_uint8, psnr, region_psnr

#: columns of every per_image.csv written by the evaluation stages (task columns empty without a task model)
ROW_FIELDS = ["family", "codec", "point", "image_id", "height", "width", "bytes", "bpp", "bpp_estimated",
              "psnr", "ms_ssim", "label", "pred", "top1", "top5", "feature_mse", "psnr_salient", "psnr_background",
              "run_id"]


def read_table(path: Path) -> pd.DataFrame:
    """Read a per-image CSV written by a stage; image ids stay strings ("0801" is not 801)."""
    return pd.read_csv(path, dtype={"image_id": str}, keep_default_na=False, na_values=[""])


def load_original(path: Path) -> np.ndarray:
    """An evaluation image as 8-bit RGB; one too small for MS-SSIM is an error naming it."""
    image = load_rgb8(path)
    height, width = image.shape[:2]
    try:
        ms_ssim_scales(height, width)
    except ValueError:
        raise UserError(f"image {path} is {width}×{height}, too small to evaluate (MS-SSIM needs at least "
                        "11 pixels per side); remove it from the dataset") from None
    return image


def measure(original: np.ndarray, reconstruction: np.ndarray, n_bytes: int) -> dict[str, float]:
    """Actual bpp from ``n_bytes`` and PSNR / MS-SSIM of an 8-bit reconstruction."""
    if original.shape != reconstruction.shape:
        raise ValueError(f"reconstruction {reconstruction.shape} does not match original {original.shape}")
    height, width = original.shape[:2]
    return {"height": height, "width": width, "bytes": n_bytes, "bpp": 8 * n_bytes / (height * width),
            "psnr": psnr(original, reconstruction), "ms_ssim": ms_ssim_uint8(original, reconstruction)}


def save_reconstruction(folder: Path, name: str, image: np.ndarray) -> None:
    """Save an 8-bit reconstruction as PNG (lossless) under ``folder``."""
    path = folder / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


class TaskMeasures:
    """Task accuracy of a reconstruction through the frozen task model, the mean squared difference of its
    feature maps from the original image's (``features``: an ``extract_features`` file of the split), and PSNR
    inside / outside the salient region (saliency ≥ ``threshold``, maps of the saliency stage), for images of
    a prepared split."""

    def __init__(self, task_model: Path | None, saliency: Path | None, threshold: float, device,
                 features: Path | None = None):
        from taskcodec.tasks.checkpoint import load_task_model  # torch only for the stages that classify

        self.device = device
        self.model = load_task_model(task_model, device)[0] if task_model is not None else None
        self.maps = Path(saliency) / "maps" if saliency is not None else None
        self.threshold = threshold
        self.features = None
        if features is not None:
            if self.model is None:
                raise UserError(f"{features}: measuring feature distortion needs --task-model, the task model "
                                "that extracted these features")
            from taskcodec.tasks.features import CachedFeatures

            self.features = CachedFeatures(features, self.model, task_model)

    def measure(self, image_id: str, label: int, original: np.ndarray, reconstruction: np.ndarray) -> dict:
        row = {}
        if self.model is not None:
            from taskcodec.tasks.evaluation import image_logits

            ranked = image_logits(self.model, reconstruction, self.device).argsort(descending=True).tolist()
            row.update(label=label, pred=ranked[0], top1=float(ranked[0] == label),
                       top5=float(label in ranked[:5]) if len(ranked) >= 5 else np.nan)
            if self.features is not None:  # the features of image_logits' forward pass
                row["feature_mse"] = self.features.mse_of_last_forward(image_id)
        if self.maps is not None:
            saliency = np.asarray(Image.open(self.maps / f"{image_id}.png"), dtype=np.float32) / 255.0
            row["psnr_salient"], row["psnr_background"] = region_psnr(original, reconstruction,
                                                                      saliency >= self.threshold)
        return row
