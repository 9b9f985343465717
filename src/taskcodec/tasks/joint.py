"""Joint fine-tuning of a codec's analysis side with a latent classifier (seed 004, Table 4).

Seed 004 (Gupta et al., "Learning-Based Compression for Machines", §2.3–2.4) fine-tunes the
hyperprior encoder together with the cResNet so that the latents carry what the task needs.
Its joint training optimises the task loss alone and is compared with the frozen-encoder
baseline at the same rate settings; without a rate term the encoder is free to spend more
bits (measured from a λ = 0.0035 codec on the built-in data: 0.36 → 1.70 bpp with ``rate_weight: 0``,
bench/README.md), so here the loss is
``CE + rate_weight · bpp`` (the rate term of the codec's own rate–distortion loss, in bits
per pixel); the weight sets where the fine-tuned codec lands on the rate axis, and its
rate is measured from real bitstreams, so each joint point is plotted at its own bpp.

Training follows CompressAI: additive uniform noise on the latents for the likelihoods
(the rate term), the straight-through rounded ŷ (``compressai.ops.quantize_ste``) for the
classifier — so it sees integers as at test time — and an auxiliary Adam optimizer for the
entropy bottleneck's quantiles. Only the analysis side (g_a, h_a, h_s, entropy bottleneck)
and the classifier are trained; the synthesis g_s is unused. Afterwards ``update(force=True)``
rebuilds the entropy coder's tables and :func:`evaluate_bitstreams` measures the rate from
real bitstreams and classifies the ŷ, σ̂ decoded from them.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from compressai.models import CompressionModel, MeanScaleHyperprior, ScaleHyperprior
from compressai.ops import quantize_ste
from torch import nn
from tqdm import tqdm

from taskcodec.codecs.bitstream import ImageBitstream
from taskcodec.codecs.coding import decode_images, encode_images, pad
from taskcodec.data.tensors import to_float
from taskcodec.errors import UserError
from taskcodec.resume import load_resume, params_fingerprint, save_resume
from taskcodec.tasks.evaluation import classification_metrics, predict_logits
from taskcodec.tasks.training import random_crop_flip, run_epochs, write_log

LOG_FIELDS = ["epoch", "step", "train_loss", "train_ce", "train_bpp", "train_top1", "val_loss", "val_ce", "val_bpp",
              "val_top1", "val_top5", "lr", "elapsed_s"]

#: (ŷ for the classifier, σ̂, likelihoods) of a padded batch
AnalysisOutput = tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...]]

#: codec class → differentiable analysis forward; looked up along the class's MRO
ANALYSIS_FORWARDS: dict[type, Callable[[CompressionModel, torch.Tensor], AnalysisOutput]] = {}


def register_analysis_forward(model_class: type):
    def decorator(fn):
        ANALYSIS_FORWARDS[model_class] = fn
        return fn

    return decorator


@register_analysis_forward(ScaleHyperprior)
def _scale_hyperprior(codec: ScaleHyperprior, x: torch.Tensor) -> AnalysisOutput:
    y = codec.g_a(x)
    z_hat, z_likelihoods = codec.entropy_bottleneck(codec.h_a(torch.abs(y)))
    scales_hat = codec.h_s(z_hat)
    _, y_likelihoods = codec.gaussian_conditional(y, scales_hat)
    return quantize_ste(y), scales_hat, (y_likelihoods, z_likelihoods)


@register_analysis_forward(MeanScaleHyperprior)
def _mean_scale_hyperprior(codec: MeanScaleHyperprior, x: torch.Tensor) -> AnalysisOutput:
    y = codec.g_a(x)
    z_hat, z_likelihoods = codec.entropy_bottleneck(codec.h_a(y))
    scales_hat, means_hat = codec.h_s(z_hat).chunk(2, 1)
    _, y_likelihoods = codec.gaussian_conditional(y, scales_hat, means=means_hat)
    return quantize_ste(y - means_hat) + means_hat, scales_hat, (y_likelihoods, z_likelihoods)


def analysis_forward(codec: CompressionModel) -> Callable[[CompressionModel, torch.Tensor], AnalysisOutput]:
    """The registered analysis forward for ``codec``'s class; a :class:`UserError` for other architectures."""
    for cls in type(codec).__mro__:
        if cls in ANALYSIS_FORWARDS:
            return ANALYSIS_FORWARDS[cls]
    raise UserError(f"joint training needs a hyperprior codec whose ŷ and σ̂ decode without the synthesis "
                    f"(bmshj2018-hyperprior or mbt2018-mean), not {type(codec).__name__}")


class JointModel(nn.Module):
    """Codec analysis side + latent classifier: images in [0, 1] → (logits, bpp per image)."""

    def __init__(self, codec: CompressionModel, classifier: nn.Module):
        super().__init__()
        self.codec, self.classifier = codec, classifier
        self._analysis = analysis_forward(codec)
        codec.g_s.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pixels = x.shape[-2] * x.shape[-1]
        y_hat, scales_hat, likelihoods = self._analysis(self.codec, pad(x))
        bits = sum(-torch.log2(lk).flatten(1).sum(dim=1) for lk in likelihoods)
        return self.classifier(y_hat, scales_hat), bits / pixels


@dataclass
class JointState:
    epoch: int = 0
    step: int = 0
    elapsed_s: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_val_loss: float = math.inf
    best_state: dict[str, torch.Tensor] | None = None


