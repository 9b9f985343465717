import torch

from taskcodec.codecs.coding import encode_images
from taskcodec.codecs.registry import build_codec
from taskcodec.tasks.latent_models import build_latent_classifier
from taskcodec.tasks.models import build_task_model
from taskcodec.tasks.speed import compare_speed, latent_classifier_throughput


def test_both_receivers_are_timed_on_the_same_bitstreams():
    torch.manual_seed(0)
    codec = build_codec("bmshj2018-hyperprior", {"N": 8, "M": 12}).eval()
    codec.update(force=True)
    classifier = build_latent_classifier({"arch": "cresnet", "width": 8, "blocks": [1, 1, 1]}, 12, 3)
    task_model = build_task_model({"arch": "resnet-small", "widths": [4, 8], "blocks": [1, 1], "stem_stride": 1,
                                   "weights": None}, 3)
    bitstreams = encode_images(codec, torch.rand(4, 3, 48, 48))
    result = compare_speed(codec, classifier, task_model, bitstreams, 2, torch.device("cpu"))
    assert result["images"] == 4
    assert all(result[key] > 0 for key in ("entropy_decode_s", "latent_classifier_s", "synthesis_s", "task_model_s",
                                           "latent_images_per_s", "pixel_images_per_s", "speedup"))
    assert result["speedup"] == (result["entropy_decode_s"] + result["synthesis_s"] + result["task_model_s"]) / (
        result["entropy_decode_s"] + result["latent_classifier_s"])
    assert latent_classifier_throughput(classifier, torch.randn(5, 12, 4, 4), torch.rand(5, 12, 4, 4), 2,
                                        torch.device("cpu")) > 0
