"""Rate–distortion training of a CompressAI model, resumable from its last checkpoint.

The recipe follows CompressAI's ``examples/train.py``: separate optimizers for
the network and for the entropy bottleneck's auxiliary quantiles
(``compressai.optimizers.net_aux_optimizer``), gradient clipping, and a
step-wise learning-rate drop; ``update()`` fills the entropy coder's CDF
tables before the final save.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from compressai.models import CompressionModel
from compressai.optimizers import net_aux_optimizer
from tqdm import tqdm

from taskcodec import io
from taskcodec.codecs.coding import pad
from taskcodec.codecs.registry import PAD_MULTIPLE
from taskcodec.data.tensors import to_float
from taskcodec.losses import RateDistortionLoss
from taskcodec.metrics import psnr_batch

LOG_FIELDS = ["step", "split", "loss", "bpp", "mse", "psnr", "aux_loss", "lr", "elapsed_s"]


def params_fingerprint(params: dict[str, Any]) -> str:
    """Stable hash of a params dict; a resume checkpoint is used only if it matches."""
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


def learning_rate(params: dict[str, Any], progress: float) -> float:
    """Base lr times ``lr_gamma`` for every drop point (fraction of training) already passed."""
    drops = sum(progress >= point for point in params["lr_drop_at"])
    return params["lr"] * params["lr_gamma"] ** drops


def random_patches(images: torch.Tensor, batch_size: int, patch: int, generator: torch.Generator) -> torch.Tensor:
    """A batch of random crops (with random horizontal flips) from uint8 N×3×H×W images."""
    count, _, height, width = images.shape
    index = torch.randint(count, (batch_size,), generator=generator)
    tops = torch.randint(height - patch + 1, (batch_size,), generator=generator)
    lefts = torch.randint(width - patch + 1, (batch_size,), generator=generator)
    flips = torch.rand(batch_size, generator=generator) < 0.5
    crops = []
    for i, top, left, flip in zip(index.tolist(), tops.tolist(), lefts.tolist(), flips.tolist()):
        crop = images[i, :, top : top + patch, left : left + patch]
        crops.append(crop.flip(-1) if flip else crop)
    return torch.stack(crops)


@torch.no_grad()
def validate(model: CompressionModel, criterion: RateDistortionLoss, images: torch.Tensor, device: torch.device,
             batch_size: int) -> dict[str, float]:
    """Eval-mode loss, estimated bpp, MSE and mean per-image PSNR on ``images`` (padded like the coder does)."""
    model.eval()
    totals = {"loss": 0.0, "bpp": 0.0, "mse": 0.0, "psnr": 0.0}
    for start in range(0, images.shape[0], batch_size):
        x = to_float(images[start : start + batch_size], device)
        padded = pad(x)
        out = model(padded)
        losses = criterion(out, padded)
        n = x.shape[0]
        totals["loss"] += losses["loss"].item() * n
        totals["bpp"] += losses["bpp_loss"].item() * n
        totals["mse"] += losses["mse_loss"].item() * n
        x_hat = out["x_hat"][..., : x.shape[-2], : x.shape[-1]].clamp(0, 1)
        totals["psnr"] += psnr_batch(x_hat, x).sum().item()
    model.train()
    return {key: value / images.shape[0] for key, value in totals.items()}


@dataclass
class TrainState:
    step: int = 0
    elapsed_s: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)


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
) -> TrainState:
    """Train ``model`` in place for ``params["steps"]`` steps or until ``time_budget_s`` seconds of training.

    Every ``checkpoint_every`` steps the full state (weights, optimizers, RNG
    states, history) goes to ``resume_path``; a rerun with the same params
    continues from there — only if it was written for the same params, λ and ``data_id``
    (a fingerprint of the training data). The per-step log is written to ``log_path`` (CSV).
    """
    if params["patch_size"] % PAD_MULTIPLE:
        raise ValueError(f"patch_size {params['patch_size']} must be a multiple of {PAD_MULTIPLE}")
    if min(train_images.shape[-2:]) < params["patch_size"]:
        raise ValueError(
            f"training images are {tuple(train_images.shape[-2:])}, smaller than patch_size {params['patch_size']}"
        )
    model.to(device).train()
    criterion = RateDistortionLoss(lmbda, params["distortion"])
    optimizers = net_aux_optimizer(
        model, {"net": {"type": "Adam", "lr": params["lr"]}, "aux": {"type": "Adam", "lr": params["aux_lr"]}}
    )
    generator = torch.Generator().manual_seed(params["seed"])
    torch.manual_seed(params["seed"])
    state = TrainState()
    fingerprint = params_fingerprint({"lmbda": lmbda, "data": data_id, **params})

    if resume_path.is_file():
        saved = io.load_checkpoint(resume_path, map_location="cpu")  # RNG states must stay on the CPU
        if saved.get("fingerprint") == fingerprint:
            model.load_state_dict(saved["state_dict"])
            optimizers["net"].load_state_dict(saved["optimizer"])
            optimizers["aux"].load_state_dict(saved["aux_optimizer"])
            generator.set_state(saved["generator_state"])
            torch.set_rng_state(saved["torch_rng_state"])
            state = TrainState(saved["step"], saved["elapsed_s"], saved["history"])
            tqdm.write(f"resuming {resume_path} at step {state.step}")

    def save_resume() -> None:
        io.save_checkpoint(resume_path, {
            "fingerprint": fingerprint, "state_dict": model.state_dict(),
            "optimizer": optimizers["net"].state_dict(), "aux_optimizer": optimizers["aux"].state_dict(),
            "generator_state": generator.get_state(), "torch_rng_state": torch.get_rng_state(),
            "step": state.step, "elapsed_s": state.elapsed_s, "history": state.history,
        })

    def record_validation() -> None:
        metrics = validate(model, criterion, val_images, device, params["batch_size"])
        state.history.append({"step": state.step, "split": "val", "aux_loss": math.nan,
                              "lr": optimizers["net"].param_groups[0]["lr"], "elapsed_s": state.elapsed_s, **metrics})

    budget = params["time_budget_s"]
    # the budget counts the process's CPU time on the CPU (repeatable on a shared machine), wall time on a GPU
    clock = time.process_time if device.type == "cpu" else time.perf_counter
    progress_bar = tqdm(total=params["steps"], initial=state.step, desc=f"train λ={lmbda:g}", mininterval=5.0)
    while state.step < params["steps"] and (budget is None or state.elapsed_s < budget):
        started = clock()
        progress = state.step / params["steps"] if budget is None else max(state.step / params["steps"], state.elapsed_s / budget)
        lr = learning_rate(params, progress)
        for group in optimizers["net"].param_groups:
            group["lr"] = lr

        x = to_float(random_patches(train_images, params["batch_size"], params["patch_size"], generator), device)
        out = model(x)
        losses = criterion(out, x)
        optimizers["net"].zero_grad()
        losses["loss"].backward()
        if params["clip_max_norm"] > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), params["clip_max_norm"])
        optimizers["net"].step()
        aux_loss = model.aux_loss()
        optimizers["aux"].zero_grad()
        aux_loss.backward()
        optimizers["aux"].step()

        state.step += 1
        state.elapsed_s += clock() - started
        mse = losses["mse_loss"].item()
        state.history.append({
            "step": state.step, "split": "train", "loss": losses["loss"].item(), "bpp": losses["bpp_loss"].item(),
            "mse": mse, "psnr": 10 * math.log10(1.0 / max(mse, 1e-12)), "aux_loss": aux_loss.item(), "lr": lr,
            "elapsed_s": state.elapsed_s,
        })
        progress_bar.update(1)
        progress_bar.set_postfix(bpp=f"{losses['bpp_loss'].item():.3f}", psnr=f"{state.history[-1]['psnr']:.2f}", refresh=False)
        if state.step % params["val_every"] == 0:
            record_validation()
        if state.step % params["checkpoint_every"] == 0:
            save_resume()
    progress_bar.close()

    if not state.history or state.history[-1]["split"] != "val":
        record_validation()
    model.eval()
    model.update(force=True)
    with io.atomic_path(log_path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=LOG_FIELDS)
        writer.writeheader()
        writer.writerows(state.history)
    return state
