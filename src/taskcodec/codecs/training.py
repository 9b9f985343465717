"""Rate–distortion training of a CompressAI model, resumable from its last checkpoint.

The recipe follows CompressAI's ``examples/train.py``: separate optimizers for
the network and for the entropy bottleneck's auxiliary quantiles
(``compressai.optimizers.net_aux_optimizer``), gradient clipping, and a
step-wise learning-rate drop; ``update()`` fills the entropy coder's CDF
tables before the final save. :func:`optimize` is that loop for any objective
(it also drives :mod:`taskcodec.codecs.finetune`); :func:`train_codec` uses it
for the rate–distortion loss, optionally saliency-weighted (seed 003).
"""

from __future__ import annotations

import csv
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from compressai.models import CompressionModel
from compressai.optimizers import net_aux_optimizer
from tqdm import tqdm

from taskcodec import io
from taskcodec.codecs.coding import pad
from taskcodec.codecs.registry import PAD_MULTIPLE
from taskcodec.data.tensors import to_float
from taskcodec.errors import UserError
from taskcodec.losses import RateDistortionLoss, saliency_weights
from taskcodec.metrics import psnr_batch
from taskcodec.resume import load_resume, params_fingerprint, save_resume

LOG_FIELDS = ["step", "split", "loss", "bpp", "mse", "psnr", "aux_loss", "lr", "elapsed_s"]


def learning_rate(params: dict[str, Any], progress: float) -> float:
    """Base lr times ``lr_gamma`` for every drop point (fraction of training) already passed."""
    drops = sum(progress >= point for point in params["lr_drop_at"])
    return params["lr"] * params["lr_gamma"] ** drops


def random_windows(images: torch.Tensor, batch_size: int, patch: int,
                   generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(image indices, crops): random ``patch``-sized crops with random horizontal flips of uint8 N×C×H×W images.

    Extra channels (e.g. a saliency map stacked after RGB by :func:`with_maps`)
    get exactly the same window and flip as the image.
    """
    count, _, height, width = images.shape
    index = torch.randint(count, (batch_size,), generator=generator)
    tops = torch.randint(height - patch + 1, (batch_size,), generator=generator)
    lefts = torch.randint(width - patch + 1, (batch_size,), generator=generator)
    flips = torch.rand(batch_size, generator=generator) < 0.5
    crops = []
    for i, top, left, flip in zip(index.tolist(), tops.tolist(), lefts.tolist(), flips.tolist()):
        crop = images[i, :, top : top + patch, left : left + patch]
        crops.append(crop.flip(-1) if flip else crop)
    return index, torch.stack(crops)


def random_patches(images: torch.Tensor, batch_size: int, patch: int, generator: torch.Generator) -> torch.Tensor:
    """The crops of :func:`random_windows`."""
    return random_windows(images, batch_size, patch, generator)[1]


def translatable(images: torch.Tensor, padding: int) -> torch.Tensor:
    """``images`` (with any stacked maps) replicate-padded by ``padding`` pixels on every side.

    :func:`random_windows` of the original size then translate each image, and its maps
    with it, by up to ±``padding`` pixels; ``padding`` 0 returns ``images`` as they are.
    """
    return F.pad(images, (padding,) * 4, mode="replicate") if padding else images


def with_maps(images: torch.Tensor, maps: torch.Tensor | None) -> torch.Tensor:
    """uint8 images N×3×H×W with aligned uint8 maps N×1×H×W stacked as a fourth channel (none: the images)."""
    if maps is None:
        return images
    if maps.shape[0] != images.shape[0] or maps.shape[-2:] != images.shape[-2:]:
        raise ValueError(f"maps {tuple(maps.shape)} are not aligned with images {tuple(images.shape)}")
    return torch.cat([images, maps.to(images.dtype)], dim=1)


def split_maps(batch: torch.Tensor, device: torch.device,
               floor: float | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Float images and distortion weights (``floor`` + (1 − ``floor``)·saliency) of a :func:`with_maps` batch."""
    x = to_float(batch[:, :3], device)
    if floor is None:
        return x, None
    return x, saliency_weights(batch[:, 3:].to(device), floor)


def check_saliency(params: dict[str, Any], distortion: str, saliency: torch.Tensor | None, section: str) -> None:
    """``saliency_floor`` needs maps and the MSE distortion."""
    if params["saliency_floor"] is not None and saliency is None:
        raise UserError(f"{section}.saliency_floor is {params['saliency_floor']}, but no saliency maps were given; "
                        "pass --saliency <saliency stage folder> or set it to null")
    if params["saliency_floor"] is not None and distortion != "mse":
        raise UserError(f"{section}.saliency_floor works with distortion mse only, not {distortion}; "
                        "set saliency_floor to null")


#: (model output for the padded batch, images x, weights or None, rows of the batch) → batch means by log name
Objective = Callable[[dict, torch.Tensor, "torch.Tensor | None", slice], dict[str, torch.Tensor]]


def rate_distortion_objective(criterion: RateDistortionLoss) -> Objective:
    """The :data:`Objective` of ``criterion`` on the padded batch, as the coder sees it: loss, bpp, mse."""

    def objective(output: dict, x: torch.Tensor, weights: torch.Tensor | None, rows: slice) -> dict[str, torch.Tensor]:
        losses = criterion(output, pad(x), None if weights is None else pad(weights))
        return {"loss": losses["loss"], "bpp": losses["bpp_loss"], "mse": losses["mse_loss"]}

    return objective


@torch.no_grad()
def validate(model: CompressionModel, objective: Objective, images: torch.Tensor, device: torch.device,
             batch_size: int, floor: float | None = None) -> dict[str, float]:
    """Means of the ``objective`` terms and per-image PSNR on ``images`` (padded like the coder does).

    ``images`` may carry saliency maps (:func:`with_maps`); with a ``floor`` they
    weight the distortion. The caller puts the model in eval mode.
    """
    totals: dict[str, float] = {}
    for start in range(0, images.shape[0], batch_size):
        rows = slice(start, min(start + batch_size, images.shape[0]))
        x, weights = split_maps(images[rows], device, floor)
        out = model(pad(x))
        n = x.shape[0]
        for key, value in objective(out, x, weights, rows).items():
            totals[key] = totals.get(key, 0.0) + value.item() * n
        x_hat = out["x_hat"][..., : x.shape[-2], : x.shape[-1]].clamp(0, 1)
        totals["psnr"] = totals.get("psnr", 0.0) + psnr_batch(x_hat, x).sum().item()
    return {key: value / images.shape[0] for key, value in totals.items()}


def logged_terms(terms: dict[str, torch.Tensor]) -> dict[str, float]:
    """A training step's terms other than the loss as floats, with the batch PSNR from its MSE."""
    logged = {key: value.item() for key, value in terms.items() if key != "loss"}
    return {**logged, "psnr": 10 * math.log10(1.0 / max(logged["mse"], 1e-12))}


@dataclass
class TrainState:
    step: int = 0
    elapsed_s: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)


