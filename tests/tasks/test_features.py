import pytest
import torch

from taskcodec.errors import UserError
from taskcodec.artifacts import file_digest, write_json
from taskcodec.tasks.checkpoint import save_task_model
from taskcodec.tasks.features import CachedFeatures, extract_features
from taskcodec.tasks.models import build_task_model

SMALL = {"arch": "resnet-small", "widths": [4, 8, 16], "blocks": [1, 1, 1], "stem_stride": 1, "weights": None}


def test_feature_maps_of_a_named_stage():
    model = build_task_model(SMALL, 3)
    images = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    features = extract_features(model, images, "stage2", 2, torch.device("cpu"))
    assert features.shape == (5, 8, 16, 16)
    model(torch.rand(1, 3, 32, 32))  # the hook is gone afterwards
    assert not model.stage2._forward_hooks


def test_unknown_layer_lists_the_modules():
    with pytest.raises(UserError, match="'stage9' is not a module of the task model; use one of its modules, e.g. normalize, stem"):
        extract_features(build_task_model(SMALL, 3), torch.zeros(1, 3, 8, 8, dtype=torch.uint8), "stage9", 1,
                         torch.device("cpu"))



def _cache(folder, model, images, ids):
    """An extract_features folder (test.pt + features.json) for ``images`` and the saved task model."""
    save_task_model(folder / "model.pt", model, "classification", SMALL, 3, ["a", "b", "c"], {}, {})
    torch.save({"features": extract_features(model, images, "stage2", 4, torch.device("cpu")), "image_ids": ids,
                "labels": torch.zeros(len(ids)), "layer": "stage2"}, folder / "test.pt")
    write_json(folder / "features.json", {"layer": "stage2", "task_model_sha256": file_digest(folder / "model.pt")})
    return folder / "test.pt", folder / "model.pt"


def test_cached_features_measure_the_distortion_of_a_reconstruction(tmp_path):
    torch.manual_seed(0)
    model = build_task_model(SMALL, 3).eval()
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    path, model_path = _cache(tmp_path, model, images, ["a", "b", "c"])
    cached = CachedFeatures(path, model, model_path)

    def mse(image_id, image):
        with torch.no_grad():
            model(image[None].float() / 255)
        return cached.mse_of_last_forward(image_id)

    assert mse("b", images[1]) < 1e-10  # the original: the same features, up to float rounding
    noise = torch.randn(images[1].shape)
    errors = [mse("b", (images[1] + sigma * noise).clamp(0, 255).round()) for sigma in (2, 8, 32)]
    assert 0 < errors[0] < errors[1] < errors[2]
    assert mse("a", images[1]) > errors[0]  # another image's features are far
    with pytest.raises(RuntimeError, match="needs one forward pass"):  # each pass is read once
        cached.mse_of_last_forward("a")


def test_cached_features_name_what_does_not_match(tmp_path):
    model = build_task_model(SMALL, 3).eval()
    with pytest.raises(UserError, match="task feature cache .*missing.pt is missing; run extract_features"):
        CachedFeatures(tmp_path / "missing.pt", model, tmp_path / "model.pt")
    path, model_path = _cache(tmp_path, model, torch.zeros(1, 3, 32, 32, dtype=torch.uint8), ["a"])
    cached = CachedFeatures(path, model, model_path)
    with torch.no_grad():
        model(torch.zeros(1, 3, 32, 32))
    with pytest.raises(UserError, match="has no image z; run extract_features again"):
        cached.mse_of_last_forward("z")
    with torch.no_grad():
        model(torch.zeros(1, 3, 48, 48))
    with pytest.raises(UserError, match=r"holds \(8, 16, 16\) features for image a, its reconstruction gives "
                                        r"\(8, 24, 24\): the image size or the task model differs"):
        cached.mse_of_last_forward("a")
    other = tmp_path / "other.pt"
    save_task_model(other, build_task_model(SMALL, 3), "classification", SMALL, 3, ["a", "b", "c"], {}, {})
    with pytest.raises(UserError, match="was extracted with another task model than .*other.pt; run extract_features"):
        CachedFeatures(path, model, other)
