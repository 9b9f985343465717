"""Random translations and horizontal flips, the one augmentation of every training.

:func:`crop_flip` is the transform: a window of each tensor (image, saliency
map, latent), mirrored where asked. Translating by up to ±p pixels is a window
of the original size in the tensor replicate-padded by p (:func:`translatable`).
The two samplers draw their random numbers in the order each training has
always used, so the same seed gives the same batches:

- :func:`window_draws` (codec pretraining: patches of whole images; codec
  fine-tuning: translated whole images; drawn by
  :class:`~taskcodec.data.sources.WindowSampler` and cut by a source's
  ``windows``): image indices, window tops, lefts, then flips;
- :func:`random_shift_flip` (classifiers on a given batch, the same shift and
  flip for every input tensor of a sample): flips, tops, then lefts
  (:func:`shift_flip_draws`).

Both state their random numbers as :class:`Draws`, which a task's
``augment`` reads to move its targets (detection's boxes) with the images.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class Draws:
    """The windows of a batch: sample i is the window at (``tops[i]``, ``lefts[i]``) of item ``index[i]`` of the
    (padded) source, mirrored left–right where ``flips[i]``; in a source replicate-padded by p
    (:func:`translatable`) its content moves by (p − top, p − left) pixels."""

    index: torch.Tensor
    tops: torch.Tensor
    lefts: torch.Tensor
    flips: torch.Tensor


def translatable(images: torch.Tensor, padding: int) -> torch.Tensor:
    """``images`` (N×C×H×W, with any stacked maps) replicate-padded by ``padding`` pixels on every side.

    Windows of the original size then translate each image, and its maps with it, by up to
    ±``padding`` pixels; ``padding`` 0 returns ``images`` as they are.
    """
    return F.pad(images, (padding,) * 4, mode="replicate") if padding else images


def crop_flip(images: torch.Tensor, index: torch.Tensor, tops: torch.Tensor, lefts: torch.Tensor,
              flips: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Sample i: the ``height``×``width`` window at (``tops[i]``, ``lefts[i]``) of ``images[index[i]]``,
    mirrored left–right where ``flips[i]``; all channels alike."""
    device = images.device
    rows = (tops[:, None] + torch.arange(height))[:, :, None].to(device)
    cols = (lefts[:, None] + torch.arange(width))[:, None, :].to(device)
    crops = images[index.to(device)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)
    return torch.where(flips.view(-1, 1, 1, 1).to(device), crops.flip(-1), crops).contiguous()


def window_draws(count: int, batch_size: int, height: int | torch.Tensor, width: int | torch.Tensor, size: int,
                 generator: torch.Generator) -> Draws:
    """``batch_size`` random ``size``×``size`` windows of random images of ``count`` images of ``height``×``width``
    (drawn with replacement), each flipped with probability ½: image indices, window tops, lefts, then flips.
    ``height`` and ``width`` may be tensors of each image's (images of their own sizes): each window is then
    drawn within its own image."""
    index = torch.randint(count, (batch_size,), generator=generator)
    tops = _offsets(height, index, size, generator)
    lefts = _offsets(width, index, size, generator)
    flips = torch.rand(batch_size, generator=generator) < 0.5
    return Draws(index, tops, lefts, flips)


def _offsets(extent: int | torch.Tensor, index: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Uniform offsets 0 … extent − ``size`` of a window in each image of ``index``."""
    if isinstance(extent, int):
        return torch.randint(extent - size + 1, (len(index),), generator=generator)
    return (torch.rand(len(index), generator=generator, dtype=torch.float64) * (extent[index] - size + 1)).long()


def random_shift_flip(tensors: tuple[torch.Tensor, ...], padding: int,
                      generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """The same random translation by up to ±``padding`` pixels (replicate padding) and horizontal flip
    (probability ½) of sample i in every one of ``tensors`` (each N×C×H×W, the same N, H, W)."""
    count, _, height, width = tensors[0].shape
    draws = shift_flip_draws(count, padding, generator)
    return tuple(crop_flip(translatable(tensor, padding), draws.index, draws.tops, draws.lefts, draws.flips, height,
                           width) for tensor in tensors)


def shift_flip_draws(count: int, padding: int, generator: torch.Generator) -> Draws:
    """The random numbers of :func:`random_shift_flip` for ``count`` samples: flips, then the window's tops and
    lefts in the padded tensor (0 … 2·``padding``)."""
    flips = torch.rand(count, generator=generator) < 0.5
    tops = torch.randint(2 * padding + 1, (count,), generator=generator)
    lefts = torch.randint(2 * padding + 1, (count,), generator=generator)
    return Draws(torch.arange(count), tops, lefts, flips)