def optimize(
    model: CompressionModel,
    params: dict[str, Any],
    fingerprint: str,
    generator: torch.Generator,
    train_step: Callable[[], tuple[torch.Tensor, dict[str, float]]],
    evaluate: Callable[[], dict[str, float]],
    device: torch.device,
    resume_path: Path,
    log_path: Path,
    log_fields: list[str],
    description: str,
) -> TrainState:
    """Minimise ``train_step()``'s loss for ``params["steps"]`` steps or until ``time_budget_s`` seconds of training.

    ``train_step`` draws a batch with ``generator`` and returns (loss, logged
    terms including ``bpp`` and ``psnr``); ``evaluate`` returns validation
    metrics, recorded every ``val_every`` steps and at the end. The network and
    auxiliary (entropy-bottleneck quantile) parameters have separate Adam
    optimizers; gradients are clipped to ``clip_max_norm``; the learning rate
    follows :func:`learning_rate`. Every ``checkpoint_every`` steps the full
    state (weights, optimizers, RNG states, history) goes to ``resume_path``; a
    rerun continues from there only if the checkpoint has the same
    ``fingerprint``. The model ends in eval mode after ``update(force=True)``;
    the history is written to ``log_path`` (CSV with ``log_fields``).
    """
    model.to(device).train()
    optimizers = net_aux_optimizer(
        model, {"net": {"type": "Adam", "lr": params["lr"]}, "aux": {"type": "Adam", "lr": params["aux_lr"]}}
    )
    stateful = {"model": model, "optimizer": optimizers["net"], "aux_optimizer": optimizers["aux"]}
    state = load_resume(resume_path, fingerprint, stateful, generator) or TrainState()
    if state.step:
        tqdm.write(f"resuming {resume_path} at step {state.step}")

    def record_validation() -> None:
        model.eval()
        metrics = evaluate()
        model.train()
        state.history.append({"step": state.step, "split": "val", "aux_loss": math.nan,
                              "lr": optimizers["net"].param_groups[0]["lr"], "elapsed_s": state.elapsed_s, **metrics})

    budget = params["time_budget_s"]
    # the budget counts the process's CPU time on the CPU (repeatable on a shared machine), wall time on a GPU
    clock = time.process_time if device.type == "cpu" else time.perf_counter
    progress_bar = tqdm(total=params["steps"], initial=state.step, desc=description, mininterval=5.0)
    while state.step < params["steps"] and (budget is None or state.elapsed_s < budget):
        started = clock()
        progress = state.step / params["steps"] if budget is None else max(state.step / params["steps"], state.elapsed_s / budget)
        lr = learning_rate(params, progress)
        for group in optimizers["net"].param_groups:
            group["lr"] = lr

        loss, terms = train_step()
        optimizers["net"].zero_grad()
        loss.backward()
        if params["clip_max_norm"] > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), params["clip_max_norm"])
        optimizers["net"].step()
        aux_loss = model.aux_loss()
        optimizers["aux"].zero_grad()
        aux_loss.backward()
        optimizers["aux"].step()

        state.step += 1
        state.elapsed_s += clock() - started
        state.history.append({"step": state.step, "split": "train", "loss": loss.item(), **terms,
                              "aux_loss": aux_loss.item(), "lr": lr, "elapsed_s": state.elapsed_s})
        progress_bar.update(1)
        progress_bar.set_postfix(bpp=f"{terms['bpp']:.3f}", psnr=f"{terms['psnr']:.2f}", refresh=False)
        if state.step % params["val_every"] == 0:
            record_validation()
        if state.step % params["checkpoint_every"] == 0:
            save_resume(resume_path, fingerprint, stateful, generator, state)
    progress_bar.close()

    if not state.history or state.history[-1]["split"] != "val":
        record_validation()
    model.eval()
    model.update(force=True)
    with io.atomic_path(log_path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=log_fields)
        writer.writeheader()
        writer.writerows(state.history)
    return state


