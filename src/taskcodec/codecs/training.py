"""Rate–distortion training of a CompressAI model, resumable from its last checkpoint.

The recipe follows CompressAI's ``examples/train.py``: separate Adam optimizers
for the network and for the entropy bottleneck's auxiliary quantiles
(``compressai.optimizers.net_aux_optimizer``), gradient clipping, and a
learning-rate schedule; ``update(force=True, update_quantiles=True)`` fits the
bottleneck's quantiles to its learned densities (CompressAI ≥ 1.2.7, rather
than trusting the auxiliary loss to have converged) and fills the entropy
coder's CDF tables before the final save. :func:`optimize` runs that recipe in
the one training loop (:func:`taskcodec.trainer.train`) for a
:class:`CodecObjective` (it also drives :mod:`taskcodec.codecs.finetune`);
:func:`train_codec` uses it for the rate–distortion loss on random patches,
optionally saliency-weighted (seed 003), with the fast-convergence levers of
``codec.train`` (bench/README.md, "Kodak"): linear warm-up then cosine or
step decay of the learning rate, an exponential moving average of the weights
(``ema_decay``), and straight-through rounding of the decoder's input
(``quantization: ste``; Ballé et al.'s additive noise still gives the
likelihoods, as in CompressAI's variable-rate models) instead of noise everywhere.
A variable-rate codec (one model, several operating points; seed 001) trains at
one point per step, drawn from the generator, with that point's λ
(:class:`~taskcodec.losses.VariableRateLoss`), and validates at every point.
Both can train in several processes (:mod:`taskcodec.distributed`, DDP under
``torchrun``): ``batch_size`` stays the global batch, of which each process
draws its share from its own generator (seed + rank).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from compressai.models import CompressionModel
from compressai.optimizers import net_aux_optimizer

from taskcodec import distributed
from taskcodec.codecs.coding import pad
from taskcodec.codecs.contract import LayeredCodec
from taskcodec.data.sources import ImageSource, WindowSampler, window_batches
from taskcodec.data.tensors import to_float
from taskcodec.errors import UserError
from taskcodec.losses import RateDistortionLoss, ScalableLoss, VariableRateLoss, saliency_weights
from taskcodec.metrics import psnr_batch
from taskcodec.redundancy import uncertainty_coefficients
from taskcodec.resume import params_fingerprint
from taskcodec.trainer import Objective, Optimizers, Plan, StepLog, Trained, cosine, step_drops, train, warmup

LOG_FIELDS = ["step", "split", "loss", "bpp", "mse", "psnr", "aux_loss", "lr", "elapsed_s"]
#: validation columns of a codec with a base and an enhancement layer (seed 002, Section 5; :func:`layer_redundancy`)
REDUNDANCY_FIELDS = ["u_base_given_enh", "u_enh_given_base"]
#: k-means clusters of the latent fibres for the redundancy estimate, fixed so that the trend over training compares
REDUNDANCY_CLUSTERS = 16


def split_maps(batch: torch.Tensor, device: torch.device,
               floor: float | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Float images and distortion weights (``floor`` + (1 − ``floor``)·saliency) of a batch with any stacked
    maps (:func:`~taskcodec.data.sources.with_maps`)."""
    x = to_float(batch[:, :3], device)
    if floor is None:
        return x, None
    return x, saliency_weights(batch[:, 3:].to(device), floor)


def check_saliency(params: dict[str, Any], distortion: str, has_maps: bool, section: str) -> None:
    """``saliency_floor`` needs maps and the MSE distortion."""
    if params["saliency_floor"] is not None and not has_maps:
        raise UserError(f"{section}.saliency_floor is {params['saliency_floor']}, but no saliency maps were given; "
                        "pass --saliency <saliency stage folder> or set it to null")
    if params["saliency_floor"] is not None and distortion != "mse":
        raise UserError(f"{section}.saliency_floor works with distortion mse only, not {distortion}; "
                        "set saliency_floor to null")


