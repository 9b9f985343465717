"""The redundancy between a scalable codec's base and enhancement latents over its training (seed 002, Section 5).

Özyılkan et al. (DCC 2023, Figure 5) follow Theil's uncertainty coefficient between the two latents during
training: the disentangled design keeps the base latent's information out of the enhancement latent. The
training stage records both coefficients at every validation (``train_log.csv``, columns of
:data:`taskcodec.codecs.training.REDUNDANCY_FIELDS`); this module gathers them per codec and plots them.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from taskcodec import artifacts  # noqa: E402
from taskcodec.report.plots import save_png  # noqa: E402
from taskcodec.evaluation import read_table  # noqa: E402

COLUMNS = ["codec", "lmbda", "task_lmbda", "step", "u_base_given_enh", "u_enh_given_base"]


def redundancy_table(logs: list[Path]) -> pd.DataFrame:
    """One row per validation in every scalable codec's ``train_log.csv`` (in the workflow's
    ``<arch>/<hyperparameters>/lmbda<λ>/task<λ_task>/`` folder, whose names and the ``metrics.json`` beside
    it name the codec as the evaluations do); logs without the redundancy columns are left out."""
    rows = []
    for path in logs:
        log, metrics = read_table(path), artifacts.read_json(path.parent / "metrics.json")
        if "u_base_given_enh" not in log.columns:
            continue
        hyper = path.parents[2].name
        val = log[log["split"] == "val"]
        rows.append(val.reindex(columns=COLUMNS[3:]).assign(
            codec=f"{metrics['arch']}/{hyper}", lmbda=metrics["lmbda"], task_lmbda=metrics["task_lmbda"]))
    return pd.concat(rows, ignore_index=True).reindex(columns=COLUMNS) if rows else pd.DataFrame(columns=COLUMNS)


def redundancy_plot(table: pd.DataFrame, path: Path) -> None:
    """U(base | enh) (solid) and U(enh | base) (dashed) against the training step, a colour per codec."""
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    colors = plt.get_cmap("tab10").colors
    for i, ((codec, lmbda, task_lmbda), curve) in enumerate(table.groupby(["codec", "lmbda", "task_lmbda"])):
        label = f"{codec} λ={lmbda:g} λ_task={task_lmbda:g}"
        color = colors[i % len(colors)]
        ax.plot(curve["step"], curve["u_base_given_enh"], "-o", color=color, markersize=3,
                label=f"U(base|enh) {label}")
        ax.plot(curve["step"], curve["u_enh_given_base"], "--", color=color, label=f"U(enh|base) {label}")
    ax.set_xlabel("training step")
    ax.set_ylabel("uncertainty coefficient")
    ax.set_ylim(0, 1)
    ax.set_title("Redundancy between base and enhancement latents (validation images)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=6)
    fig.tight_layout()
    save_png(fig, path)
