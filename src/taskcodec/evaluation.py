"""Per-image rate and quality measurements shared by the learned and classical evaluations.

Beside rate, PSNR and MS-SSIM, every reconstruction gets the no-reference NIQE
(:mod:`taskcodec.niqe`; NaN when switched off by ``evaluate.niqe``, under 96 pixels
a side, or without its parameters). Images of a prepared (labeled) split get the
machine-side measures of :class:`TaskMeasures`: the frozen task model's
prediction on the reconstruction, the distortion of its intermediate features
against those cached for the original image (``extract_features``), and PSNR
inside and outside the salient region.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from PIL import Image

from taskcodec.data.stored import StoredImage, read_image
from taskcodec.errors import UserError
from taskcodec.metrics import ms_ssim_scales, ms_ssim_uint8, psnr, region_psnr
from taskcodec.niqe import niqe as niqe_score

if TYPE_CHECKING:
    import torch

#: columns of every per_image.csv written by the evaluation stages, around the task's own columns
#: (:attr:`TaskMeasures.columns`); ``kind`` is classical, pretrained or finetuned
#: (:data:`taskcodec.report.tables.LEARNED_KINDS`)
#: the keys of the ``evaluate`` section both evaluation stages read (beside a classical codec's sweep)
EVALUATE_KEYS = ("save_reconstructions", "saliency_threshold", "niqe")

BASE_FIELDS = ["kind", "codec", "point", "image_id", "height", "width", "bytes", "bpp", "bpp_estimated",
               "psnr", "ms_ssim", "niqe"]


def row_fields(task: "TaskMeasures") -> list[str]:
    """The columns of a per_image.csv measured with ``task``."""
    return BASE_FIELDS + task.columns + ["run_id"]


def read_table(path: Path) -> pd.DataFrame:
    """Read a per-image CSV written by a stage; image ids stay strings ("0801" is not 801)."""
    return pd.read_csv(path, dtype={"image_id": str}, keep_default_na=False, na_values=[""])


def load_original(path: StoredImage | str | Path) -> np.ndarray:
    """An evaluation image (:func:`~taskcodec.data.stored.read_image`: a manifest's image or its address, or an image
    file) as 8-bit RGB; one too small for MS-SSIM is an error naming it."""
    image = read_image(path)
    height, width = image.shape[:2]
    try:
        ms_ssim_scales(height, width)
    except ValueError:
        raise UserError(f"image {path} is {width}×{height}, too small to evaluate (MS-SSIM needs at least "
                        "11 pixels per side); remove it from the dataset") from None
    return image


def measure(original: np.ndarray, reconstruction: np.ndarray, n_bytes: int, *, niqe: bool) -> dict[str, float]:
    """Actual bpp from ``n_bytes``, PSNR / MS-SSIM of an 8-bit reconstruction and, with ``niqe`` (the
    ``evaluate.niqe`` param), its NIQE (:func:`taskcodec.niqe.niqe`; NaN when not measured)."""
    if original.shape != reconstruction.shape:
        raise ValueError(f"reconstruction {reconstruction.shape} does not match original {original.shape}")
    height, width = original.shape[:2]
    return {"height": height, "width": width, "bytes": n_bytes, "bpp": 8 * n_bytes / (height * width),
            "psnr": psnr(original, reconstruction), "ms_ssim": ms_ssim_uint8(original, reconstruction),
            "niqe": niqe_score(reconstruction) if niqe else math.nan}


def save_reconstruction(folder: Path, name: str, image: np.ndarray) -> None:
    """Save an 8-bit reconstruction as PNG (lossless) under ``folder``."""
    path = folder / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


class TaskMeasures:
    """Machine-side measures of a reconstruction, for images of a prepared split: the frozen task model's
    prediction and scores (the metrics its task declares, :mod:`taskcodec.tasks.registry`), the mean squared
    difference of its feature maps from the original image's (``features``: an ``extract_features`` file of the
    split), and PSNR inside / outside the salient region (saliency ≥ ``threshold``, maps of the saliency stage).

    It keeps the task model's outputs and targets of every codec point it measures, so that :meth:`summarize`
    gives the task's metrics over each point's whole set (:meth:`Task.summarize`: mean average precision for
    detection; for classification the mean of the per-image scores)."""

    def __init__(self, task_model: Path | None, saliency: Path | None, threshold: float, device,
                 features: Path | None = None):
        from taskcodec.tasks.checkpoint import load_task_model  # torch only for the stages that classify

        self.device = device
        self.model, self.task = None, None
        if task_model is not None:
            self.model, info = load_task_model(task_model, device)
            self.task = info["task"]
        self.maps = Path(saliency) / "maps" if saliency is not None else None
        self.threshold = threshold
        self.features = None
        if features is not None:
            if self.model is None:
                raise UserError(f"{features}: measuring feature distortion needs --task-model, the task model "
                                "that extracted these features")
            from taskcodec.tasks.features import CachedFeatures

            self.features = CachedFeatures(features, self.model, task_model)
        self.columns = ((["label", "pred", *self.task.metric_names] if self.task else [])
                        + (["feature_mse"] if self.features else [])
                        + (["psnr_salient", "psnr_background"] if self.maps else []))
        self.collected: dict[float | None, tuple[list, list]] = {}  # point -> (outputs, targets) of its images

    @property
    def metrics(self) -> list[str]:
        """The columns holding measurements (means are reported), not identities."""
        return [column for column in self.columns if column not in ("label", "pred")]

    def measure(self, image_id: str, sample: dict, original: np.ndarray, reconstruction: np.ndarray,
                point: float | None = None, outputs: torch.Tensor | None = None) -> dict:
        """The measures of one reconstruction at codec ``point``; ``sample`` holds the task's fields (its label,
        its objects...). ``outputs`` are the task model's outputs when the codec computed them itself (from its
        task layers, :meth:`~taskcodec.codecs.contract.LayeredCodec.task_outputs`); otherwise the task model
        runs on the reconstruction. Feature distortion is always the reconstruction's."""
        row = {}
        if self.model is not None:
            from taskcodec.tasks.evaluation import image_outputs

            target = self.task.target(sample, original)
            if outputs is None or self.features is not None:  # this forward pass also gives the features
                reconstructed = image_outputs(self.model, self.task, reconstruction, target, self.device)[None]
                outputs = reconstructed if outputs is None else outputs
            outputs = outputs.float().cpu()
            scores = self.task.scores(outputs, self.task.collate([target]))
            row.update(label=_cell(target), pred=_cell(self.task.predictions(outputs)[0]),
                       **{name: float(value[0]) for name, value in scores.items()})
            if self.features is not None:
                row["feature_mse"] = self.features.mse_of_last_forward(image_id)
            collected = self.collected.setdefault(point, ([], []))
            collected[0].append(outputs)
            collected[1].append(target)
        if self.maps is not None:
            saliency = np.asarray(Image.open(self.maps / f"{image_id}.png"), dtype=np.float32) / 255.0
            row["psnr_salient"], row["psnr_background"] = region_psnr(original, reconstruction,
                                                                      saliency >= self.threshold)
        return row

    def summarize(self) -> list[dict]:
        """``{"point", "images", <metric>: value}`` over all images of every point measured (none without a task
        model), NaN where a metric is undefined: a stage's ``summary.json`` ``task_metrics``, from which the
        rate–accuracy report takes its accuracies."""
        import torch

        return [{"point": point, "images": len(targets),
                 **self.task.summarize(torch.cat(outputs), self.task.collate(targets))}
                for point, (outputs, targets) in sorted(self.collected.items())]


def _cell(value) -> int | float | str:
    """A target or prediction as a per_image.csv cell: a number as it is, anything else (boxes) as JSON."""
    import torch

    if isinstance(value, torch.Tensor) and value.dim() == 0:
        return value.item()
    return value if isinstance(value, (int, float, str)) else json.dumps(value, separators=(",", ":"))