@torch.no_grad()
def _validate(model: JointModel, images: torch.Tensor, labels: torch.Tensor, rate_weight: float, batch_size: int,
              device: torch.device) -> dict[str, float]:
    """Eval-mode (rounded latents) cross-entropy, estimated bpp, objective and accuracy."""
    model.eval()
    logits, bpp = [], []
    for start in range(0, len(images), batch_size):
        out, rate = model(to_float(images[start : start + batch_size], device))
        logits.append(out.cpu())
        bpp.append(rate.cpu())
    metrics = classification_metrics(torch.cat(logits), labels)
    mean_bpp = torch.cat(bpp).mean().item()
    model.train()
    return {"loss": metrics["loss"] + rate_weight * mean_bpp, "ce": metrics["loss"], "bpp": mean_bpp,
            "top1": metrics["top1"], "top5": metrics["top5"]}


def train_joint(codec: CompressionModel, classifier: nn.Module, params: dict[str, Any], train_images: torch.Tensor,
                train_labels: torch.Tensor, val_images: torch.Tensor, val_labels: torch.Tensor, device: torch.device,
                resume_path: Path, log_path: Path, data_id: str = "") -> JointState:
    """Fine-tune ``codec``'s analysis side and ``classifier`` in place on ``CE + rate_weight · bpp``.

    Params: ``epochs``, ``batch_size``, ``lr`` (Adam, cosine decay), ``aux_lr``, ``rate_weight``,
    ``crop_padding``, ``clip_max_norm``, ``time_budget_s``, ``checkpoint_every`` (epochs), ``seed``.
    Resumable from ``resume_path`` like :func:`~taskcodec.tasks.training.train_classifier`; the
    weights of the epoch with the lowest validation objective are kept, and ``update(force=True)``
    refreshes the entropy coder afterwards.
    """
    model = JointModel(codec, classifier).to(device).train()
    net_parameters = [p for name, p in model.named_parameters() if p.requires_grad and not name.endswith(".quantiles")]
    optimizer = torch.optim.Adam(net_parameters, lr=params["lr"])
    aux_optimizer = torch.optim.Adam([p for name, p in model.named_parameters() if name.endswith(".quantiles")],
                                     lr=params["aux_lr"])
    generator = torch.Generator().manual_seed(params["seed"])
    torch.manual_seed(params["seed"])
    fingerprint = params_fingerprint({"data": data_id, **params})
    stateful = {"model": model, "optimizer": optimizer, "aux_optimizer": aux_optimizer}
    state = load_resume(resume_path, fingerprint, stateful, generator) or JointState()
    if state.epoch:
        tqdm.write(f"resuming {resume_path} at epoch {state.epoch}")

    def train_batch(index: torch.Tensor) -> dict[str, float]:
        (x,) = random_crop_flip((to_float(train_images[index], device),), params["crop_padding"], generator)
        labels = train_labels[index].to(device)
        logits, bpp = model(x)
        ce = F.cross_entropy(logits, labels)
        loss = ce + params["rate_weight"] * bpp.mean()
        optimizer.zero_grad()
        loss.backward()
        if params["clip_max_norm"] > 0:
            torch.nn.utils.clip_grad_norm_(net_parameters, params["clip_max_norm"])
        optimizer.step()
        aux_loss = codec.aux_loss()
        aux_optimizer.zero_grad()
        aux_loss.backward()
        aux_optimizer.step()
        return {"loss": loss.item(), "ce": ce.item(), "bpp": bpp.mean().item(),
                "top1": (logits.argmax(1) == labels).float().mean().item()}

    def end_epoch(means: dict[str, float], lr: float) -> None:
        val = _validate(model, val_images, val_labels, params["rate_weight"], params["batch_size"], device)
        state.history.append({
            "epoch": state.epoch, "step": state.step, **{f"train_{key}": value for key, value in means.items()},
            **{f"val_{key}": value for key, value in val.items()}, "lr": lr, "elapsed_s": state.elapsed_s,
        })
        if val["loss"] <= state.best_val_loss:
            state.best_epoch, state.best_val_loss = state.epoch, val["loss"]
            state.best_state = copy.deepcopy({key: value.detach().cpu() for key, value in model.state_dict().items()})

    run_epochs(state, params, len(train_images), generator, device, optimizer, train_batch, end_epoch,
               lambda: save_resume(resume_path, fingerprint, stateful, generator, state), "joint")
    if state.best_state is not None:
        model.load_state_dict(state.best_state)
    model.eval()
    codec.update(force=True)
    write_log(log_path, state.history, LOG_FIELDS)
    return state


@torch.no_grad()
def evaluate_bitstreams(codec: CompressionModel, classifier: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                        batch_size: int, device: torch.device) -> dict[str, float]:
    """Entropy-code uint8 ``images`` to real bitstreams, classify the ŷ, σ̂ decoded from the bytes.

    Returns the mean actual bpp (8 · bytes / pixels per image), loss, top-1 and top-5.
    """
    codec.eval()
    pixels = images.shape[-2] * images.shape[-1]
    bits, y_hat, scales_hat = [], [], []
    for start in range(0, len(images), batch_size):
        payloads = [bitstream.to_bytes() for bitstream in encode_images(codec, to_float(images[start : start + batch_size], device))]
        bits += [8 * len(payload) for payload in payloads]
        # ŷ and σ̂ come from the serialized bytes, exactly as a receiver decodes them
        decoded = decode_images(codec, [ImageBitstream.from_bytes(payload) for payload in payloads], pixels=False)
        y_hat.append(decoded.y_hat.cpu())
        scales_hat.append(decoded.scales_hat.cpu())
    logits = predict_logits(classifier, (torch.cat(y_hat), torch.cat(scales_hat)), batch_size, device)
    return {"bpp": sum(bits) / (len(bits) * pixels), **classification_metrics(logits, labels)}
