"""Stage: rate–distortion tables, BD-rates, plots and a reconstruction grid for one dataset.

``python -m taskcodec.stages.report --params '<evaluate.report as JSON>' --dataset test
--eval results/eval/learned/<codec>/test ... results/eval/classical/jpeg/test ...
(--manifest manifest.csv --split test | --folder DIR) --out results/report/test``

Writes ``rd_points.csv|md`` (mean actual bpp, estimated bpp, PSNR, MS-SSIM, NIQE and the
image size per codec point; a NIQE not measured is empty in the CSV, n/a in Markdown),
``bd_rate.csv|md`` (every learned codec against every classical codec), ``rd_psnr.png``, ``rd_ms_ssim.png``, ``recon_grid.png`` and a
``README.md`` that links them and lists skipped codecs with the reason.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import pandas as pd

from taskcodec import artifacts
from taskcodec.data.stored import read_image
from taskcodec.errors import UserError
from taskcodec.evaluation import read_table
from taskcodec.report.grid import closest_points, reconstruction_grid
from taskcodec.report.plots import rd_plot
from taskcodec.report.tables import LEARNED_KINDS, bd_rate_table, load_reference_curves, rd_points
from taskcodec.tracking import stage_run
from taskcodec.stages.cli import dataset_arguments, dataset_images, params_argument, run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m taskcodec.stages.report", description=__doc__.splitlines()[0])
    params_argument(parser, "evaluate.report")
    parser.add_argument("--dataset", required=True, help="dataset name used in titles")
    parser.add_argument("--eval", type=Path, nargs="+", required=True, help="evaluation output folders")
    dataset_arguments(parser)
    parser.add_argument("--out", type=Path, required=True)
    return parser


def _markdown(table: pd.DataFrame) -> str:
    """``table`` in Markdown; a NIQE not measured shows as n/a."""
    if "niqe" in table:
        table = table.assign(niqe=table["niqe"].astype(object).where(table["niqe"].notna(), None))
    return table.to_markdown(index=False, floatfmt=".4g", missingval="n/a") + "\n"


def main(argv: Sequence[str] | None = None) -> Path:
    args = build_parser().parse_args(argv)
    params = args.params
    summaries = [artifacts.read_json(folder / "summary.json") for folder in args.eval]
    skipped = [s for s in summaries if s["status"] == "skipped"]
    per_image = pd.concat([read_table(folder / "per_image.csv") for folder in args.eval], ignore_index=True)
    per_image = per_image.dropna(subset=["bpp"])
    if per_image.empty:
        raise UserError(f"no measurements to report for dataset '{args.dataset}'")
    points = rd_points(per_image)
    bd = bd_rate_table(points, params["bd_rate_method"])
    plotted = points
    reference = params["references"].get(args.dataset)
    if reference is not None:
        if not Path(reference).is_dir():
            raise UserError(f"evaluate.report.references.{args.dataset}: folder {reference} does not exist")
        plotted = pd.concat([points, load_reference_curves(Path(reference))], ignore_index=True)

    records = dataset_images(args)
    image_id, image_path, _ = records[min(params["grid_image"], len(records) - 1)]
    learned_bpp = points.loc[points["kind"].isin(LEARNED_KINDS), "bpp"]
    target = params["grid_target_bpp"] if params["grid_target_bpp"] is not None else float(learned_bpp.median())
    chosen = closest_points(per_image, image_id, target)
    image_rows = per_image[per_image["image_id"] == image_id]
    size = f"{image_rows['width'].iloc[0]}×{image_rows['height'].iloc[0]}"
    recon_folders = {(s["codec"], s.get("point")): folder / "recon" for folder, s in zip(args.eval, summaries)}

    with stage_run("report", {"dataset": args.dataset}, params) as tracked, artifacts.atomic_dir(args.out) as tmp:
        bd["run_id"] = tracked.run_id
        points.to_csv(tmp / "rd_points.csv", index=False)
        (tmp / "rd_points.md").write_text(_markdown(points))
        bd.to_csv(tmp / "bd_rate.csv", index=False)
        (tmp / "bd_rate.md").write_text(_markdown(bd))
        sizes = ", ".join(sorted(points["image_size"].unique()))
        for metric in ("psnr", "ms_ssim"):
            rd_plot(plotted, metric, f"{args.dataset} ({len(records)} images, {sizes})", tmp / f"rd_{metric}.png")
        panels = []
        for _, row in chosen.iterrows():
            if row["kind"] in LEARNED_KINDS:
                recon = recon_folders[(row["codec"], row["point"])] / f"{image_id}.png"
            else:
                recon = recon_folders[(row["codec"], None)] / f"{image_id}_q{int(row['point'])}.png"
            if not recon.is_file():
                raise UserError(f"reconstruction {recon} is missing; evaluate.report.grid_image must be below "
                                "evaluate.save_reconstructions")
            caption = f"{row['codec']} @ {row['point']:g}\n{row['bpp']:.3f} bpp, {row['psnr']:.2f} dB"
            panels.append((caption, recon))
        reconstruction_grid(read_image(image_path), panels,
                            f"{args.dataset}/{image_id} ({size}) near {target:.3f} bpp", tmp / "recon_grid.png")
        lines = [f"# Rate–distortion report: {args.dataset}", "",
                 f"{len(records)} images ({sizes}); bpp is measured from the bytes of each file or bitstream,"
                 " headers included. NIQE is no-reference (lower is better); n/a: images under 96 pixels a side,"
                 " or not measured.", "", "## Points", "", _markdown(points),
                 f"## BD-rate (%, {params['bd_rate_method']}; negative = fewer bits than the anchor)", "", _markdown(bd),
                 "![PSNR](rd_psnr.png) ![MS-SSIM](rd_ms_ssim.png)", "", "![grid](recon_grid.png)", ""]
        if skipped:
            lines += ["## Skipped codecs", ""] + [f"- {s['codec']}: {s['reason']}" for s in skipped] + [""]
        (tmp / "README.md").write_text("\n".join(lines))
        tracked.log_metrics({"points": len(points), "images": len(records)})
        for row in bd.itertuples():
            tracked.log_metrics({f"{column}/{row.codec}/vs/{row.anchor}": getattr(row, column)
                                 for column in ("bd_rate_psnr", "bd_rate_ms_ssim", "bd_psnr_db")
                                 if getattr(row, column) == getattr(row, column)})  # skip NaN
        for path in sorted(tmp.iterdir()):
            tracked.log_artifact(path)
    return args.out


if __name__ == "__main__":
    run(main)
