"""The workflow's plan for the VQA task (a dry run of a fresh tiny project; nothing runs)."""

import copy

import yaml
from conftest import Project, job_stats

VQA = {"arch": "san-resnet-small", "widths": [8, 16], "blocks": [1, 1], "stem_stride": 2, "weights": None,
       "embedding": 16, "hidden": 16, "attention_hidden": 16, "classifier_hidden": 16}


def test_vqa_plans_the_machine_branch_without_the_scalable_codec_and_the_compressed_domain_classifiers(tmp_path):
    """A study file (--configfile, as bench/vqa/run.sh) replaces params.yaml, whose classifier has keys the VQA
    model refuses (tasks.classification.model.split_stage)."""
    project = Project(tmp_path)  # params.yaml: the classification demo, with every key of its model
    project.params["tasks"]["classification"]["model"]["split_stage"] = 1
    project.write_params()
    study = copy.deepcopy(project.params)
    study["prepare"]["builtin"].update(objects=[1, 3], questions=4)
    vqa = copy.deepcopy(study["tasks"].pop("classification"))
    vqa["model"] = VQA
    vqa["train"]["crop_padding"] = 2  # under 5 % of the 64-px side: questions about sides hold
    vqa["features"]["layer"] = "trunk.stage2"
    study["tasks"]["vqa"] = vqa
    study["finetune"]["tasks"], study["scalable"]["task"] = ["vqa"], "vqa"
    study["scalable"]["enabled"] = True
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study, sort_keys=False))
    refused = project.snakemake("--dry-run", "--configfile", "study.yaml")
    assert refused.returncode != 0
    assert "scalable.enabled is true but the vqa task's model does not split" in refused.stdout + refused.stderr
    study["scalable"]["enabled"] = False
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study, sort_keys=False))
    jobs = job_stats(project.dry_run("--configfile", "study.yaml"))
    assert {"train_task", "extract_features", "finetune_codec", "evaluate_codec", "evaluate_classical",
            "report_task"} <= set(jobs)
    assert not {"train_latent_classifier", "train_joint_classifier", "train_scalable"} & set(jobs)
