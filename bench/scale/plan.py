"""Capacity plan for cluster-scale studies (issue 17): what preparing, caching and evaluating a million images costs
in disk and hours, and how many SLURM jobs a λ × τ × N sweep becomes.

``python bench/scale/plan.py [--out bench/results/plan] [--steps 200] [--threads 2] [--gpu-tflops 10]``

Measured here, on the CPU, with the stages run as the pipeline runs them (``python -m taskcodec.stages.<stage>``,
timed by ``/usr/bin/time``; :func:`measure.stage`):

- ``prepare`` of ``../shared/data/photos`` (49 photos of about 1 MP, each under 10 names, so that a stage's
  start-up is a small part of its time) at 256²: images/s and PNG bytes per image (real photos;
  bench/scale/measure.py's generated images compress better);
- the default codec (``params.yaml``: architecture, λ sweep) trained ``--steps`` steps of 8 patches of 256² on those
  photos, one codec per λ: training patches per CPU-second (``metrics.json``'s ``train_seconds`` is the CPU time
  of all the process's threads on a CPU);
- ``cache_latents`` of the photos' training split by each codec, then ``evaluate_codec`` of that cache (as
  ``params.yaml`` evaluates): images/s, bytes per image of the bitstreams (at that codec's bpp) and of the
  decoded latents;
- in this process, on the same 256² photos: the seconds per image of entropy coding alone (``encode_images`` +
  ``decode_images`` − one network forward pass; CompressAI's rANS coder runs on the CPU, on one core, whatever
  device runs the networks), and the FLOPs per image of the coding pass and of a training step (forward and
  backward), counted by ``torch.utils.flop_counter``;
- the jobs of λ × τ × N sweeps, counted in dry runs of the real Snakefile (``params.yaml`` with its sweeps changed).

Extrapolated (not measured): GPU hours, as the counted FLOPs at ``--gpu-tflops`` sustained TFLOP/s plus the entropy
coding measured on this CPU. Writes ``<out>/`` (working files) and ``bench/results-summary/capacity.json``.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

from taskcodec.evaluation import read_table

from measure import stage  # bench/scale/measure.py

ROOT = Path(__file__).resolve().parents[2]
PHOTOS = ROOT.parent / "shared" / "data" / "photos"
SUMMARY = ROOT / "bench/results-summary/capacity.json"
SIZE, BATCH = 256, 8
#: each photo is prepared under this many names, so that a stage's start-up is a small part of its time
REPEATS = 10
#: training images of the datasets a cluster study uses, prepared at 256² like every image here
DATASETS = {"Vimeo-90K (train septuplets × 7 frames)": 64612 * 7, "ImageNet-1k (train)": 1281167}
#: (codec models N, λ, τ) of the sweeps whose jobs are counted; the first is params.yaml's own size
SWEEPS = [(1, 3, 2), (1, 6, 3), (3, 6, 3), (4, 8, 4)]


def linked_photos(out: Path) -> Path:
    """``out/photos``: the photos, each under :data:`REPEATS` names (links, not copies)."""
    folder = out / "photos"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for photo in sorted(path for path in PHOTOS.iterdir() if path.suffix.lower() in (".png", ".jpg", ".jpeg")):
        for repeat in range(REPEATS):
            (folder / f"{photo.stem}-{repeat}{photo.suffix}").symlink_to(photo.resolve())
    return folder


def photo_params(folder: Path) -> dict:
    """``params.yaml``'s prepare section for the photos of ``folder`` at 256²."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())["prepare"]
    params.update(dataset="imagefolder", root=str(folder), image_size=SIZE, storage="png",
                  split={"train": 0.8, "val": 0.1, "test": 0.1})
    return params


def prepared_photos(out: Path) -> dict:
    """``prepare`` of the :func:`linked_photos` at 256²: images/s and PNG bytes per image; the manifest's path."""
    params = photo_params(linked_photos(out))
    shutil.rmtree(out / "prepared", ignore_errors=True)
    seconds, _ = stage("prepare", "--params", json.dumps(params), "--out", str(out / "prepared"),
                       log=out / "prepare.log")
    frame = pd.read_csv(out / "prepared" / "manifest.csv")
    sizes = [(out / "prepared" / path).stat().st_size for path in frame["path"]]
    return {"manifest": out / "prepared" / "manifest.csv", "images": len(frame), "seconds": seconds,
            "png_bytes": sum(sizes) / len(sizes)}


