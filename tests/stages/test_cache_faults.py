"""Bitstream caches that are corrupt, incomplete or of another model: a clear error naming the path, never a crash
or a silently smaller result; and a bounded fuzz of stored bitstreams."""

import json
import shutil
import subprocess
import sys

import pytest
import torch

from taskcodec.codecs.bitstream import ImageBitstream, ShardWriter, read_shard
from taskcodec.codecs.checkpoint import save_codec
from taskcodec.codecs.fuzz import fuzz_decode
from taskcodec.codecs.registry import build_codec
from taskcodec.errors import UserError
from taskcodec.stages import cache_latents, evaluate_codec, prepare

from stage_settings import RUN

HYPER = {"N": 8, "M": 12}


def _codec(path, seed):
    torch.manual_seed(seed)
    model = build_codec("bmshj2018-hyperprior", HYPER).eval()
    model.update(force=True)
    save_codec(path, model, "bmshj2018-hyperprior", HYPER, 0.01, {}, {})
    return model


@pytest.fixture(scope="module")
def cached(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    params = {"dataset": "builtin", "root": None, "image_size": 64, "split": {"train": 0.5, "val": 0.2, "test": 0.3},
              "seed": 0, "builtin": {"num_images": 20, "canvas_size": 64, "classes": ["circle", "square"],
                                     "object_scale": [0.3, 0.7]}, "on_bad_image": "stop"}
    prepare.main(["--params", json.dumps(params), "--out", str(root / "prepared")])
    _codec(root / "model.pt", 0)
    _codec(root / "other.pt", 1)
    cache_latents.main(["--params", json.dumps({"shard_size": 2, "decode_check": 0}), *RUN, "--model",
                        str(root / "model.pt"), "--manifest", str(root / "prepared" / "manifest.csv"), "--split",
                        "test", "--no-latents", "--out", str(root / "cache")])
    return root


@pytest.fixture()
def cache(cached, tmp_path):
    copy = tmp_path / "cache"
    shutil.copytree(cached / "cache", copy)
    return copy


EVALUATE = ["--params", json.dumps({"saliency_threshold": 0.5, "save_reconstructions": 0, "niqe": True}), *RUN]


def _evaluate_cli(cached, cache, model="model.pt"):
    """The stage as Snakemake runs it: a child process, its exit status and stderr."""
    return subprocess.run([sys.executable, "-m", "taskcodec.stages.evaluate_codec", *EVALUATE, "--model",
                           str(cached / model), "--cache", str(cache), "--codec-id", "x", "--out",
                           str(cache.parent / "eval")], capture_output=True, text=True, timeout=300)


def _refused(cached, cache, *phrases):
    """The stage's ``main`` in this process (the first test covers the child-process path a user sees): a
    UserError naming ``phrases``, and no output."""
    with pytest.raises(UserError) as refused:
        evaluate_codec.main([*EVALUATE, "--model", str(cached / "model.pt"), "--cache", str(cache), "--codec-id",
                             "x", "--out", str(cache.parent / "eval")])
    assert all(phrase in str(refused.value) for phrase in phrases), refused.value
    assert not (cache.parent / "eval").exists()


def _rewrite(shard, change):
    """Rewrite a shard through ``change(records) -> records``, with valid CRCs."""
    records = list(read_shard(shard))
    with ShardWriter(shard) as writer:
        for image_id, _, data in change(records):
            writer.write(image_id, data)


def _fails_clearly(result, *phrases):
    assert result.returncode == 2, result.stderr
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("error: ") and "Traceback" not in result.stderr
    assert all(phrase in message for phrase in phrases), message
    return message


def test_a_cache_of_another_model_of_the_same_architecture_is_refused_in_one_sentence(cached, cache):
    _fails_clearly(_evaluate_cli(cached, cache, "other.pt"), str(cache), "not by")
    assert not (cache.parent / "eval").exists()


def test_a_deleted_shard_is_not_evaluated_as_a_smaller_set(cached, cache):
    sorted(cache.glob("shard-*.tcbs"))[1].unlink()
    _refused(cached, cache, "lacks the bitstreams of 2 of its 6")


def test_a_shard_cut_at_a_record_boundary_is_reported(cached, cache):
    _rewrite(sorted(cache.glob("shard-*.tcbs"))[0], lambda records: records[:1])
    _refused(cached, cache, "lacks the bitstreams of 1 of its 6")


@pytest.mark.parametrize("height", [4160, 128])
def test_a_header_with_a_valid_crc_but_a_wrong_size_is_refused_before_decoding(cached, cache, height):
    def resize(records):
        image_id, _, data = records[0]
        bitstream = ImageBitstream.from_bytes(data)
        return [(image_id, None, ImageBitstream(height, bitstream.width, bitstream.strings).to_bytes()), *records[1:]]

    _rewrite(sorted(cache.glob("shard-*.tcbs"))[0], resize)
    _refused(cached, cache, f"declares 64×{height} pixels but the index lists 64×64")


def test_a_header_with_a_missing_string_is_refused(cached, cache):
    def drop(records):
        image_id, _, data = records[0]
        bitstream = ImageBitstream.from_bytes(data)
        return [(image_id, None, ImageBitstream(64, 64, bitstream.strings[:1]).to_bytes()), *records[1:]]

    _rewrite(sorted(cache.glob("shard-*.tcbs"))[0], drop)
    _refused(cached, cache, "has 1 strings, the codec writes 2")


def test_fuzzed_bitstreams_are_rejected_or_decoded_never_crash(cached):
    """200 stored bitstreams with flipped, cut or extra bytes: each decode fails cleanly or returns an image, in a
    child process with a per-file time limit (bench/fuzz/run.py runs thousands)."""
    model = build_codec("bmshj2018-hyperprior", HYPER).eval()
    model.load_state_dict(torch.load(cached / "model.pt", weights_only=True)["state_dict"])
    model.update(force=True)
    originals = [data for shard in sorted((cached / "cache").glob("shard-*.tcbs")) for _, _, data in read_shard(shard)]
    outcomes = fuzz_decode(model, originals, (64, 64), count=200, seed=0, timeout_s=60)
    assert sum(outcomes.values()) == 200
    assert outcomes["crashed"] == 0 and outcomes["timeout"] == 0, outcomes
    assert outcomes["rejected"] > 0 and outcomes["decoded"] > 0, outcomes


def test_an_unreadable_cache_index_is_one_sentence(cached, cache):
    (cache / "cache.json").write_text("{")
    _refused(cached, cache, str(cache / "cache.json"))


def test_fuzzed_shard_files_are_read_or_refused_with_the_path(cached, tmp_path):
    """300 shard files with flipped, cut or extra bytes: each reads (the CRCs hold) or fails naming its path."""
    import random

    from taskcodec.codecs.bitstream import CorruptBitstream
    from taskcodec.codecs.fuzz import mutate

    rng = random.Random(0)
    original = sorted((cached / "cache").glob("shard-*.tcbs"))[0].read_bytes()
    outcomes = {"read": 0, "refused": 0}
    for i in range(300):
        path = tmp_path / f"fuzz-{i}.tcbs"
        path.write_bytes(mutate(original, rng))
        try:
            list(read_shard(path))
            outcomes["read"] += 1
        except CorruptBitstream as err:
            assert str(path) in str(err)
            outcomes["refused"] += 1
    assert outcomes["refused"] > 200, outcomes
