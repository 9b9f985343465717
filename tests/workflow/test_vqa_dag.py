"""The workflow's plan for the VQA task (a dry run of a fresh tiny project; nothing runs)."""

from conftest import Project, job_stats

VQA = {"arch": "san-resnet-small", "widths": [8, 16], "blocks": [1, 1], "stem_stride": 2, "weights": None,
       "embedding": 16, "hidden": 16, "attention_hidden": 16, "classifier_hidden": 16}


def test_vqa_plans_the_machine_branch_without_the_scalable_codec_and_the_compressed_domain_classifiers(tmp_path):
    project = Project(tmp_path)
    project.params["prepare"]["builtin"].update(objects=[1, 3], questions=4)
    project.params["task"].update(name="vqa", model=VQA)
    project.params["task"]["train"]["crop_padding"] = 2  # under 5 % of the 64-px side: questions about sides hold
    project.params["task"]["features"]["layer"] = "trunk.stage2"
    project.params["scalable"]["enabled"] = True
    project.write_params()
    refused = project.snakemake("--dry-run")
    assert refused.returncode != 0
    assert "scalable.enabled is true but the vqa task's model does not split" in refused.stdout + refused.stderr
    project.params["scalable"]["enabled"] = False
    project.write_params()
    jobs = job_stats(project.dry_run())
    assert {"train_task", "extract_features", "finetune_codec", "evaluate_codec", "evaluate_classical",
            "report_task"} <= set(jobs)
    assert not {"train_latent_classifier", "train_joint_classifier", "train_scalable"} & set(jobs)
