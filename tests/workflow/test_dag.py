"""What Snakemake reruns after a change (dry runs on the completed tiny pipeline)."""

import copy

import pytest


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


def test_new_lambda_trains_only_the_new_codec_at_its_full_precision(pipeline_run):
    project, _ = pipeline_run
    project.params["codec"]["sweep"]["lmbdas"].append(0.00123456789)
    project.write_params()
    try:
        output = project.dry_run("--printshellcmds")
        # the path and the stage's --lmbda keep every digit (format(x, "g") would give 0.00123457)
        assert "results/codecs/bmshj2018-hyperprior/N8-M12/lmbda0.00123456789/model.pt" in output
        assert "--lmbda 0.00123456789 " in output and "0.00123457" not in output
        # one new codec: train, cache 3 splits + extra, evaluate test + extra, its latent classifiers (it is not
        # among finetune.sweep.lmbdas); reports change inputs
        assert project.planned_jobs() == {"train_codec": 1, "cache_latents": 4, "evaluate_codec": 2,
                                          "train_latent_classifier": 1, "train_joint_classifier": 1, "report": 2,
                                          "report_task": 1, "summarize": 1}
    finally:
        project.params["codec"]["sweep"]["lmbdas"].pop()
        project.write_params()


def test_new_architecture_trains_under_its_own_hyperparameters(pipeline_run):
    project, _ = pipeline_run
    project.params["codec"]["sweep"]["models"].append({"arch": "cheng2020-anchor", "N": 8})
    project.write_params()
    try:
        output = project.dry_run("--printshellcmds")
        assert "results/codecs/cheng2020-anchor/N8/lmbda0.003/model.pt" in output
        assert """--arch cheng2020-anchor --hyper '{"N": 8}' --lmbda 0.03 """ in output
        # 2 lambdas: as the first architecture's codecs, plus fine-tuning its lambda-0.003 codec (tau 1.0)
        assert project.planned_jobs() == {"train_codec": 2, "cache_latents": 8, "evaluate_codec": 4,
                                          "finetune_codec": 1, "cache_finetuned": 1, "evaluate_finetuned": 1,
                                          "train_latent_classifier": 2, "train_joint_classifier": 2, "report": 2,
                                          "report_task": 1, "summarize": 1}
    finally:
        project.params["codec"]["sweep"]["models"].pop()
        project.write_params()


def test_run_settings_rerun_nothing_but_reach_the_commands(pipeline_run):
    project, _ = pipeline_run
    original = copy.deepcopy(project.params["resources"])
    project.params["resources"]["device"] = "cpu"
    for job in project.params["resources"].values():
        if isinstance(job, dict):
            job.update(threads=2, mem_mb=job["mem_mb"] + 1, runtime=job["runtime"] + 1)
    project.write_params()
    try:
        assert project.planned_jobs() == {}
        streaming = ("train_codec", "train_task", "finetune_codec", "train_simclr", "train_latent_classifier",
                     "train_joint_classifier")  # their memory decides what they stream
        stages = ("cache_latents", "evaluate_classical", *streaming)
        forced = project.dry_run("--printshellcmds", "--forcerun", *stages)
        for stage in stages:
            commands = [line for line in forced.splitlines() if f"taskcodec.stages.{stage} " in line]
            assert commands and all("--threads 2 --device cpu " in line for line in commands), (stage, forced[-3000:])
            if stage in streaming:
                assert all(f"--mem-mb {original[stage]['mem_mb'] + 1} " in line for line in commands), stage
    finally:
        project.params["resources"] = original
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


@pytest.mark.parametrize("init, first, then", [("neighbour", "0.03", "0.003"), ("smaller_neighbour", "0.003", "0.03")])
def test_a_chained_init_starts_each_lambda_from_its_neighbour(pipeline_run, init, first, then):
    project, _ = pipeline_run
    project.params["codec"]["train"]["init"] = init
    project.write_params()
    try:
        output = project.dry_run("--printshellcmds")
        commands = {lmbda: [line for line in output.splitlines()
                            if "taskcodec.stages.train_codec " in line and f"--lmbda {lmbda} " in line]
                    for lmbda in ("0.003", "0.03")}
        assert len(commands["0.03"]) == len(commands["0.003"]) == 1
        assert "--init-from" not in commands[first][0]  # the chain's first λ from scratch, the next from it
        assert f"--init-from results/codecs/bmshj2018-hyperprior/N8-M12/lmbda{first}/model.pt " in commands[then][0]
        # a new init retrains every codec and everything downstream, as any training parameter does
        assert project.planned_jobs() == {"train_codec": 2, "cache_latents": 8, "evaluate_codec": 4, "finetune_codec": 1,
                                          "cache_finetuned": 1, "evaluate_finetuned": 1, "train_latent_classifier": 2,
                                          "train_joint_classifier": 2, "report": 2, "report_task": 1, "summarize": 1}
    finally:
        project.params["codec"]["train"]["init"] = None
        project.write_params()


def test_the_self_supervised_network_retrains_the_variable_rate_codec_and_nothing_else(pipeline_run):
    project, _ = pipeline_run
    project.params["simclr"]["steps"] = 5
    project.write_params()
    try:  # one model for both lambdas: one training, then each point's cache and evaluation per dataset
        assert project.planned_jobs() == {"train_simclr": 1, "train_variable_rate": 1, "cache_variable_rate": 4,
                                          "evaluate_variable_rate": 4, "report": 2, "summarize": 1}
    finally:
        project.params["simclr"]["steps"] = 4
        project.write_params()


@pytest.mark.parametrize("model", [{"arch": "bmshj2018-hyperprior-vbr", "N": 8, "M": 8},
                                   {"arch": "pyramid", "N": 8, "M": 8, "attention": 0, "simclr": 0}],
                         ids=["compressai-vbr", "pyramid-baseline"])
def test_a_variable_rate_model_that_reads_no_self_supervised_network_does_not_train_one(pipeline_run, model):
    project, _ = pipeline_run
    sweep = project.params["variable_rate"]["sweep"]
    pyramid, weight = sweep["models"], sweep["perceptual_weight"]
    sweep.update(models=[model], perceptual_weight=0.0)
    project.params["simclr"]["steps"] = 5  # a changed network, which only a model that reads it would retrain
    project.write_params()
    try:
        assert project.planned_jobs() == {"train_variable_rate": 1, "cache_variable_rate": 4,
                                          "evaluate_variable_rate": 4, "report": 2, "summarize": 1}
        versioned = project.planned_jobs("versioned")  # what DVC versions: no network either
        assert versioned["train_variable_rate"] == 1 and "train_simclr" not in versioned
    finally:
        sweep.update(models=pyramid, perceptual_weight=weight)
        project.params["simclr"]["steps"] = 4
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
