"""train_codec -> cache_latents -> evaluate_codec / evaluate_classical -> report, through their main()."""

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from PIL import Image

from taskcodec.codecs.bitstream import read_shard
from taskcodec.codecs.checkpoint import load_codec
from taskcodec.errors import UserError
from taskcodec.evaluation import read_table
from taskcodec.stages import cache_latents, evaluate_classical, evaluate_codec, prepare, report, train_codec

from stage_settings import REPORT, RUN

TRAIN = {
    "distortion": "mse", "steps": 30, "batch_size": 4, "patch_size": 64, "lr": 1e-3, "aux_lr": 1e-3,
    "lr_warmup": 0.0, "lr_decay": "steps", "lr_drop_at": [0.8], "lr_gamma": 0.5,
    "clip_max_norm": 1.0, "spike_guard": None, "ema_decay": None, "quantization": "noise", "time_budget_s": None,
    "val_every": 15, "checkpoint_every": 10, "init": None, "seed": 0, "saliency_floor": None,
}
CACHE = {"shard_size": 5, "decode_check": -1}

EVAL = {"saliency_threshold": 0.5, "niqe": True}  # the evaluate params both evaluation stages read


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("stages")
    params = {"dataset": "builtin", "root": None, "image_size": 64, "split": {"train": 0.6, "val": 0.2, "test": 0.2},
              "seed": 0, "builtin": {"num_images": 30, "canvas_size": 72, "classes": ["circle", "square", "ring"],
                                     "object_scale": [0.3, 0.7]}, "on_bad_image": "stop"}
    prepare.main(["--params", json.dumps(params), "--out", str(root / "prepared")])
    models = {}
    for lmbda in (0.002, 0.02):
        out = root / f"codec-{lmbda}" / "model.pt"
        train_codec.main(["--params", json.dumps(TRAIN), "--arch", "bmshj2018-hyperprior", "--hyper", '{"N": 8, "M": 12}',
                          *RUN, "--lmbda", str(lmbda), "--manifest", str(root / "prepared" / "manifest.csv"), "--out", str(out)])
        models[lmbda] = out
    return root, models


def _cache(root, model, split, out):
    return cache_latents.main(["--params", json.dumps(CACHE), *RUN, "--model", str(model), "--manifest",
                               str(root / "prepared" / "manifest.csv"), "--split", split, "--out", str(out)])


def test_train_codec_outputs(workspace):
    root, models = workspace
    model, meta = load_codec(models[0.002])
    assert meta["params"] == TRAIN and meta["arch"] == "bmshj2018-hyperprior" and meta["lmbda"] == 0.002
    metrics = json.loads((models[0.002].parent / "metrics.json").read_text())
    assert metrics["steps"] == 30 and metrics["val"]["step"] == 30 and metrics["rollbacks"] == []
    assert not (models[0.002].parent / "resume.pt").exists()
    log = pd.read_csv(models[0.002].parent / "train_log.csv")
    assert (log["split"] == "train").sum() == 30


def test_cache_writes_real_bitstreams_and_latents(workspace, tmp_path):
    root, models = workspace
    out = _cache(root, models[0.002], "train", tmp_path / "train")
    index = read_table(out / "index.csv")
    assert len(index) == 18
    stored = {key: data for shard in sorted(out.glob("shard-*.tcbs")) for key, layer, data in read_shard(shard)}
    assert "bytes_main" not in index.columns  # a single-layer codec's index is as it always was
    assert set(stored) == set(index["image_id"])
    for row in index.itertuples():
        assert row.bytes == len(stored[row.image_id])
        assert row.bpp == pytest.approx(8 * row.bytes / (64 * 64))
    latents = [torch.load(p, weights_only=True) for p in sorted(out.glob("shard-*.pt"))]
    assert len(latents) == 4  # 18 images in shards of 5
    main = latents[0]["layers"]["main"]
    assert main["y_hat"].shape == (5, 12, 4, 4) and main["scales_hat"].shape == (5, 12, 4, 4)
    assert sum(len(shard["image_ids"]) for shard in latents) == 18
    # decoded latents are integers for a scale hyperprior (no means)
    assert torch.equal(main["y_hat"], main["y_hat"].round())
    summary = json.loads((out / "cache.json").read_text())
    assert summary["decode_check"]["images"] == 18 and summary["decode_check"]["max_abs_diff"] < 1e-3


