"""The demo's λ-range, step-count and batch-size study (bench/demo_lambdas.py): sweeps that could not share their
codecs are refused before anything trains, a sweep's row is the report's BD-rate against WebP on the tables the
evaluations wrote and its codecs' training seconds, and a run replaces only its own rows of the committed table."""

import json
import math

import pandas as pd
import pytest
import yaml

from bench_scripts import load_bench
from taskcodec.report.tables import bd_rate_table, rd_points

lambdas = load_bench("demo_lambdas.py")
PARAMS = {"codec": {"sweep": {"models": [{"arch": "bmshj2018-hyperprior", "N": 8, "M": 16}]}},
          "evaluate": {"report": {"bd_rate_method": "pchip"}}}


def test_sweeps_share_a_codec_only_when_it_starts_from_the_same_one():
    shared_bottom = [[0.001, 0.01, 0.1], [0.001, 0.01, 0.05]]
    assert lambdas.starts(shared_bottom, "smaller_neighbour") == {0.001: None, 0.01: 0.001, 0.1: 0.01, 0.05: 0.01}
    with pytest.raises(SystemExit, match="λ 0.1 starts from the codec of λ 0.01 in one sweep and of λ 0.05"):
        lambdas.starts([[0.001, 0.01, 0.1], [0.001, 0.05, 0.1]], "smaller_neighbour")
    assert lambdas.starts([[0.001, 0.01, 0.1], [0.001, 0.05, 0.1]], None) == {0.001: None, 0.01: None, 0.1: None,
                                                                              0.05: None}
    assert lambdas.parse_sweep("0.18,0.0009,0.0035") == [0.0009, 0.0035, 0.18]


def _per_image(folder, kind, codec, points):
    """A per_image.csv of two 64×64 images per point: (point, bpp, PSNR, MS-SSIM), the second image 0.02 bpp
    and 0.5 dB above the first."""
    rows = [{"kind": kind, "codec": codec, "point": point, "image_id": f"{i:06d}", "height": 64, "width": 64,
             "bytes": round((bpp + 0.02 * i) * 512), "bpp": bpp + 0.02 * i, "bpp_estimated": math.nan,
             "psnr": psnr + 0.5 * i, "ms_ssim": ms_ssim, "run_id": "r"}
            for point, bpp, psnr, ms_ssim in points for i in range(2)]
    folder.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(folder / "per_image.csv", index=False)
    return pd.DataFrame(rows)


def test_a_sweeps_row_is_the_reports_bd_rate_against_webp_on_the_validation_split(tmp_path):
    sweep = [0.001, 0.01, 0.1]
    learned = [_per_image(tmp_path / folder, "pretrained", "bmshj2018-hyperprior/N8-M16", [point])
               for folder, point in zip(lambdas.codec_folders(PARAMS, sweep),
                                        [(0.001, 0.2, 21.0, 0.80), (0.01, 0.5, 24.0, 0.90), (0.1, 1.2, 27.5, 0.96)])]
    assert lambdas.codec_folders(PARAMS, sweep)[0].as_posix() == \
        "eval/learned/bmshj2018-hyperprior/N8-M16/lmbda0.001/val"
    webp = _per_image(tmp_path / "eval/classical/webp/val", "classical", "webp",
                      [(0, 0.3, 21.5, 0.78), (25, 0.6, 23.5, 0.88), (50, 0.9, 25.5, 0.93), (90, 1.6, 28.0, 0.97)])
    for lmbda, seconds in zip(["0.001", "0.01", "0.1"], (10.0, 20.5, 30.25)):  # where train_codec writes them
        folder = tmp_path / "codecs/bmshj2018-hyperprior/N8-M16" / f"lmbda{lmbda}"
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text(json.dumps({"train_seconds": seconds, "steps": 800}))
    row = lambdas.row(sweep, 800, 8, PARAMS, tmp_path)
    (expected,) = bd_rate_table(rd_points(pd.concat([*learned, webp])), "pchip").to_dict("records")
    assert row["bd_rate_psnr"] == round(expected["bd_rate_psnr"], 2) < 0  # above WebP's curve: fewer bits
    assert row["overlap_psnr_db"] == round(expected["overlap_psnr_db"], 2) == 27.75 - 21.75
    assert row["psnr_span_db"] == 6.5 and row["points"] == "0.210/21.25 0.510/24.25 1.210/27.75"
    assert (row["lmbdas"], row["steps"], row["batch_size"], row["images"], row["image_size"], row["anchor"]) == \
        ("0.001 0.01 0.1", 800, 8, 2, "64×64", "webp")
    assert row["train_seconds"] == 60.8  # the sweep's three codecs
    assert row["anchor_points"] == "0.310/21.75 0.610/23.75 0.910/25.75 1.610/28.25"
    assert row["anchor_qualities"] == "0 25 50 90"


