"""Image grids: reconstructions of one image at similar bitrates (cf. seed 000, Figure 1) and saliency maps."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from PIL import Image  # noqa: E402

from taskcodec.report.plots import save_png  # noqa: E402


def closest_points(per_image: pd.DataFrame, image_id: str, target_bpp: float) -> pd.DataFrame:
    """For every codec curve, the row of ``image_id`` whose bpp is closest to ``target_bpp``."""
    rows = per_image[per_image["image_id"] == image_id]
    picked = rows.loc[(rows["bpp"] - target_bpp).abs().groupby(rows["codec"]).idxmin()]
    return picked.sort_values(["kind", "bpp"], ascending=[False, True])  # learned curves first


def reconstruction_grid(original: np.ndarray, panels: list[tuple[str, Path]], title: str, path: Path) -> None:
    """Original plus one panel per (caption, reconstruction PNG), saved atomically as PNG."""
    count = len(panels) + 1
    columns = min(count, 4)
    rows = -(-count // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3.5 * rows), squeeze=False)
    images = [("original", original)]
    for caption, file in panels:
        with Image.open(file) as image:
            images.append((caption, np.asarray(image.convert("RGB"))))
    for ax in axes.flat:
        ax.axis("off")
    for ax, (caption, image) in zip(axes.flat, images):
        ax.imshow(image, interpolation="nearest")
        ax.set_title(caption, fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.95))  # keep the suptitle clear of multi-line captions
    save_png(fig, path)


def saliency_grid(images: list[np.ndarray], maps: list[np.ndarray], captions: list[str], title: str,
                  path: Path) -> None:
    """Each image (H×W×3 uint8) above its saliency map (H×W in [0, 1]), saved atomically as PNG."""
    columns = len(images)
    fig, axes = plt.subplots(2, columns, figsize=(2 * columns, 4.4), squeeze=False)
    for column, (image, saliency, caption) in enumerate(zip(images, maps, captions)):
        axes[0, column].imshow(image, interpolation="nearest")
        axes[0, column].set_title(caption, fontsize=7)
        axes[1, column].imshow(saliency, cmap="inferno", vmin=0.0, vmax=1.0, interpolation="nearest")
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_png(fig, path)
