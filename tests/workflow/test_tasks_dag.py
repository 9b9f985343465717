"""The workflow's plan for several tasks in one run (a dry run of a fresh tiny project; nothing runs)."""

import copy
import re

from conftest import Project, job_stats
from test_detection_dag import FCOS
from test_vqa_dag import VQA


def test_every_task_gets_its_model_and_report_and_each_system_the_task_it_names(tmp_path):
    project = Project(tmp_path)
    project.params["prepare"]["builtin"].update(objects=[1, 3], questions=4, labeled=True)
    classification = project.params["tasks"]["classification"]
    vqa = copy.deepcopy(classification) | {"model": VQA}
    vqa["train"]["crop_padding"] = 2  # questions about sides hold on the 64-px images
    vqa["features"] = {"layer": "trunk.stage2", "batch_size": 16}
    project.params["tasks"].update(detection=copy.deepcopy(classification) | {"model": FCOS}, vqa=vqa)
    project.params["finetune"]["tasks"], project.params["scalable"]["task"] = ["vqa", "detection"], "detection"
    project.params["finetune"]["train"]["crop_padding"] = 2
    project.write_params()
    output = project.dry_run("--printshellcmds")
    jobs = job_stats(output)
    assert jobs["train_task"] == jobs["extract_features"] == jobs["report_task"] == 3
    assert jobs["train_latent_classifier"] == 2  # classification is among the tasks: the compressed-domain classifiers
    commands = [line.split("Shell command: ", 1)[1] for line in output.splitlines() if "Shell command: " in line]

    def command(stage):
        return [line for line in commands if f"taskcodec.stages.{stage} " in line]

    models = {task: f"results/task/{task}/model.pt" for task in ("classification", "detection", "vqa")}
    on_test = [line for line in command("evaluate_codec") + command("evaluate_classical")
               if re.search(r"--out \S+/test ", line)]
    assert len(on_test) == 2 + 2 + 2 + 1 + 2  # pretrained, classical, fine-tuned (2 tasks), scalable, variable-rate
    for line in on_test:  # every decoded test image meets every task model
        assert "--task-model " + " ".join(models.values()) in line, line
    finetuned = {re.search(r"--out results/finetuned/(\w+)/", line).group(1): line
                 for line in command("finetune_codec")}
    assert set(finetuned) == {"vqa", "detection"}  # one sweep through each model of finetune.tasks
    for task, line in finetuned.items():
        assert f"--task-model {models[task]}" in line
    (scalable,) = [line for line in command("train_codec") if "--rule train_scalable" in line]
    assert f"--task-model {models['detection']}" in scalable
    reports = {re.search(r"--out \S+/report/machine/(\S+)", line).group(1): line for line in command("report_task")}
    assert set(reports) == set(models)
    for task in ("vqa", "detection"):  # each report its own task's fine-tuned codecs
        assert re.findall(r"results/eval/finetuned/(\w+)/", reports[task]) == [task], reports[task]
    assert "results/eval/finetuned" not in reports["classification"]
    assert "results/eval/scalable" in reports["detection"] and "results/eval/scalable" not in reports["vqa"]
    assert "results/latent" in reports["classification"] and "results/latent" not in reports["detection"]
