"""Per-image rate and quality measurements shared by the learned and classical evaluations.

Beside rate, PSNR and MS-SSIM, every reconstruction gets the no-reference NIQE
(:mod:`taskcodec.niqe`; NaN when switched off by ``evaluate.niqe``, under 96 pixels
a side, or without its parameters). Images of a prepared split get PSNR inside and
outside the salient region (:class:`SalientRegions`) and, for every frozen task model
of the run, the machine-side measures of :class:`TaskMeasures`: its prediction on the
reconstruction and the distortion of its intermediate features against those cached
for the original image (``extract_features``), in a table of that task's own
(:func:`write_task_results`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from PIL import Image

from taskcodec import artifacts
from taskcodec.data.stored import StoredImage, read_image
from taskcodec.errors import UserError
from taskcodec.metrics import ms_ssim_scales, ms_ssim_uint8, psnr, region_psnr
from taskcodec.niqe import niqe as niqe_score

if TYPE_CHECKING:
    import torch

#: the keys of the ``evaluate`` section both evaluation stages read (beside a classical codec's sweep)
EVALUATE_KEYS = ("save_reconstructions", "saliency_threshold", "niqe")

#: the first columns of every per_image.csv written by the evaluation stages (a task's table puts its own,
#: :attr:`TaskMeasures.columns`, right after them); ``kind`` is classical, pretrained or finetuned
#: (:data:`taskcodec.report.tables.LEARNED_KINDS`)
BASE_FIELDS = ["kind", "codec", "point", "image_id", "height", "width", "bytes", "bpp", "bpp_estimated",
               "psnr", "ms_ssim", "niqe"]


def row_fields(regions: "SalientRegions") -> list[str]:
    """The columns of a per_image.csv measured with ``regions`` (the tasks' columns are in their own tables,
    :func:`write_task_results`)."""
    return BASE_FIELDS + regions.columns + ["run_id"]


def read_table(path: Path) -> pd.DataFrame:
    """Read a table written by a stage (per-image CSV, cache index, report table); image ids stay strings
    ("0801" is not 801), and so do MLflow run ids: pandas 2.3 crashes (segmentation fault) when it tries a
    hex id such as 1e4112518481493b… as a float with a huge exponent (pandas-dev/pandas#63089)."""
    return pd.read_csv(path, dtype={"image_id": str, "run_id": str}, keep_default_na=False, na_values=[""])


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
    """Machine-side measures of a reconstruction by one frozen task model, for images of a prepared split: its
    prediction and scores (the metrics its task declares, :mod:`taskcodec.tasks.registry`) and the mean squared
    difference of its feature maps from the original image's (``features``: an ``extract_features`` file of the
    split).

    It keeps the task model's outputs and targets of every codec point it measures, so that :meth:`summarize`
    gives the task's metrics over each point's whole set (:meth:`Task.summarize`: mean average precision for
    detection; for classification the mean of the per-image scores)."""

    def __init__(self, task_model: Path, device, features: Path | None = None):
        from taskcodec.tasks.checkpoint import load_task_model  # torch only for the stages that measure a task

        self.device = device
        self.model, info = load_task_model(task_model, device)
        self.task = info["task"]
        self.features = None
        if features is not None:
            from taskcodec.tasks.features import CachedFeatures

            self.features = CachedFeatures(features, self.model, task_model)
        self.columns = ["label", "pred", *self.task.metric_names] + (["feature_mse"] if self.features else [])
        self.collected: dict[float | None, tuple[list, list]] = {}  # point -> (outputs, targets) of its images

    @property
    def name(self) -> str:
        return self.task.name

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
        from taskcodec.tasks.evaluation import image_outputs

        target = self.task.target(sample, original)
        if outputs is None or self.features is not None:  # this forward pass also gives the features
            reconstructed = image_outputs(self.model, self.task, reconstruction, target, self.device)[None]
            outputs = reconstructed if outputs is None else outputs
        outputs = outputs.float().cpu()
        scores = self.task.scores(outputs, self.task.collate([target]))
        row = {"label": _cell(target), "pred": _cell(self.task.predictions(outputs)[0]),
               **{name: float(value[0]) for name, value in scores.items()}}
        if self.features is not None:
            row["feature_mse"] = self.features.mse_of_last_forward(image_id)
        collected = self.collected.setdefault(point, ([], []))
        collected[0].append(outputs)
        collected[1].append(target)
        return row

    def summarize(self) -> list[dict]:
        """``{"point", "images", <metric>: value}`` over all images of every point measured, NaN where a metric
        is undefined: the ``task_metrics`` of the task's ``summary.json``, from which the rate–accuracy report
        takes its accuracies."""
        import torch

        return [{"point": point, "images": len(targets),
                 **self.task.summarize(torch.cat(outputs), self.task.collate(targets))}
                for point, (outputs, targets) in sorted(self.collected.items())]


def task_measures(task_models: list[Path] | None, features: list[Path] | None, dataset: str,
                  device) -> list[TaskMeasures]:
    """One :class:`TaskMeasures` per task model (``--task-model``), each with the feature file of ``dataset`` in
    the ``extract_features`` folder at the same position of ``features`` (``--features``), if given."""
    task_models = task_models or []
    if features and len(features) != len(task_models):
        raise UserError(f"--features names {len(features)} folders for {len(task_models)} task models; give one "
                        "extract_features folder per --task-model, in the same order, or none")
    measures = [TaskMeasures(model, device, Path(folder) / f"{dataset}.pt" if features else None)
                for model, folder in zip(task_models, features or [None] * len(task_models))]
    names = [measure.name for measure in measures]
    if len(set(names)) < len(names):
        raise UserError(f"the task models {[str(model) for model in task_models]} are of the tasks {names}; "
                        "give one model per task")
    return measures


class SalientRegions:
    """PSNR inside and outside the salient region of each image (saliency ≥ ``threshold``, the maps of the
    saliency stage in ``saliency``; none without them)."""

    def __init__(self, saliency: Path | None, threshold: float):
        self.maps = Path(saliency) / "maps" if saliency is not None else None
        self.threshold = threshold
        self.columns = ["psnr_salient", "psnr_background"] if self.maps else []

    def measure(self, image_id: str, original: np.ndarray, reconstruction: np.ndarray) -> dict:
        if self.maps is None:
            return {}
        saliency = np.asarray(Image.open(self.maps / f"{image_id}.png"), dtype=np.float32) / 255.0
        inside, outside = region_psnr(original, reconstruction, saliency >= self.threshold)
        return {"psnr_salient": inside, "psnr_background": outside}


def write_task_results(folder: Path, table: pd.DataFrame, summary: dict, task: TaskMeasures, rows: list[dict],
                       one_point: bool) -> dict:
    """``<folder>/task/<name>/per_image.csv`` and ``summary.json``: the evaluation's ``table`` (its per-image
    rows) and ``summary`` with ``task``'s columns (``rows``, one per table row, in its order) and its metrics
    over each point's images (``task_metrics``); for the evaluation of ``one_point`` also that point's values.
    A point's values are the means of its per-image measurements, with its set-level metrics in place of the
    means of per-image scores. Returns every point's values as the tracker logs them:
    ``{point: {"<task>/<metric>": value}}``."""
    measured = pd.DataFrame(rows, columns=task.columns, index=table.index)
    columns = list(table.columns)
    at = columns.index("niqe") + 1  # the task's columns after the image measures, as a single-task table had them
    task_table = pd.concat([table[columns[:at]], measured, table[columns[at:]]], axis=1)
    task_metrics = task.summarize()
    set_level = {point["point"]: {name: point[name] for name in task.task.metric_names} for point in task_metrics}
    values = {point: {**means.to_dict(), **set_level[point]}
              for point, means in measured[task.metrics].groupby(table["point"]).mean().iterrows()}
    out = folder / "task" / task.name
    out.mkdir(parents=True)
    task_table.to_csv(out / "per_image.csv", index=False)
    artifacts.write_json(out / "summary.json", {**summary, **(values[summary["point"]] if one_point else {}),
                                                "task_metrics": task_metrics})
    return {point: {f"{task.name}/{key}": value for key, value in point_values.items()}
            for point, point_values in values.items()}


def _cell(value) -> int | float | str:
    """A target or prediction as a per_image.csv cell: a number as it is, anything else (boxes) as JSON."""
    import torch

    if isinstance(value, torch.Tensor) and value.dim() == 0:
        return value.item()
    return value if isinstance(value, (int, float, str)) else json.dumps(value, separators=(",", ":"))
