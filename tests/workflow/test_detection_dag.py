"""The workflow's plan for the detection task (a dry run of a fresh tiny project; nothing runs)."""

from conftest import Project, job_stats

FCOS = {"arch": "fcos-small", "widths": [8, 16], "blocks": [1, 1], "stem_stride": 2, "head_width": 16,
        "split_stage": 1, "weights": None}


def test_detection_plans_the_machine_branch_without_the_compressed_domain_classifiers(tmp_path):
    project = Project(tmp_path)
    project.params["prepare"]["builtin"]["objects"] = [1, 3]
    project.params["tasks"] = {"detection": {**project.params["tasks"]["classification"], "model": FCOS}}
    project.params["finetune"]["tasks"], project.params["scalable"]["task"] = ["detection"], "detection"
    project.write_params()
    output = project.dry_run("--printshellcmds")
    jobs = job_stats(output)
    assert {"train_task", "evaluate_codec", "evaluate_classical", "report_task", "summarize"} <= set(jobs)
    assert "train_latent_classifier" not in jobs and "train_joint_classifier" not in jobs  # they classify
    assert jobs["finetune_codec"] == 1  # through the frozen detector, its boxes moved with the translated images
    assert "train_scalable" in jobs  # the scalable codec's base layer carries the detector's features
    report_task = next(line for line in output.splitlines() if "taskcodec.stages.report_task " in line)
    assert "results/latent" not in report_task and "results/joint" not in report_task