def test_evaluate_and_report(workspace, tmp_path):
    root, models = workspace
    manifest = str(root / "prepared" / "manifest.csv")
    evals = []
    for lmbda, model in models.items():
        cache = _cache(root, model, "test", tmp_path / f"cache-{lmbda}")
        out = tmp_path / f"eval-{lmbda}"
        evaluate_codec.main(["--params", json.dumps({**EVAL, "save_reconstructions": 2}), *RUN, "--model",
                             str(model), "--cache", str(cache), "--codec-id", "hyper/N8-M12", "--out", str(out)])
        table = read_table(out / "per_image.csv")
        assert len(table) == 6 and (table["point"] == lmbda).all()
        assert table["psnr"].between(5, 60).all() and table["ms_ssim"].between(0, 1).all()
        assert table["niqe"].isna().all()  # 64×64: under NIQE's 96-pixel patches
        assert pd.isna(json.loads((out / "summary.json").read_text())["niqe"])  # the mean: not measured
        assert len(list((out / "recon").glob("*.png"))) == 2
        evals.append(out)
    for codec in ("jpeg", "webp"):
        out = tmp_path / f"eval-{codec}"
        evaluate_classical.main(["--params", json.dumps({**EVAL, "qualities": [10, 50, 90], "save_reconstructions": 1}),
                                 *RUN,
                                 "--codec", codec, "--manifest", manifest, "--split", "test", "--out", str(out)])
        table = read_table(out / "per_image.csv")
        assert len(table) == 18 and "niqe" in table and table["niqe"].isna().all()
        by_quality = table.groupby("point")["bpp"].mean()
        assert by_quality[10] < by_quality[90]
        evals.append(out)
    out = tmp_path / "report"
    report.main(["--params", json.dumps(REPORT), "--dataset", "test", "--eval", *map(str, evals), "--manifest",
                 manifest, "--split", "test", "--out", str(out)])
    points = read_table(out / "rd_points.csv")
    assert set(points["codec"]) == {"hyper/N8-M12", "jpeg", "webp"} and len(points) == 8
    assert (points["image_size"] == "64×64").all() and points["niqe"].isna().all()
    cells = [cell.strip() for line in (out / "rd_points.md").read_text().splitlines() for cell in line.split("|")]
    assert cells.count("n/a") == 8  # NIQE not measured, for learned and classical alike
    bd = read_table(out / "bd_rate.csv")
    assert set(zip(bd["codec"], bd["anchor"])) == {("hyper/N8-M12", "jpeg"), ("hyper/N8-M12", "webp")}
    for name in ("rd_psnr.png", "rd_ms_ssim.png", "recon_grid.png", "README.md", "rd_points.md", "bd_rate.md"):
        assert (out / name).stat().st_size > 0


