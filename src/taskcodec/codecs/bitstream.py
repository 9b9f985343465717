"""Byte formats for entropy-coded images and the shard files that hold them.

One image's bitstream is self-contained given the model::

    varint height | varint width | varint n_strings |
    (varint length | bytes) for every string but the last | last string's bytes

The strings are CompressAI's rANS outputs (``model.compress(x)["strings"]``,
one per entropy model). The latent shapes follow from height and width, so
nothing else is stored; the actual bpp of an image is ``8 * len(bitstream) / (H*W)``,
header included.

A shard file stores many bitstreams::

    b"TCBS" | version byte | records, each: varint len(id) | id (utf-8) |
    [version 2: varint len(layer) | layer (utf-8) |]
    varint len(bitstream) | bitstream | crc32(id [+ layer] + bitstream) as 4 bytes big-endian

Version 1 (single-layer codecs) has one record per image; version 2 (codecs
with several layers, :mod:`taskcodec.codecs.contract`) one record per image and
layer, each layer's bitstream self-contained. The CRC is transport protection
for the container, so it is not counted in bpp.
"""

from __future__ import annotations

import io
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

from taskcodec.errors import UserError

SHARD_MAGIC = b"TCBS"
SHARD_VERSION = 1
LAYERED_SHARD_VERSION = 2


class CorruptBitstream(UserError):
    """A bitstream or shard that cannot be parsed."""


@dataclass(frozen=True)
class ImageBitstream:
    """The entropy-coded strings of one image plus its original size."""

    height: int
    width: int
    strings: list[bytes]

    def to_bytes(self) -> bytes:
        out = bytearray()
        out += encode_varint(self.height)
        out += encode_varint(self.width)
        out += encode_varint(len(self.strings))
        for string in self.strings[:-1]:
            out += encode_varint(len(string))
            out += string
        out += self.strings[-1]
        return bytes(out)

    @classmethod
    def from_bytes(cls, data: bytes, where: str = "bitstream") -> "ImageBitstream":
        stream = io.BytesIO(data)
        height = read_varint(stream, where)
        width = read_varint(stream, where)
        count = read_varint(stream, where)
        if not (1 <= count <= 16) or height == 0 or width == 0:
            raise CorruptBitstream(f"{where} has an invalid header (size {height}x{width}, {count} strings)")
        strings = []
        for _ in range(count - 1):
            length = read_varint(stream, where)
            string = stream.read(length)
            if len(string) != length:
                raise CorruptBitstream(f"{where} is truncated")
            strings.append(string)
        strings.append(stream.read())
        return cls(height, width, strings)


def check_header(bitstream: ImageBitstream, size: tuple[int, int], strings: int, where: str, advice: str) -> None:
    """Raise :class:`CorruptBitstream` unless the header declares ``size`` (height, width) and ``strings``
    strings: validated before decoding, since the native entropy decoder trusts the shapes it is given."""
    if (bitstream.height, bitstream.width) != tuple(size):
        raise CorruptBitstream(f"{where} declares {bitstream.width}×{bitstream.height} pixels but the index lists "
                               f"{size[1]}×{size[0]}; {advice}")
    if len(bitstream.strings) != strings:
        raise CorruptBitstream(f"{where} has {len(bitstream.strings)} strings, the codec writes {strings}; {advice}")


def encode_varint(value: int) -> bytes:
    """LEB128 unsigned varint."""
    if value < 0:
        raise ValueError("varints are unsigned")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def read_varint(stream: BinaryIO, where: str) -> int:
    value, shift = 0, 0
    while True:
        raw = stream.read(1)
        if not raw:
            raise CorruptBitstream(f"{where} is truncated")
        value |= (raw[0] & 0x7F) << shift
        if not raw[0] & 0x80:
            return value
        shift += 7
        if shift > 63:
            raise CorruptBitstream(f"{where} has an invalid length field")


class ShardWriter:
    """Append (image id, [layer,] bitstream) records to a shard file; ``layered`` writes version 2."""

    def __init__(self, path: str | Path, layered: bool = False):
        self.path = Path(path)
        self.layered = layered
        self._handle = open(self.path, "wb")
        self._handle.write(SHARD_MAGIC + bytes([LAYERED_SHARD_VERSION if layered else SHARD_VERSION]))

    def write(self, image_id: str, bitstream: bytes, layer: str | None = None) -> None:
        if (layer is not None) != self.layered:
            raise ValueError("a layered shard needs a layer name per record, a single-layer shard none")
        fields = [image_id.encode(), *([] if layer is None else [layer.encode()]), bitstream]
        for field in fields:
            self._handle.write(encode_varint(len(field)) + field)
        self._handle.write(zlib.crc32(b"".join(fields)).to_bytes(4, "big"))

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_shard(path: str | Path) -> Iterator[tuple[str, str | None, bytes]]:
    """Yield (image id, layer or None for a single-layer shard, bitstream), checking every record's CRC."""
    path = Path(path)
    advice = "delete its cache folder and rerun the cache stage"
    with open(path, "rb") as stream:
        header = stream.read(len(SHARD_MAGIC) + 1)
        if len(header) < len(SHARD_MAGIC) + 1 or header[:4] != SHARD_MAGIC:
            raise CorruptBitstream(f"{path} is not a taskcodec bitstream shard; {advice}")
        if header[4] not in (SHARD_VERSION, LAYERED_SHARD_VERSION):
            raise CorruptBitstream(f"{path} has shard version {header[4]}, expected {SHARD_VERSION} or "
                                   f"{LAYERED_SHARD_VERSION}; {advice}")
        layered = header[4] == LAYERED_SHARD_VERSION
        while stream.peek(1):
            where = f"{path} (offset {stream.tell()})"
            key = _read_field(stream, where, advice)
            layer = _read_field(stream, where, advice) if layered else b""
            bitstream = _read_field(stream, where, advice)
            crc = stream.read(4)
            if len(crc) != 4:
                raise CorruptBitstream(f"{where} is truncated; {advice}")
            if zlib.crc32(key + layer + bitstream) != int.from_bytes(crc, "big"):
                raise CorruptBitstream(f"{where} fails its checksum (corrupt bitstream); {advice}")
            try:
                yield key.decode(), layer.decode() if layered else None, bitstream
            except UnicodeDecodeError:
                raise CorruptBitstream(f"{where} has an image id or layer that is not UTF-8; {advice}") from None


def _read_field(stream: BinaryIO, where: str, advice: str) -> bytes:
    """A varint length and that many bytes; a short read is a truncated shard."""
    length = read_varint(stream, where)
    if length > os.fstat(stream.fileno()).st_size - stream.tell():  # never allocate for a corrupt length
        raise CorruptBitstream(f"{where} is truncated or has a corrupt length field; {advice}")
    data = stream.read(length)
    if len(data) != length:
        raise CorruptBitstream(f"{where} is truncated; {advice}")
    return data
