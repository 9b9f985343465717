"""What Snakemake reruns after a change (dry runs on the completed tiny pipeline)."""


def test_nothing_to_do_after_a_complete_run(pipeline_run):
    project, _ = pipeline_run
    assert project.planned_jobs() == {}


def test_report_parameter_reruns_only_reports(pipeline_run):
    project, _ = pipeline_run
    project.params["evaluate"]["report"]["grid_image"] = 1
    project.write_params()
    try:
        # the rate-distortion reports and the rate-accuracy report share evaluate.report
        assert project.planned_jobs() == {"report": 2, "report_task": 1, "summarize": 1}
    finally:
        project.params["evaluate"]["report"]["grid_image"] = 0
        project.write_params()


def test_classical_quality_sweep_reruns_that_codec_and_reports(pipeline_run):
    project, _ = pipeline_run
    project.params["evaluate"]["classical"]["jpeg"]["qualities"] = [20, 60]
    project.write_params()
    try:
        assert project.planned_jobs() == {"evaluate_classical": 2, "report": 2, "report_task": 1, "summarize": 1}
    finally:
        project.params["evaluate"]["classical"]["jpeg"]["qualities"] = [10, 50, 90]
        project.write_params()


def test_new_lambda_trains_only_the_new_codec(pipeline_run):
    project, _ = pipeline_run
    project.params["codec"]["sweep"]["lmbdas"].append(0.01)
    project.write_params()
    try:
        # one new codec: train, cache 3 splits + extra, evaluate test + extra, its latent classifiers (it is not
        # among finetune.sweep.lmbdas); reports change inputs
        assert project.planned_jobs() == {"train_codec": 1, "cache_latents": 4, "evaluate_codec": 2,
                                          "train_latent_classifier": 1, "train_joint_classifier": 1, "report": 2,
                                          "report_task": 1, "summarize": 1}
    finally:
        project.params["codec"]["sweep"]["lmbdas"].pop()
        project.write_params()


def test_training_parameter_retrains_everything_downstream(pipeline_run):
    project, _ = pipeline_run
    project.params["codec"]["train"]["steps"] = 13
    project.write_params()
    try:
        assert project.planned_jobs() == {"train_codec": 2, "cache_latents": 8, "evaluate_codec": 4, "finetune_codec": 1,
                                          "cache_finetuned": 1, "evaluate_finetuned": 1, "train_latent_classifier": 2,
                                          "train_joint_classifier": 2, "report": 2, "report_task": 1, "summarize": 1}
    finally:
        project.params["codec"]["train"]["steps"] = 12
        project.write_params()


def test_mistyped_params_key_fails_before_any_job_with_one_sentence(pipeline_run):
    project, _ = pipeline_run
    project.params["codec"]["train"]["stpes"] = project.params["codec"]["train"].pop("steps")
    project.write_params()
    try:
        result = project.snakemake("--dry-run")
        assert result.returncode != 0
        assert "unknown key 'codec.train.stpes' (did you mean 'steps'?)" in result.stdout + result.stderr
    finally:
        project.params["codec"]["train"]["steps"] = project.params["codec"]["train"].pop("stpes")
        project.write_params()
    assert project.planned_jobs() == {}
