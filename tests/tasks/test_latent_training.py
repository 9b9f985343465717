import json

import pandas as pd
import pytest
import torch

from taskcodec.errors import UserError
from taskcodec.tasks.evaluation import classification_metrics, predict_logits
from taskcodec.codecs.cache import read_latent_cache, same_codec
from taskcodec.tasks.latent_training import train_latent_classifier

MODEL = {"arch": "cresnet", "width": 8, "blocks": [1, 1, 1]}
TRAIN = {"epochs": 12, "batch_size": 16, "lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4,
         "crop_padding": 0, "time_budget_s": None, "checkpoint_every": 100, "seed": 0}


def write_cache(folder, count, classes=3, seed=0, labels=None, sha="abc"):
    """A latent cache like cache_latents writes, whose class is the channel with a raised mean."""
    folder.mkdir(parents=True)
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(count) % classes if labels is None else torch.tensor(labels)
    y_hat = torch.randn(count, 6, 4, 4, generator=generator).mul(2).round()
    y_hat[torch.arange(count), labels.clamp_min(0)] += 3
    scales_hat = torch.rand(count, 6, 4, 4, generator=generator) + 0.5
    ids = [f"{seed}-{i}" for i in range(count)]
    half = count // 2
    for shard, part in enumerate((slice(0, half), slice(half, count))):
        torch.save({"image_ids": ids[part], "labels": labels[part].tolist(),
                    "layers": {"main": {"y_hat": y_hat[part], "scales_hat": scales_hat[part]}}},
                   folder / f"shard-{shard:05d}.pt")
    pd.DataFrame({"image_id": ids, "label": labels.tolist(), "bpp": 0.5, "bpp_estimated": 0.45}).to_csv(
        folder / "index.csv", index=False)
    (folder / "cache.json").write_text(json.dumps({
        "model": "m.pt", "model_sha256": sha, "codec": "bmshj2018-hyperprior/N8-M6", "arch": "bmshj2018-hyperprior",
        "hyper": {"N": 8, "M": 6}, "lmbda": 0.01, "layers": ["main"], "task_layer": "main"}))
    return folder


def test_reads_every_shard_in_order(tmp_path):
    latents = read_latent_cache(write_cache(tmp_path / "c", 10))
    assert latents.image_ids == [f"0-{i}" for i in range(10)]
    assert latents.y_hat.shape == (10, 6, 4, 4) and latents.labels.dtype == torch.int64
    assert latents.index["bpp"].mean() == 0.5


def test_cache_without_latents_or_scales_is_explained(tmp_path):
    folder = write_cache(tmp_path / "c", 4)
    for shard in folder.glob("shard-*.pt"):
        shard.unlink()
    with pytest.raises(UserError, match="without --no-latents"):
        read_latent_cache(folder)


def test_caches_of_different_codecs_are_refused(tmp_path):
    a, b = read_latent_cache(write_cache(tmp_path / "a", 4)), read_latent_cache(write_cache(tmp_path / "b", 4, sha="x"))
    with pytest.raises(UserError, match="different codecs"):
        same_codec({"train": a, "val": b})


def test_latent_classifier_learns_a_separable_problem(tmp_path):
    train = read_latent_cache(write_cache(tmp_path / "train", 96, seed=0))
    val = read_latent_cache(write_cache(tmp_path / "val", 30, seed=1))
    test = read_latent_cache(write_cache(tmp_path / "test", 60, seed=2))
    torch.manual_seed(0)
    model, state = train_latent_classifier(MODEL, TRAIN, train, val, ["a", "b", "c"], torch.device("cpu"), tmp_path / "resume.pt",
                                           tmp_path / "log.csv")
    logits = predict_logits(model, (test.y_hat, test.scales_hat), 32, torch.device("cpu"))
    assert classification_metrics(logits, test.labels)["top1"] >= 0.95
    assert state.history[-1]["epoch"] == 12 and state.step == 12 * 6  # 96 latents in batches of 16


def test_shards_too_large_for_the_budget_are_read_as_indexed_with_the_same_rows(tmp_path):
    folder = write_cache(tmp_path / "c", 10)
    held, mapped = read_latent_cache(folder), read_latent_cache(folder, budget_bytes=0)
    assert "held in memory" in held.held and "read from its 2 shards as indexed" in mapped.held
    assert mapped.y_hat.shape == held.y_hat.shape and len(mapped.scales_hat) == 10
    for index in (torch.tensor([9, 0, 4, 5, 4]), slice(3, 8), slice(8, 20)):  # across the two shards
        assert torch.equal(mapped.y_hat[index], held.y_hat[index])
        assert torch.equal(mapped.scales_hat[index], held.scales_hat[index])
    assert torch.equal(mapped.labels, held.labels) and mapped.image_ids == held.image_ids


def test_a_latent_classifier_trained_from_mapped_shards_is_the_one_trained_in_memory(tmp_path):
    folders = [write_cache(tmp_path / split, count, seed=seed) for split, count, seed in (("t", 40, 0), ("v", 12, 1))]
    weights = []
    for budget in (None, 0):
        torch.manual_seed(0)
        model, _ = train_latent_classifier(MODEL, {**TRAIN, "epochs": 2, "crop_padding": 1},
                                           *(read_latent_cache(folder, budget) for folder in folders), ["a", "b", "c"],
                                           torch.device("cpu"), tmp_path / f"{budget}.pt", tmp_path / f"{budget}.csv")
        weights.append(model.state_dict())
    for key, value in weights[0].items():
        assert torch.equal(value, weights[1][key]), key
