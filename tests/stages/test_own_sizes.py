"""prepare.keep_train_size: the training images keep their own sizes, codec pretraining cuts its patches from them,
the other splits and uses stay as they were."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from taskcodec.augment import crop_flip, window_draws
from taskcodec.data.images import load_rgb8
from taskcodec.data.manifest import own_sizes, read_manifest, split_images
from taskcodec.data.sources import OwnSizes, WindowSampler, choose_source, window_batches
from taskcodec.data.stored import read_image
from taskcodec.errors import UserError
from taskcodec.params import load_yaml, validate_params
from taskcodec.saliency import MAPS_FILE
from taskcodec.stages import saliency, train_codec
from taskcodec.stages.prepare import prepare
from test_prepare import _builtin_params, _folder_params, _photo, _run

SIZES = [(80, 68), (66, 100), (64, 64), (128, 80), (90, 90), (76, 120), (140, 66), (96, 72)]  # width, height
SPLIT = {"train": 0.5, "val": 0.25, "test": 0.25}
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def photos(tmp_path):
    root = tmp_path / "photos"
    for index, size in enumerate(SIZES):
        _photo(root / f"p{index}.png", size)
    return root


def _pixels(manifest, split):
    return {image_id: read_image(image) for image_id, image, _ in split_images(manifest, split)}


@pytest.mark.parametrize("storage", ["png", "tar", "in_place"])
def test_the_train_split_keeps_its_images_and_the_others_are_prepared_as_without(tmp_path, photos, storage):
    fixed = _run(_folder_params(photos, image_size=64, split=SPLIT), tmp_path / "fixed")
    params = _folder_params(photos, image_size=64, split=SPLIT, storage=storage, images_per_shard=2,
                            keep_train_size=True)
    own = prepare(params, tmp_path / "own", processes=2)
    rows = read_manifest(own / "manifest.csv")
    pd.testing.assert_frame_equal(read_manifest(fixed / "manifest.csv").drop(columns="path"), rows.drop(columns="path"))
    train = rows[rows["split"] == "train"]
    sources = dict(zip(train["image_id"], train["source"]))
    for image_id, pixels in _pixels(own / "manifest.csv", "train").items():  # the photo itself, not resized
        np.testing.assert_array_equal(pixels, load_rgb8(sources[image_id]))
    assert own_sizes(own / "manifest.csv", "train") == list(zip(train["orig_height"], train["orig_width"]))
    assert len({size for size in own_sizes(own / "manifest.csv", "train")}) > 1
    for split in ("val", "test"):  # as prepare.image_size makes them, byte for byte in PNG files
        assert own_sizes(own / "manifest.csv", split) is None
        expected = _pixels(fixed / "manifest.csv", split)
        assert {key: value.tobytes() for key, value in _pixels(own / "manifest.csv", split).items()} == {
            key: value.tobytes() for key, value in expected.items()}
    if storage == "png":
        assert all((own / path).read_bytes() == (fixed / path).read_bytes()
                   for path in rows.loc[rows["split"] != "train", "path"])
    if storage != "in_place":  # one form of each image kept, the staging gone
        files = sorted(path.relative_to(own / "images").as_posix() for path in (own / "images").rglob("*")
                       if path.is_file())
        shards = ["test-000000.tar", "train-000000.tar", "train-000001.tar", "val-000000.tar"]  # 4 train images
        assert (len(files) == len(rows) if storage == "png" else files == shards) and "staging" not in str(files)
    assert own_sizes(fixed / "manifest.csv", "train") is None


def test_an_image_smaller_than_image_size_and_boxes_are_refused(tmp_path, photos):
    _photo(photos / "small.png", (63, 80))
    with pytest.raises(UserError, match="small.png is 63x80 pixels, smaller than prepare.image_size=64"):
        _run(_folder_params(photos, image_size=64, split=SPLIT, keep_train_size=True), tmp_path / "a")
    with pytest.raises(UserError, match="this dataset has boxes, which are kept for the 32² images only"):
        _run(_builtin_params(keep_train_size=True, builtin={**_builtin_params()["builtin"], "objects": [1, 2]}),
             tmp_path / "b")


def test_windows_are_drawn_within_each_image_held_or_read_by_a_loader_worker(tmp_path, photos):
    out = _run(_folder_params(photos, image_size=64, split=SPLIT, keep_train_size=True), tmp_path / "own")
    records = split_images(out / "manifest.csv", "train")
    sizes = own_sizes(out / "manifest.csv", "train")
    paths = [image for _, image, _ in records]
    held, log = choose_source(paths, 0, 0, None, 1, sizes=sizes)
    streamed, streamed_log = choose_source(paths, 0, 0, 1, 1, sizes=sizes)
    assert isinstance(held, OwnSizes) and held.workers == 0 and "of their own sizes held decoded" in log
    assert streamed.decoded is None and "read from their files by 1 loader worker" in streamed_log
    windows = {}
    for name, source in (("held", held), ("streamed", streamed)):
        sampler = WindowSampler(source.count, 16, source.height, source.width, 24, 1,
                                torch.Generator().manual_seed(0))
        windows[name] = [batch for _, (_, batch) in zip(range(3), window_batches(source, sampler))]
    for expected, got in zip(windows["held"], windows["streamed"]):
        torch.testing.assert_close(expected, got, rtol=0, atol=0)
    draws = window_draws(held.count, 256, held.height, held.width, 24, torch.Generator().manual_seed(1))
    assert (draws.tops + 24 <= held.height[draws.index]).all() and (draws.lefts + 24 <= held.width[draws.index]).all()
    assert (draws.tops + 24 > 64).any() and (draws.lefts + 24 > 64).any()  # beyond the image_size² square
    decoded = [torch.from_numpy(read_image(path).transpose(2, 0, 1).copy()) for path in paths]
    cut = held.windows(draws, 24)
    for i, (index, top, left, flip) in enumerate(zip(draws.index, draws.tops, draws.lefts, draws.flips)):
        one = crop_flip(decoded[index][None], torch.zeros(1, dtype=torch.int64), top[None], left[None], flip[None],
                        24, 24)
        torch.testing.assert_close(cut[i : i + 1], one, rtol=0, atol=0)


CODEC = {"distortion": "mse", "steps": 2, "batch_size": 2, "patch_size": 64, "lr": 1e-3, "aux_lr": 1e-3,
         "lr_warmup": 0.0, "lr_decay": "steps", "lr_drop_at": [0.5], "lr_gamma": 0.5, "clip_max_norm": 1.0,
         "spike_guard": None,
         "ema_decay": None, "quantization": "ste", "time_budget_s": None, "val_every": 2, "checkpoint_every": 2,
         "init": None, "seed": 0, "saliency_floor": None}


def test_a_codec_trains_on_patches_of_the_images_own_sizes_and_saliency_maps_them_all(tmp_path, photos, capsys):
    out = _run(_folder_params(photos, image_size=64, split=SPLIT, keep_train_size=True), tmp_path / "own")
    manifest = out / "manifest.csv"
    weights = {}
    # the same PyTorch threads: 1, and with 2 the streamed training gives one to its loader worker
    for name, run in (("held", ["--threads", "1"]), ("streamed", ["--threads", "2", "--mem-mb", "0"])):
        model = train_codec.main(["--params", json.dumps(CODEC), "--device", "cpu", *run,
                                  "--arch", "bmshj2018-factorized", "--hyper", '{"N": 8, "M": 8}', "--lmbda", "0.01",
                                  "--manifest", str(manifest), "--out", str(tmp_path / name / "model.pt")])
        weights[name] = torch.load(model, weights_only=True)["state_dict"]
    log = capsys.readouterr().out
    assert "train images: 4 images of their own sizes held decoded" in log
    assert "train images: 4 images of their own sizes read from their files by 1 loader worker" in log
    assert weights["held"].keys() == weights["streamed"].keys()
    for key, value in weights["held"].items():
        torch.testing.assert_close(weights["streamed"][key], value, rtol=0, atol=0)
    with pytest.raises(UserError, match="training images keep their own sizes .*; set saliency_floor: null"):
        train_codec.main(["--params", json.dumps({**CODEC, "saliency_floor": 0.5}), "--device", "cpu",
                          "--arch", "bmshj2018-factorized", "--hyper", '{"N": 8, "M": 8}', "--lmbda", "0.01",
                          "--manifest", str(manifest), "--saliency", str(tmp_path), "--out", str(tmp_path / "x.pt")])
    maps = saliency.main(["--params", json.dumps({"method": "spectral-residual", "working_width": 32,
                                                  "blur_sigma": 1.0, "grid_images": 1}),
                          "--manifest", str(manifest), "--out", str(tmp_path / "saliency")])
    stacked = torch.load(maps / MAPS_FILE, weights_only=True)
    rows = read_manifest(manifest)
    assert stacked["image_ids"] == list(rows.loc[rows["split"] != "train", "image_id"])  # a tensor of one size
    assert len(list((maps / "maps").iterdir())) == len(rows)  # a map per image, each of its image's size


def test_only_codec_pretraining_takes_the_images_own_sizes():
    params = load_yaml(ROOT / "params.yaml")
    params["prepare"]["keep_train_size"] = True
    with pytest.raises(UserError, match="prepare.keep_train_size is true, so the training images keep their own "
                                        "sizes, which only codec pretraining takes, but tasks needs them at one "
                                        "size: set it to {}, or set prepare.keep_train_size: false"):
        validate_params(params)
    params["tasks"] = {}
    params["scalable"]["enabled"] = params["variable_rate"]["enabled"] = False
    with pytest.raises(UserError, match="but cache.splits needs them at one size: leave train out of it"):
        validate_params(params)
    params["cache"]["splits"] = ["val", "test"]
    validate_params(params)
