"""Variable-rate codecs (seed 001) through the stages' main(): train_simclr -> train_codec with --lmbdas and
--ssl-model (one model for every lambda) -> cache_latents and evaluate_codec at each --point-index."""

import json

import pandas as pd
import pytest

from taskcodec.codecs.checkpoint import load_codec
from taskcodec.errors import UserError
from taskcodec.stages import cache_latents, evaluate_codec, prepare, train_codec, train_simclr

from stage_settings import RUN

SIMCLR = {"model": "resnet-small", "widths": [8, 16], "blocks": [1, 1], "weights": None, "normalize": False,
          "projection_dim": 8, "crop_size": 16, "min_crop_scale": 0.3, "jitter_strength": 0.5, "temperature": 0.2,
          "steps": 4, "batch_size": 8, "lr": 0.003, "weight_decay": 1e-6, "lr_warmup": 0.0, "time_budget_s": None,
          "val_every": 2, "checkpoint_every": 2, "seed": 0}
TRAIN = {
    "distortion": "mse", "steps": 12, "batch_size": 4, "patch_size": 64, "lr": 1e-3, "aux_lr": 1e-3,
    "lr_warmup": 0.0, "lr_decay": "steps", "lr_drop_at": [0.8], "lr_gamma": 0.5, "clip_max_norm": 1.0,
    "spike_guard": None,
    "ema_decay": None, "quantization": "ste", "time_budget_s": None, "val_every": 6, "checkpoint_every": 6,
    "init": None, "seed": 0, "saliency_floor": None,
}
LMBDAS = "0.003,0.03"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("variable_rate")
    params = {"dataset": "builtin", "root": None, "image_size": 64, "split": {"train": 0.6, "val": 0.2, "test": 0.2},
              "seed": 0, "builtin": {"num_images": 20, "canvas_size": 72, "classes": ["circle", "square"],
                                     "object_scale": [0.3, 0.7]}, "on_bad_image": "stop"}
    prepare.main(["--params", json.dumps(params), "--out", str(root / "prepared")])
    manifest = root / "prepared" / "manifest.csv"
    ssl = train_simclr.main(["--params", json.dumps(SIMCLR), *RUN, "--manifest", str(manifest),
                             "--out", str(root / "simclr" / "model.pt")])
    return root, manifest, ssl


def train(manifest, out, arch, hyper, *extra):
    return train_codec.main(["--params", json.dumps(TRAIN), *RUN, "--arch", arch, "--hyper", json.dumps(hyper),
                             "--manifest", str(manifest), *extra, "--out", str(out)])


@pytest.mark.parametrize("arch, hyper", [("pyramid", {"N": 8, "M": 4, "attention": 3, "simclr": 1}),
                                         ("bmshj2018-hyperprior-vbr", {"N": 8, "M": 8})])
def test_one_model_is_trained_for_every_lambda_and_measured_at_each_point(workspace, arch, hyper):
    root, manifest, ssl = workspace
    folder = root / arch
    out = train(manifest, folder / "model.pt", arch, hyper, "--lmbdas", LMBDAS, "--ssl-model", str(ssl),
                "--perceptual-weight", "0.1" if arch == "pyramid" else "0")
    codec, meta = load_codec(out)
    assert meta["lmbda"] == [0.003, 0.03] and meta["hyper"] == {**hyper, "levels": 2} and codec.operating_points == 2
    log = pd.read_csv(out.parent / "train_log.csv")
    val = log[log["split"] == "val"]
    assert list(val["step"]) == [6, 12] and val[["bpp_p0", "psnr_p0", "bpp_p1", "psnr_p1"]].notna().all().all()
    if arch == "pyramid":  # its checkpoint carries the frozen SimCLR features it reads
        assert meta["ssl_model"]["params"] == SIMCLR and (log.loc[log["split"] == "train", "perceptual"] > 0).all()
    rates = []
    for point in (0, 1):
        cache = cache_latents.main(["--params", json.dumps({"shard_size": 4, "decode_check": -1}), *RUN, "--model",
                                    str(out), "--point-index", str(point), "--manifest", str(manifest), "--split",
                                    "test", "--out", str(folder / f"cache{point}")])
        assert json.loads((cache / "cache.json").read_text())["point_index"] == point
        evaluated = evaluate_codec.main(["--params", json.dumps({"save_reconstructions": 1, "saliency_threshold": 0.5,
                                                                 "niqe": False}), *RUN,
                                         "--model", str(out), "--point-index", str(point), "--cache", str(cache),
                                         "--codec-id", arch, "--out", str(folder / f"eval{point}")])
        summary = json.loads((evaluated / "summary.json").read_text())
        assert summary["kind"] == "variable-rate" and summary["point"] == [0.003, 0.03][point]
        rates.append(summary["bpp"])
    assert rates[0] < rates[1]  # the higher point spends more bytes (the pyramid: a finer level on top)


def test_lambdas_for_a_single_rate_codec_or_one_lambda_for_a_variable_rate_one_is_one_sentence(workspace, tmp_path):
    _, manifest, _ = workspace
    with pytest.raises(UserError, match="single-rate codec: give --lmbda"):
        train(manifest, tmp_path / "model.pt", "bmshj2018-hyperprior", {"N": 8, "M": 8}, "--lmbdas", LMBDAS)
    with pytest.raises(UserError, match="variable-rate codec: give --lmbdas"):
        train(manifest, tmp_path / "model.pt", "pyramid", {"N": 8, "M": 4}, "--lmbda", "0.01")
