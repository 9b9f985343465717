"""Where a training reads its images: held decoded in memory, or streamed from the prepared files.

A codec training draws random windows (:class:`WindowSampler`) and validates on
a split in order (:meth:`ImageSource.chunks`). Both sources give the same uint8
tensors for the same draws, so the choice between them (:func:`choose_source`,
from the memory a job has) never changes a number:

- :class:`InMemory`: the split as one uint8 tensor N×C×H×W (today's small
  datasets; fastest);
- :class:`ImageFiles`: the split's files, decoded when a batch needs them by
  ``torch.utils.data`` workers (:func:`window_batches`); a job's memory then
  does not grow with the number of images. :class:`FileRows` indexes them like
  a tensor, for a training that takes rows (a task model's epochs);
- :class:`OwnSizes`: a training split whose images keep their own sizes
  (``prepare.keep_train_size``), held or read from its files, cut into windows
  each drawn within its image.

The sampler states its generator's position with every batch
(``Window.state``): a training whose loader draws ahead from a copy of its
generator sets its own generator to the position of each batch it trains on, so
a checkpoint resumes at the next batch.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from taskcodec.augment import Draws, crop_flip, translatable, window_draws
from taskcodec.data.stored import StoredImage, read_image
from taskcodec.data.tensors import ONE_SIZE, images_to_tensor
from taskcodec.errors import UserError, shown_path

#: share of a job's memory that a split may take decoded in memory before it is streamed from its files
MEMORY_SHARE = 0.25


@dataclass
class Window:
    """One training batch's description: its windows (with the sampler's generator state after drawing
    them) and the operating point of a variable-rate codec (0 for one)."""

    draws: Draws
    point: int
    state: torch.Tensor


class WindowSampler:
    """Endless :class:`Window` s: ``batch_size`` ``size``×``size`` windows of ``count`` images of
    ``height``×``width`` (:func:`~taskcodec.augment.window_draws`; tensors of each image's for :class:`OwnSizes`),
    then, for a codec of several operating points, the point (uniformly, or in proportion to ``point_weights``),
    all drawn from ``generator`` in that order."""

    def __init__(self, count: int, batch_size: int, height: int | torch.Tensor, width: int | torch.Tensor, size: int,
                 points: int, generator: torch.Generator, point_weights: tuple[float, ...] | None = None):
        self.count, self.batch_size, self.height, self.width, self.size = count, batch_size, height, width, size
        self.points, self.generator = points, generator
        if point_weights is not None and (len(point_weights) != points or min(point_weights) < 0
                                          or sum(point_weights) <= 0):
            raise ValueError(f"{points} operating points need as many non-negative weights, not {point_weights}")
        self.point_weights = None if point_weights is None else torch.tensor(point_weights, dtype=torch.float64)

    def __iter__(self) -> Iterator[list[Window]]:
        while True:  # a list of one: DataLoader's batch_sampler protocol, the whole batch one item
            draws = window_draws(self.count, self.batch_size, self.height, self.width, self.size, self.generator)
            point = self._point()
            yield [Window(draws, point, self.generator.get_state())]

    def _point(self) -> int:
        if self.points == 1:
            return 0
        if self.point_weights is None:
            return int(torch.randint(self.points, (1,), generator=self.generator))
        return int(torch.multinomial(self.point_weights, 1, generator=self.generator))


def with_maps(images: torch.Tensor, maps: torch.Tensor | None) -> torch.Tensor:
    """uint8 images N×3×H×W with aligned uint8 maps N×1×H×W stacked as a fourth channel (none: the images)."""
    if maps is None:
        return images
    if maps.shape[0] != images.shape[0] or maps.shape[-2:] != images.shape[-2:]:
        raise ValueError(f"maps {tuple(maps.shape)} are not aligned with images {tuple(images.shape)}")
    return torch.cat([images, maps.to(images.dtype)], dim=1)


class ImageSource:
    """A split of uint8 images N×C×H×W (C: 3, or 4 with a stacked map), replicate-padded by a number of pixels
    for translated windows (:func:`~taskcodec.augment.translatable`); ``height``×``width``: the padded size,
    where windows are drawn; ``stored``: (H, W), the images' own size."""

    count: int
    channels: int
    height: int
    width: int
    stored: tuple[int, int]

    def windows(self, draws: Draws, size: int) -> torch.Tensor:
        """The ``size``×``size`` windows of ``draws`` (:func:`~taskcodec.augment.crop_flip`)."""
        raise NotImplementedError

    def chunks(self, batch_size: int) -> Iterator[tuple[slice, torch.Tensor]]:
        """The split in order, unpadded, ``batch_size`` images at a time, with their rows."""
        raise NotImplementedError


class InMemory(ImageSource):
    """A split held decoded: ``images`` uint8 N×C×H×W, replicate-padded by ``padding`` for translations. Only the
    padded tensor is kept (``images`` is a view into it), so a padded split is held once."""

    def __init__(self, images: torch.Tensor, padding: int = 0):
        self.padded, self.padding = translatable(images, padding), padding
        self.count, self.channels, self.height, self.width = self.padded.shape
        self.stored = tuple(images.shape[-2:])

    @property
    def images(self) -> torch.Tensor:
        """The split unpadded (a view)."""
        height, width = self.stored
        return self.padded[..., self.padding : self.padding + height, self.padding : self.padding + width]

    def windows(self, draws: Draws, size: int) -> torch.Tensor:
        return crop_flip(self.padded, draws.index, draws.tops, draws.lefts, draws.flips, size, size)

    def chunks(self, batch_size: int) -> Iterator[tuple[slice, torch.Tensor]]:
        for start in range(0, self.count, batch_size):
            rows = slice(start, min(start + batch_size, self.count))
            yield rows, self.images[rows]


class ImageFiles(ImageSource, Dataset):
    """A split read from its image files when needed, with optional aligned uint8 ``maps`` N×1×H×W (held in
    memory: one byte a pixel) stacked as a fourth channel and ``padding`` as :class:`InMemory`'s; ``workers``
    processes decode (0: the training process itself). Item i is image i, C×H×W."""

    def __init__(self, paths: Sequence[StoredImage], height: int, width: int, maps: torch.Tensor | None = None,
                 padding: int = 0, workers: int = 0):
        if maps is not None and tuple(maps.shape) != (len(paths), 1, height, width):
            raise ValueError(f"maps {tuple(maps.shape)} are not aligned with {len(paths)} images of {height}×{width}")
        self.paths, self.maps, self.padding, self.workers = list(paths), maps, padding, workers
        self.count, self.channels, self.stored = len(self.paths), 3 if maps is None else 4, (height, width)
        self.height, self.width = height + 2 * padding, width + 2 * padding

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> torch.Tensor:
        image = torch.from_numpy(np.ascontiguousarray(read_image(self.paths[index]).transpose(2, 0, 1)))
        if image.shape[1:] != self.stored:
            raise UserError(f"image {shown_path(str(self.paths[index]))} is {image.shape[2]}×{image.shape[1]}, "
                            f"not the split's {self.stored[1]}×{self.stored[0]}; {ONE_SIZE}")
        return image if self.maps is None else torch.cat([image, self.maps[index]])

    def windows(self, draws: Draws, size: int) -> torch.Tensor:
        """Each drawn image decoded once, then cut as :class:`InMemory` cuts it."""
        unique, index = torch.unique(draws.index, return_inverse=True)
        images = translatable(torch.stack([self[int(i)] for i in unique]), self.padding)
        return crop_flip(images, index, draws.tops, draws.lefts, draws.flips, size, size)

    def chunks(self, batch_size: int) -> Iterator[tuple[slice, torch.Tensor]]:
        rows = [slice(start, min(start + batch_size, self.count)) for start in range(0, self.count, batch_size)]
        loader = DataLoader(_Batches(self), batch_sampler=[[item] for item in rows], num_workers=self.workers,
                            collate_fn=_only, generator=_untouched())
        return _raised(loader)


class OwnSizes(ImageSource, Dataset):
    """A training split of images each of its own size (``sizes``, (H, W) each: ``prepare.keep_train_size``), which
    a codec training cuts windows from, each drawn within its image (:func:`~taskcodec.augment.window_draws`):
    ``held`` decoded in memory, else decoded when a batch needs them, by ``workers`` loader processes (0: the
    training process). Padded by ``padding`` as :class:`InMemory`; ``height`` and ``width`` are tensors of each
    image's padded size, ``stored`` is None. It is only cut into windows: no two of its images make a batch."""

    def __init__(self, paths: Sequence[StoredImage], sizes: Sequence[tuple[int, int]], held: bool,
                 padding: int = 0, workers: int = 0):
        self.paths, self.padding, self.workers = list(paths), padding, 0 if held else workers
        self.count, self.channels, self.stored = len(self.paths), 3, None
        self.sizes = [tuple(size) for size in sizes]
        padded = torch.tensor(self.sizes, dtype=torch.int64).view(-1, 2) + 2 * padding
        self.height, self.width = padded[:, 0], padded[:, 1]
        self.decoded = [self._decoded(i) for i in range(self.count)] if held else None

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> torch.Tensor:
        """Image ``index``, C×H×W, padded."""
        return self.decoded[index] if self.decoded is not None else self._decoded(index)

    def _decoded(self, index: int) -> torch.Tensor:
        image = torch.from_numpy(np.ascontiguousarray(read_image(self.paths[index]).transpose(2, 0, 1)))
        height, width = self.sizes[index]
        if image.shape[1:] != (height, width):
            raise UserError(f"image {shown_path(str(self.paths[index]))} is {image.shape[2]}×{image.shape[1]}, not "
                            f"the {width}×{height} its manifest records; rerun prepare")
        return translatable(image[None], self.padding)[0]

    def windows(self, draws: Draws, size: int) -> torch.Tensor:
        """Each drawn image decoded once (or taken from memory), then each window cut from its own image."""
        unique, index = torch.unique(draws.index, return_inverse=True)
        images = [self[int(i)][None] for i in unique]
        first = torch.zeros(1, dtype=torch.int64)
        return torch.cat([crop_flip(images[k], first, draws.tops[j : j + 1], draws.lefts[j : j + 1],
                                    draws.flips[j : j + 1], size, size) for j, k in enumerate(index.tolist())])


def row_indices(index: slice | torch.Tensor, count: int) -> list[int]:
    """The rows of ``count`` that a slice or a tensor of (non-negative) indices selects, as a tensor's rows would
    be indexed."""
    return list(range(count)[index]) if isinstance(index, slice) else index.tolist()


class FileRows:
    """The images of :class:`ImageFiles` indexed like the uint8 tensor N×C×H×W they would make (rows by a slice
    or a tensor of indices), for a training that takes rows rather than windows.

    Rows are decoded when indexed, by the training process; a training that knows its next batches (an epoch's
    order, :class:`~taskcodec.trainer.EpochObjective`) announces them with :meth:`expect`, and the files'
    ``torch.utils.data`` loader workers decode them ahead, in that order."""

    def __init__(self, files: ImageFiles):
        self.files = files
        self.shape = torch.Size((files.count, files.channels, *files.stored))
        self.expected: deque[list[int]] = deque()
        self.ahead: Iterator[tuple[list[int], torch.Tensor]] = iter(())
        self.prefetched = 0  # batches served by the loader workers (the rest were decoded when indexed)

    def __len__(self) -> int:
        return self.files.count

    def expect(self, batches: Sequence[list[int]]) -> None:
        """The rows the next indexings will ask for, batch by batch: the loader workers decode them ahead (none
        without workers). Replaces any batches announced before."""
        if self.files.workers:
            self.expected = deque(batches)
            self.ahead = _raised(DataLoader(_Batches(self.files), batch_sampler=[[rows] for rows in batches],
                                            num_workers=self.files.workers, collate_fn=_only, generator=_untouched()))

    def __getitem__(self, index: slice | torch.Tensor) -> torch.Tensor:
        rows = row_indices(index, self.files.count)
        if self.expected and self.expected[0] == rows:
            self.expected.popleft()
            _, batch = next(self.ahead)
            self.prefetched += 1
            return batch
        return torch.stack([self.files[row] for row in rows])


def streamed(inputs: Sequence[Any]) -> list[FileRows]:
    """Those of a training's ``inputs`` that are read from their files (for
    :class:`~taskcodec.trainer.EpochObjective` to announce its batches to)."""
    return [rows for rows in inputs if isinstance(rows, FileRows)]


class _Batches(Dataset):
    """Item: rows of ``source`` (a slice or a list) or a :class:`Window` → (it, its uint8 images or windows), made
    in a loader worker; a file that cannot be used gives its :class:`~taskcodec.errors.UserError` instead, for the
    training process to raise (raised in the worker, it would arrive wrapped in the worker's traceback)."""

    def __init__(self, source: ImageSource, size: int = 0):
        self.source, self.size = source, size

    def __getitem__(self, item: slice | Window) -> tuple[slice | Window, torch.Tensor | UserError]:
        try:
            if isinstance(item, Window):
                return item, self.source.windows(item.draws, self.size)
            rows = range(item.start, item.stop) if isinstance(item, slice) else item
            return item, torch.stack([self.source[i] for i in rows])
        except UserError as err:
            return item, UserError(str(err))  # the plain class: a subclass may not survive pickling


def _raised(batches: Iterator[tuple[Any, torch.Tensor | UserError]]) -> Iterator[tuple[Any, torch.Tensor]]:
    for item, batch in batches:
        if isinstance(batch, UserError):
            raise batch
        yield item, batch


def _untouched() -> torch.Generator:
    """A DataLoader's own generator for its workers' seeds, which would otherwise come from PyTorch's global
    one and change the training's noise (our workers draw nothing)."""
    return torch.Generator().manual_seed(0)


def _only(items: list):
    return items[0]


def window_batches(source: ImageSource, sampler: WindowSampler, pin_memory: bool = False
                   ) -> Iterator[tuple[Window, torch.Tensor]]:
    """Endless (window, uint8 batch) pairs of ``sampler``'s draws from ``source``: cut in this process from a
    split in memory, else decoded ahead by the source's ``torch.utils.data`` workers (pinned for a GPU)."""
    if getattr(source, "workers", 0) == 0:
        return ((window, source.windows(window.draws, sampler.size)) for [window] in sampler)
    loader = DataLoader(_Batches(source, sampler.size), batch_sampler=sampler, num_workers=source.workers,
                        collate_fn=_only, pin_memory=pin_memory, generator=_untouched())
    return _raised(loader)


def stored_size(image: StoredImage) -> tuple[int, int]:
    """(height, width) of a prepared image, decoded with :func:`~taskcodec.data.stored.read_image`'s checks (a
    missing, empty or corrupt file is a one-sentence error naming it)."""
    return read_image(image).shape[:2]


def loader_workers(threads: int) -> int:
    """Loader processes of a training process with ``threads`` CPU threads that streams its images: half of them
    (none for one thread: the training process then decodes its own batches)."""
    return threads // 2


def memory_budgets(mem_mb: int | None, counts: Sequence[int], processes: int = 1) -> list[int | None]:
    """Bytes each split may take decoded (:data:`MEMORY_SHARE` of a job's ``mem_mb``, shared by its training
    ``processes`` and by the splits in proportion to their image ``counts``); None each without ``mem_mb``."""
    if mem_mb is None:
        return [None] * len(counts)
    return [int(MEMORY_SHARE * mem_mb * 2**20 / processes * count / sum(counts)) for count in counts]


def image_rows(paths: Sequence[StoredImage], budget_bytes: int | None, workers: int = 0
               ) -> tuple[torch.Tensor | FileRows, str]:
    """A split's uint8 images N×3×H×W indexed by rows: a tensor when they fit ``budget_bytes`` decoded (None: no
    limit), else :class:`FileRows` with ``workers`` loader processes; with the sentence for the log
    (:func:`choose_source`)."""
    source, held = choose_source(paths, *stored_size(paths[0]), budget_bytes, workers)
    return (source.images if isinstance(source, InMemory) else FileRows(source)), held


def choose_source(paths: Sequence[StoredImage], height: int, width: int, budget_bytes: int | None, workers: int,
                  maps: torch.Tensor | None = None, padding: int = 0,
                  sizes: Sequence[tuple[int, int]] | None = None) -> tuple[ImageSource, str]:
    """:class:`InMemory` when the split (``height``×``width`` images with any ``maps``, padded) decoded fits
    ``budget_bytes`` (None: no limit), else :class:`ImageFiles` with ``workers`` loader processes, either padded
    by ``padding`` pixels; with the sentence for the log that says which. With ``sizes`` (each image's own, no
    maps) an :class:`OwnSizes`, held or read from the files alike."""
    extents = sizes if sizes is not None else [(height, width)] * len(paths)
    size = (3 if maps is None else 4) * sum((h + 2 * padding) * (w + 2 * padding) for h, w in extents)  # decoded
    held = budget_bytes is None or size <= budget_bytes
    if sizes is not None:
        if maps is not None:
            raise ValueError("saliency maps need one image size")
        source = OwnSizes(paths, sizes, held, padding, workers)
    elif held:
        source = InMemory(with_maps(images_to_tensor(list(paths)), maps), padding)
    else:
        source = ImageFiles(paths, height, width, maps, padding, workers)
    kind = " of their own sizes" if sizes is not None else ""
    if held:
        return source, f"{len(paths)} images{kind} held decoded in memory ({size / 2**20:.0f} MB)"
    return (source,
            f"{len(paths)} images{kind} read from their files by "
            f"{f'{workers} loader worker' + ('s' if workers > 1 else '') if workers else 'the training process'} "
            f"({size / 2**20:.0f} MB decoded > the budget of {budget_bytes / 2**20:.0f} MB)")
