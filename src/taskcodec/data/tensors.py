"""Load prepared images into uint8 tensors for training and coding."""

from __future__ import annotations

import numpy as np
import torch

from taskcodec.data.stored import StoredImage, read_image
from taskcodec.errors import UserError, shown_path

#: what to do about a split whose images differ in size where they must not
ONE_SIZE = ("rerun prepare, which makes every image one size (only codec pretraining takes a train split that keeps "
            "its images' own sizes, prepare.keep_train_size)")


def images_to_tensor(paths: list[StoredImage]) -> torch.Tensor:
    """Stack same-sized images (:func:`~taskcodec.data.stored.read_image`) into a uint8 tensor N×3×H×W, decoded one
    at a time into it (the split's bytes once)."""
    first = read_image(paths[0])
    images = torch.empty((len(paths), 3, *first.shape[:2]), dtype=torch.uint8)
    for i, path in enumerate(paths):
        array = first if i == 0 else read_image(path)
        if array.shape != first.shape:
            raise UserError(f"image {shown_path(str(path))} is {array.shape[1]}×{array.shape[0]}, not the split's "
                            f"{first.shape[1]}×{first.shape[0]}; {ONE_SIZE}")
        images[i] = torch.from_numpy(array).permute(2, 0, 1)
    return images


def to_float(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 N×3×H×W → contiguous float in [0, 1] on ``device`` (one memory layout, so coding is repeatable)."""
    return images.to(device=device, dtype=torch.float32).contiguous() / 255.0


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """Float B×3×H×W in [0, 1] → uint8 B×H×W×3, rounded as an 8-bit image file would be."""
    return (x.detach().clamp(0, 1) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
