"""The detector's boxes on what each receiver of a scalable codec gets (seed 002's qualitative figure).

Three panels of one test image: the frozen detector on the original; on the base layer alone (its
features decoded from the base bitstream, no image: the boxes are drawn over the dimmed original);
and on the full reconstruction from both layers. Ground-truth boxes are dashed, detections solid with
their class and score.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from taskcodec.report.plots import save_png  # noqa: E402

#: detections under this score are not drawn (the detector keeps candidates from 0.05 for mAP)
DRAWN_SCORE = 0.3


@dataclass
class Panel:
    """One panel: its caption, the image under the boxes (dimmed when the receiver has no image) and the
    detections ``{"boxes": [[x0, y0, x1, y1], ...], "scores": [...], "labels": [...]}``."""

    caption: str
    image: np.ndarray
    detections: dict
    dimmed: bool = False


def _draw(ax, boxes: list, labels: list, class_names: list[str], color: str, scores: list | None = None) -> None:
    for i, (box, label) in enumerate(zip(boxes, labels)):
        x0, y0, x1, y1 = box
        solid = scores is not None
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=color, linewidth=1.5 if solid else 1,
                               linestyle="-" if solid else "--"))
        if solid:
            ax.text(x0, y0, f"{class_names[label]} {100 * scores[i]:.0f}%", color="white", fontsize=6, va="top",
                    clip_on=True, bbox={"facecolor": color, "alpha": 0.7, "pad": 1, "linewidth": 0})


def detection_figure(panels: list[Panel], truth: dict, class_names: list[str], title: str, path: Path) -> None:
    """The panels side by side, each with the ground truth ``truth`` (``boxes``, ``labels``) and its
    detections scoring at least :data:`DRAWN_SCORE`, saved atomically as PNG."""
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.8), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        image = panel.image.astype(np.float32) / 255.0
        ax.imshow(0.35 * image + 0.65 if panel.dimmed else image)
        _draw(ax, truth["boxes"], truth["labels"], class_names, "lime")
        kept = [i for i, score in enumerate(panel.detections["scores"]) if score >= DRAWN_SCORE]
        _draw(ax, [panel.detections["boxes"][i] for i in kept], [panel.detections["labels"][i] for i in kept],
              class_names, "red", [panel.detections["scores"][i] for i in kept])
        ax.set_title(panel.caption, fontsize=7)
        ax.axis("off")
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    save_png(fig, path)
