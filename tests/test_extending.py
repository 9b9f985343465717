"""README "Extending taskcodec": a two-layer codec and a task defined here, run through the stages' main()s.

Nothing in src/taskcodec/stages/ or workflow/ knows them: they are registered in this file only.
"""

import json

import pytest
import torch
import torch.nn.functional as F
from compressai.entropy_models import EntropyBottleneck
from compressai.layers import GDN
from compressai.models import CompressionModel
from torch import nn

from taskcodec.codecs.bitstream import ImageBitstream, read_shard
from taskcodec.codecs.contract import Decoded, LayeredCodec, Latents
from taskcodec.codecs.coding import decode_images, encode_images
from taskcodec.codecs.registry import CODECS, register_codec
from taskcodec.evaluation import read_table
from taskcodec.stages import cache_latents, evaluate_classical, evaluate_codec, prepare, report, report_task, train_codec
from taskcodec.stages import train_task
from taskcodec.tasks.checkpoint import load_task_model
from taskcodec.tasks.registry import TASKS, Task, register_task

from stage_settings import RUN


class TwoLayerToy(CompressionModel, LayeredCodec):
    """A base latent and an enhancement latent, each with its own factorized entropy model and bitstream;
    the image needs both, a machine reading latents only the base layer."""

    layers = ("base", "enhancement")
    receivers = {"image": ("base", "enhancement"), "task": ("base",)}
    pad_multiple = 4

    def __init__(self, N: int):
        super().__init__()
        self.g_base = nn.Sequential(nn.Conv2d(3, N, 5, 2, 2), GDN(N), nn.Conv2d(N, N, 5, 2, 2))
        self.g_enh = nn.Sequential(nn.Conv2d(3, N, 5, 2, 2), GDN(N), nn.Conv2d(N, N, 5, 2, 2))
        self.g_s = nn.Sequential(nn.ConvTranspose2d(2 * N, N, 5, 2, 2, output_padding=1), GDN(N, inverse=True),
                                 nn.ConvTranspose2d(N, 3, 5, 2, 2, output_padding=1))
        self.base_prior, self.enh_prior = EntropyBottleneck(N), EntropyBottleneck(N)

    def forward(self, x):
        y_base, base_likelihoods = self.base_prior(self.g_base(x))
        y_enh, enh_likelihoods = self.enh_prior(self.g_enh(x))
        return {"x_hat": self.g_s(torch.cat([y_base, y_enh], 1)),
                "likelihoods": {"base": {"y": base_likelihoods}, "enhancement": {"y": enh_likelihoods}}}

    def encode(self, x):
        return {"base": [self.base_prior.compress(self.g_base(x))[0]],
                "enhancement": [self.enh_prior.compress(self.g_enh(x))[0]]}

    def decode(self, strings, padded_size, pixels=True):
        shape = (padded_size[0] // 4, padded_size[1] // 4)
        priors = {"base": self.base_prior, "enhancement": self.enh_prior}
        latents = {layer: Latents(priors[layer].decompress(strings[layer][0], shape), None) for layer in strings}
        has_image = set(self.receivers["image"]) <= set(latents)
        return Decoded(self.synthesize(latents) if pixels and has_image else None, latents)

    def synthesize(self, latents):
        return self.g_s(torch.cat([latents["base"].y_hat, latents["enhancement"].y_hat], 1)).clamp(0, 1)


class DominantColour(Task):
    """Which of R, G, B has the largest mean: a task whose target comes from the image, not from a label."""

    sample_fields = ()
    metric_names = ("accuracy",)
    primary_metric = "accuracy"

    def target(self, row, image):
        return int(image.reshape(-1, 3).mean(axis=0).argmax())

    def build_model(self, model_params):
        return nn.Sequential(nn.Conv2d(3, model_params["width"], 3, 2, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                             nn.Flatten(), nn.Linear(model_params["width"], 3))

    def loss(self, outputs, targets):
        return F.cross_entropy(outputs, targets)

    def scores(self, outputs, targets):
        return {"accuracy": (outputs.argmax(1) == targets.to(outputs.device)).double()}

    def predictions(self, outputs):
        return outputs.argmax(1)

    def describe(self, outputs, target, k=3):
        return "RGB"[int(outputs.argmax())]

    model_schema = {"type": "object", "additionalProperties": False, "required": ["width"],
                    "properties": {"width": {"type": "integer", "minimum": 1}}}


@pytest.fixture()
def plugins():
    """Register the toy codec and task as a researcher's module would, and unregister them afterwards."""
    register_codec("toy-two-layer")(TwoLayerToy)
    register_task("dominant-colour")(DominantColour)
    yield
    del CODECS["toy-two-layer"], TASKS["dominant-colour"]


def test_a_two_layer_codec_codes_and_decodes_each_layer(plugins):
    torch.manual_seed(0)
    codec = TwoLayerToy(8).eval()
    codec.update(force=True)
    encoded = encode_images(codec, torch.rand(2, 3, 30, 26))
    assert [set(image) for image in encoded] == [{"base", "enhancement"}] * 2
    assert all(bitstream.height == 30 for image in encoded for bitstream in image.values())
    full = decode_images(codec, encoded)
    assert full.x_hat.shape == (2, 3, 30, 26)
    # the base layer alone, as a machine receives it: its latents, no image
    base_only = decode_images(codec, [{"base": ImageBitstream.from_bytes(image["base"].to_bytes())}
                                      for image in encoded], pixels=True)
    assert base_only.x_hat is None and set(base_only.latents) == {"base"}
    assert torch.equal(base_only.latents["base"].y_hat, full.latents["base"].y_hat)


PREPARE = {"dataset": "builtin", "root": None, "image_size": 32, "split": {"train": 0.6, "val": 0.2, "test": 0.2},
           "seed": 0, "builtin": {"num_images": 30, "canvas_size": 40, "classes": ["circle", "square"],
                                  "object_scale": [0.3, 0.7]}, "on_bad_image": "stop"}
TASK = {"model": {"width": 8},
        "train": {"epochs": 2, "batch_size": 8, "lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.0,
                  "crop_padding": 0, "time_budget_s": None, "checkpoint_every": 1, "seed": 0}}
TRAIN = {"distortion": "mse", "steps": 6, "batch_size": 4, "patch_size": 32, "lr": 1e-3, "aux_lr": 1e-3,
         "lr_warmup": 0.0, "lr_decay": "steps", "lr_drop_at": [0.8], "lr_gamma": 0.5,
         "clip_max_norm": 1.0, "spike_guard": None, "ema_decay": None, "quantization": "noise", "time_budget_s": None,
         "val_every": 3, "checkpoint_every": 3, "init": None, "seed": 0, "saliency_floor": None}


def test_the_stages_run_a_codec_and_a_task_they_do_not_know(plugins, tmp_path):
    prepared = tmp_path / "prepared"
    prepare.main(["--params", json.dumps(PREPARE), "--out", str(prepared)])
    manifest = str(prepared / "manifest.csv")
    task_model = tmp_path / "task" / "model.pt"
    train_task.main(["--task", "dominant-colour", "--params", json.dumps(TASK), *RUN, "--manifest", manifest, "--out", str(task_model)])
    streamed = tmp_path / "streamed" / "model.pt"  # every split read from its files: its targets read the images
    train_task.main(["--task", "dominant-colour", "--params", json.dumps(TASK), *RUN, "--mem-mb", "0", "--manifest", manifest, "--out",
                     str(streamed)])
    read = load_task_model(streamed)[0].state_dict()
    for key, value in load_task_model(task_model)[0].state_dict().items():
        assert torch.equal(value, read[key]), key
    model = tmp_path / "codec" / "model.pt"
    train_codec.main(["--params", json.dumps(TRAIN), *RUN, "--arch", "toy-two-layer", "--hyper", '{"N": 8}',
                      "--lmbda", "0.01", "--manifest", manifest, "--out", str(model)])
    cache = tmp_path / "cache"
    cache_latents.main(["--params", json.dumps({"shard_size": 4, "decode_check": -1}), *RUN, "--model", str(model),
                        "--manifest", manifest, "--split", "test", "--out", str(cache)])
    index = read_table(cache / "index.csv")
    # two real bitstreams per image, bpp per layer and cumulative, all from the stored bytes
    records = [record for shard in sorted(cache.glob("shard-*.tcbs")) for record in read_shard(shard)]
    assert sorted(layer for _, layer, _ in records) == sorted(["base", "enhancement"] * len(index))
    for row in index.itertuples():
        sizes = {layer: len(data) for image_id, layer, data in records if image_id == row.image_id}
        assert (row.bytes_base, row.bytes_enhancement, row.bytes) == (sizes["base"], sizes["enhancement"],
                                                                         sum(sizes.values()))
        assert row.bpp_upto_base == pytest.approx(8 * sizes["base"] / 32**2)
        assert row.bpp_upto_enhancement == pytest.approx(row.bpp)
    assert json.loads((cache / "cache.json").read_text())["decode_check"]["images"] == len(index)
    evals = {}
    for kind, stage, args in (
        ("learned", evaluate_codec, ["--model", str(model), "--cache", str(cache), "--codec-id", "toy/N8"]),
        ("classical", evaluate_classical, ["--codec", "jpeg", "--manifest", manifest, "--split", "test"]),
    ):
        evals[kind] = tmp_path / f"eval-{kind}"
        params = {"saliency_threshold": 0.5, "save_reconstructions": 1, "niqe": True, "qualities": [10, 50, 90]}
        if kind == "learned":
            params.pop("qualities")
        stage.main(["--params", json.dumps(params), *RUN, *args, "--task-model", str(task_model),
                    "--out", str(evals[kind])])
    learned = read_table(evals["learned"] / "task" / "dominant-colour" / "per_image.csv")
    assert {"accuracy", "bpp_base", "bpp_enhancement"} <= set(learned.columns) and "top1" not in learned.columns
    assert learned["bpp"].tolist() == pytest.approx((learned["bpp_base"] + learned["bpp_enhancement"]).tolist())
    report_params = {"bd_rate_method": "pchip", "grid_image": 0, "grid_target_bpp": None, "references": {}}
    report.main(["--params", json.dumps(report_params), "--dataset", "test", "--eval", *map(str, evals.values()),
                 "--manifest", manifest, "--split", "test", "--out", str(tmp_path / "report")])
    assert set(read_table(tmp_path / "report" / "rd_points.csv")["codec"]) == {"toy/N8", "jpeg"}
    report_task.main(["--params", json.dumps(report_params), "--task-model", str(task_model), "--manifest", manifest,
                      "--classical", str(evals["classical"]), "--pretrained", str(evals["learned"]),
                      "--out", str(tmp_path / "machine")])
    points = read_table(tmp_path / "machine" / "rate_accuracy.csv")
    assert "accuracy" in points.columns and "top1" not in points.columns
    assert "bd_rate_accuracy" in read_table(tmp_path / "machine" / "bd_rate_accuracy.csv").columns
    assert (tmp_path / "machine" / "rate_accuracy_accuracy.png").stat().st_size > 0


def test_a_module_dropped_into_the_plugins_package_is_registered_on_lookup(tmp_path, monkeypatch):
    import taskcodec.plugins
    from taskcodec.codecs.registry import codec_class

    (tmp_path / "dropped_codec.py").write_text(
        "from compressai.models import FactorizedPrior\n"
        "from taskcodec.codecs.compressai_codecs import adapt\n"
        "from taskcodec.codecs.registry import register_codec\n"
        "register_codec('dropped-factorized')(adapt(FactorizedPrior))\n")
    monkeypatch.setattr(taskcodec.plugins, "__path__", [str(tmp_path)])
    taskcodec.plugins.load_plugins.cache_clear()
    try:
        assert codec_class("dropped-factorized").__name__ == "FactorizedPrior"
    finally:
        CODECS.pop("dropped-factorized", None)
        taskcodec.plugins.load_plugins.cache_clear()
