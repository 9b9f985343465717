import pytest
import torch

from taskcodec.codecs.bitstream import CorruptBitstream, ImageBitstream
from taskcodec.codecs.coding import decode_images, encode_images, estimated_bits, pad
from taskcodec.codecs.registry import CODECS, build_codec
from taskcodec.errors import UserError


def tiny_model(arch, N=8, M=12):
    torch.manual_seed(0)
    model = build_codec(arch, N, M).eval()
    model.update(force=True)
    return model


def test_registry_has_the_required_architectures():
    assert {"bmshj2018-factorized", "bmshj2018-hyperprior", "mbt2018-mean"} <= set(CODECS)
    with pytest.raises(UserError, match="unknown codec architecture 'nope'"):
        build_codec("nope", 8, 8)


def test_pad_replicates_to_multiple():
    x = torch.arange(2 * 3 * 5 * 7, dtype=torch.float32).reshape(2, 3, 5, 7)
    padded = pad(x, 4)
    assert padded.shape == (2, 3, 8, 8)
    assert torch.equal(padded[..., :5, :7], x)
    assert torch.equal(padded[..., 7, :7], x[..., 4, :])


@pytest.mark.parametrize(
    "arch, has_scales, divisor",
    [("bmshj2018-factorized", False, 16), ("bmshj2018-hyperprior", True, 16), ("mbt2018-mean", True, 16)],
)
def test_round_trip_through_real_bitstreams(arch, has_scales, divisor):
    model = tiny_model(arch)
    x = torch.rand(3, 3, 40, 56)
    bitstreams = encode_images(model, x)
    assert len(bitstreams) == 3 and all((b.height, b.width) == (40, 56) for b in bitstreams)
    # serialise and parse, as the cache does
    decoded = decode_images(model, [ImageBitstream.from_bytes(b.to_bytes()) for b in bitstreams])
    assert decoded.x_hat.shape == (3, 3, 40, 56)
    assert decoded.y_hat.shape == (3, 12, 64 // divisor, 64 // divisor)
    assert (decoded.scales_hat is not None) == has_scales
    if has_scales:
        assert decoded.scales_hat.shape == decoded.y_hat.shape
        assert torch.isfinite(decoded.scales_hat).all()
    with torch.no_grad():
        forward = model(pad(x))["x_hat"][..., :40, :56].clamp(0, 1)
    assert (decoded.x_hat - forward).abs().max() < 1e-4
    assert estimated_bits(model, x).shape == (3,)


def test_decoding_with_the_wrong_model_is_a_clear_error():
    factorized = tiny_model("bmshj2018-factorized")
    hyperprior = tiny_model("bmshj2018-hyperprior")
    bitstreams = encode_images(factorized, torch.rand(1, 3, 64, 64))
    with pytest.raises(CorruptBitstream, match="does not decode"):
        decode_images(hyperprior, bitstreams)


def test_a_bitstream_does_not_depend_on_the_other_images_of_the_batch():
    model = tiny_model("bmshj2018-hyperprior")
    x = torch.rand(4, 3, 64, 64)
    together = encode_images(model, x)
    alone = encode_images(model, x[2:3])
    assert together[2] == alone[0]
    assert torch.equal(decode_images(model, together).y_hat[2:3], decode_images(model, alone).y_hat)


@pytest.mark.parametrize("arch", sorted(CODECS))
def test_every_architecture_decodes_like_compressai(arch):
    model = tiny_model(arch)
    x = torch.rand(1, 3, 64, 64)
    decoded = decode_images(model, encode_images(model, x))
    with torch.no_grad():
        compressed = model.compress(x)
        reference = model.decompress(compressed["strings"], compressed["shape"])["x_hat"]
    assert torch.allclose(decoded.x_hat, reference, atol=1e-5)


@pytest.mark.parametrize("arch", ["bmshj2018-hyperprior", "mbt2018-mean"])
def test_a_batch_decodes_to_the_latents_of_each_bitstream_alone(arch):
    model = tiny_model(arch)
    bitstreams = encode_images(model, torch.rand(5, 3, 64, 64))
    together = decode_images(model, bitstreams)
    for i, bitstream in enumerate(bitstreams):
        alone = decode_images(model, [bitstream])
        assert torch.equal(together.y_hat[i : i + 1], alone.y_hat)
        assert torch.equal(together.scales_hat[i : i + 1], alone.scales_hat)
        assert torch.allclose(together.x_hat[i : i + 1], alone.x_hat, atol=1e-6)


@pytest.mark.parametrize("arch", ["bmshj2018-hyperprior", "mbt2018"])
def test_a_corrupt_bitstream_in_a_batch_is_named_by_its_position(arch):
    model = tiny_model(arch)
    bitstreams = encode_images(model, torch.rand(3, 3, 64, 64))
    wrong = encode_images(tiny_model("bmshj2018-factorized"), torch.rand(1, 3, 64, 64))[0]
    with pytest.raises(CorruptBitstream, match=r"image 1 of the batch"):
        decode_images(model, [bitstreams[0], wrong, bitstreams[2]])
