"""Visual saliency maps, used to weight the distortion term (cf. seed 003).

Seed 003 weights the reconstruction error with a learned saliency model; no
weights can be downloaded here, so the project uses a training-free method:

* ``spectral-residual``: X. Hou and L. Zhang, "Saliency Detection: A Spectral
  Residual Approach", CVPR 2007. The grayscale image is shrunk to a small
  working size (the paper uses 64 px wide); the log amplitude spectrum minus
  its 3×3 local average (the *spectral residual*) is combined with the
  original phase and transformed back; the squared magnitude, smoothed by a
  Gaussian, is the saliency map. Computed with OpenCV's
  ``cv2.saliency.StaticSaliencySpectralResidual`` (opencv-contrib), which
  smooths with a fixed 5×5 kernel; a further Gaussian of ``blur_sigma``
  working-size pixels follows, as in the authors' MATLAB code (σ = 2.5),
  before the map is stretched to [0, 1] at the image's own size.

A map is float32 H×W in [0, 1], the size of its image. The saliency stage
stores all maps of a manifest as one uint8 tensor (:func:`save_maps`), which
training loads aligned with its images (:func:`load_maps`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import cv2
import numpy as np
import torch

from taskcodec import artifacts
from taskcodec.errors import UserError

KIND = "taskcodec-saliency"
#: the saliency stage's file of all maps, in manifest order
MAPS_FILE = "saliency.pt"


def spectral_residual(image: np.ndarray, working_width: int, blur_sigma: float) -> np.ndarray:
    """Spectral residual saliency (Hou & Zhang, CVPR 2007) of an H×W×3 uint8 RGB image."""
    height, width = image.shape[:2]
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    if gray.min() == gray.max():  # a flat image has no salient region
        return np.zeros((height, width), dtype=np.float32)
    detector = cv2.saliency.StaticSaliencySpectralResidual_create()
    detector.setImageWidth(working_width)
    detector.setImageHeight(max(1, round(working_width * height / width)))
    ok, saliency = detector.computeSaliency(gray)
    if not ok:
        raise RuntimeError(f"OpenCV's spectral residual saliency failed on a {width}×{height} image")
    if blur_sigma > 0:
        sigma = blur_sigma * width / working_width  # the map is already back at the image's size
        saliency = cv2.GaussianBlur(saliency, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
    low, high = float(saliency.min()), float(saliency.max())
    return ((saliency - low) / (high - low)).astype(np.float32)


#: params ``saliency.method`` → function(image HxWx3 uint8, working_width, blur_sigma) → HxW float32 in [0, 1]
SALIENCY_METHODS: dict[str, Callable[[np.ndarray, int, float], np.ndarray]] = {
    "spectral-residual": spectral_residual,
}


def saliency_map(image: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    """The saliency map of ``image`` by the method and settings of the ``saliency`` params section."""
    method, width, sigma = params["method"], params["working_width"], params["blur_sigma"]
    if method not in SALIENCY_METHODS:
        raise UserError(f"saliency.method is '{method}'; use one of {', '.join(SALIENCY_METHODS)}")
    if isinstance(width, bool) or not isinstance(width, int) or width < 8:
        raise UserError(f"saliency.working_width is {width!r}; set it to an integer >= 8 (the paper uses 64)")
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or sigma < 0:
        raise UserError(f"saliency.blur_sigma is {sigma!r}; set it to 0 (no extra smoothing) or a positive number")
    return SALIENCY_METHODS[method](image, width, float(sigma))


def to_uint8(saliency: np.ndarray) -> np.ndarray:
    """A [0, 1] map as an 8-bit grayscale image (how maps are stored)."""
    return np.clip(np.rint(saliency * 255.0), 0, 255).astype(np.uint8)


def save_maps(path: Path, image_ids: Sequence[str], splits: Sequence[str], maps: np.ndarray,
              params: dict[str, Any]) -> None:
    """Store uint8 maps N×H×W (manifest order) as one tensor N×1×H×W with their image ids and splits."""
    artifacts.save_checkpoint(path, {"kind": KIND, "image_ids": list(image_ids), "splits": list(splits),
                              "maps": torch.from_numpy(np.ascontiguousarray(maps)).unsqueeze(1), "params": params})


def load_maps(path: str | Path, id_lists: Sequence[Sequence[str]], size: tuple[int, int]) -> list[torch.Tensor]:
    """uint8 maps N×1×H×W for each list of image ids (in its order) from a file written by :func:`save_maps`."""
    payload = artifacts.load_checkpoint(path)
    if payload.get("kind") != KIND:
        raise UserError(f"{path} is not a saliency file (kind {payload.get('kind')!r}); "
                        f"point to the saliency stage's folder holding {MAPS_FILE}")
    if tuple(payload["maps"].shape[-2:]) != tuple(size):
        raise UserError(f"the maps in {path} are {tuple(payload['maps'].shape[-2:])}, the images {tuple(size)}; "
                        "rerun the saliency stage on this manifest")
    row = {image_id: index for index, image_id in enumerate(payload["image_ids"])}
    selected = []
    for image_ids in id_lists:
        missing = [image_id for image_id in image_ids if image_id not in row]
        if missing:
            raise UserError(f"{path} has no saliency map for image '{missing[0]}' ({len(missing)} missing); "
                            "rerun the saliency stage on this manifest")
        selected.append(payload["maps"][[row[image_id] for image_id in image_ids]])
    return selected


def saliency_inputs(folder: Path | None, floor: float | None, splits: Sequence[Sequence[tuple[str, Path, int]]],
                    size: tuple[int, int]) -> tuple[list[torch.Tensor | None], str, dict[str, Path]]:
    """For a training stage: maps aligned with each split's ``(image_id, path, label)`` records, if ``floor`` is set.

    Returns (maps per split, or Nones; the maps file's SHA-256 for the resume
    fingerprint, or ``""``; the maps file as a tracked input, or nothing).
    """
    if floor is None:
        return [None] * len(splits), "", {}
    if folder is None:
        raise UserError(f"saliency_floor is {floor}, so pass --saliency <saliency stage folder>, "
                        "or set saliency_floor to null for plain MSE")
    path = Path(folder) / MAPS_FILE
    maps = load_maps(path, [[image_id for image_id, _, _ in records] for records in splits], size)
    return maps, artifacts.file_digest(path), {"saliency": path}
