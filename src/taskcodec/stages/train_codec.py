"""Stage: train one learned codec on rate + λ·distortion.

``python -m taskcodec.stages.train_codec --params '<codec.train as JSON>' --arch bmshj2018-hyperprior
--N 64 --M 96 --lmbda 0.0067 --manifest results/prepared/manifest.csv --out results/codecs/.../model.pt``

Writes ``model.pt`` (weights after ``update()``, with the resolved params),
``train_log.csv`` and ``metrics.json`` beside it. A ``resume.pt`` next to
them lets a killed job continue; it is removed once the model is saved.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import torch

from taskcodec import io
from taskcodec.codecs.checkpoint import initial_weights, save_codec
from taskcodec.codecs.registry import build_codec
from taskcodec.codecs.training import train_codec
from taskcodec.data.manifest import split_images
from taskcodec.data.tensors import images_to_tensor
from taskcodec.device import resolve_device
from taskcodec.tracking import stage_run
from taskcodec.stages.cli import threads_argument, params_argument, run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m taskcodec.stages.train_codec", description=__doc__.splitlines()[0])
    params_argument(parser)
    threads_argument(parser)
    parser.add_argument("--arch", required=True)
    parser.add_argument("--N", type=int, required=True)
    parser.add_argument("--M", type=int, required=True)
    parser.add_argument("--lmbda", type=float, required=True)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="model.pt to write")
    return parser


def main(argv: Sequence[str] | None = None) -> Path:
    args = build_parser().parse_args(argv)
    params = args.params
    torch.set_num_threads(args.threads)
    device = resolve_device(params["device"])
    train_images = images_to_tensor([path for _, path, _ in split_images(args.manifest, "train")])
    val_images = images_to_tensor([path for _, path, _ in split_images(args.manifest, "val")])

    wildcards = {"arch": args.arch, "N": args.N, "M": args.M, "lmbda": args.lmbda}
    with stage_run("train_codec", wildcards, params, inputs={"manifest": args.manifest}) as tracked:
        tracked.set_tags({"device": device})
        torch.manual_seed(params["seed"])
        model = build_codec(args.arch, args.N, args.M)
        initial_weights(model, params["init"], args.arch)
        out_dir = args.out.parent
        resume_path = out_dir / "resume.pt"
        state = train_codec(model, args.lmbda, params, train_images, val_images, device, resume_path,
                            out_dir / "train_log.csv", data_id=io.file_digest(args.manifest))
        final = {key: value for key, value in state.history[-1].items() if key not in ("split", "aux_loss", "lr")}
        metrics = {"arch": args.arch, "N": args.N, "M": args.M, "lmbda": args.lmbda, "steps": state.step,
                   "train_seconds": state.elapsed_s, "val": final, "device": str(device), "run_id": tracked.run_id}
        save_codec(args.out, model.cpu(), args.arch, args.N, args.M, args.lmbda, params, metrics)
        io.write_json(out_dir / "metrics.json", metrics)
        resume_path.unlink(missing_ok=True)
        for split in ("train", "val"):
            tracked.log_history([row for row in state.history if row["split"] == split], f"{split}/")
        tracked.log_metrics({"steps": state.step, "train_seconds": state.elapsed_s,
                             **{f"final_val_{key}": value for key, value in final.items() if key != "step"}})
        tracked.log_artifact(out_dir / "train_log.csv")
        tracked.log_artifact(out_dir / "metrics.json")
        tracked.log_file_reference("checkpoint", args.out)
    return args.out


if __name__ == "__main__":
    run(main)
