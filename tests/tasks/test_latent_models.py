import pytest
import torch

from taskcodec.errors import UserError
from taskcodec.tasks.latent_models import LATENT_CLASSIFIERS, build_latent_classifier

PARAMS = {"arch": "cresnet", "width": 8, "blocks": [1, 1, 1]}


@pytest.mark.parametrize("size", [2, 4, 8])
def test_cresnet_takes_small_latents(size):
    model = build_latent_classifier(PARAMS, 12, 5)
    assert "cresnet" in LATENT_CLASSIFIERS
    y_hat, scales_hat = torch.randn(3, 12, size, size).round(), torch.rand(3, 12, size, size)
    assert model(y_hat, scales_hat).shape == (3, 5)


def test_cresnet_has_two_input_branches():
    model = build_latent_classifier({**PARAMS, "blocks": [2, 1, 1]}, 12, 5)
    assert model.y_branch.body[0].in_channels == 12 and model.scales_branch.body[0].in_channels == 12
    assert model.conv3[0].body[0].in_channels == 2 * 8 and len(model.conv3) == 2
    assert model.fc.in_features == 16 * 8


def test_zero_scales_are_clamped_before_the_logarithm():
    model = build_latent_classifier(PARAMS, 4, 2).eval()
    assert torch.isfinite(model(torch.zeros(1, 4, 4, 4), torch.zeros(1, 4, 4, 4))).all()


def test_bad_params_are_user_errors():
    with pytest.raises(UserError, match="unknown"):
        build_latent_classifier({**PARAMS, "arch": "x"}, 4, 2)
    with pytest.raises(UserError, match="width a multiple of 4"):
        build_latent_classifier({**PARAMS, "width": 6}, 4, 2)
