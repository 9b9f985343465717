"""Load prepared images into uint8 tensors for training and coding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from taskcodec.data.images import load_rgb8


def images_to_tensor(paths: list[Path]) -> torch.Tensor:
    """Stack same-sized images into a uint8 tensor N×3×H×W."""
    arrays = [load_rgb8(path) for path in paths]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise ValueError(f"images_to_tensor needs one image size, got {sorted(shapes)}")
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def to_float(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 N×3×H×W → contiguous float in [0, 1] on ``device`` (one memory layout, so coding is repeatable)."""
    return images.to(device=device, dtype=torch.float32).contiguous() / 255.0


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """Float B×3×H×W in [0, 1] → uint8 B×H×W×3, rounded as an 8-bit image file would be."""
    return (x.detach().clamp(0, 1) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