def test_corrupt_bitstream_is_a_clear_error(workspace, tmp_path):
    root, models = workspace
    cache = _cache(root, models[0.002], "val", tmp_path / "cache")
    shard = sorted(cache.glob("shard-*.tcbs"))[0]
    raw = bytearray(shard.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    shard.write_bytes(bytes(raw))
    with pytest.raises(UserError, match="checksum"):
        evaluate_codec.main(["--params", json.dumps({**EVAL, "save_reconstructions": 0}), *RUN, "--model",
                             str(models[0.002]), "--cache", str(cache), "--codec-id", "x", "--out", str(tmp_path / "e")])
    assert not (tmp_path / "e").exists()  # nothing that looks complete


def test_init_from_a_checkpoint_of_another_architecture_names_the_path(workspace, tmp_path):
    root, models = workspace
    params = {**TRAIN, "init": str(models[0.002])}
    with pytest.raises(UserError, match=f"checkpoint {models[0.002]} holds a bmshj2018-hyperprior model"):
        train_codec.main(["--params", json.dumps(params), "--arch", "bmshj2018-factorized", "--hyper", '{"N": 8, "M": 12}',
                          "--lmbda", "0.01", "--manifest", str(root / "prepared" / "manifest.csv"),
                          "--out", str(tmp_path / "model.pt")])


def test_init_from_the_neighbour_starts_from_its_weights(workspace, tmp_path):
    """init: neighbour with --init-from (the workflow's next larger λ): the job starts from that codec's weights
    (one step at a learning rate too small to move them), and --init-from under any other init is refused."""
    root, models = workspace
    args = ["--arch", "bmshj2018-hyperprior", "--hyper", '{"N": 8, "M": 12}', *RUN, "--lmbda", "0.002", "--manifest",
            str(root / "prepared" / "manifest.csv"), "--init-from", str(models[0.02])]
    out = train_codec.main(["--params", json.dumps({**TRAIN, "init": "neighbour", "steps": 1, "lr": 1e-12}), *args,
                            "--out", str(tmp_path / "model.pt")])
    started, _ = load_codec(out)
    neighbour, _ = load_codec(models[0.02])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(started.g_a.parameters(), neighbour.g_a.parameters()))
    with pytest.raises(UserError, match="--init-from .* is for init: neighbour or smaller_neighbour, but the params' init is None"):
        train_codec.main(["--params", json.dumps(TRAIN), *args, "--out", str(tmp_path / "m.pt")])


def test_cli_reports_a_missing_checkpoint_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "taskcodec.stages.evaluate_codec", "--params", json.dumps({**EVAL, "save_reconstructions": 0}), *RUN, "--model", str(tmp_path / "no.pt"),
         "--cache", str(tmp_path), "--codec-id", "x", "--out", str(tmp_path / "out")],
        capture_output=True, text=True,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: checkpoint")
    assert "Traceback" not in result.stderr


def test_missing_codec_tool_is_skipped_with_the_reason(workspace, tmp_path, monkeypatch):
    from taskcodec.baselines.hevc import HevcCodec

    root, _ = workspace
    monkeypatch.setattr(HevcCodec, "unavailable_reason", classmethod(lambda cls: "ffmpeg is not installed"))
    out = tmp_path / "hevc"
    evaluate_classical.main(["--params", json.dumps({**EVAL, "qualities": [30], "save_reconstructions": 1}), "--codec", "hevc",
                             "--manifest", str(root / "prepared" / "manifest.csv"), "--split", "test", "--out", str(out)])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "skipped" and summary["reason"] == "ffmpeg is not installed"
    assert read_table(out / "per_image.csv").empty


