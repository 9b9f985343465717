"""The generated builtin dataset: deterministic, balanced, well-formed."""

import numpy as np
import pytest

from taskcodec.data.builtin import SHAPES, SceneSpec, generate_images, render_image
from taskcodec.data.registry import build_dataset
from taskcodec.errors import UserError

CLASSES = ("circle", "square", "triangle", "cross", "ring", "star")


def _spec(seed=0, canvas_size=48, classes=CLASSES):
    return SceneSpec(canvas_size=canvas_size, classes=classes, object_scale=(0.3, 0.75), seed=seed)


def _params(**builtin):
    section = {"num_images": 12, "canvas_size": 48, "classes": list(CLASSES), "object_scale": [0.3, 0.75]}
    section.update(builtin)
    return {"dataset": "builtin", "root": None, "image_size": 32, "seed": 0, "builtin": section}


def test_shapes_and_dtype():
    for index, label, image in generate_images(_spec(canvas_size=40), 6):
        assert image.shape == (40, 40, 3) and image.dtype == np.uint8
        assert label == index % len(CLASSES)


def test_same_seed_gives_identical_images_in_any_order():
    first = [image for _, _, image in generate_images(_spec(), 8)]
    again = [image for _, _, image in generate_images(_spec(), 8)]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(render_image(_spec(), 5), first[5])


def test_different_seed_gives_different_images():
    a = render_image(_spec(seed=0), 3)
    b = render_image(_spec(seed=1), 3)
    assert not np.array_equal(a, b)


def test_images_differ_and_are_not_flat():
    images = [image for _, _, image in generate_images(_spec(), 6)]
    assert len({image.tobytes() for image in images}) == 6
    assert all(image.std() > 10 for image in images)


def test_object_is_drawn_where_the_mask_is():
    """Two classes with the same seed and index share background and placement; only the shape differs."""
    circle = render_image(_spec(classes=("circle",)), 0)
    square = render_image(_spec(classes=("square",)), 0)
    differs = np.abs(circle.astype(int) - square.astype(int)).sum(axis=2) > 30
    assert 0 < differs.mean() < 0.5


def test_classes_are_balanced():
    dataset = build_dataset(_params(num_images=60))
    counts = np.bincount([sample.label for sample in dataset.samples()], minlength=len(CLASSES))
    assert counts.tolist() == [10] * len(CLASSES)
    assert dataset.classes == list(CLASSES)


def test_dataset_samples_load_the_rendered_images():
    samples = list(build_dataset(_params(num_images=3)).samples())
    assert [sample.image_id for sample in samples] == ["000000_circle", "000001_square", "000002_triangle"]
    np.testing.assert_array_equal(samples[2].load(), render_image(_spec(), 2))


def test_unknown_class_lists_supported_ones():
    with pytest.raises(UserError) as info:
        build_dataset(_params(classes=["circle", "hexapus"]))
    message = str(info.value)
    assert "hexapus" in message and all(name in message for name in SHAPES)


@pytest.mark.parametrize("scale", [[0.0, 0.5], [0.6, 0.4], [0.5, 1.5], [0.5]])
def test_bad_object_scale(scale):
    with pytest.raises(UserError, match="object_scale"):
        build_dataset(_params(object_scale=scale))


def test_image_size_larger_than_canvas():
    with pytest.raises(UserError, match="canvas_size"):
        build_dataset({**_params(), "image_size": 64})
