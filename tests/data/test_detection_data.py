"""Detection data: several builtin objects per image, boxes through prepare, COCO JSON boxes of an image folder."""

import json

import numpy as np
import pytest
from PIL import Image

from taskcodec.data import builtin
from taskcodec.data.builtin import SceneSpec, render_scene
from taskcodec.data.images import resize_center_crop_boxes
from taskcodec.data.manifest import OBJECTS_COLUMN, parse_objects, read_manifest
from taskcodec.errors import UserError
from taskcodec.stages.prepare import prepare
from taskcodec.tasks.labels import class_names

CLASSES = ("circle", "square", "triangle", "cross", "ring", "star")
SPLIT = {"train": 0.5, "val": 0.25, "test": 0.25}


def _spec(objects=(1, 4), seed=0):
    return SceneSpec(canvas_size=48, classes=CLASSES, object_scale=(0.2, 0.5), seed=seed, objects=objects)


def _prepare_params(**overrides):
    return {"dataset": "builtin", "root": None, "image_size": 32, "split": SPLIT, "seed": 0, "on_bad_image": "stop",
            "builtin": {"num_images": 12, "canvas_size": 48, "classes": list(CLASSES), "object_scale": [0.2, 0.5],
                        "objects": [1, 4]}, **overrides}


def test_scenes_are_deterministic_and_hold_several_objects():
    scenes = [render_scene(_spec(), i) for i in range(20)]
    builtin.draw_scene.cache_clear()
    for index, (image, objects) in enumerate(scenes):
        again, again_objects = render_scene(_spec(), index)
        np.testing.assert_array_equal(image, again)
        assert objects == again_objects
    counts = [len(objects) for _, objects in scenes]
    assert min(counts) >= 1 and max(counts) > 1
    assert {label for _, objects in scenes for _, label in objects} == set(range(len(CLASSES)))


def test_each_box_surrounds_the_pixels_its_object_changed():
    """Replaying the generator: where an object is drawn, its box holds every pixel it covers by at least ½."""
    spec = _spec(objects=(1, 1))
    for index in range(10):
        rng = np.random.default_rng([spec.seed, index])
        canvas = builtin._background(rng, spec.canvas_size)
        count = rng.integers(1, 2)
        (label,) = rng.integers(len(CLASSES), size=count).tolist()
        _, mask = builtin._draw_object(rng, spec, canvas, builtin.SHAPES[CLASSES[label]])
        image, (((x0, y0, x1, y1), found),) = render_scene(spec, index)
        assert found == label
        rows, cols = np.nonzero(mask >= 0.5)
        assert (x0, y0, x1, y1) == (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
        changed = np.abs(image.astype(float) - np.clip(np.rint(canvas), 0, 255)).max(axis=2) > 0
        inside = np.zeros_like(changed)
        inside[int(y0):int(y1), int(x0):int(x1)] = True
        assert changed.sum() > 20 and not (changed & (mask == 0)).any()  # the pixels the object changed...
        assert (mask[changed & ~inside] < 0.5).all()  # ...lie in its box, but for thin anti-aliased edges


def test_hidden_parts_are_left_out_of_boxes():
    under, over = np.zeros((10, 10), np.float32), np.zeros((10, 10), np.float32)
    under[2:8, 2:8] = 1.0
    over[2:8, 5:10] = 1.0
    hidden = over.copy()
    assert builtin._visible_boxes([under, over], [0, 1]) == (((2.0, 2.0, 5.0, 8.0), 0), ((5.0, 2.0, 10.0, 8.0), 1))
    assert builtin._visible_boxes([over, hidden], [0, 1]) == (((5.0, 2.0, 10.0, 8.0), 1),)


def test_boxes_follow_the_resize_and_crop():
    # 100×50 → 50×25 → centre crop 25×25 from x = 12
    boxes, kept = resize_center_crop_boxes(np.array([[30, 10, 60, 20], [0, 0, 20, 50], [20, 0, 30, 10]]), 100, 50, 25)
    assert kept.tolist() == [True, False, True]
    np.testing.assert_allclose(boxes, [[3, 5, 18, 10], [0, 0, 3, 5]])


def test_prepare_writes_boxes_and_every_class(tmp_path):
    out = prepare(_prepare_params(), tmp_path / "prepared")
    frame = read_manifest(out / "manifest.csv")
    assert (frame["label"] == -1).all()
    assert json.loads((out / "classes.json").read_text()) == list(CLASSES)
    summary = json.loads((out / "prepare.json").read_text())
    spec = SceneSpec(canvas_size=48, classes=CLASSES, object_scale=(0.2, 0.5), seed=0, objects=(1, 4))
    total = 0
    for image_id, cell in zip(frame["image_id"], frame[OBJECTS_COLUMN]):
        objects = parse_objects(cell, "test")
        _, raw = render_scene(spec, int(image_id))
        np.testing.assert_allclose(objects["boxes"], [[v * 32 / 48 for v in box] for box, _ in raw], atol=0.006)
        assert objects["labels"] == [label for _, label in raw]
        total += len(raw)
    assert sum(sum(splits.values()) for splits in summary["object_counts"].values()) == total


def test_labeled_scenes_are_classified_by_their_largest_visible_object(tmp_path):
    params = _prepare_params()
    params["builtin"].update(num_images=24, labeled=True)
    frame = read_manifest(prepare(params, tmp_path / "prepared") / "manifest.csv")
    spec = SceneSpec(canvas_size=48, classes=CLASSES, object_scale=(0.2, 0.5), seed=0, objects=(1, 4))
    for image_id, label, class_name in zip(frame["image_id"], frame["label"], frame["class_name"]):
        raw = render_scene(spec, int(image_id))[1]  # the boxes at the generated size (the manifest's are resized)
        areas = [(x1 - x0) * (y1 - y0) for (x0, y0, x1, y1), _ in raw]
        assert label == raw[int(np.argmax(areas))][1] and class_name == CLASSES[label]
    assert frame["label"].nunique() > 2  # the classes the classifier learns, from one detection/VQA dataset
    assert class_names(tmp_path / "prepared" / "manifest.csv", "classification") == list(CLASSES)
    params["builtin"].update(objects=None)
    with pytest.raises(UserError, match="prepare.builtin.labeled is True; set it to true .scenes of several objects"):
        prepare(params, tmp_path / "single")


@pytest.mark.parametrize("objects", [[0, 2], [3, 2], [1, 17], "many", [1.5, 2]])
def test_bad_object_counts(tmp_path, objects):
    params = _prepare_params()
    params["builtin"]["objects"] = objects
    with pytest.raises(UserError, match="prepare.builtin.objects"):
        prepare(params, tmp_path / "out")


def _coco_folder(tmp_path):
    root = tmp_path / "images"
    (root / "sub").mkdir(parents=True)
    Image.new("RGB", (80, 40), (10, 20, 30)).save(root / "a.png")
    Image.new("RGB", (40, 40), (10, 20, 30)).save(root / "sub" / "b.png")
    Image.new("RGB", (40, 60), (10, 20, 30)).save(root / "c.png")
    coco = {
        "images": [{"id": 1, "file_name": "a.png"}, {"id": 7, "file_name": "sub/b.png"},
                   {"id": 3, "file_name": "c.png"}],
        "categories": [{"id": 5, "name": "dog"}, {"id": 2, "name": "cat"}, {"id": 9, "name": "unicorn"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 5, "bbox": [30, 10, 20, 20]},   # inside the crop
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [0, 0, 15, 40]},     # cropped away
            {"id": 3, "image_id": 7, "category_id": 2, "bbox": [4, 4, 10.5, 8]},
            {"id": 4, "image_id": 7, "category_id": 5, "bbox": [0, 0, 40, 40], "iscrowd": 1},
        ],
    }
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps(coco))
    return root, path, coco


