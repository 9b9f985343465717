"""Which λ range the demo sweeps, with how many steps of how many patches: candidate sweeps of the demo's codec,
each trained as the workflow trains it (``params.yaml``'s recipe and chain) and measured on the validation split with
real bitstreams against WebP.

``.venv/bin/python bench/demo_lambdas.py [--sweeps 0.0009,0.0035,0.18 ...] [--steps 1600 1200] [--batch-sizes 16 8]``

Every sweep runs the workflow (``snakemake --configfile params.yaml <overlay>``, the overlay changing
``codec.sweep.lmbdas``, ``codec.train.steps``, ``codec.train.batch_size`` and ``results_dir``) into one results
folder per step count and batch size, ``bench/results/demo-lambdas/steps<N>-batch<B>``, so the codecs sweeps share
are trained once: the sweeps must chain each shared λ from the same codec (checked before anything runs). Only the
validation evaluations are asked for: every λ of the sweep (``evaluate_codec``) and WebP (``evaluate_classical``),
each on the validation split (never the test split, which reports the chosen sweep once). Per sweep the table has
its points (bpp from bytes and PSNR), the PSNR its curve spans, its BD-rates against WebP with the overlap each
averages over (the report's ``bd_rate_table``), the training seconds of its codecs together (CPU time on CPU: compare
them only between rows trained side by side) and WebP's points on the same images, in
``bench/results-summary/demo-lambdas.csv`` (by step count, then batch size, then from the largest top λ down; the
rows of other sweeps, step counts and batch sizes stay); bench/summary.py puts it in bench/README.md."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

from taskcodec.evaluation import read_table
from taskcodec.params import chained_from, codec_dirname, number_id
from taskcodec.report.tables import bd_rate_table, rd_points
from taskcodec.sweeps import CODEC

ROOT = Path(__file__).resolve().parents[1]
OUT = Path("bench/results/demo-lambdas")
SUMMARY = ROOT / "bench/results-summary/demo-lambdas.csv"
ANCHOR = "webp"
#: the anchor's validation evaluation, relative to the results folder
ANCHOR_FOLDER = Path("eval", "classical", ANCHOR, "val")
#: the demo's λ below its top, and the tops tried above them (the demo's sweep before this study first)
SWEEPS = [[0.0009, 0.0035, top] for top in (0.18, 0.05, 0.09, 0.025, 0.013, 0.0067)]


def parse_sweep(text: str) -> list[float]:
    return sorted(float(value) for value in text.split(","))


def starts(sweeps: list[list[float]], init: str | None) -> dict[float, float | None]:
    """The codec each λ starts from (``codec.train.init``), the same in every sweep; else a SystemExit naming it."""
    chosen: dict[float, float | None] = {}
    for sweep in sweeps:
        for lmbda in sweep:
            start = chained_from(init, lmbda, sweep)
            if chosen.setdefault(lmbda, start) != start:
                raise SystemExit(f"bench/demo_lambdas.py: λ {lmbda} starts from the codec of λ {chosen[lmbda]} in "
                                 f"one sweep and of λ {start} in another; they would share one folder: run them "
                                 "apart")
    return chosen


def _codec(params: dict, lmbda: float) -> str:
    """The sweep's one model at ``lmbda``, as the workflow's folders name it (taskcodec.sweeps.CODEC)."""
    (model,) = params["codec"]["sweep"]["models"]
    return CODEC.format(arch=model["arch"], hyper=codec_dirname(model), lmbda=number_id(lmbda))


def codec_folders(params: dict, sweep: list[float]) -> list[Path]:
    """The validation evaluations of the sweep's codecs, relative to the results folder."""
    return [Path("eval", "learned", _codec(params, lmbda), "val") for lmbda in sweep]


def training_seconds(params: dict, sweep: list[float], out: Path) -> float:
    """The training seconds of the sweep's codecs together (each codec's ``metrics.json`` in ``out``)."""
    return sum(json.loads((out / "codecs" / _codec(params, lmbda) / "metrics.json").read_text())["train_seconds"]
               for lmbda in sweep)


def results_folder(steps: int, batch_size: int) -> Path:
    return ROOT / OUT / f"steps{steps}-batch{batch_size}"


