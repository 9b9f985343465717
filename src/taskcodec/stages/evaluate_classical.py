"""Stage: run a classical codec over a quality sweep on the evaluation images.

``python -m taskcodec.stages.evaluate_classical --params '{"qualities": [...], "save_reconstructions": 4}'
--codec jpeg (--manifest manifest.csv --split test | --folder DIR) --out results/eval/classical/jpeg/<dataset>``

bpp counts the whole encoded file (headers included). A codec whose tool is not
installed writes an empty ``per_image.csv`` and a ``summary.json`` with
``status: skipped`` and the reason, so the run reports what it skipped and why.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import pandas as pd
import torch
from tqdm import tqdm

from taskcodec import io
from taskcodec.baselines.registry import get_classical
from taskcodec.data.images import load_rgb8
from taskcodec.evaluation import ROW_FIELDS, measure, save_reconstruction
from taskcodec.stages.cli import threads_argument, dataset_arguments, dataset_images, params_argument, run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m taskcodec.stages.evaluate_classical", description=__doc__.splitlines()[0])
    params_argument(parser)
    threads_argument(parser)
    parser.add_argument("--codec", required=True)
    dataset_arguments(parser)
    parser.add_argument("--out", type=Path, required=True)
    return parser


def main(argv: Sequence[str] | None = None) -> Path:
    args = build_parser().parse_args(argv)
    params = args.params
    torch.set_num_threads(args.threads)
    codec = get_classical(args.codec)
    records = dataset_images(args)
    rows = []
    with io.atomic_dir(args.out) as tmp:
        reason = codec.unavailable_reason()
        if reason is None:
            for position, (image_id, path, _) in enumerate(tqdm(records, desc=args.codec, mininterval=5.0)):
                original = load_rgb8(path)
                for quality in params["qualities"]:
                    data = codec.encode(original, quality)
                    reconstruction = codec.decode(data)
                    rows.append({"family": "classical", "codec": args.codec, "point": quality, "image_id": image_id,
                                 "bpp_estimated": float("nan"), **measure(original, reconstruction, len(data))})
                    if position < params["save_reconstructions"]:
                        save_reconstruction(tmp / "recon", f"{image_id}_q{quality}", reconstruction)
        else:
            print(f"skipping {args.codec}: {reason}")
        table = pd.DataFrame(rows, columns=ROW_FIELDS)
        table.to_csv(tmp / "per_image.csv", index=False)
        io.write_json(tmp / "summary.json", {
            "status": "ok" if reason is None else "skipped", "reason": reason, "codec": args.codec,
            "quality_knob": codec.quality_knob, "images": len(records), "params": params,
        })
    return args.out


if __name__ == "__main__":
    run(main)
