"""Compressed-domain speed: images/s of classifying from latents vs decoding then classifying.

Run after the pipeline (``bash bench/machine/run.sh``). For every pretrained codec
with a latent classifier, both receivers start from the same cached test
bitstreams (so at the same bpp) and are timed side by side in one process
(taskcodec.tasks.speed.compare_speed): entropy decoding to ŷ, σ̂ + cResNet, versus
entropy decoding + synthesis g_s + the task model. Writes
``bench/results/machine/speed.csv`` and prints it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import torch

from taskcodec import io
from taskcodec.codecs.bitstream import ImageBitstream, read_shard
from taskcodec.codecs.checkpoint import load_codec
from taskcodec.tasks.checkpoint import load_latent_classifier, load_task_model
from taskcodec.tasks.speed import compare_speed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("bench/results/machine/speed.csv"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    task_model, _ = load_task_model(args.results / "task" / "model.pt", device)
    rows = []
    for classifier_path in sorted((args.results / "latent").rglob("model.pt")):
        codec_dir = classifier_path.parent.relative_to(args.results / "latent")
        codec, meta = load_codec(args.results / "codecs" / codec_dir / "model.pt", device)
        classifier, _ = load_latent_classifier(classifier_path, device)
        cache = args.results / "cache" / codec_dir / "test"
        bitstreams = [ImageBitstream.from_bytes(data) for shard in sorted(cache.glob("shard-*.tcbs"))
                      for _, data in read_shard(shard)]
        index = pd.read_csv(cache / "index.csv")
        speed = compare_speed(codec, classifier, task_model, bitstreams, args.batch_size, device)
        rows.append({"codec": str(codec_dir), "bpp": float(index["bpp"].mean()),
                     "image_size": f"{bitstreams[0].width}×{bitstreams[0].height}", **speed})
    table = pd.DataFrame(rows)
    with io.atomic_path(args.out) as tmp:
        table.to_csv(tmp, index=False)
    print(table.to_markdown(index=False, floatfmt=".4g"))


if __name__ == "__main__":
    main()
