import numpy as np
import pytest
import torch

from taskcodec.errors import UserError
from taskcodec.saliency import SALIENCY_METHODS, load_maps, saliency_inputs, saliency_map, save_maps, to_uint8

PARAMS = {"method": "spectral-residual", "working_width": 64, "blur_sigma": 2.5, "grid_images": 4}


def scene(background: str, size=(64, 64)):
    """A red square object on a flat grey or a striped background; returns (image, object mask)."""
    height, width = size
    image = np.full((height, width, 3), 120, dtype=np.uint8)
    if background == "textured":
        stripes = 120 + 30 * np.sin(np.arange(width) * 2 * np.pi / 4)
        image[:] = stripes[None, :, None].astype(np.uint8)
    mask = np.zeros((height, width), dtype=bool)
    top, left = height // 2, width // 6
    mask[top : top + height // 5, left : left + width // 5] = True
    image[mask] = (230, 40, 40)
    return image, mask


@pytest.mark.parametrize("background", ["flat", "textured"])
def test_object_is_more_salient_than_its_background(background):
    image, mask = scene(background)
    saliency = saliency_map(image, PARAMS)
    assert saliency.dtype == np.float32 and saliency.shape == (64, 64)
    assert saliency.min() == 0.0 and saliency.max() == 1.0
    assert saliency[mask].mean() > 3 * saliency[~mask].mean()


@pytest.mark.parametrize("size", [(48, 96), (96, 48)])
def test_map_has_the_image_size_for_any_shape(size):
    image, mask = scene("flat", size=size)
    saliency = SALIENCY_METHODS["spectral-residual"](image, 64, 0.0)
    assert saliency.shape == size and saliency.min() == 0.0 and saliency.max() == 1.0
    assert saliency[mask].mean() > 1.5 * saliency[~mask].mean()


def test_flat_image_has_no_salient_region():
    assert not saliency_map(np.full((32, 32, 3), 7, dtype=np.uint8), PARAMS).any()


@pytest.mark.parametrize("key, value, message", [("method", "itti", "saliency.method is 'itti'"),
                                                 ("working_width", 4, "saliency.working_width is 4"),
                                                 ("blur_sigma", -1, "saliency.blur_sigma is -1")])
def test_bad_params_are_named(key, value, message):
    with pytest.raises(UserError, match=message):
        saliency_map(scene("flat")[0], {**PARAMS, key: value})


def test_stored_maps_load_aligned_with_the_requested_ids(tmp_path):
    maps = np.stack([np.full((8, 8), value, dtype=np.uint8) for value in (10, 20, 30)])
    save_maps(tmp_path / "saliency.pt", ["a", "b", "c"], ["train", "val", "train"], maps, PARAMS)
    train, val = load_maps(tmp_path / "saliency.pt", [["c", "a"], ["b"]], (8, 8))
    assert train.dtype == torch.uint8 and train.shape == (2, 1, 8, 8)
    assert train[:, 0, 0, 0].tolist() == [30, 10] and val[0, 0, 0, 0] == 20
    with pytest.raises(UserError, match="no saliency map for image 'x'"):
        load_maps(tmp_path / "saliency.pt", [["x"]], (8, 8))
    with pytest.raises(UserError, match="the maps in .* are \\(8, 8\\), the images \\(16, 16\\)"):
        load_maps(tmp_path / "saliency.pt", [["a"]], (16, 16))


def test_saliency_inputs_only_with_a_floor(tmp_path):
    records = [("a", tmp_path / "a.png", 0)]
    assert saliency_inputs(None, None, [records], (8, 8)) == ([None], "", {})
    with pytest.raises(UserError, match="pass --saliency"):
        saliency_inputs(None, 0.2, [records], (8, 8))
    save_maps(tmp_path / "saliency.pt", ["a"], ["train"], np.zeros((1, 8, 8), dtype=np.uint8), PARAMS)
    (maps,), digest, inputs = saliency_inputs(tmp_path, 0.2, [records], (8, 8))
    assert maps.shape == (1, 1, 8, 8) and len(digest) == 64 and inputs == {"saliency": tmp_path / "saliency.pt"}


def test_to_uint8_rounds_and_clips():
    assert to_uint8(np.array([0.0, 0.5, 1.0, 1.2])).tolist() == [0, 128, 255, 255]