def run(sweep: list[float], steps: int, batch_size: int, params: dict, out: Path, index: int) -> None:
    overlay = out / f"sweep{index}.yaml"
    out.mkdir(parents=True, exist_ok=True)
    overlay.write_text(yaml.safe_dump({"results_dir": str(out), "codec": {
        "sweep": {"lmbdas": sweep}, "train": {"steps": steps, "batch_size": batch_size}}}))
    targets = [str(out / folder) for folder in codec_folders(params, sweep)]
    subprocess.run([sys.executable, "-m", "snakemake", *targets, str(out / ANCHOR_FOLDER),
                    "--profile", "workflow/profiles/local", "--configfile", "params.yaml", str(overlay)],
                   check=True, cwd=ROOT)


def row(sweep: list[float], steps: int, batch_size: int, params: dict, out: Path) -> dict:
    """One sweep's points, PSNR span, BD-rates against the anchor on the validation split and training seconds."""
    folders = [out / folder for folder in [*codec_folders(params, sweep), ANCHOR_FOLDER]]
    points = rd_points(pd.concat([read_table(folder / "per_image.csv") for folder in folders], ignore_index=True))
    learned = points[points["kind"] != "classical"].sort_values("point")
    anchor = points[points["kind"] == "classical"].sort_values("point")
    (bd,) = bd_rate_table(points, params["evaluate"]["report"]["bd_rate_method"]).to_dict("records")
    return {"lmbdas": " ".join(map(str, sweep)), "steps": steps, "batch_size": batch_size,
            "train_seconds": round(training_seconds(params, sweep, out), 1), "images": int(learned["images"].iloc[0]),
            "image_size": learned["image_size"].iloc[0], "points": _points(learned),
            "psnr_span_db": round(float(learned["psnr"].max() - learned["psnr"].min()), 2), "anchor": ANCHOR,
            **{key: round(float(bd[key]), 2) for key in ("bd_rate_psnr", "overlap_psnr_db", "bd_rate_ms_ssim",
                                                        "overlap_ms_ssim_db")}, "note": bd["note"],
            "anchor_points": _points(anchor), "anchor_qualities": " ".join(f"{q:g}" for q in anchor["point"])}


def _points(points: pd.DataFrame) -> str:
    return " ".join(f"{bpp:.3f}/{psnr:.2f}" for bpp, psnr in zip(points["bpp"], points["psnr"]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweeps", nargs="+", type=parse_sweep, default=SWEEPS, help="λ sets, comma-separated")
    parser.add_argument("--steps", nargs="+", type=int, help="training steps per λ (default: params.yaml's)")
    parser.add_argument("--batch-sizes", nargs="+", type=int, help="patches per step (default: params.yaml's)")
    args = parser.parse_args(argv)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    starts(args.sweeps, params["codec"]["train"]["init"])
    train = params["codec"]["train"]
    runs = [(steps, batch) for steps in dict.fromkeys(args.steps or [train["steps"]])
            for batch in dict.fromkeys(args.batch_sizes or [train["batch_size"]])]
    sweeps = sorted(args.sweeps, key=max, reverse=True)
    for steps, batch in runs:
        for index, sweep in enumerate(sweeps):
            run(sweep, steps, batch, params, results_folder(steps, batch), index)
    table = merged(pd.DataFrame([row(sweep, steps, batch, params, results_folder(steps, batch))
                                 for steps, batch in runs for sweep in sweeps]))
    table.to_csv(SUMMARY, index=False)
    print(table.to_string(index=False))


def merged(table: pd.DataFrame) -> pd.DataFrame:
    """``table``'s rows with the committed summary's rows of other sweeps, step counts and batch sizes, one row per
    sweep, step count and batch size (the latest): by step count (most first), then by batch size (largest first),
    then by top λ (largest first), then by the λ below it."""
    if SUMMARY.is_file():
        table = pd.concat([pd.read_csv(SUMMARY, dtype={"lmbdas": str, "note": str}, keep_default_na=False), table],
                          ignore_index=True)
    table = table.drop_duplicates(["lmbdas", "steps", "batch_size"], keep="last")
    order = table["lmbdas"].map(lambda lmbdas: tuple(sorted(map(float, lmbdas.split()), reverse=True)))
    return (table.assign(order=order).sort_values(["steps", "batch_size", "order"], ascending=False, kind="stable")
            .drop(columns="order").reset_index(drop=True))


if __name__ == "__main__":
    main()
