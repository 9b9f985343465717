"""The pyramid codec's entropy model and training (seed 001), chosen on the photos' validation split, never on Kodak.

``.venv/bin/python bench/variable_rate/levers.py [--seed S] [--results DIR] [snakemake arguments]``

Runs ``bench/variable_rate/params.yaml`` with the seed's design alone (attention after the features, SimCLR
features) in each variant of :data:`VARIANTS`: the paper's factorized prior per level at strides 128…16,
``conditional: 1`` (levels 2… coded from the coarser level's latent), ``finest_stride: 8`` (the levels one
octave finer, strides 64…8, so that no point is a thumbnail), and ``joint: 1`` (every point trained at each step,
the paper's equation 2 summed rather than one point drawn). Each trains with the benchmark's budget
(600 CPU-s; two side by side) and codes every operating point to real bitstreams on the validation split,
photos the training never sees. Writes one row per variant and point to
``bench/results-summary/variable-rate-levers.csv`` (training steps and CPU seconds; bpp from the bytes, PSNR and
MS-SSIM as the report averages them; each variant's BD-rate on PSNR against the first, with the PSNR overlap it
averages over); ``--seed`` sets ``variable_rate.train.seed`` and replaces that seed's rows. Then the README
numbers (bench/summary.py).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import yaml

from taskcodec.evaluation import read_table
from taskcodec.metrics import bd_or_reason, bd_rate
from taskcodec.params import codec_id
from taskcodec.report.tables import overlap, rd_points

ROOT = Path(__file__).resolve().parents[2]
PARAMS = ROOT / "bench" / "variable_rate" / "params.yaml"
OUT = ROOT / "bench" / "results-summary" / "variable-rate-levers.csv"
#: the sweep entries compared; the first is the anchor of the BD-rates
VARIANTS = [{"arch": "pyramid", "N": 48, "M": 64, "attention": 1, "simclr": 1},
            {"arch": "pyramid", "N": 48, "M": 64, "attention": 1, "simclr": 1, "conditional": 1},
            {"arch": "pyramid", "N": 48, "M": 64, "attention": 1, "simclr": 1, "finest_stride": 8},
            {"arch": "pyramid", "N": 48, "M": 64, "attention": 1, "simclr": 1, "joint": 1}]


def run(results: str, seed: int, extra: list[str]) -> list[str]:
    """Train every variant and evaluate each of its points on the validation split; their codec ids."""
    params = yaml.safe_load(PARAMS.read_text())
    params["results_dir"] = results
    params["variable_rate"]["train"]["seed"] = seed
    params["tracking"]["experiment"] += "-levers"
    params["variable_rate"]["sweep"]["models"] = VARIANTS
    codecs = [codec_id(v) for v in VARIANTS]
    targets = [f"{results}/eval/variable_rate/{codec}/point{k}/val"
               for codec in codecs for k in range(len(params["variable_rate"]["sweep"]["lmbdas"]))]
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as config:
        yaml.safe_dump(params, config, sort_keys=False)
        config.flush()
        subprocess.run([sys.executable, "-m", "snakemake", *targets, "--profile", "workflow/profiles/local",
                        "--configfile", config.name, *extra], cwd=ROOT, check=True)
    return codecs


def collect(results: Path, codecs: list[str], seed: int) -> pd.DataFrame:
    """One row per variant and operating point, with the variant's BD-rate against the first variant."""
    frames = []
    for codec in codecs:
        metrics = json.loads((results / "variable_rate" / codec / "metrics.json").read_text())
        per_image = pd.concat([read_table(folder / "per_image.csv")
                               for folder in sorted((results / "eval" / "variable_rate" / codec).glob("point*/val"))])
        points = rd_points(per_image).sort_values("point")
        frames.append(points.assign(seed=seed, variant=codec, steps=metrics["steps"],
                                    train_cpu_s=round(metrics["train_seconds"])))
    anchor = frames[0]
    rows = pd.concat([frame.assign(bd_rate_psnr=bd_or_reason(bd_rate, anchor["bpp"], anchor["psnr"], frame["bpp"],
                                                             frame["psnr"])[0],
                                   overlap_psnr_db=overlap(anchor["psnr"].to_numpy(), frame["psnr"].to_numpy()))
                      for frame in frames], ignore_index=True)
    columns = ["seed", "variant", "steps", "train_cpu_s", "point", "images", "image_size", "bpp", "psnr", "ms_ssim",
               "bd_rate_psnr", "overlap_psnr_db"]
    return rows[columns].round({"bpp": 4, "psnr": 2, "ms_ssim": 4, "bd_rate_psnr": 1, "overlap_psnr_db": 2})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="variable_rate.train.seed of the runs")
    parser.add_argument("--results", help="results_dir of the runs, relative to the project (default: "
                        "bench/results/variable_rate_levers/seed<S>)")
    args, extra = parser.parse_known_args(argv)
    results = args.results or f"bench/results/variable_rate_levers/seed{args.seed}"
    table = collect(ROOT / results, run(results, args.seed, extra), args.seed)
    if OUT.is_file():  # the other seeds' rows stay
        kept = pd.read_csv(OUT)
        table = pd.concat([kept[kept["seed"] != args.seed], table], ignore_index=True)
        table = table.sort_values("seed", kind="stable")
    table.to_csv(OUT, index=False)
    print(table.to_string(index=False))
    return subprocess.run([sys.executable, str(ROOT / "bench" / "summary.py")], check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
