from pathlib import Path

import pytest

from taskcodec.errors import UserError
from taskcodec.params import load_yaml, validate_params

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow" / "schemas" / "params.schema.yaml"


@pytest.fixture
def params():
    return load_yaml(ROOT / "params.yaml")


@pytest.mark.parametrize("path", ["params.yaml", "bench/machine/params.yaml", "bench/kodak/params.yaml"])
def test_shipped_params_are_valid(path):
    validate_params(load_yaml(ROOT / path), SCHEMA, source=path)


def test_mistyped_key_names_the_key_and_the_closest_valid_one(params):
    params["codec"]["train"]["aux_lrr"] = params["codec"]["train"].pop("aux_lr")
    with pytest.raises(UserError) as err:
        validate_params(params, SCHEMA)
    assert "'codec.train.aux_lrr'" in str(err.value) and "did you mean 'aux_lr'" in str(err.value)


def test_mistyped_top_level_section(params):
    params["evalute"] = params.pop("evaluate")
    with pytest.raises(UserError, match="unknown key 'evalute' \\(did you mean 'evaluate'\\?\\)"):
        validate_params(params, SCHEMA)


@pytest.mark.parametrize(
    "path, value, message",
    [
        (("codec", "train", "steps"), "many", "codec.train.steps = 'many' has the wrong type"),
        (("codec", "train", "distortion"), "l1", "codec.train.distortion = 'l1' is not allowed"),
        (("prepare", "image_size"), 4, "prepare.image_size = 4 is invalid"),
        (("codec", "sweep", "lmbdas"), [0.01, -1], "codec.sweep.lmbdas.1 = -1 is invalid"),
        (("cache", "device"), "tpu", "cache.device = 'tpu' is invalid"),
    ],
)
def test_bad_values_name_the_key(params, path, value, message):
    section = params
    for key in path[:-1]:
        section = section[key]
    section[path[-1]] = value
    with pytest.raises(UserError, match=message.replace(".", r"\.").replace("(", r"\(")):
        validate_params(params, SCHEMA)


def test_split_must_sum_to_one(params):
    params["prepare"]["split"] = {"train": 0.5, "val": 0.1, "test": 0.1}
    with pytest.raises(UserError, match="prepare.split fractions sum to 0.7"):
        validate_params(params, SCHEMA)


def test_missing_key_is_named(params):
    del params["cache"]["shard_size"]
    with pytest.raises(UserError, match="cache is missing a required key: 'shard_size'"):
        validate_params(params, SCHEMA)


def test_imagefolder_needs_a_root(params):
    params["prepare"]["dataset"] = "imagefolder"
    with pytest.raises(UserError, match="prepare.root is null"):
        validate_params(params, SCHEMA)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda p: p["codec"]["train"].update(patch_size=128), "patch_size 128 is larger than prepare.image_size 64"),
        (lambda p: p["codec"]["train"].update(init="zoo:x"), "is not of the form zoo:<arch>:<quality 1-8>"),
        (lambda p: p["evaluate"]["report"].update(grid_image=4), "grid_image 4 needs a saved reconstruction"),
        (lambda p: p["evaluate"]["report"].update(references={"kodak": "x"}), "references.kodak names no evaluated"),
        (lambda p: p["evaluate"]["classical"]["hevc"].update(qualities=[60]), "hevc.qualities.0 = 60 is invalid"),
        (lambda p: p["prepare"]["split"].update(train=0.9, val=0.1, test=0), "prepare.split.test = 0 is invalid"),
    ],
)
def test_cross_checks_name_the_keys(params, edit, message):
    edit(params)
    with pytest.raises(UserError, match=message.replace(".", r"\.").replace("(", r"\(").replace("+", r"\+")):
        validate_params(params, SCHEMA)
