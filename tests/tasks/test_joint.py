import copy

import pytest
import torch

from taskcodec.codecs.coding import encode_images
from taskcodec.codecs.registry import build_codec
from taskcodec.data.tensors import to_float
from taskcodec.errors import UserError
from taskcodec.tasks.joint import JointModel, evaluate_bitstreams, train_joint
from taskcodec.tasks.latent_models import build_latent_classifier

PARAMS = {"epochs": 2, "batch_size": 4, "lr": 1e-3, "aux_lr": 1e-3, "rate_weight": 0.1, "crop_padding": 4,
          "clip_max_norm": 1.0, "time_budget_s": None, "checkpoint_every": 1, "seed": 0}


def images_and_labels(count, seed=0):
    generator = torch.Generator().manual_seed(seed)
    low = torch.rand(count, 3, 8, 8, generator=generator)
    images = torch.nn.functional.interpolate(low, size=(64, 64), mode="bicubic", align_corners=False)
    return (images.clamp(0, 1) * 255).round().to(torch.uint8), torch.arange(count) % 2


@pytest.fixture()
def models():
    torch.manual_seed(0)
    codec = build_codec("bmshj2018-hyperprior", {"N": 8, "M": 12})
    codec.update(force=True)
    classifier = build_latent_classifier({"arch": "cresnet", "width": 8, "blocks": [1, 1, 1]}, 12, 2)
    return codec.eval(), classifier.eval()


def test_joint_fine_tunes_the_analysis_side_only(models, tmp_path):
    codec, classifier = models
    before = copy.deepcopy(codec.state_dict())
    images, labels = images_and_labels(12)
    state = train_joint(codec, classifier, PARAMS, images[:8], labels[:8], images[8:], labels[8:],
                        torch.device("cpu"), tmp_path / "resume.pt", tmp_path / "log.csv")
    after = codec.state_dict()
    assert [row["epoch"] for row in state.history] == [1, 2] and state.step == 4
    assert state.best == min(state.history, key=lambda row: (row["val_loss"], -row["epoch"]))
    assert not torch.equal(before["g_a.0.weight"], after["g_a.0.weight"])
    assert not torch.equal(before["h_a.0.weight"], after["h_a.0.weight"])
    assert torch.equal(before["g_s.0.weight"], after["g_s.0.weight"])
    assert state.history[-1]["val_bpp"] > 0


def test_evaluation_measures_real_bitstream_bytes(models):
    codec, classifier = models
    images, labels = images_and_labels(5, seed=1)
    result = evaluate_bitstreams(codec, classifier, images, labels, 2, torch.device("cpu"))
    payload_bits = sum(8 * len(b["main"].to_bytes()) for b in encode_images(codec, to_float(images, torch.device("cpu"))))
    assert result["bpp"] == pytest.approx(payload_bits / (5 * 64 * 64))
    assert 0.0 <= result["top1"] <= 1.0


def test_rounded_latents_reach_the_classifier(models):
    codec, classifier = models
    seen = {}
    classifier.register_forward_hook(lambda module, args, out: seen.update(y_hat=args[0]))
    JointModel(codec, classifier).train()(torch.rand(2, 3, 64, 64))
    assert torch.equal(seen["y_hat"], seen["y_hat"].round())  # straight-through rounding, not noise


def test_a_factorized_codec_cannot_be_fine_tuned_jointly(models):
    _, classifier = models
    with pytest.raises(UserError, match="needs a codec whose ŷ and σ̂ decode without the synthesis"):
        JointModel(build_codec("bmshj2018-factorized", {"N": 8, "M": 12}), classifier)
