"""The whole pipeline through Snakemake on a tiny config, and the files a user opens afterwards."""

import json

from taskcodec.evaluation import read_table

SCALABLE = "scalable-hyperprior/N8-M_base4-M_enh8 lmbda0.01"  # the tiny config's scalable codec (seed 002)
PYRAMID = "pyramid/N8-M4-attention1-simclr1"  # its variable-rate codec (seed 001): one model, two points


def test_pipeline_produces_reports(pipeline_run):
    project, result = pipeline_run
    results = project.path / "results"
    assert "results are in" in result.stdout + result.stderr
    for dataset, size in (("test", "64×64"), ("extra", "70×90, 90×70")):
        report = results / "report" / dataset
        points = read_table(report / "rd_points.csv")
        assert set(points["codec"]) == {"bmshj2018-hyperprior/N8-M12", SCALABLE, PYRAMID, "jpeg", "webp"}
        assert len(points) == 2 + 1 + 2 + 3 + 3
        assert set(points.loc[points["codec"] == SCALABLE, "kind"]) == {"scalable"}
        pyramid = points[points["codec"] == PYRAMID].sort_values("point")
        assert set(pyramid["kind"]) == {"variable-rate"} and list(pyramid["point"]) == [0.003, 0.03]
        assert pyramid["bpp"].is_monotonic_increasing  # the second point adds the finer level's bytes
        assert (points["image_size"] == size).all()
        learned = points[points["kind"] == "pretrained"]
        assert learned["bpp"].notna().all() and learned["bpp_estimated"].notna().all()
        bd = read_table(report / "bd_rate.csv")
        assert len(bd) == 3 * 2  # 3 learned codecs x 2 classical anchors
        for name in ("README.md", "rd_psnr.png", "rd_ms_ssim.png", "recon_grid.png", "bd_rate.md"):
            assert (report / name).stat().st_size > 0
    for split in ("train", "val", "test"):
        cache = results / "cache" / "bmshj2018-hyperprior" / "N8-M12" / "lmbda0.003" / split
        assert json.loads((cache / "cache.json").read_text())["latents"] is True
    extra_cache = results / "cache" / "bmshj2018-hyperprior" / "N8-M12" / "lmbda0.003" / "extra"
    assert json.loads((extra_cache / "cache.json").read_text())["latents"] is False
    assert (results / "logs" / "prepare.log").exists()
    assert (results / "saliency" / "grid.png").stat().st_size > 0
    assert {path.name for path in (results / "task" / "classification" / "features").iterdir()} >= {"train.pt", "val.pt", "test.pt"}
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
    # prepare, saliency, task model + features; train 2, cache 2 codecs x 4 datasets + the fine-tuned codec's test
    # split, evaluate 2 x 2 learned + 1 fine-tuned + 2 x 2 classical; 2 latent and 2 joint classifiers; the scalable
    # codec trained, cached and evaluated on 2 datasets; SimCLR and the variable-rate codec, cached and evaluated at
    # its 2 points on 2 datasets; reports
    assert rules == sorted(["prepare", "saliency", "train_task", "extract_features", "finetune_codec", "report_task",
                            "summarize", "cache_finetuned", "evaluate_finetuned", "train_scalable"]
                           + ["cache_scalable"] * 2 + ["evaluate_scalable"] * 2 + ["train_codec"] * 2
                           + ["cache_latents"] * 8 + ["evaluate_codec"] * 4
                           + ["evaluate_classical"] * 4 + ["report"] * 2 + ["train_latent_classifier"] * 2
                           + ["train_joint_classifier"] * 2 + ["train_simclr", "train_variable_rate"]
                           + ["cache_variable_rate"] * 4 + ["evaluate_variable_rate"] * 4)
    assert all(run.data.metrics for run in children)
    assert all(run.info.status == "FINISHED" for run in children)
    # every results table row names the run it came from
    points = read_table(project.path / "results" / "report" / "test" / "rd_points.csv")
    child_ids = {run.info.run_id for run in children}
    assert set(points["run_id"]) <= child_ids


def test_machine_branch_produces_rate_accuracy_tables(pipeline_run):
    project, _ = pipeline_run
    report = project.path / "results" / "report" / "machine" / "classification"
    points = read_table(report / "rate_accuracy.csv")
    assert set(points["kind"]) == {"classical", "pretrained", "finetuned", "latent", "joint", "scalable"}
    assert points["bpp"].gt(0).all() and points["top1"].between(0, 1).all()
    decoded = points[points["kind"].isin(["classical", "pretrained", "finetuned"])]
    assert decoded["psnr_salient"].notna().all() and decoded["psnr_background"].notna().all()
    assert decoded["feature_mse"].gt(0).all()  # reconstructions' task features against the cached originals'
    assert len(read_table(report / "bd_rate_accuracy.csv")) == 5 * 2  # 5 learned curves x 2 classical anchors
    tradeoff = read_table(report / "tradeoff.csv")
    assert {"bpp", "psnr", "mse", "feature_mse", "top1"} <= set(tradeoff.columns)
    assert "finetuned" in set(tradeoff["kind"])
    for name in ("rate_accuracy_top1.png", "qualitative.png", "README.md"):
        assert (report / name).stat().st_size > 0
    summary = json.loads((project.path / "results" / "summary" / "metrics.json").read_text())
    assert 0 <= summary["machine"]["classification"]["uncompressed_top1"] <= 1
    # the scalable codec's curve is its lambda, its points are its lambda_task values
    assert f"{SCALABLE}@task1" in summary["test"]["learned"]
    assert set(points.loc[points["kind"] == "scalable", "point"]) == {1.0}
    savings = read_table(report / "savings.csv")  # against the other learned curves at the 2-point target
    assert set(savings["codec"]) == {SCALABLE} and set(savings["against_kind"]) == {"pretrained", "finetuned"}
    redundancy = read_table(report / "redundancy.csv")  # the scalable codec's validations: steps 4 and 8
    assert list(redundancy["step"]) == [4, 8] and (report / "redundancy.png").stat().st_size > 0
    per_image = read_table(project.path / "results" / "eval" / "classical" / "jpeg" / "test" / "task" / "classification"
                            / "per_image.csv")
    assert per_image["label"].notna().all() and per_image["top1"].isin([0.0, 1.0]).all()
    extra = read_table(project.path / "results" / "eval" / "classical" / "jpeg" / "extra" / "per_image.csv")
    # an unlabeled folder: no task measures
    assert not {"top1", "feature_mse"} & set(extra.columns)
    assert not (project.path / "results" / "eval" / "classical" / "jpeg" / "extra" / "task").exists()
    assert len(extra) == 2 * 3 and extra["psnr"].notna().all()
