"""Datasets larger than memory (issue 17): peak memory and images/s of codec training, latent caching and
evaluation at 3k, 30k and 100k images of 256², codec training with its split held decoded in memory (as every
training did before) and read from its files in batches (``--mem-mb`` below the split's decoded size).

``python bench/scale/measure.py [--out bench/results/scale] [--sizes 3000 30000 100000] [--threads 2]``

The images are the built-in generator's at 256² (``prepare``, ``canvas_size`` 256), generated once for the
largest size that is made of distinct images (``--distinct``, default 30000); the 3k set is the first 3,000 rows
of its manifest, and a larger set repeats its rows under new ids (every row is decoded, coded and measured; the
files repeat, so the operating system's file cache is warmer than for distinct files). Every stage runs as the
pipeline runs it (``python -m taskcodec.stages.<stage>``), one at a time, timed by ``/usr/bin/time``: ``peak_mb``
is the resident memory of the largest process the stage waited for (not a sum over the loader workers),
``images_per_s`` the training loop's images (steps × batch) per second of its own clock (``metrics.json``'s
``train_seconds``: on a CPU, the CPU time of the training process, without its loader workers), or
the images cached or evaluated per second of the stage's wall time. Training with the split in memory at 100k is
not run: it would hold 20 GB of the machine's 24 GiB.

Also measured, for the capacity plan (README, "Datasets larger than memory"): disk bytes per image of a prepared
PNG and of the latent cache (bitstreams, decoded latents) of the largest set's test split, and the prepared images
one process decodes per second (what a loader worker delivers). Writes ``<out>/measurements.csv`` and
``bench/results-summary/scale.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

from taskcodec.evaluation import read_table

ROOT = Path(__file__).resolve().parents[2]
SUMMARY = ROOT / "bench/results-summary/scale.json"
SIZE = 256
SPLIT = {"train": 0.96, "val": 0.02, "test": 0.02}
STEPS, BATCH, PATCH = 40, 16, 128
IN_MEMORY_LIMIT = 30000  # images: the largest set trained with its split held in memory on this 24-GiB machine
FIELDS = ["stage", "images", "split_images", "source", "seconds", "peak_mb", "images_per_s"]


def stage(name: str, *args: str, log: Path) -> tuple[float, float]:
    """Run ``python -m taskcodec.stages.<name> args`` under /usr/bin/time: (wall seconds, peak resident MB)."""
    with tempfile.TemporaryDirectory() as scratch, open(log, "w") as handle:
        report = Path(scratch) / "time"
        command = ["/usr/bin/time", "-f", "%e %M", "-o", str(report), sys.executable, "-m",
                   f"taskcodec.stages.{name}", *args]
        subprocess.run(command, check=True, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT)
        seconds, peak_kb = report.read_text().split()[-2:]
    return float(seconds), int(peak_kb) / 1024


def prepare(out: Path, count: int) -> Path:
    """The built-in dataset of ``count`` images of 256² (made once): its manifest."""
    manifest = out / "prepared" / "manifest.csv"
    if not manifest.is_file():
        builtin = {**yaml.safe_load((ROOT / "params.yaml").read_text())["prepare"]["builtin"],
                   "num_images": count, "canvas_size": SIZE}
        params = {"dataset": "builtin", "root": None, "image_size": SIZE, "split": SPLIT, "seed": 0,
                  "on_bad_image": "stop", "builtin": builtin}
        stage("prepare", "--params", json.dumps(params), "--out", str(manifest.parent), log=out / "prepare.log")
    return manifest


def sized_manifest(manifest: Path, count: int) -> Path:
    """A manifest of ``count`` rows beside ``manifest``: its first rows, or its rows repeated under new ids."""
    frame = pd.read_csv(manifest)
    copies = -(-count // len(frame))
    rows = pd.concat([frame.assign(image_id=frame["image_id"].astype(str) + (f"-{copy}" if copy else ""))
                      for copy in range(copies)], ignore_index=True).iloc[:count]
    path = manifest.with_name(f"manifest-{count}.csv")
    rows.to_csv(path, index=False)
    return path


def measure(out: Path, manifest: Path, count: int, threads: int) -> list[dict]:
    """Codec training (in memory where it fits, and streamed), caching and evaluating the test split."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    train = {**params["codec"]["train"], "steps": STEPS, "batch_size": BATCH, "patch_size": PATCH,
             "val_every": 10**6, "checkpoint_every": 10**6, "init": None}  # one λ: from scratch, no chain
    model = params["codec"]["sweep"]["models"][0]
    hyper = {key: value for key, value in model.items() if key != "arch"}
    splits = pd.read_csv(manifest)["split"].value_counts()
    run = ["--threads", str(threads), "--device", "cpu"]
    rows, codec = [], None
    for source, mem_mb in (("memory", 10**6), ("files", 0)):
        if source == "memory" and count > IN_MEMORY_LIMIT:
            continue
        folder = out / f"{count}" / f"train-{source}"
        shutil.rmtree(folder, ignore_errors=True)
        seconds, peak = stage("train_codec", "--params", json.dumps(train), *run, "--mem-mb", str(mem_mb),
                              "--arch", model["arch"], "--hyper", json.dumps(hyper), "--lmbda", "0.0035",
                              "--manifest", str(manifest), "--out", str(folder / "model.pt"),
                              log=out / f"train-{count}-{source}.log")
        loop = json.loads((folder / "metrics.json").read_text())["train_seconds"]
        rows.append({"stage": "train_codec", "images": count, "split_images": int(splits["train"]),
                     "source": source, "seconds": seconds, "peak_mb": peak, "images_per_s": STEPS * BATCH / loop})
        codec = folder / "model.pt"
    cache = out / f"{count}" / "cache-test"  # bytes per image of its shards: sizes_per_image
    shutil.rmtree(cache, ignore_errors=True)
    cache_params = {"shard_size": params["cache"]["shard_size"], "decode_check": params["cache"]["decode_check"]}
    seconds, peak = stage("cache_latents", "--params", json.dumps(cache_params), *run, "--model", str(codec),
                          "--manifest", str(manifest), "--split", "test", "--out", str(cache),
                          log=out / f"cache-{count}.log")
    tested = int(splits["test"])
    rows.append({"stage": "cache_latents", "images": count, "split_images": tested, "source": "files",
                 "seconds": seconds, "peak_mb": peak, "images_per_s": tested / seconds})
    evaluate = {key: params["evaluate"][key] for key in ("save_reconstructions", "saliency_threshold", "niqe")}
    seconds, peak = stage("evaluate_codec", "--params", json.dumps(evaluate), *run, "--model", str(codec),
                          "--cache", str(cache), "--codec-id", "scale", "--out", str(out / f"{count}" / "eval-test"),
                          log=out / f"evaluate-{count}.log")
    rows.append({"stage": "evaluate_codec", "images": count, "split_images": tested, "source": "files",
                 "seconds": seconds, "peak_mb": peak, "images_per_s": tested / seconds})
    return rows


