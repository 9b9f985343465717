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

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from compressai.models import CompressionModel
from torch import nn

from taskcodec.augment import random_shift_flip
from taskcodec.codecs.bitstream import ImageBitstream
from taskcodec.codecs.contract import LayeredCodec
from taskcodec.codecs.coding import decode_images, encode_images, pad
from taskcodec.data.sources import FileRows, streamed
from taskcodec.data.tensors import to_float
from taskcodec.errors import UserError
from taskcodec.resume import params_fingerprint
from taskcodec.tasks.evaluation import classification_metrics, predict_logits
from taskcodec.tasks.training import epoch_plan
from taskcodec.trainer import EpochLog, EpochObjective, Optimizers, Trained, train

LOG_FIELDS = ["epoch", "step", "train_loss", "train_ce", "train_bpp", "train_top1", "val_loss", "val_ce", "val_bpp",
              "val_top1", "val_top5", "lr", "elapsed_s"]


class JointModel(nn.Module):
    """Codec analysis side + latent classifier: images in [0, 1] → (logits, bpp per image).

    The classifier reads the latents of the codec's task layer
    (:meth:`~taskcodec.codecs.contract.LayeredCodec.task_layer`); the rate counts the layers a
    receiver downloads for the task. The codec's parameters that this forward does not reach
    (the synthesis) get no gradient and are left as they are.
    """

    def __init__(self, codec: CompressionModel, classifier: nn.Module):
        super().__init__()
        self.codec, self.classifier = codec, classifier
        if type(codec).analyze is LayeredCodec.analyze or self._without_scales():
            raise UserError(f"joint training needs a codec whose ŷ and σ̂ decode without the synthesis "
                            f"(e.g. bmshj2018-hyperprior or mbt2018-mean), not {type(codec).__name__}")

    def _without_scales(self) -> bool:
        """Whether the task layer's analysis has no σ̂ (a factorized prior), probed on one blank input."""
        side = self.codec.pad_multiple
        with torch.no_grad():
            blank = torch.zeros(1, 3, side, side, device=next(self.codec.parameters()).device)
            latents = self.codec.analyze(blank)["latents"][self.codec.task_layer()]
        return latents.scales_hat is None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pixels = x.shape[-2] * x.shape[-1]
        analysis = self.codec.analyze(pad(x, self.codec.pad_multiple))
        latents = analysis["latents"][self.codec.task_layer()]
        bits = sum(-torch.log2(lk).flatten(1).sum(dim=1) for layer in self.codec.layers_for("task")
                   for lk in analysis["likelihoods"][layer].values())
        return self.classifier(latents.y_hat, latents.scales_hat), bits / pixels


