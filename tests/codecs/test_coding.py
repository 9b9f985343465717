import pytest
import torch

from taskcodec.codecs.bitstream import CorruptBitstream, ImageBitstream
from taskcodec.codecs.coding import decode_images, encode_images, estimated_bits, pad
from taskcodec.codecs.compressai_codecs import COMPRESSAI_CODECS
from taskcodec.codecs.registry import CODECS, build_codec, codec_hyperparameters
from taskcodec.errors import UserError


def tiny_model(arch, N=8, M=12):
    torch.manual_seed(0)
    required, optional = codec_hyperparameters(arch)
    hyper = {name: value for name, value in (("N", N), ("M", M)) if name in required + optional}
    model = build_codec(arch, hyper).eval()
    model.update(force=True)
    return model


def test_registry_has_the_required_architectures():
    assert {"bmshj2018-factorized", "bmshj2018-hyperprior", "mbt2018-mean"} <= set(CODECS)
    with pytest.raises(UserError, match="unknown codec architecture 'nope'"):
        build_codec("nope", {"N": 8})
    with pytest.raises(UserError, match="did you mean 'bmshj2018-hyperprior'"):
        build_codec("bmshj2018-hyperprio", {"N": 8, "M": 8})


def test_a_hyperparameter_the_architecture_ignores_is_an_error():
    with pytest.raises(UserError, match="cheng2020-anchor takes no hyperparameter 'M'"):
        build_codec("cheng2020-anchor", {"N": 8, "M": 8})
    with pytest.raises(UserError, match="needs the hyperparameter 'M'"):
        build_codec("bmshj2018-hyperprior", {"N": 8})


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
    assert len(bitstreams) == 3 and all((b["main"].height, b["main"].width) == (40, 56) for b in bitstreams)
    # serialise and parse, as the cache does
    decoded = decode_images(model, [{"main": ImageBitstream.from_bytes(b["main"].to_bytes())} for b in bitstreams])
    latents = decoded.latents["main"]
    assert decoded.x_hat.shape == (3, 3, 40, 56)
    assert latents.y_hat.shape == (3, 12, 64 // divisor, 64 // divisor)
    assert (latents.scales_hat is not None) == has_scales
    if has_scales:
        assert latents.scales_hat.shape == latents.y_hat.shape
        assert torch.isfinite(latents.scales_hat).all()
    with torch.no_grad():
        forward = model(pad(x, model.pad_multiple))["x_hat"][..., :40, :56].clamp(0, 1)
    assert (decoded.x_hat - forward).abs().max() < 1e-4
    assert estimated_bits(model, x)["main"].shape == (3,)


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
    assert torch.equal(decode_images(model, together).latents["main"].y_hat[2:3],
                       decode_images(model, alone).latents["main"].y_hat)


@pytest.mark.parametrize("arch", sorted(COMPRESSAI_CODECS))
def test_every_architecture_decodes_like_compressai(arch):
    model = tiny_model(arch)
    x = torch.rand(1, 3, 64, 64)
    encoded = encode_images(model, x)
    decoded = decode_images(model, encoded)
    # the contract's layer holds exactly CompressAI's strings: single-layer bitstreams are unchanged
    assert encoded[0]["main"].strings == [per_model[0] for per_model in model.compress(x)["strings"]]
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
        assert torch.equal(together.latents["main"].y_hat[i : i + 1], alone.latents["main"].y_hat)
        assert torch.equal(together.latents["main"].scales_hat[i : i + 1], alone.latents["main"].scales_hat)
        assert torch.allclose(together.x_hat[i : i + 1], alone.x_hat, atol=1e-6)


@pytest.mark.parametrize("arch", ["bmshj2018-hyperprior", "mbt2018"])
def test_a_corrupt_bitstream_in_a_batch_is_named_by_its_position(arch):
    model = tiny_model(arch)
    bitstreams = encode_images(model, torch.rand(3, 3, 64, 64))
    wrong = encode_images(tiny_model("bmshj2018-factorized"), torch.rand(1, 3, 64, 64))[0]
    with pytest.raises(CorruptBitstream, match=r"image 1 of the batch"):
        decode_images(model, [bitstreams[0], wrong, bitstreams[2]])


def test_zoo_weights_load_without_unpickling_code(monkeypatch, tmp_path):
    """The zoo path, offline: CompressAI's URL is 'downloaded' from a local file, and only with weights_only=True."""
    from taskcodec.codecs import registry

    source = tiny_model("bmshj2018-factorized", N=128, M=192)
    requested = {}

    def local_download(url, progress, weights_only):
        requested.update(url=url, weights_only=weights_only)
        torch.save(source.state_dict(), tmp_path / "weights.pth")
        return torch.load(tmp_path / "weights.pth", weights_only=weights_only)

    monkeypatch.setattr(registry, "load_state_dict_from_url", local_download)
    model = registry.zoo_codec("bmshj2018-factorized", 1)
    assert requested["weights_only"] is True and "bmshj2018-factorized" in requested["url"]
    assert isinstance(model, registry.CODECS["bmshj2018-factorized"])
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), source.state_dict().values()))
    with pytest.raises(UserError, match="no MSE model 'nope'"):
        registry.zoo_codec("nope", 1)