def sizes_per_image(manifest: Path, cache: Path) -> dict:
    """Disk bytes per image: a prepared PNG, and a latent cache's bitstreams and decoded latents (y_hat, scales)."""
    frame = pd.read_csv(manifest).drop_duplicates("path")
    index = read_table(cache / "index.csv")
    return {"prepared_png": sum((manifest.parent / path).stat().st_size for path in frame["path"]) / len(frame),
            "bitstreams": sum(path.stat().st_size for path in cache.glob("shard-*.tcbs")) / len(index),
            "latents": sum(path.stat().st_size for path in cache.glob("shard-*.pt")) / len(index),
            "bpp": float(index["bpp"].mean())}


def decode_rate(manifest: Path, count: int = 1000) -> float:
    """Prepared images decoded per second by one process (what one loader worker delivers)."""
    from taskcodec.data.sources import ImageFiles

    paths = [manifest.parent / path for path in pd.read_csv(manifest)["path"][:count]]
    files = ImageFiles(paths, SIZE, SIZE)
    started = time.perf_counter()
    for i in range(len(files)):
        files[i]
    return len(files) / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/scale")
    parser.add_argument("--sizes", type=int, nargs="+", default=[3000, 30000, 100000])
    parser.add_argument("--distinct", type=int, default=30000, help="images generated; larger sets repeat them")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    manifest = prepare(args.out, args.distinct)
    rows = [row for count in args.sizes
            for row in measure(args.out, sized_manifest(manifest, count), count, args.threads)]
    with open(args.out / "measurements.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    SUMMARY.write_text(json.dumps({
        "image_size": SIZE, "distinct_images": args.distinct, "threads": args.threads,
        "bytes_per_image": {key: round(value, 4 if key == "bpp" else 0)
                            for key, value in sizes_per_image(manifest, args.out / f"{args.sizes[-1]}"
                                                              / "cache-test").items()},
        "decoded_per_s_per_process": round(decode_rate(manifest), 1),
        "train": {"steps": STEPS, "batch_size": BATCH, "patch_size": PATCH},
        "rows": [{key: round(value, 3) if isinstance(value, float) else value for key, value in row.items()}
                 for row in rows],
        "wall_minutes": round((time.time() - started) / 60, 1)}, indent=1) + "\n")
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