class JointObjective(EpochObjective):
    """``CE + rate_weight · bpp`` of a :class:`JointModel` on shuffled epochs of uint8 images, each batch
    shifted by up to ``crop_padding`` pixels and flipped; validated with rounded latents (eval mode)."""

    def __init__(self, model: JointModel, params: dict[str, Any], images: torch.Tensor | FileRows,
                 labels: torch.Tensor, val_images: torch.Tensor | FileRows, val_labels: torch.Tensor,
                 generator: torch.Generator, device: torch.device):
        super().__init__(len(images), params["batch_size"], generator, streamed([images]))
        self.model, self.params, self.images, self.labels = model, params, images, labels
        self.val_images, self.val_labels, self.device = val_images, val_labels, device

    def batch(self, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        index = self.indices(step)
        (x,) = random_shift_flip((to_float(self.images[index], self.device),), self.params["crop_padding"],
                                 self.generator)
        labels = self.labels[index].to(self.device)
        logits, bpp = self.model(x)
        ce = F.cross_entropy(logits, labels)
        loss = ce + self.params["rate_weight"] * bpp.mean()
        return loss, {"ce": ce.item(), "bpp": bpp.mean().item(),
                      "top1": (logits.argmax(1) == labels).float().mean().item()}

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Cross-entropy, estimated bpp, objective, top-1 and top-5."""
        logits, bpp = [], []
        for start in range(0, len(self.val_images), self.params["batch_size"]):
            out, rate = self.model(to_float(self.val_images[start : start + self.params["batch_size"]], self.device))
            logits.append(out.cpu())
            bpp.append(rate.cpu())
        metrics = classification_metrics(torch.cat(logits), self.val_labels)
        mean_bpp = torch.cat(bpp).mean().item()
        return {"loss": metrics["loss"] + self.params["rate_weight"] * mean_bpp, "ce": metrics["loss"],
                "bpp": mean_bpp, "top1": metrics["top1"], "top5": metrics["top5"]}


def train_joint(codec: CompressionModel, classifier: nn.Module, params: dict[str, Any],
                train_images: torch.Tensor | FileRows, train_labels: torch.Tensor, val_images: torch.Tensor | FileRows,
                val_labels: torch.Tensor, device: torch.device, resume_path: Path, log_path: Path,
                data_id: str = "") -> Trained:
    """Fine-tune ``codec``'s analysis side and ``classifier`` in place on ``CE + rate_weight · bpp``.

    Params: ``epochs``, ``batch_size``, ``lr`` (Adam, cosine decay), ``aux_lr``, ``rate_weight``,
    ``crop_padding``, ``clip_max_norm``, ``time_budget_s``, ``checkpoint_every`` (epochs), ``seed``.
    Resumable from ``resume_path`` like :func:`~taskcodec.tasks.training.train_classifier`; the
    weights of the epoch with the lowest validation objective are kept (ties to the later), and
    ``update(force=True)`` refreshes the entropy coder afterwards.
    """
    model = JointModel(codec, classifier).to(device)
    net_parameters = [p for name, p in model.named_parameters() if p.requires_grad and not name.endswith(".quantiles")]
    optimizers = Optimizers(
        torch.optim.Adam(net_parameters, lr=params["lr"]), net_parameters, params["clip_max_norm"],
        torch.optim.Adam([p for name, p in model.named_parameters() if name.endswith(".quantiles")], lr=params["aux_lr"]),
        codec.aux_loss)
    generator = torch.Generator().manual_seed(params["seed"])
    torch.manual_seed(params["seed"])
    objective = JointObjective(model, params, train_images, train_labels, val_images, val_labels, generator, device)
    trained = train(model, objective, optimizers, epoch_plan(params, objective, ("val_loss", "min")),
                    EpochLog(LOG_FIELDS, objective), generator, device, resume_path,
                    params_fingerprint({"data": data_id, **params}), log_path, "joint")
    codec.update(force=True)
    return trained


@torch.no_grad()
def evaluate_bitstreams(codec: CompressionModel, classifier: nn.Module, images: torch.Tensor | FileRows,
                        labels: torch.Tensor, batch_size: int, device: torch.device) -> dict[str, float]:
    """Entropy-code uint8 ``images`` to real bitstreams, classify the ŷ, σ̂ decoded from the bytes.

    Returns the mean actual bpp (8 · bytes / pixels per image), loss, top-1 and top-5.
    """
    codec.eval()
    pixels = images.shape[-2] * images.shape[-1]
    layers = codec.layers_for("task")
    bits, y_hat, scales_hat = [], [], []
    for start in range(0, len(images), batch_size):
        encoded = encode_images(codec, to_float(images[start : start + batch_size], device))
        payloads = [{layer: layered[layer].to_bytes() for layer in layers} for layered in encoded]
        bits += [8 * sum(len(data) for data in payload.values()) for payload in payloads]
        # ŷ and σ̂ come from the serialized bytes, exactly as a receiver decodes them
        decoded = decode_images(codec, [{layer: ImageBitstream.from_bytes(data) for layer, data in payload.items()}
                                        for payload in payloads], pixels=False)
        latents = decoded.latents[codec.task_layer()]
        y_hat.append(latents.y_hat.cpu())
        scales_hat.append(latents.scales_hat.cpu())
    logits = predict_logits(classifier, (torch.cat(y_hat), torch.cat(scales_hat)), batch_size, device)
    return {"bpp": sum(bits) / (len(bits) * pixels), **classification_metrics(logits, labels)}
