"""The whole pipeline through Snakemake on a tiny config, and the files a user opens afterwards."""

import json

import pandas as pd


def test_pipeline_produces_reports(pipeline_run):
    project, result = pipeline_run
    results = project.path / "results"
    assert "results are in" in result.stdout + result.stderr
    for dataset, size in (("test", "64×64"), ("extra", "70×90, 90×70")):
        report = results / "report" / dataset
        points = pd.read_csv(report / "rd_points.csv")
        assert set(points["codec"]) == {"bmshj2018-hyperprior/N8-M12", "jpeg", "webp"}
        assert len(points) == 2 + 3 + 3
        assert (points["image_size"] == size).all()
        learned = points[points["family"] == "learned"]
        assert learned["bpp"].notna().all() and learned["bpp_estimated"].notna().all()
        bd = pd.read_csv(report / "bd_rate.csv")
        assert len(bd) == 2
        for name in ("README.md", "rd_psnr.png", "rd_ms_ssim.png", "recon_grid.png", "bd_rate.md"):
            assert (report / name).stat().st_size > 0
    for split in ("train", "val", "test"):
        cache = results / "cache" / "bmshj2018-hyperprior" / "N8-M12" / "lmbda0.003" / split
        assert json.loads((cache / "cache.json").read_text())["latents"] is True
    extra_cache = results / "cache" / "bmshj2018-hyperprior" / "N8-M12" / "lmbda0.003" / "extra"
    assert json.loads((extra_cache / "cache.json").read_text())["latents"] is False
    assert (results / "logs" / "prepare.log").exists()
    assert (results / "benchmarks" / "prepare.tsv").exists()
