"""Splits and the manifest CSV."""

import numpy as np
import pandas as pd
import pytest

from taskcodec.data.manifest import (
    MANIFEST_COLUMNS,
    assign_splits,
    read_manifest,
    split_images,
    split_sizes,
    write_manifest,
)
from taskcodec.data.stored import StoredImage
from taskcodec.errors import UserError

FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}


def test_split_is_deterministic_and_seeded():
    labels = [i % 4 for i in range(40)]
    assert assign_splits(labels, FRACTIONS, seed=3) == assign_splits(labels, FRACTIONS, seed=3)
    assert assign_splits(labels, FRACTIONS, seed=3) != assign_splits(labels, FRACTIONS, seed=4)


def test_split_is_stratified():
    labels = np.repeat(np.arange(6), 50)
    splits = np.array(assign_splits(labels.tolist(), FRACTIONS, seed=0))
    assert (splits == "train").sum() == 240 and (splits == "val").sum() == 30 and (splits == "test").sum() == 30
    for label in range(6):
        mine = splits[labels == label]
        assert abs((mine == "train").sum() - 40) <= 1
        assert abs((mine == "val").sum() - 5) <= 1
        assert abs((mine == "test").sum() - 5) <= 1


def test_unequal_classes_are_stratified():
    labels = [0] * 100 + [1] * 20
    splits = np.array(assign_splits(labels, FRACTIONS, seed=1))
    minority = splits[100:]
    assert abs((minority == "train").sum() - 16) <= 1 and abs((minority == "val").sum() - 2) <= 1


def test_unlabeled_split():
    splits = assign_splits([-1] * 10, FRACTIONS, seed=0)
    assert sorted(splits) == sorted(["train"] * 8 + ["val"] + ["test"])


def test_three_images_fill_three_equal_splits():
    thirds = {"train": 1 / 3, "val": 1 / 3, "test": 1 / 3}
    assert sorted(assign_splits([-1, -1, -1], thirds, seed=0)) == ["test", "train", "val"]
    assert split_sizes(10, FRACTIONS) == {"train": 8, "val": 1, "test": 1}


@pytest.mark.parametrize("num_images, fractions, split, needed", [
    (4, FRACTIONS, "test", 10),  # 3.2 / 0.4 / 0.4: the remainder goes to val
    (10, {"train": 0.85, "val": 0.1, "test": 0.05}, "test", 20),
    (30, {"train": 0.98, "val": 0.01, "test": 0.01}, "val", 100),
])
def test_a_split_left_empty_by_the_ratios_is_an_error(num_images, fractions, split, needed):
    with pytest.raises(UserError, match=rf"^prepare\.split\.{split} = {fractions[split]:g} of {num_images} usable "
                                        rf"images is .* which rounds to an empty {split} split; raise it to at least "
                                        rf"1/{num_images} or use at least {needed} images$"):
        split_sizes(num_images, fractions)
    assert needed * fractions[split] >= 1 > (needed - 1) * fractions[split]  # the fewest images that suffice


def test_too_few_images():
    with pytest.raises(UserError, match="at least one each"):
        assign_splits([0, 1], FRACTIONS, seed=0)


@pytest.mark.parametrize(
    "fractions",
    [{"train": 0.8, "val": 0.1, "test": 0.2}, {"train": 0.9, "val": 0.1, "test": 0.0}, {"train": 0.9, "val": 0.1}],
)
def test_bad_fractions(fractions):
    with pytest.raises(UserError, match="prepare.split"):
        assign_splits([0] * 10, fractions, seed=0)


def _row(image_id, split, label=0, class_name="cat"):
    return {
        "image_id": image_id,
        "path": f"images/{split}/{image_id}.png",
        "label": label,
        "class_name": class_name,
        "split": split,
        "source": "somewhere",
        "orig_width": 10,
        "orig_height": 12,
    }


def test_manifest_round_trip(tmp_path):
    rows = [_row("000001", "train"), _row("b", "test", label=-1, class_name="")]
    write_manifest(tmp_path / "manifest.csv", rows)
    frame = read_manifest(tmp_path / "manifest.csv")
    assert tuple(frame.columns) == MANIFEST_COLUMNS
    assert frame["image_id"].tolist() == ["000001", "b"]
    assert frame["label"].tolist() == [0, -1] and frame["label"].dtype == np.int64
    assert frame["class_name"].tolist() == ["cat", ""]


def test_split_images(tmp_path):
    write_manifest(tmp_path / "manifest.csv", [_row("a", "train"), _row("b", "val", label=1)])
    expected = [("b", StoredImage(tmp_path.resolve() / "images/val/b.png"), 1)]
    assert split_images(tmp_path / "manifest.csv", "val") == expected
    with pytest.raises(UserError, match="no test images"):
        split_images(tmp_path / "manifest.csv", "test")
    with pytest.raises(UserError, match="unknown"):
        split_images(tmp_path / "manifest.csv", "holdout")


def test_read_manifest_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        read_manifest(tmp_path / "missing.csv")
    pd.DataFrame({"image_id": ["a"], "path": ["x.png"]}).to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(UserError, match="lacks column"):
        read_manifest(tmp_path / "short.csv")