def _folder_params(root, annotations):
    return {"dataset": "imagefolder", "root": str(root), "annotations": str(annotations), "image_size": 20,
            "split": {"train": 0.34, "val": 0.33, "test": 0.33}, "seed": 0, "on_bad_image": "stop"}


def test_coco_boxes_map_into_the_prepared_images(tmp_path):
    root, path, _ = _coco_folder(tmp_path)
    out = prepare(_folder_params(root, path), tmp_path / "prepared")
    assert json.loads((out / "classes.json").read_text()) == ["cat", "dog", "unicorn"]  # by category id
    assert class_names(out / "manifest.csv", "detection") == ["cat", "dog", "unicorn"]  # a class no image shows keeps its place
    frame = read_manifest(out / "manifest.csv").set_index("source")
    objects = {source.rsplit("/", 1)[-1]: parse_objects(cell, source)
               for source, cell in frame[OBJECTS_COLUMN].items()}
    # a.png 80×40 → 40×20, crop from x = 10: the dog at x 30–50 → 15–25 − 10; the cat left of the crop is dropped
    assert objects["a.png"] == {"boxes": [[5.0, 5.0, 15.0, 15.0]], "labels": [1]}
    assert objects["b.png"] == {"boxes": [[2.0, 2.0, 7.25, 6.0]], "labels": [0]}  # the crowd region is left out
    assert objects["c.png"] == {"boxes": [], "labels": []}


def _broken(tmp_path, change):
    root, path, coco = _coco_folder(tmp_path)
    change(coco)
    path.write_text(json.dumps(coco))
    return root, path


@pytest.mark.parametrize("change, message", [
    (lambda coco: coco["images"].append({"id": 8, "file_name": "missing.png"}), "lists image 'missing.png'"),
    (lambda coco: coco["images"].pop(), "image 'c.png' under prepare.root"),
    (lambda coco: coco.pop("categories"), "is not COCO JSON"),
    (lambda coco: coco["annotations"].append({"image_id": 1, "category_id": 44, "bbox": [1, 1, 2, 2]}),
     "is not COCO JSON"),
    (lambda coco: coco["annotations"].append({"image_id": 1, "category_id": 5, "bbox": [1, 1, 0, 2]}),
     "is not COCO JSON"),
])
def test_bad_coco_files_are_named_with_the_fix(tmp_path, change, message):
    root, path = _broken(tmp_path, change)
    with pytest.raises(UserError, match=message) as info:
        prepare(_folder_params(root, path), tmp_path / "out")
    assert "boxes.json" in str(info.value) and str(info.value).count(";") == 1


def test_missing_or_unparsable_coco_file(tmp_path):
    root, path, _ = _coco_folder(tmp_path)
    with pytest.raises(UserError, match="does not exist; fix the path"):
        prepare(_folder_params(root, tmp_path / "nope.json"), tmp_path / "out")
    path.write_text("{not json")
    with pytest.raises(UserError, match="boxes.json is not COCO JSON"):
        prepare(_folder_params(root, path), tmp_path / "out")
