"""SimCLR (seed 001's self-supervised features): NT-Xent, the views, training, the frozen group-1 extractor, weights."""

import math

import pytest
import torch
import torch.nn.functional as F
import torchvision

from taskcodec.errors import UserError
from taskcodec.selfsupervised import FeatureExtractor, load_feature_extractor, load_simclr, save_simclr
from taskcodec.selfsupervised.models import build_simclr
from taskcodec.selfsupervised.training import (nt_xent_loss, pair_labels, train_simclr, two_views, view_match_top1,
                                               view_transform)

PARAMS = {"model": "resnet-small", "widths": [8, 16], "blocks": [1, 1], "weights": None, "normalize": False,
          "projection_dim": 16, "crop_size": 16, "min_crop_scale": 0.6, "jitter_strength": 0.2, "temperature": 0.2,
          "steps": 40, "batch_size": 16, "lr": 0.01, "weight_decay": 1e-6, "lr_warmup": 0.05, "time_budget_s": None,
          "val_every": 100, "checkpoint_every": 100, "seed": 0}
RESNET50 = {**PARAMS, "model": "resnet50", "widths": [64], "blocks": [1], "normalize": True}


@pytest.fixture(autouse=True)
def one_thread():
    """One PyTorch thread, as the stages run (--threads 1): the tiny networks are slower on more."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def blobs(count: int, seed: int) -> torch.Tensor:
    """``count`` distinct smooth colour patterns, uint8 count×3×24×24."""
    low = torch.rand(count, 3, 4, 4, generator=torch.Generator().manual_seed(seed))
    return (F.interpolate(low, size=24, mode="bilinear", align_corners=False) * 255).round().to(torch.uint8)


def test_nt_xent_on_a_hand_checkable_case():
    # two images whose two views coincide; the images are orthogonal: for every view, one positive of cosine 1 and
    # two negatives of cosine 0 (its own similarity is no negative)
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    tau = 0.5
    loss = nt_xent_loss(tau)(z, pair_labels(2, z.device))
    assert loss.item() == pytest.approx(-math.log(math.exp(1 / tau) / (math.exp(1 / tau) + 2)), rel=1e-5)
    assert view_match_top1(z) == 1.0
    swapped = z[[0, 1, 3, 2]]  # each first view now looks like the other image's second view
    assert view_match_top1(swapped) == 0.0
    assert nt_xent_loss(tau)(swapped, pair_labels(2, z.device)) > loss


def test_two_views_are_independent_crops_of_the_requested_size():
    torch.manual_seed(0)
    images = blobs(3, 0)
    views = two_views(images, view_transform(PARAMS), torch.device("cpu"))
    assert views.shape == (6, 3, 16, 16) and views.dtype == torch.float32 and 0 <= views.min() and views.max() <= 1
    assert not torch.equal(views[:3], views[3:])


def test_nt_xent_falls_over_a_short_training(tmp_path):
    train, val = blobs(32, 0), blobs(16, 1)

    def run(steps):
        torch.manual_seed(0)
        model = build_simclr(PARAMS)
        trained = train_simclr(model, {**PARAMS, "steps": steps}, train, val, torch.device("cpu"),
                               tmp_path / f"resume{steps}.pt", tmp_path / f"log{steps}.csv")
        return trained.history[-1]

    before, after = run(0), run(PARAMS["steps"])
    assert before["split"] == after["split"] == "val" and after["step"] == PARAMS["steps"]
    assert after["loss"] < before["loss"] - 0.3 and after["top1"] > before["top1"]


def test_extractor_is_stride_4_frozen_and_differentiable_with_respect_to_its_input(tmp_path):
    torch.manual_seed(0)
    model = build_simclr(PARAMS).eval()
    path = tmp_path / "model.pt"
    save_simclr(path, model, PARAMS, {"val_loss": 1.0})
    extractor = load_feature_extractor(path)
    assert isinstance(extractor, FeatureExtractor) and extractor.channels == 8 and extractor.stride == 4
    assert not any(p.requires_grad for p in extractor.parameters())
    extractor.train()
    assert not extractor.training and not any(m.training for m in extractor.modules())
    x = torch.rand(2, 3, 32, 30, requires_grad=True)
    features = extractor(x)
    assert features.shape == (2, 8, 8, 8)  # 30 / 4 rounded up
    features.square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    trunk = model.trunk
    expected = trunk.layer1(trunk.maxpool(trunk.relu(trunk.bn1(trunk.conv1(x.detach())))))
    assert torch.allclose(features.detach(), expected, atol=1e-6)


def test_checkpoint_round_trip_with_weights_only(tmp_path):
    torch.manual_seed(0)
    model = build_simclr(PARAMS).eval()
    path = tmp_path / "model.pt"
    save_simclr(path, model, PARAMS, {"val_top1": 0.5})
    payload = torch.load(path, weights_only=True)
    assert payload["kind"] == "taskcodec-simclr" and payload["params"] == PARAMS
    loaded, info = load_simclr(path)
    assert info == {"params": PARAMS, "metrics": {"val_top1": 0.5}} and not loaded.training
    x = torch.rand(3, 3, 24, 24)
    assert torch.equal(loaded(x), model(x)) and torch.equal(loaded.representation(x), model.representation(x))
    with pytest.raises(UserError, match="is not a taskcodec-simclr checkpoint"):
        torch.save({"kind": "other"}, tmp_path / "other.pt")
        load_simclr(tmp_path / "other.pt")


def test_resnet50_from_a_local_state_dict_gives_its_group1_features(tmp_path):
    torch.manual_seed(0)
    reference = torchvision.models.resnet50(weights=None).eval()
    state = reference.state_dict()  # with the ImageNet classifier fc.*, which is ignored
    plain, wrapped = tmp_path / "resnet50.pth", tmp_path / "converted.pth"
    torch.save(state, plain)
    torch.save({"state_dict": {f"module.{key}": value for key, value in state.items()}}, wrapped)
    x = torch.rand(1, 3, 64, 48)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        y = (x - mean) / std
        expected = reference.layer1(reference.maxpool(reference.relu(reference.bn1(reference.conv1(y)))))
    for path in (plain, wrapped):
        extractor = FeatureExtractor(build_simclr({**RESNET50, "weights": str(path)}))
        assert extractor.channels == 256 and extractor.stride == 4
        features = extractor(x)
        assert features.shape == (1, 256, 16, 12) and torch.allclose(features, expected, atol=1e-5)


def test_a_missing_or_unfitting_weights_file_is_one_sentence_naming_it(tmp_path):
    missing = tmp_path / "simclr_r50.pth"
    with pytest.raises(UserError) as err:
        build_simclr({**RESNET50, "weights": str(missing)})
    message = str(err.value)
    assert message.startswith(f"simclr.weights {missing} does not exist;") and "\n" not in message
    torch.save(build_simclr(PARAMS).trunk.state_dict(), missing)  # a resnet-small trunk, not a ResNet-50
    with pytest.raises(UserError, match=f"simclr.weights {missing} has 'conv1.weight' of shape \\(8, 3, 3, 3\\) but "
                                        "simclr.model resnet50 needs \\(64, 3, 7, 7\\)"):
        build_simclr({**RESNET50, "weights": str(missing)})
    missing.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError) as err:
        build_simclr({**RESNET50, "weights": str(missing)})
    assert str(err.value).startswith(f"simclr.weights: checkpoint {missing} ") and "\n" not in str(err.value)