def _write_images(folder, names, size=(70, 90)):
    folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(0)
    for name in names:
        pixels = (torch.rand(size[0], size[1], 3, generator=generator) * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(folder / name)


def test_extra_folder_with_numeric_image_names(workspace, tmp_path):
    root, models = workspace
    folder = tmp_path / "extra"
    _write_images(folder, ["0801.png", "0802.png"])
    cache = cache_latents.main(["--params", json.dumps(CACHE), *RUN, "--model", str(models[0.002]), "--folder", str(folder),
                                "--no-latents", "--out", str(tmp_path / "cache")])
    learned = tmp_path / "learned"
    evaluate_codec.main(["--params", json.dumps({**EVAL, "save_reconstructions": 1}), *RUN, "--model",
                         str(models[0.002]), "--cache", str(cache), "--codec-id", "hyper", "--out", str(learned)])
    classical = tmp_path / "jpeg"
    evaluate_classical.main(["--params", json.dumps({**EVAL, "qualities": [20, 80], "save_reconstructions": 1}), "--codec",
                             "jpeg", "--folder", str(folder), "--out", str(classical)])
    out = tmp_path / "report"
    report.main(["--params", json.dumps(REPORT), "--dataset", "extra", "--eval", str(learned), str(classical),
                 "--folder", str(folder), "--out", str(out)])
    table = read_table(learned / "per_image.csv")
    assert list(table["image_id"]) == ["0801", "0802"]
    assert (learned / "recon" / "0801.png").is_file()
    assert (out / "recon_grid.png").stat().st_size > 0


def test_a_run_id_that_looks_like_a_huge_exponent_is_read_as_a_string(tmp_path):
    """pandas 2.3 crashes (SIGSEGV) parsing 1e4112518481493… as a float (pandas-dev/pandas#63089); an MLflow run id
    of that shape once stopped a CI run's evaluation. Read in a child process, so that a crash fails this test alone."""
    table = tmp_path / "per_image.csv"
    table.write_text("image_id,bpp,run_id\n0801,0.5,1e4112518481493b815b696a7fc20cab\n")
    read = subprocess.run([sys.executable, "-c", "import sys; from taskcodec.evaluation import read_table; "
                           "print(read_table(sys.argv[1]).to_dict('records'))", str(table)],
                          capture_output=True, text=True, timeout=120)
    assert read.returncode == 0, read.stderr[-2000:]
    assert read.stdout.strip() == "[{'image_id': '0801', 'bpp': 0.5, 'run_id': '1e4112518481493b815b696a7fc20cab'}]"


def test_colliding_and_tiny_images_are_named(workspace, tmp_path):
    root, models = workspace
    folder = tmp_path / "collide"
    _write_images(folder, ["a.png", "a.jpg"])
    with pytest.raises(UserError, match="would both be named 'a'"):
        evaluate_classical.main(["--params", json.dumps({**EVAL, "qualities": [50], "save_reconstructions": 0}), "--codec",
                                 "jpeg", "--folder", str(folder), "--out", str(tmp_path / "out")])
    tiny = tmp_path / "tiny"
    _write_images(tiny, ["small.png"], size=(8, 8))
    with pytest.raises(UserError, match="small.png is 8×8, too small to evaluate"):
        evaluate_classical.main(["--params", json.dumps({**EVAL, "qualities": [50], "save_reconstructions": 0}), "--codec",
                                 "jpeg", "--folder", str(tiny), "--out", str(tmp_path / "out2")])


def test_same_params_and_seed_give_identical_bitstreams(workspace, tmp_path):
    root, models = workspace
    manifest = str(root / "prepared" / "manifest.csv")
    again = tmp_path / "again" / "model.pt"
    train_codec.main(["--params", json.dumps(TRAIN), "--arch", "bmshj2018-hyperprior", "--hyper", '{"N": 8, "M": 12}',
                      *RUN, "--lmbda", "0.002", "--manifest", manifest, "--out", str(again)])
    first = _cache(root, models[0.002], "test", tmp_path / "first")
    second = _cache(root, again, "test", tmp_path / "second")
    shards = sorted(path.name for path in first.glob("shard-*.tcbs"))
    assert shards and shards == sorted(path.name for path in second.glob("shard-*.tcbs"))
    for name in shards:
        assert (first / name).read_bytes() == (second / name).read_bytes()


# train_codec run as its command, printing "step N" after drawing the batch of every step N
ANNOUNCING_TRAIN_CODEC = f"""
import runpy, sys
sys.path.insert(0, {str(Path(__file__).parents[1])!r})
from trainer_child import announce_steps
from taskcodec.codecs.training import CodecObjective
announce_steps(CodecObjective)
sys.argv[0] = "train_codec"
runpy.run_module("taskcodec.stages.train_codec", run_name="__main__", alter_sys=True)
"""


def test_sigterm_stops_train_codec_without_outputs_and_a_rerun_ends_identically(workspace, tmp_path, capsys):
    root, models = workspace
    out = tmp_path / "codec" / "model.pt"
    argv = ["--params", json.dumps(TRAIN), *RUN, "--arch", "bmshj2018-hyperprior", "--hyper", '{"N": 8, "M": 12}',
            "--lmbda", "0.002", "--manifest", str(root / "prepared" / "manifest.csv"), "--out", str(out)]
    process = subprocess.Popen([sys.executable, "-c", ANNOUNCING_TRAIN_CODEC, *argv], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    for line in process.stdout:
        if line.startswith("step 13"):  # after the checkpoint at step 10, what SLURM sends before a kill
            process.send_signal(signal.SIGTERM)
            break
    output = process.communicate(timeout=600)[0]
    assert process.returncode == 143, output
    assert [path.name for path in out.parent.iterdir()] == ["resume.pt"]  # no model, metrics or log
    step = torch.load(out.parent / "resume.pt", weights_only=True)["progress"]["step"]
    assert 13 <= step < TRAIN["steps"]
    other_threads = tmp_path / "threads" / "model.pt"
    other_threads.parent.mkdir()
    shutil.copy(out.parent / "resume.pt", other_threads.parent / "resume.pt")

    train_codec.main(argv)
    assert f"resuming {out.parent / 'resume.pt'} at step {step}" in capsys.readouterr().out
    resumed, meta = load_codec(out)
    reference, _ = load_codec(models[0.002])
    for key, value in reference.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    assert meta["metrics"]["steps"] == TRAIN["steps"] and not (out.parent / "resume.pt").exists()
    logs = [pd.read_csv(path.parent / "train_log.csv").drop(columns="elapsed_s") for path in (out, models[0.002])]
    pd.testing.assert_frame_equal(*logs)

    # threads are a run setting, not a science parameter: the checkpoint is still used with another count
    train_codec.main([*argv[:-1], str(other_threads), "--threads", "2"])
    assert f"resuming {other_threads.parent / 'resume.pt'} at step {step}" in capsys.readouterr().out


@pytest.mark.parametrize("storage", ["png", "tar"])
def test_train_codec_reads_a_split_too_large_for_its_memory_from_the_files_with_the_same_result(workspace, tmp_path,
                                                                                               storage):
    root, models = workspace
    manifest = root / "prepared" / "manifest.csv"
    if storage == "tar":  # the same dataset in tar shards: the same windows, weights and bitstreams
        params = {**json.loads((root / "prepared" / "prepare.json").read_text())["params"], "storage": "tar",
                  "images_per_shard": 7}
        manifest = prepare.main(["--params", json.dumps(params), "--out", str(tmp_path / "prepared")]) / "manifest.csv"
        from_png = _cache(root, models[0.002], "test", tmp_path / "png-cache")
        from_tar = cache_latents.main(["--params", json.dumps(CACHE), *RUN, "--model", str(models[0.002]),
                                       "--manifest", str(manifest), "--split", "test", "--out", str(tmp_path / "tar")])
        shards = sorted(path.name for path in from_png.glob("shard-*.tcbs"))
        assert shards and shards == sorted(path.name for path in from_tar.glob("shard-*.tcbs"))
        assert all((from_png / name).read_bytes() == (from_tar / name).read_bytes() for name in shards)
        tables = []  # evaluation reads each original at the address its cache's index recorded
        for cache in (from_png, from_tar):
            out = evaluate_codec.main(["--params", json.dumps({**EVAL, "save_reconstructions": 0}), *RUN, "--model",
                                       str(models[0.002]), "--cache", str(cache), "--codec-id", "c", "--out",
                                       str(cache.parent / f"{cache.name}-eval")])
            tables.append(read_table(out / "per_image.csv")[["image_id", "bpp", "psnr", "ms_ssim"]])
        pd.testing.assert_frame_equal(*tables)
    out = tmp_path / "streamed" / "model.pt"
    log = tmp_path / "stage.log"
    command = [sys.executable, "-m", "taskcodec.stages.train_codec", "--params", json.dumps(TRAIN), "--arch",
               "bmshj2018-hyperprior", "--hyper", '{"N": 8, "M": 12}', "--device", "cpu", "--threads", "2",
               "--mem-mb", "0", "--lmbda", "0.002", "--manifest", str(manifest), "--out", str(out)]
    with open(log, "w") as handle:  # a process of its own, like a pipeline job: its loader workers fork from it
        subprocess.run(command, check=True, stdout=handle, stderr=subprocess.STDOUT)
    # 2 threads: 1 for the loader worker, 1 for PyTorch, as the in-memory training had
    assert "train images: 18 images read from their files by 1 loader worker (" in log.read_text()
    streamed, _ = load_codec(out)
    in_memory, _ = load_codec(models[0.002])
    for key, value in in_memory.state_dict().items():
        assert torch.equal(value, streamed.state_dict()[key]), key