def codec_costs(out: Path, manifest: Path, lmbda: float, steps: int, threads: int) -> dict:
    """Train the default codec at ``lmbda`` on the photos, cache the training split and evaluate it: costs and
    bytes."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    model = params["codec"]["sweep"]["models"][0]
    train = {**params["codec"]["train"], "steps": steps, "batch_size": BATCH, "patch_size": SIZE,
             "val_every": 10**6, "checkpoint_every": 10**6, "init": None}  # each λ from scratch, no chain
    run = ["--threads", str(threads), "--device", "cpu"]
    folder = out / f"lmbda{lmbda}"
    shutil.rmtree(folder, ignore_errors=True)
    stage("train_codec", "--params", json.dumps(train), *run, "--arch", model["arch"],
          "--hyper", json.dumps({key: value for key, value in model.items() if key != "arch"}),
          "--lmbda", str(lmbda), "--manifest", str(manifest), "--out", str(folder / "model.pt"),
          log=out / f"lmbda{lmbda}-train.log")
    loop = json.loads((folder / "metrics.json").read_text())["train_seconds"]
    cache = {key: params["cache"][key] for key in ("shard_size", "decode_check")}
    seconds, _ = stage("cache_latents", "--params", json.dumps(cache), *run, "--model", str(folder / "model.pt"),
                       "--manifest", str(manifest), "--split", "train", "--out", str(folder / "cache"),
                       log=out / f"lmbda{lmbda}-cache.log")
    index = read_table(folder / "cache" / "index.csv")
    evaluate = {key: params["evaluate"][key] for key in ("save_reconstructions", "saliency_threshold", "niqe")}
    evaluated, _ = stage("evaluate_codec", "--params", json.dumps(evaluate), *run, "--model", str(folder / "model.pt"),
                         "--cache", str(folder / "cache"), "--codec-id", "plan", "--out", str(folder / "eval"),
                         log=out / f"lmbda{lmbda}-evaluate.log")
    name = " ".join([model["arch"], *(f"{key}={value}" for key, value in model.items() if key != "arch")])
    return {"lmbda": lmbda, "codec": name,
            "train_patches_per_cpu_s": steps * BATCH / loop,  # train_seconds: the CPU time of all threads
            "cache_images_per_s": len(index) / seconds,
            "evaluate_images_per_s": len(index) / evaluated,
            "bpp": float(index["bpp"].mean()),
            "bitstream_bytes": sum(p.stat().st_size for p in (folder / "cache").glob("shard-*.tcbs")) / len(index),
            "latent_bytes": sum(p.stat().st_size for p in (folder / "cache").glob("shard-*.pt")) / len(index),
            **coding_split(folder / "model.pt", manifest, threads)}


def coding_split(model_path: Path, manifest: Path, threads: int) -> dict:
    """Seconds per image of entropy coding alone, and FLOPs per image of coding and of a training step."""
    from taskcodec.codecs.checkpoint import load_codec
    from taskcodec.codecs.coding import decode_images, encode_images
    from taskcodec.data.manifest import split_images
    from taskcodec.data.tensors import images_to_tensor, to_float

    torch.set_num_threads(threads)
    codec, _ = load_codec(model_path)
    x = to_float(images_to_tensor([path for _, path, _ in split_images(manifest, "train")]), torch.device("cpu"))
    with torch.no_grad():
        codec(x[:1])  # warm-up
        started = time.perf_counter()
        codec(x)
        forward = time.perf_counter() - started
    started = time.perf_counter()
    decode_images(codec, encode_images(codec, x))
    coding = time.perf_counter() - started
    with FlopCounterMode(display=False) as counted, torch.no_grad():
        codec(x[:1])
    coding_flops = counted.get_total_flops()
    codec.train()
    with FlopCounterMode(display=False) as counted:
        output = codec(x[:1])
        likelihoods = [lk for per_model in output["likelihoods"].values() for lk in per_model.values()]
        (sum(-lk.log2().sum() for lk in likelihoods) + output["x_hat"].square().mean()).backward()
    return {"entropy_s_per_image": (coding - forward) / len(x), "coding_s_per_image": coding / len(x),
            "coding_flops": coding_flops, "train_flops_per_patch": counted.get_total_flops()}


def sweep_jobs(models: int, lmbdas: int, taus: int) -> dict:
    """Jobs per rule of the pipeline with ``models`` codec sizes × ``lmbdas`` λ (all fine-tuned) × ``taus`` τ."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    base = params["codec"]["sweep"]["models"][0]
    params["codec"]["sweep"]["models"] = [{**base, "N": base["N"] * 2**i} for i in range(models)]
    params["codec"]["sweep"]["lmbdas"] = grid = [round(0.0009 * 2**i, 6) for i in range(lmbdas)]
    params["finetune"]["sweep"].update(lmbdas=grid, taus=[round(0.1 * 3**i, 3) for i in range(taus)])
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        result = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"),
                                 "--directory", folder, "--configfile", f"{folder}/params.yaml", "--cores", "1",
                                 "--dry-run"], capture_output=True, text=True, check=True)
    table = result.stdout.split("Job stats:", 1)[1].split("total", 1)[0]
    jobs = {rule: int(count) for rule, count in re.findall(r"^(\w+)\s+(\d+)$", table, flags=re.M) if rule != "all"}
    return {"models": models, "lmbdas": lmbdas, "taus": taus, "jobs": sum(jobs.values()), "per_rule": jobs}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/plan")
    parser.add_argument("--steps", type=int, default=200, help="training steps of each codec (8 patches of 256²)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--gpu-tflops", type=float, default=10.0, help="sustained TFLOP/s assumed for a GPU")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    photos = prepared_photos(args.out)
    lmbdas = yaml.safe_load((ROOT / "params.yaml").read_text())["codec"]["sweep"]["lmbdas"]
    codecs = [codec_costs(args.out, photos["manifest"], lmbda, args.steps, args.threads) for lmbda in lmbdas]
    SUMMARY.write_text(json.dumps({
        "image_size": SIZE, "threads": args.threads, "gpu_tflops_assumed": args.gpu_tflops, "train_steps": args.steps,
        "train_batch": BATCH, "photos": photos["images"] // REPEATS, "repeats": REPEATS,
        "prepare_images_per_s": round(photos["images"] / photos["seconds"], 2),
        "png_bytes_per_image": round(photos["png_bytes"]),
        "codecs": [{key: round(value, 6) if isinstance(value, float) else value for key, value in codec.items()}
                   for codec in codecs],
        "datasets": DATASETS,
        "sweeps": [sweep_jobs(*sweep) for sweep in SWEEPS],
        "wall_minutes": round((time.time() - started) / 60, 1)}, indent=1) + "\n")
    print(SUMMARY.read_text())


if __name__ == "__main__":
    main()
