"""Where a prepared image's bytes are: its own PNG, a byte range of a tar shard, or the source file in place.

``prepare.storage`` chooses (:data:`STORAGES`); a manifest's ``path`` cell says which for each image:

- ``png`` (the default): one PNG at ``image_size``² per image below the manifest's folder,
  ``images/train/000123.png`` (with ``prepare.keep_train_size``, a training image at its own size);
- ``tar``: the same PNGs packed ``prepare.images_per_shard`` at a time into uncompressed tar shards per split
  (:class:`TarShardWriter`, the WebDataset layout: member ``<image_id>.png``). The cell names the member's bytes,
  ``images/train-000000.tar[512:126397]``, so reading one image is one seek and one read; a split read in order
  reads its shards in order. A million images are a thousand files for DVC and a network filesystem;
- ``in_place``: an image folder indexed where it is, nothing copied. The cell is the source file's absolute path
  with the prepared size, ``/data/photos/0001.jpg[256x256]``: the image is resized and centre-cropped to it each
  time it is read, exactly as ``prepare`` would have written it (:func:`~taskcodec.data.images.resize_center_crop`);
  a training image that keeps its own size (``prepare.keep_train_size``) is named without one and read as it is.

``prepare`` writes through the storage's :class:`Storage` (:data:`STORAGES`): the image processes stage each
image (saved as a PNG, handed back as PNG bytes, or nothing) before the splits are drawn, then the storage
places it in its split and names its cell.

A cell with its folder made absolute is the image's address (``str`` of a :class:`StoredImage`), which a stage
may write down (a latent cache's index) for a later one to read. Every consumer reads through
:func:`read_image`; each way of storing gives the same pixels.
"""

from __future__ import annotations

import io
import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from taskcodec.data.images import UnusableImageError, decode_rgb8, load_rgb8, resize_center_crop
from taskcodec.errors import UserError, shown_path

_ADDRESS = re.compile(r"(?P<file>.+?)(?:\[(?P<start>\d+):(?P<stop>\d+)\]|\[(?P<size>\d+)x(?P=size)\])?", re.S)


@dataclass(frozen=True)
class StoredImage:
    """One prepared image: ``file``, or bytes ``[start, stop)`` of the tar shard ``file``; an image indexed in
    place has ``size``, the side it is resized and centre-cropped to when read (0: read as stored)."""

    file: Path
    start: int | None = None
    stop: int | None = None
    size: int = 0

    @classmethod
    def from_cell(cls, cell: str, folder: Path = Path()) -> StoredImage:
        """The image a manifest ``path`` cell (or an address) names, relative to the manifest's ``folder``."""
        found = _ADDRESS.fullmatch(cell)
        if found is None:  # an empty cell
            raise UserError(f"a manifest in {shown_path(folder)} names an image by an empty path; rerun prepare")
        file = folder / found["file"]
        if found["start"] is not None:
            return cls(file, int(found["start"]), int(found["stop"]))
        return cls(file, size=int(found["size"] or 0))

    def __str__(self) -> str:
        if self.start is not None:
            return f"{self.file}[{self.start}:{self.stop}]"
        return f"{self.file}[{self.size}x{self.size}]" if self.size else str(self.file)

    def read(self) -> np.ndarray:
        """The image as ``H×W×3`` uint8 (:func:`~taskcodec.data.images.load_rgb8`'s conversions and one-sentence
        errors); a shard cut short or unreadable is an :class:`~taskcodec.data.images.UnusableImageError`."""
        if self.start is None:
            image = load_rgb8(self.file)
            return resize_center_crop(image, self.size, path=self.file) if self.size else image
        try:
            with open(self.file, "rb") as shard:
                shard.seek(self.start)
                data = shard.read(self.stop - self.start)
        except OSError as err:
            raise UnusableImageError(self.file, f"cannot be read ({err.strerror})", "rerun prepare") from None
        if len(data) < self.stop - self.start:
            raise UnusableImageError(str(self), f"is cut short ({len(data)} of {self.stop - self.start} bytes in "
                                     "the shard)", "rerun prepare")
        return decode_rgb8(data, str(self))


def read_image(image: StoredImage | str | os.PathLike) -> np.ndarray:
    """A manifest's image (a :class:`StoredImage` or its address) or an image file (an evaluation folder's) as
    ``H×W×3`` uint8."""
    return (image if isinstance(image, StoredImage) else StoredImage.from_cell(os.fsdecode(image))).read()


class TarShardWriter:
    """Uncompressed tar shards ``<folder>/<prefix>-NNNNNN.tar`` of at most ``per_shard`` members each, written
    with the standard library's :mod:`tarfile` (members without owner or time, so the same images make the same
    bytes and DVC stores a shard once)."""

    def __init__(self, folder: Path, prefix: str, per_shard: int):
        self.folder, self.prefix, self.per_shard = folder, prefix, per_shard
        self.shards, self.members, self.tar = 0, 0, None

    def add(self, name: str, data: bytes) -> str:
        """Append member ``name`` with ``data``; return its cell for the manifest (relative to the folder that
        holds ``folder``, :meth:`StoredImage.from_cell`)."""
        if self.tar is None or self.members == self.per_shard:
            self.close()
            shard = self.folder / f"{self.prefix}-{self.shards:06d}.tar"
            self.tar = tarfile.open(shard, "w", format=tarfile.USTAR_FORMAT)
            self.shards, self.members = self.shards + 1, 0
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(data), 0o644
        start = self.tar.offset + len(info.tobuf(self.tar.format, self.tar.encoding, self.tar.errors))  # its header
        self.tar.addfile(info, io.BytesIO(data))
        self.members += 1
        return f"{self.folder.name}/{Path(self.tar.name).name}[{start}:{start + len(data)}]"

    def close(self) -> None:
        if self.tar is not None:
            self.tar.close()
            self.tar = None