#: (model output for the padded batch, images x, weights or None, where the batch comes from: the training
#: windows' :class:`~taskcodec.augment.Draws`, or a validation slice) → batch means by log name
Terms = Callable[[dict, torch.Tensor, "torch.Tensor | None", Any], dict[str, torch.Tensor]]


def rate_distortion_terms(criterion: RateDistortionLoss | ScalableLoss, multiple: int,
                          extra: tuple[str, ...] = ()) -> Terms:
    """The :data:`Terms` of ``criterion`` on the batch padded to ``multiple``, as the coder sees it: loss, bpp,
    mse and the ``extra`` terms of its output."""

    def terms(output: dict, x: torch.Tensor, weights: torch.Tensor | None, rows: Any) -> dict[str, torch.Tensor]:
        losses = criterion(output, pad(x, multiple), None if weights is None else pad(weights, multiple))
        return {"loss": losses["loss"], "bpp": losses["bpp_loss"], "mse": losses["mse_loss"],
                **{name: losses[name] for name in extra}}

    return terms


def codec_loss(model: CompressionModel, lmbda: float | list[float], task_lmbda: float | None,
               distortion: str, perceptual_weight: float = 0.0) -> tuple[nn.Module, tuple[str, ...]]:
    """The pretraining loss of ``model`` and the terms it logs beside loss, bpp and mse: R + λ·D; for a
    variable-rate codec (``operating_points`` > 1) that loss at the drawn point with one λ per point
    (:class:`~taskcodec.losses.VariableRateLoss`), and the model's ``perceptual`` flag (the codec contract's) says
    whether that loss weighs a perceptual term; for a codec built on the frozen task model (seed 002)
    equation 2 with ``task_lmbda`` (feature MSE, bpp per layer)."""
    if model.operating_points > 1 or isinstance(lmbda, (list, tuple)):
        lmbdas = list(lmbda) if isinstance(lmbda, (list, tuple)) else [lmbda]
        if len(lmbdas) != model.operating_points:
            raise UserError(f"{type(model).__name__} has {model.operating_points} operating points but "
                            f"{len(lmbdas)} λ were given; give one λ per point")
        model.perceptual = perceptual_weight > 0  # the features of x̂ only when the loss reads them
        return VariableRateLoss(lmbdas, distortion, perceptual_weight, model.point_weights), ()
    if not getattr(model, "needs_task_model", False):
        return RateDistortionLoss(lmbda, distortion), ()
    if task_lmbda is None:
        raise UserError(f"{type(model).__name__} trains on R + λ_task·D(features) + λ·D(image): give --task-lmbda")
    return ScalableLoss(lmbda, task_lmbda, distortion), ("feature_mse", *(f"bpp_{layer}" for layer in model.layers))


@torch.no_grad()
def validate(model: CompressionModel, terms: Terms, images: ImageSource, device: torch.device,
             batch_size: int, floor: float | None = None) -> dict[str, float]:
    """Means of the ``terms`` and per-image PSNR on ``images`` (padded like the coder does).

    ``images`` may carry saliency maps (:func:`~taskcodec.data.sources.with_maps`); with a ``floor`` they
    weight the distortion. The caller puts the model in eval mode.
    """
    totals: dict[str, float] = {}
    for rows, batch in images.chunks(batch_size):
        x, weights = split_maps(batch, device, floor)
        out = model(pad(x, model.pad_multiple))
        n = x.shape[0]
        for key, value in terms(out, x, weights, rows).items():
            totals[key] = totals.get(key, 0.0) + value.item() * n
        x_hat = out["x_hat"][..., : x.shape[-2], : x.shape[-1]].clamp(0, 1)
        totals["psnr"] = totals.get("psnr", 0.0) + psnr_batch(x_hat, x).sum().item()
    return {key: value / images.count for key, value in totals.items()}


def has_redundancy(model: CompressionModel) -> bool:
    """Whether the codec has the base and enhancement layers whose redundancy validation measures."""
    return set(getattr(model, "layers", ())) == {"base", "enh"}


