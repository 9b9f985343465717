"""Joint fine-tuning of a pretrained codec through a frozen task model (seed 000).

Uselis, Ghosh and Inuganti, "Where's Waldo?: Visual Question Answering on
Extreme Lossy Compressed Images using a Variational Approach with Scale
Hyperprior", train a scale-hyperprior codec with ``L = R + τ·D + L_task``,
the task network frozen and its gradients flowing into the codec. Here the
codec starts from a rate–distortion model trained at λ and minimises
``R + τ·λ·D + w·L_task(task(x̂), target)`` (:class:`~taskcodec.losses.TaskAwareLoss`; the
task's own loss: cross-entropy for classification, detection's loss on its boxes),
so τ = 1, w = 0 continues pretraining; D may be saliency-weighted (seed 003).
Whole images go through the codec, since the task model classifies whole
images, with random horizontal flips and translations by up to ``crop_padding``
pixels (replicate padding, as the task model was trained), which keep the
codec from fitting the task on the training images alone; the targets move with
them (:meth:`Task.augment <taskcodec.tasks.registry.Task.augment>`: boxes do, labels stay). Optimizers,
schedule, clipping, resume, time budget and several processes are those of
codec pretraining (:func:`taskcodec.codecs.training.optimize`, the one training loop).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from compressai.models import CompressionModel
from torch import nn

from taskcodec import distributed
from taskcodec.augment import Draws
from taskcodec.codecs.training import CodecObjective, Terms, check_saliency, optimize
from taskcodec.data.sources import ImageSource
from taskcodec.losses import TaskAwareLoss
from taskcodec.resume import params_fingerprint
from taskcodec.tasks.checkpoint import freeze
from taskcodec.tasks.evaluation import take
from taskcodec.tasks.registry import Task
from taskcodec.tasks.training import to_device
from taskcodec.trainer import Trained, step_drops

LOG_FIELDS = ["step", "split", "loss", "bpp", "mse", "psnr", "task_loss", "accuracy", "aux_loss", "lr", "elapsed_s"]


def finetune_codec(model: CompressionModel, lmbda: float, tau: float, task_model: nn.Module, task: Task,
                   params: dict[str, Any], train_source: ImageSource, train_targets: Any,
                   val_source: ImageSource, val_targets: Any, device: torch.device, resume_path: Path,
                   log_path: Path, data_id: str = "") -> Trained:
    """Fine-tune ``model`` (trained at ``lmbda``) in place on ``R + τ·λ·D + w·L_task`` with ``task_model`` (of
    ``task``, whose loss is L_task) frozen.

    ``train_source``/``val_source`` hold the splits' uint8 images (in memory or read from their files;
    :mod:`taskcodec.data.sources`), the training split padded by ``crop_padding`` for its translations, with
    the task's targets (:meth:`Task.collate`); ``params`` is the ``finetune`` section (``task_weight`` is w).
    With ``saliency_floor`` set, the sources' fourth channel, aligned uint8 maps, weights the MSE.
    The resume fingerprint covers params, λ, τ and ``data_id`` (fingerprints of
    the data, the pretrained codec and the task model).
    """
    height, width = train_source.stored
    if height != width:
        raise ValueError(f"fine-tuning needs square images (prepare makes them), got {width}×{height}")
    check_saliency(params, "mse", train_source.channels == 4, "finetune")
    task_model = freeze(task_model.to(device))
    criterion = TaskAwareLoss(lmbda, tau, task_model, params["task_weight"], task, pad_multiple=model.pad_multiple)
    generator = torch.Generator().manual_seed(params["seed"] + distributed.rank())
    torch.manual_seed(params["seed"] + distributed.rank())

    def task_aware_terms(targets: Any) -> Terms:
        def terms(output: dict, x: torch.Tensor, weights: torch.Tensor | None, rows) -> dict[str, torch.Tensor]:
            batch = (task.augment(take(targets, rows.index), rows, params["crop_padding"], (height, width))
                     if isinstance(rows, Draws) else targets[rows])
            losses = criterion(output, x, to_device(batch, device), weights)
            return {"loss": losses["loss"], "bpp": losses["bpp_loss"], "mse": losses["mse_loss"],
                    "task_loss": losses["task_loss"], "accuracy": losses["accuracy"]}

        return terms

    objective = CodecObjective(model, params, train_source, height, val_source, task_aware_terms(train_targets),
                               task_aware_terms(val_targets), generator, device, "finetune.train")
    fingerprint = params_fingerprint({"lmbda": lmbda, "tau": tau, "data": data_id, **params})
    return optimize(model, objective, params, fingerprint, generator, device, resume_path, log_path, LOG_FIELDS,
                    f"finetune λ={lmbda:g} τ={tau:g}",
                    step_drops(params["lr"], params["lr_drop_at"], params["lr_gamma"]))