#: what prepare's image processes return for an image: (original width, height, its cells of the optional manifest
#: columns, the PNG bytes of each of its forms or None); :meth:`Storage.stage` may replace them by where it keeps
#: them
Written = tuple[int, int, dict[str, Any], Any]


def staged_name(image_id: str, form: int, own_size: bool) -> str:
    """The file a staged form of an image is saved as (:meth:`Storage.form`): ``<image_id>.png``, and with
    ``own_size`` its square ``<image_id>.square.png``."""
    return f"{image_id}.square.png" if own_size and form == 1 else f"{image_id}.png"


class Storage:
    """How ``prepare`` stores the images of the folder ``images`` (below the manifest's): its image processes save
    each one as a PNG in ``folder`` (None: nowhere) or, ``encoded``, hand back its PNG bytes; :meth:`stage` keeps
    an image until the splits are drawn, :meth:`place` puts it in its split and names its manifest cell, and
    :meth:`finish` leaves ``images`` as the stage's output. The images are staged at ``image_size``², or with
    ``own_size`` (``prepare.keep_train_size``) in two forms, as they are and square: the train split keeps the first,
    the others the second (:meth:`form`). ``keys``: the further ``prepare`` keys it takes (its constructor's keyword
    arguments)."""

    encoded: ClassVar[bool] = False
    keys: ClassVar[tuple[str, ...]] = ()
    needs_files: ClassVar[bool] = False  # only for a dataset that reads its images from files
    folder: Path | None = None

    def __init__(self, images: Path, image_size: int, own_size: bool = False):
        self.images, self.image_size, self.own_size = images, image_size, own_size
        images.mkdir()

    def __enter__(self) -> Storage:
        return self

    def __exit__(self, *failed) -> None:
        """Release what :meth:`finish` would, without tidying (a failed stage's folder is discarded whole)."""

    def form(self, split: str) -> int:
        """Which staged form of an image ``split`` keeps: 0, the image as staged (the square, or with ``own_size``
        a training image as it is), or 1, its square (with ``own_size``, the other splits)."""
        return int(self.own_size and split != "train")

    def stage(self, written: Written) -> Written:
        return written

    def place(self, image_id: str, file: Path | None, written: Written, split: str) -> str:
        raise NotImplementedError

    def finish(self) -> None:
        pass


class PngFiles(Storage):
    """``png``: each image saved by the process that made it into ``images/staging``, then moved to
    ``images/<split>/``."""

    def __init__(self, images: Path, image_size: int, own_size: bool = False):
        super().__init__(images, image_size, own_size)
        self.folder = images / "staging"
        self.folder.mkdir()

    def place(self, image_id, file, written, split):
        relative = Path(self.images.name, split, f"{image_id}.png")
        (self.images / split).mkdir(exist_ok=True)
        staged = [self.folder / staged_name(image_id, form, self.own_size) for form in range(1 + self.own_size)]
        os.replace(staged.pop(self.form(split)), self.images.parent / relative)
        for other in staged:
            other.unlink()
        return relative.as_posix()

    def finish(self):
        self.folder.rmdir()


class TarShards(Storage):
    """``tar``: the PNG bytes the processes hand back wait end to end in one file (``images/staging``), each staged
    image holding the (offset, length) of each form there, then its split's form goes to the split's
    :class:`TarShardWriter`."""

    encoded, keys = True, ("images_per_shard",)

    def __init__(self, images: Path, image_size: int, own_size: bool = False, *, images_per_shard: int):
        super().__init__(images, image_size, own_size)
        self.staged = open(images / "staging", "w+b")
        self.shards: dict[str, TarShardWriter] = {}
        self.per_shard = images_per_shard

    def __exit__(self, *failed):
        self.staged.close()
        for writer in self.shards.values():
            writer.close()

    def stage(self, written):
        return (*written[:3], [(self.staged.tell(), self.staged.write(png)) for png in written[3]])

    def place(self, image_id, file, written, split):
        offset, length = written[3][self.form(split)]
        self.staged.seek(offset)
        if split not in self.shards:
            self.shards[split] = TarShardWriter(self.images, split, self.per_shard)
        return self.shards[split].add(f"{image_id}.png", self.staged.read(length))

    def finish(self):
        self.__exit__()
        (self.images / "staging").unlink()


class InPlace(Storage):
    """``in_place``: nothing written; the cell is the source file with the size it is resized to when read (none
    for an image that keeps its own size)."""

    needs_files = True

    def place(self, image_id, file, written, split):
        return str(StoredImage(file, size=self.image_size if self.form(split) or not self.own_size else 0))

    def finish(self):
        self.images.rmdir()


#: ``prepare.storage`` → how prepare stores the images
STORAGES: dict[str, type[Storage]] = {"png": PngFiles, "tar": TarShards, "in_place": InPlace}