@torch.no_grad()
def layer_redundancy(model: CompressionModel, images: ImageSource, device: torch.device, batch_size: int,
                     floor: float | None = None) -> dict[str, float]:
    """Theil's uncertainty coefficients between the rounded base and enhancement latents of ``images``
    (:func:`taskcodec.redundancy.uncertainty_coefficients`, :data:`REDUNDANCY_CLUSTERS` clusters, seed 0:
    the same estimate at every validation, so the columns trace the redundancy over training; seed 002, Section 5).
    NaN when the images have fewer latent positions than clusters, or a latent collapsed to one cluster.
    """
    latents: dict[str, list[torch.Tensor]] = {"base": [], "enh": []}
    for _, batch in images.chunks(batch_size):
        x, _ = split_maps(batch, device, floor)
        analyzed = model.analyze(pad(x, model.pad_multiple))["latents"]
        for layer, found in latents.items():
            found.append(analyzed[layer].y_hat.cpu())
    base, enh = torch.cat(latents["base"]), torch.cat(latents["enh"])
    if base.shape[0] * base.shape[2] * base.shape[3] < REDUNDANCY_CLUSTERS:  # too few fibres to cluster
        return dict.fromkeys(REDUNDANCY_FIELDS, math.nan)
    u = uncertainty_coefficients(base, enh, clusters=REDUNDANCY_CLUSTERS)
    return {name: u[name] for name in REDUNDANCY_FIELDS}


def logged_terms(terms: dict[str, torch.Tensor]) -> dict[str, float]:
    """A training step's terms other than the loss as floats, with the batch PSNR from its MSE."""
    logged = {key: value.item() for key, value in terms.items() if key != "loss"}
    return {**logged, "psnr": 10 * math.log10(1.0 / max(logged["mse"], 1e-12))}


