import io

import pytest

from taskcodec.codecs.bitstream import (
    CorruptBitstream,
    ImageBitstream,
    ShardWriter,
    encode_varint,
    read_shard,
    read_varint,
)


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 2**20, 2**40])
def test_varint_round_trip(value):
    assert read_varint(io.BytesIO(encode_varint(value)), "test") == value


def test_image_bitstream_round_trip_and_size():
    bitstream = ImageBitstream(64, 48, [b"\x01\x02\x03", b"", b"\xff" * 200])
    data = bitstream.to_bytes()
    assert ImageBitstream.from_bytes(data) == bitstream
    # header: 1 byte height, 1 byte width, 1 byte count, two length fields (1 byte each) + payload
    assert len(data) == 3 + 2 + 3 + 0 + 200


def test_truncated_bitstream_is_reported():
    data = ImageBitstream(64, 64, [b"abcdef", b"xyz"]).to_bytes()
    with pytest.raises(CorruptBitstream, match="truncated"):
        ImageBitstream.from_bytes(data[:6], where="img")


def test_invalid_header_is_reported():
    with pytest.raises(CorruptBitstream, match="invalid header"):
        ImageBitstream.from_bytes(bytes([0, 0, 0]))


def test_shard_round_trip(tmp_path):
    path = tmp_path / "shard.tcbs"
    records = [("a", b"\x00\x01"), ("b/c", b""), ("d", bytes(range(256)))]
    with ShardWriter(path) as writer:
        for key, data in records:
            writer.write(key, data)
    assert list(read_shard(path)) == [(key, None, data) for key, data in records]


def test_layered_shard_round_trip_names_each_layer(tmp_path):
    path = tmp_path / "shard.tcbs"
    records = [("a", "base", b"\x01"), ("a", "enhancement", b"\x02\x03"), ("b", "base", b"")]
    with ShardWriter(path, layered=True) as writer:
        for key, layer, data in records:
            writer.write(key, data, layer)
    assert list(read_shard(path)) == records
    with pytest.raises(ValueError, match="layer name"):
        ShardWriter(tmp_path / "other.tcbs").write("a", b"x", "base")


def test_a_corrupt_length_field_is_reported_without_allocating(tmp_path):
    path = tmp_path / "shard.tcbs"
    with ShardWriter(path) as writer:
        writer.write("a", b"payload")
    raw = path.read_bytes()
    # the bitstream length varint follows the id; claim 2**36 bytes
    corrupt = raw[:5] + raw[5:7] + bytes([0x80, 0x80, 0x80, 0x80, 0x80, 0x01]) + raw[8:]
    path.write_bytes(corrupt)
    with pytest.raises(CorruptBitstream, match="corrupt length field|truncated"):
        list(read_shard(path))


def test_shard_checksum_detects_corruption(tmp_path):
    path = tmp_path / "shard.tcbs"
    with ShardWriter(path) as writer:
        writer.write("a", b"payload-bytes")
    raw = bytearray(path.read_bytes())
    raw[-6] ^= 0xFF  # flip a payload byte
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptBitstream, match="checksum"):
        list(read_shard(path))


def test_shard_truncation_and_bad_magic(tmp_path):
    path = tmp_path / "shard.tcbs"
    with ShardWriter(path) as writer:
        writer.write("a", b"payload-bytes")
    path.write_bytes(path.read_bytes()[:-2])
    with pytest.raises(CorruptBitstream, match="truncated"):
        list(read_shard(path))
    path.write_bytes(b"JUNKJUNK")
    with pytest.raises(CorruptBitstream, match="not a taskcodec bitstream shard"):
        list(read_shard(path))
