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


def test_mlflow_has_one_parent_with_a_child_per_job(pipeline_run, mlflow_store):
    import mlflow

    project, result = pipeline_run
    mlflow.set_tracking_uri(mlflow_store)
    runs = mlflow.search_runs(experiment_names=["taskcodec-tests"], output_format="list")
    parents = [run for run in runs if run.data.tags.get("taskcodec.kind") == "pipeline"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    rules = sorted(run.data.tags["rule"] for run in children)
    # prepare 1, train 2, cache 2 codecs x 4 datasets, evaluate 2 x 2 learned + 2 x 2 classical, report 2
    assert rules == sorted(["prepare"] + ["train_codec"] * 2 + ["cache_latents"] * 8 + ["evaluate_codec"] * 4
                           + ["evaluate_classical"] * 4 + ["report"] * 2)
    assert all(run.data.metrics for run in children)
    assert all(run.info.status == "FINISHED" for run in children)
    # every results table row names the run it came from
    points = pd.read_csv(project.path / "results" / "report" / "test" / "rd_points.csv")
    child_ids = {run.info.run_id for run in children}
    assert set(points["run_id"]) <= child_ids