class CodecObjective(Objective):
    """Codec training on random ``window``×``window`` windows of a uint8 ``source`` (images with any stacked
    saliency maps, :func:`~taskcodec.data.sources.with_maps`; in memory or read from files), validated on
    ``val_source``.

    ``train_terms``/``val_terms`` get the model's output on the batch padded to its ``pad_multiple``, the
    images, the distortion weights (with ``params["saliency_floor"]``) and where the batch comes from in its
    source (the windows' :class:`~taskcodec.augment.Draws` for training, a slice for validation). Training batches go through ``forward``, the model or
    the DDP-wrapped model that :func:`optimize` sets, with ``quantization`` (``"noise"`` or ``"ste"``); each of
    several processes draws its share of ``params["batch_size"]`` (named ``section``.batch_size in an error).
    Validation uses the model and the default quantization.
    """

    def __init__(self, model: CompressionModel, params: dict[str, Any], source: ImageSource, window: int,
                 val_source: ImageSource, train_terms: Terms, val_terms: Terms, generator: torch.Generator,
                 device: torch.device, section: str, quantization: str = "noise"):
        self.model, self.forward, self.source, self.val_source = model, model, source, val_source
        self.quantization = quantization
        self.train_terms, self.val_terms, self.generator, self.device = train_terms, val_terms, generator, device
        self.batch_size, self.floor = params["batch_size"], params["saliency_floor"]
        self.process_batch, self.window = distributed.share(self.batch_size, f"{section}.batch_size"), window
        self.batches = None  # the (window, batch) iterator, made at the first step (after a resume's restore)

    def batch(self, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        if self.batches is None:  # the sampler draws from a copy, which a loader may run ahead of the training
            ahead = torch.Generator().set_state(self.generator.get_state())
            sampler = WindowSampler(self.source.count, self.process_batch, self.source.height, self.source.width,
                                    self.window, self.model.operating_points, ahead, self.model.point_weights)
            self.batches = window_batches(self.source, sampler, pin_memory=self.device.type == "cuda")
        window, batch = next(self.batches)
        self.generator.set_state(window.state)  # as if this batch had been drawn from it: a checkpoint resumes here
        draws, point = window.draws, window.point
        x, weights = split_maps(batch, self.device, self.floor)
        self.model.select_point(point)
        padded = pad(x, self.model.pad_multiple)  # the contract's forward takes quantization only for "ste"
        output = self.forward(padded) if self.quantization == "noise" else self.forward(padded, quantization="ste")
        terms = self.train_terms({**output, "point": point}, x, weights, draws)
        return terms["loss"], logged_terms(terms)

    def close(self) -> None:
        """Stop the loader (its worker processes and the batches they read ahead)."""
        self.batches = None

    def validate(self) -> dict[str, float]:
        if self.model.operating_points > 1:
            return self._validate_points()
        metrics = validate(self.model, self.val_terms, self.val_source, self.device, self.batch_size, self.floor)
        if has_redundancy(self.model):
            metrics.update(layer_redundancy(self.model, self.val_source, self.device, self.batch_size, self.floor))
        return metrics

    def _validate_points(self) -> dict[str, float]:
        """Validation of a variable-rate codec at each operating point: the mean loss, bpp/mse/PSNR of the
        highest point, and ``bpp_p<k>`` / ``psnr_p<k>`` (:func:`point_fields`) of every point."""
        metrics: dict[str, float] = {}
        points = self.model.operating_points
        for point in range(points):
            self.model.select_point(point)
            at_point = validate(self.model, lambda out, *rest: self.val_terms({**out, "point": point}, *rest),
                                self.val_source, self.device, self.batch_size, self.floor)
            metrics["loss"] = metrics.get("loss", 0.0) + at_point["loss"] / points
            metrics.update({f"bpp_p{point}": at_point["bpp"], f"psnr_p{point}": at_point["psnr"]})
            metrics.update({key: value for key, value in at_point.items() if key != "loss"})  # the last point's
        return metrics


def point_fields(model: CompressionModel) -> list[str]:
    """The per-point validation columns of a variable-rate codec (none for a single-rate one)."""
    points = model.operating_points
    return [f"{name}_p{k}" for k in range(points) for name in ("bpp", "psnr")] if points > 1 else []


#: ``codec.train.lr_decay`` → the decay of the learning rate from ``lr`` (progress in [0, 1] → lr)
DECAYS: dict[str, Callable[[dict[str, Any]], Callable[[float], float]]] = {
    "cosine": lambda params: cosine(params["lr"]),
    "steps": lambda params: step_drops(params["lr"], params["lr_drop_at"], params["lr_gamma"]),
}


def optimize(model: CompressionModel, objective: CodecObjective, params: dict[str, Any], fingerprint: str,
             generator: torch.Generator, device: torch.device, resume_path: Path, log_path: Path,
             log_fields: list[str], description: str, learning_rate: Callable[[float], float],
             ema_decay: float | None = None, spike_guard: float | None = None) -> Trained:
    """Minimise ``objective`` for ``params["steps"]`` steps or ``time_budget_s`` seconds with the one loop.

    The network and the auxiliary (entropy-bottleneck quantile) parameters have
    separate Adam optimizers (``lr``, ``aux_lr``); gradients of all parameters
    are clipped to ``clip_max_norm``; the learning rate follows
    ``learning_rate`` (progress → lr); validation every ``val_every`` steps, a resume
    checkpoint every ``checkpoint_every`` steps, a row per step in the log; the
    last weights (or their moving average with ``ema_decay``) are kept; with ``spike_guard``, a spike of the
    loss rolls the weights back (:mod:`taskcodec.spike_guard`). The
    model ends in eval mode after ``update(force=True, update_quantiles=True)``.
    With several processes the objective's training forward is the model in
    DDP; the optimizers, the auxiliary loss and the loop work on ``model``.
    """
    model.to(device)
    objective.forward = distributed.wrap(model, device)
    optimizers = net_aux_optimizer(
        model, {"net": {"type": "Adam", "lr": params["lr"]}, "aux": {"type": "Adam", "lr": params["aux_lr"]}}
    )
    plan = Plan(params["steps"], learning_rate, params["val_every"], params["checkpoint_every"],
                params["time_budget_s"], ema_decay=ema_decay, spike_guard=spike_guard)
    trained = train(model, objective,
                    Optimizers(optimizers["net"], list(model.parameters()), params["clip_max_norm"], optimizers["aux"],
                               model.aux_loss),
                    plan, StepLog(log_fields), generator, device, resume_path, fingerprint, log_path, description)
    objective.close()
    model.update(force=True, update_quantiles=True)
    return trained


def train_codec(
    model: CompressionModel,
    lmbda: float | list[float],
    params: dict[str, Any],
    train_images: ImageSource,
    val_images: ImageSource,
    device: torch.device,
    resume_path: Path,
    log_path: Path,
    data_id: str = "",
    task_lmbda: float | None = None,
    perceptual_weight: float = 0.0,
) -> Trained:
    """Train ``model`` in place on rate + λ·distortion (:func:`codec_loss`; with ``task_lmbda`` for a codec
    built on the task model) from random patches, with :func:`optimize`.

    ``train_images`` and ``val_images`` are in memory or read from files (:mod:`taskcodec.data.sources`, the
    same batches either way). With ``params["saliency_floor"]`` set, they carry aligned uint8 saliency maps
    as a fourth channel, which weight the MSE per pixel by ``floor + (1 − floor)·saliency`` (seed 003);
    each patch is cut from image and map at the same place. The resume fingerprint covers params, λ and
    ``data_id`` (a fingerprint of the training data and maps).
    """
    if params["patch_size"] % model.pad_multiple:
        raise UserError(f"codec.train.patch_size {params['patch_size']} must be a multiple of "
                        f"{model.pad_multiple} for {type(model).__name__}; change it")
    shortest = int(torch.as_tensor(train_images.height).min().minimum(torch.as_tensor(train_images.width).min()))
    if shortest < params["patch_size"]:
        raise UserError(f"the training images are {shortest} pixels on their shortest side, fewer than "
                        f"patch_size {params['patch_size']}; lower the patch size or raise prepare.image_size")
    check_saliency(params, params["distortion"], train_images.channels == 4, "codec.train")
    if params["quantization"] == "ste" and type(model).analyze is LayeredCodec.analyze:
        raise UserError(f"codec.train.quantization ste needs a codec with a differentiable analysis; "
                        f"{type(model).__name__} has none; set it to noise")
    criterion, extra = codec_loss(model, lmbda, task_lmbda, params["distortion"], perceptual_weight)
    extra += ("perceptual",) if perceptual_weight else ()
    terms = rate_distortion_terms(criterion, model.pad_multiple, extra)
    generator = torch.Generator().manual_seed(params["seed"] + distributed.rank())
    torch.manual_seed(params["seed"] + distributed.rank())
    objective = CodecObjective(model, params, train_images, params["patch_size"], val_images, terms, terms,
                               generator, device, "codec.train", params["quantization"])
    weights = {} if task_lmbda is None else {"task_lmbda": task_lmbda}  # the loss's weights beside λ
    weights.update({"perceptual_weight": perceptual_weight} if perceptual_weight else {})
    fingerprint = params_fingerprint({"lmbda": lmbda, **weights, "data": data_id, **params})
    fields = LOG_FIELDS[:5] + list(extra) + LOG_FIELDS[5:]  # the extra terms after mse
    fields += (REDUNDANCY_FIELDS if has_redundancy(model) else []) + point_fields(model)
    return optimize(model, objective, params, fingerprint, generator, device, resume_path, log_path, fields,
                    f"train λ={lmbda}", warmup(params["lr_warmup"], DECAYS[params["lr_decay"]](params)),
                    params["ema_decay"], params["spike_guard"])
