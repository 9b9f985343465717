import pytest
import torch

from taskcodec.errors import UserError
from taskcodec.tasks.features import extract_features
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
