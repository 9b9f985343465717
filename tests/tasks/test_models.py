import pytest
import torch

from taskcodec.errors import UserError
from taskcodec.tasks.models import TASK_MODELS, build_task_model, load_weights

SMALL = {"arch": "resnet-small", "widths": [4, 8, 16], "blocks": [1, 1, 1], "stem_stride": 1, "weights": None}


def test_resnet_small_has_named_stages_and_returns_logits():
    model = build_task_model(SMALL, 5)
    assert "resnet-small" in TASK_MODELS
    assert [name for name, _ in model.named_children()] == ["normalize", "stem", "stage1", "stage2", "stage3", "pool", "fc"]
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 5)
    strided = build_task_model({**SMALL, "stem_stride": 2}, 5)
    assert strided.stage1(strided.stem(torch.rand(1, 3, 32, 32))).shape == (1, 4, 16, 16)


def test_torchvision_names_fall_through_and_keep_their_module_names():
    model = build_task_model({"arch": "resnet18", "weights": None}, 3).eval()
    assert model(torch.rand(1, 3, 32, 32)).shape == (1, 3)
    assert model.get_submodule("layer2") is not None
    assert "normalize.mean" not in model.state_dict()  # torchvision weight files load unchanged


def test_unknown_arch_is_a_user_error():
    with pytest.raises(UserError, match="'nonet' is neither"):
        build_task_model({"arch": "nonet", "weights": None}, 3)


def test_local_weights_load_and_mismatches_name_the_key(tmp_path):
    source = build_task_model(SMALL, 5)
    torch.save(source.state_dict(), tmp_path / "plain.pt")
    loaded = build_task_model({**SMALL, "weights": str(tmp_path / "plain.pt")}, 5)
    assert torch.equal(loaded.fc.weight, source.fc.weight)
    with pytest.raises(UserError, match=r"'fc.weight' of shape \(5, 16\) but the model needs \(3, 16\)"):
        build_task_model({**SMALL, "weights": str(tmp_path / "plain.pt")}, 3)
    with pytest.raises(UserError, match="has no 'conv1.weight'"):
        load_weights(build_task_model({"arch": "resnet18", "weights": None}, 5), tmp_path / "plain.pt")
