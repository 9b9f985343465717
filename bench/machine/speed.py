"""Compressed-domain speed: images/s of classifying from latents vs decoding then classifying.

Run after the pipeline (``bash bench/machine/run.sh``). For every pretrained codec
with a latent classifier, both receivers start from the same bitstreams (so at the
same bpp) and are timed side by side in one process
(taskcodec.tasks.speed.compare_speed): entropy decoding to ŷ, σ̂ + cResNet, versus
entropy decoding + synthesis g_s + the task model. First on the cached test
bitstreams (the prepared image size), then, for each ``--sizes`` S, on photos of
``--photos`` resized and centre-cropped to S×S and entropy-coded by the same codec:
the entropy decoder has a fixed cost per image while g_s and the task model grow
with the pixels, so the ratio depends on the image size. Writes
``bench/results/machine/speed.csv`` and prints it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from taskcodec import artifacts
from taskcodec.codecs.bitstream import ImageBitstream
from taskcodec.codecs.cache import read_bitstreams
from taskcodec.codecs.checkpoint import load_codec
from taskcodec.codecs.coding import encode_images
from taskcodec.data.images import IMAGE_EXTENSIONS, load_rgb8, resize_center_crop
from taskcodec.data.tensors import to_float
from taskcodec.evaluation import read_table
from taskcodec.tasks.checkpoint import load_latent_classifier, load_task_model
from taskcodec.tasks.speed import compare_speed


def cached_bitstreams(cache: Path) -> tuple[list[dict[str, ImageBitstream]], float]:
    """The test split's stored bitstreams and their mean actual bpp."""
    layers = tuple(artifacts.read_json(cache / "cache.json")["layers"])
    bitstreams = [{layer: ImageBitstream.from_bytes(data) for layer, data in parts.items()}
                  for _, parts in read_bitstreams(cache, layers)]
    return bitstreams, float(read_table(cache / "index.csv")["bpp"].mean())


def photo_bitstreams(codec, folder: Path, size: int) -> tuple[list[dict[str, ImageBitstream]], float]:
    """The photos of ``folder`` at ``size``×``size``, entropy-coded by ``codec``, and their mean bpp."""
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    arrays = np.stack([resize_center_crop(load_rgb8(path), size, path) for path in paths])
    bitstreams = encode_images(codec, to_float(torch.from_numpy(arrays).permute(0, 3, 1, 2), torch.device("cpu")))
    bits = sum(8 * len(bitstream.to_bytes()) for layered in bitstreams for bitstream in layered.values())
    return bitstreams, bits / (len(bitstreams) * size * size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--photos", type=Path, default=Path("../shared/data/photos"),
                        help="folder of photos for the larger sizes (skipped when missing)")
    parser.add_argument("--sizes", type=int, nargs="*", default=[256, 512])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("bench/results/machine/speed.csv"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    task_model, _ = load_task_model(args.results / "task" / "classification" / "model.pt", device)
    rows = []
    for classifier_path in sorted((args.results / "latent").rglob("model.pt")):
        codec_dir = classifier_path.parent.relative_to(args.results / "latent")
        codec, _ = load_codec(args.results / "codecs" / codec_dir / "model.pt", device)
        classifier, _ = load_latent_classifier(classifier_path, device)
        sources = {"test split": lambda: cached_bitstreams(args.results / "cache" / codec_dir / "test")}
        if args.photos.is_dir():
            sources.update({f"{args.photos.name} {size}²": lambda size=size: photo_bitstreams(codec, args.photos, size)
                            for size in args.sizes})
        for source, load in sources.items():
            bitstreams, bpp = load()
            first = next(iter(bitstreams[0].values()))
            speed = compare_speed(codec, classifier, task_model, bitstreams, args.batch_size, device)
            rows.append({"codec": str(codec_dir), "images_from": source, "bpp": bpp,
                         "image_size": f"{first.width}×{first.height}", **speed})
            print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    with artifacts.atomic_path(args.out) as tmp:
        table.to_csv(tmp, index=False)
    print(table.to_markdown(index=False, floatfmt=".4g"))


if __name__ == "__main__":
    main()