def test_a_sweep_runs_the_workflow_for_its_validation_evaluations_only(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(lambdas.subprocess, "run", lambda command, **kwargs: calls.append((command, kwargs)))
    lambdas.run([0.001, 0.01], 1200, 8, PARAMS, tmp_path, 3)
    ((command, kwargs),) = calls
    overlay = tmp_path / "sweep3.yaml"
    assert command[1:3] == ["-m", "snakemake"] and kwargs == {"check": True, "cwd": lambdas.ROOT}
    assert command[3:6] == [str(tmp_path / "eval/learned/bmshj2018-hyperprior/N8-M16/lmbda0.001/val"),
                            str(tmp_path / "eval/learned/bmshj2018-hyperprior/N8-M16/lmbda0.01/val"),
                            str(tmp_path / "eval/classical/webp/val")]
    assert command[6:] == ["--profile", "workflow/profiles/local", "--configfile", "params.yaml", str(overlay)]
    assert yaml.safe_load(overlay.read_text()) == {"results_dir": str(tmp_path),
                                                   "codec": {"sweep": {"lmbdas": [0.001, 0.01]},
                                                             "train": {"steps": 1200, "batch_size": 8}}}
    assert lambdas.results_folder(1200, 8) == lambdas.ROOT / "bench/results/demo-lambdas/steps1200-batch8"


def test_a_run_replaces_its_own_rows_of_the_committed_table_and_keeps_the_others(tmp_path, monkeypatch):
    summary = tmp_path / "demo-lambdas.csv"
    monkeypatch.setattr(lambdas, "SUMMARY", summary)
    committed = pd.DataFrame({"lmbdas": ["0.001 0.01 0.1", "0.001 0.01 0.05", "0.001 0.01 0.05", "0.001 0.01 0.05"],
                              "steps": [1600, 1600, 800, 800], "batch_size": [16, 16, 16, 8],
                              "bd_rate_psnr": [3.0, -1.0, 9.0, 12.0], "note": ["", "", "", ""]})
    committed.to_csv(summary, index=False)
    new = pd.DataFrame({"lmbdas": ["0.001 0.01 0.05", "0.001 0.01 0.2", "0.001 0.009 0.2", "0.001 0.01 0.2"],
                        "steps": [800, 800, 800, 800], "batch_size": [16, 16, 16, 16],
                        "bd_rate_psnr": [8.5, 6.0, 5.0, 7.0], "note": ["", "", "", "under 1 dB"]})
    table = lambdas.merged(new)
    assert table[["lmbdas", "steps", "batch_size", "bd_rate_psnr"]].values.tolist() == [
        ["0.001 0.01 0.1", 1600, 16, 3.0], ["0.001 0.01 0.05", 1600, 16, -1.0],  # most steps first, then the largest
        ["0.001 0.01 0.2", 800, 16, 7.0], ["0.001 0.009 0.2", 800, 16, 5.0],  # top λ, then the λ below it; one row
        ["0.001 0.01 0.05", 800, 16, 8.5],  # each, the latest: the rerun row replaced, not doubled
        ["0.001 0.01 0.05", 800, 8, 12.0]]  # the same sweep and steps with another batch size kept, after it
    assert table["note"].tolist() == ["", "", "under 1 dB", "", "", ""]
    summary.unlink()
    assert lambdas.merged(new)["lmbdas"].tolist() == ["0.001 0.01 0.2", "0.001 0.009 0.2", "0.001 0.01 0.05"]
