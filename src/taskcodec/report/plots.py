"""Rate–distortion plots."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from taskcodec import artifacts  # noqa: E402

STYLES = {"pretrained": {"marker": "o", "linestyle": "-"}, "finetuned": {"marker": "D", "linestyle": "-"},
          "scalable": {"marker": "P", "linestyle": "-"}, "variable-rate": {"marker": "*", "linestyle": "-"},
          "classical": {"marker": "s", "linestyle": "--"},
          "reference": {"marker": "", "linestyle": ":"}}
LABELS = {"psnr": "PSNR (dB, RGB)", "ms_ssim": "MS-SSIM (RGB)"}


def save_png(fig, path: Path) -> None:
    """Write a report figure as PNG (120 dpi) atomically and release it."""
    with artifacts.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def rd_plot(points: pd.DataFrame, metric: str, title: str, path: Path) -> None:
    """Plot ``metric`` against actual bpp, one line per codec curve, and save a PNG atomically."""
    fig, ax = plt.subplots(figsize=(7, 5))
    for (kind, codec), curve in points.groupby(["kind", "codec"], sort=False):
        curve = curve.sort_values("bpp")
        ax.plot(curve["bpp"], curve[metric], label=codec, linewidth=1.5, markersize=4, **STYLES[kind])
    ax.set_xlabel("bits per pixel (actual, from file sizes)")
    ax.set_ylabel(LABELS[metric])
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_png(fig, path)