def train_codec(
    model: CompressionModel,
    lmbda: float,
    params: dict[str, Any],
    train_images: torch.Tensor,
    val_images: torch.Tensor,
    device: torch.device,
    resume_path: Path,
    log_path: Path,
    data_id: str = "",
    train_saliency: torch.Tensor | None = None,
    val_saliency: torch.Tensor | None = None,
) -> TrainState:
    """Train ``model`` in place on rate + λ·distortion from random patches, with :func:`optimize`.

    With ``params["saliency_floor"]`` set, uint8 saliency maps N×1×H×W aligned
    with the images weight the MSE per pixel by ``floor + (1 − floor)·saliency``
    (seed 003); each patch is cut from image and map at the same place. The
    resume fingerprint covers params, λ and ``data_id`` (a fingerprint of the
    training data and maps).
    """
    if params["patch_size"] % PAD_MULTIPLE:
        raise ValueError(f"patch_size {params['patch_size']} must be a multiple of {PAD_MULTIPLE}")
    if min(train_images.shape[-2:]) < params["patch_size"]:
        raise ValueError(
            f"training images are {tuple(train_images.shape[-2:])}, smaller than patch_size {params['patch_size']}"
        )
    check_saliency(params, params["distortion"], train_saliency, "codec.train")
    floor = params["saliency_floor"]
    train_source = with_maps(train_images, train_saliency if floor is not None else None)
    val_source = with_maps(val_images, val_saliency if floor is not None else None)
    objective = rate_distortion_objective(RateDistortionLoss(lmbda, params["distortion"]))
    generator = torch.Generator().manual_seed(params["seed"])
    torch.manual_seed(params["seed"])

    def train_step() -> tuple[torch.Tensor, dict[str, float]]:
        batch = random_patches(train_source, params["batch_size"], params["patch_size"], generator)
        x, weights = split_maps(batch, device, floor)
        terms = objective(model(x), x, weights, slice(None))
        return terms["loss"], logged_terms(terms)

    def evaluate() -> dict[str, float]:
        return validate(model, objective, val_source, device, params["batch_size"], floor)

    fingerprint = params_fingerprint({"lmbda": lmbda, "data": data_id, **params})
    return optimize(model, params, fingerprint, generator, train_step, evaluate, device, resume_path, log_path,
                    LOG_FIELDS, f"train λ={lmbda:g}")
