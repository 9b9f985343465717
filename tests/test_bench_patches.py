"""The patches-per-step study of the demo's later codecs (bench/demo_patches.py): a variant changes only the steps and
patches of the scalable, pyramid and fine-tuned codecs and asks for their validation evaluations, where the workflow
writes them; a point's row is what its evaluation and its model's training measured; a run replaces only its own
variant's rows; the summary counts a model's training once however many points it has."""

import json
import re
import subprocess

import pandas as pd
import torch
import yaml

from bench_scripts import load_bench

patches = load_bench("demo_patches.py")
summary_tasks = load_bench("summary_tasks.py")
PARAMS = {"scalable": {"enabled": True, "task": "detection", "sweep": {
              "models": [{"arch": "scalable-hyperprior", "N": 32, "M_base": 16, "M_enh": 64},
                         {"arch": "choi2022-scalable", "N": 32, "M_base": 16, "M_enh": 64}],
              "lmbdas": [0.0035], "task_lmbdas": [0.5, 4.0]}},
          "variable_rate": {"enabled": True, "sweep": {
              "models": [{"arch": "pyramid", "N": 32, "M": 32, "attention": 1, "simclr": 1}],
              "lmbdas": [0.0009, 0.0035, 0.018]}},
          "finetune": {"tasks": ["vqa", "detection"], "sweep": {"lmbdas": [0.0035], "taus": [0.1]}},
          "codec": {"sweep": {"models": [{"arch": "bmshj2018-hyperprior", "N": 32, "M": 96}], "lmbdas": [0.0035]}}}


def test_a_variant_changes_the_steps_and_patches_of_the_later_codecs_only(tmp_path):
    assert patches.overlay("batch8-steps1.25x", tmp_path) == {
        "results_dir": str(tmp_path), "scalable": {"train": {"steps": 500, "batch_size": 8}},
        "variable_rate": {"train": {"steps": 1000, "batch_size": 8}},
        "finetune": {"train": {"steps": 375, "batch_size": 8}}}
    assert patches.overlay("batch16", tmp_path)["scalable"] == {"train": {"steps": 400, "batch_size": 16}}


def test_it_asks_for_the_validation_evaluations_of_every_later_codec(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(patches.subprocess, "run", lambda command, **kwargs: calls.append((command, kwargs)))
    monkeypatch.setattr(patches, "results_folder", lambda variant: tmp_path / variant)
    patches.run("batch8-steps1.5x", PARAMS)
    ((command, kwargs),) = calls
    out = tmp_path / "batch8-steps1.5x"
    evaluations = [path.removeprefix(f"{out}/") for path in command[3:-5]]
    assert evaluations == [  # the workflow's SCALABLE, VARIABLE_POINT and TUNED folders, validation split
        "eval/scalable/scalable-hyperprior/N32-M_base16-M_enh64/lmbda0.0035/task0.5/val",
        "eval/scalable/scalable-hyperprior/N32-M_base16-M_enh64/lmbda0.0035/task4.0/val",
        "eval/scalable/choi2022-scalable/N32-M_base16-M_enh64/lmbda0.0035/task0.5/val",
        "eval/scalable/choi2022-scalable/N32-M_base16-M_enh64/lmbda0.0035/task4.0/val",
        *[f"eval/variable_rate/pyramid/N32-M32-attention1-simclr1/point{k}/val" for k in range(3)],
        "eval/finetuned/vqa/bmshj2018-hyperprior/N32-M96/lmbda0.0035/tau0.1/val",
        "eval/finetuned/detection/bmshj2018-hyperprior/N32-M96/lmbda0.0035/tau0.1/val"]
    assert command[-5:] == ["--profile", "workflow/profiles/local", "--configfile", "params.yaml",
                            str(out / "overlay.yaml")]
    assert kwargs == {"check": True, "cwd": patches.ROOT}
    disabled = {**PARAMS, "scalable": {**PARAMS["scalable"], "enabled": False}}
    assert [curve["task"] for curve in patches.curves(disabled)] == [None, None, None, "vqa", "detection"]
    assert yaml.safe_load((out / "overlay.yaml").read_text())["variable_rate"] == {"train": {"steps": 1200,
                                                                                            "batch_size": 8}}


def test_the_workflow_builds_the_evaluations_it_asks_for(tmp_path, monkeypatch):
    """A dry run of the demo's params with a variant's overlay: every target is an output of a rule, and the jobs
    to run are those of the later codecs at their validation split (none of the test split's)."""
    monkeypatch.setattr(patches, "results_folder", lambda variant: tmp_path / variant)
    params = yaml.safe_load((patches.ROOT / "params.yaml").read_text())
    result = subprocess.run([*patches.command("batch16", params), "--dry-run"], capture_output=True, text=True,
                            cwd=patches.ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", result.stdout.split("Job stats:", 1)[1].split("total", 1)[0], re.M))
    assert {rule: jobs.get(rule) for rule in ("train_scalable", "train_variable_rate", "finetune_codec",
                                              "evaluate_scalable", "evaluate_variable_rate", "evaluate_finetuned",
                                              "evaluate_codec", "report")} == {
        "train_scalable": "4", "train_variable_rate": "1", "finetune_codec": "2", "evaluate_scalable": "4",
        "evaluate_variable_rate": "3", "evaluate_finetuned": "2", "evaluate_codec": None, "report": None}


def _evaluation(folder, summary, task=None, measured=None):
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps(summary))
    pd.DataFrame({"image_id": ["a", "b"], "height": [64, 64], "width": [64, 64]}).to_csv(folder / "per_image.csv",
                                                                                          index=False)
    if task:
        (folder / "task" / task).mkdir(parents=True)
        (folder / "task" / task / "summary.json").write_text(json.dumps(measured))


def test_a_points_row_is_what_its_evaluation_and_its_training_measured(tmp_path):
    params = {"scalable": {"enabled": True, "task": "detection", "sweep": {
                  "models": [{"arch": "scalable-hyperprior", "N": 8}], "lmbdas": [0.01], "task_lmbdas": [2.0]}},
              "variable_rate": {"enabled": True, "sweep": {"models": [{"arch": "pyramid", "N": 8}],
                                                           "lmbdas": [0.001, 0.01]}},
              "finetune": {"tasks": ["vqa"], "sweep": {"lmbdas": [0.01], "taus": [0.1]}},
              "codec": {"sweep": {"models": [{"arch": "bmshj2018-hyperprior", "N": 8}], "lmbdas": [0.01]}}}
    for model, seconds in (("scalable/scalable-hyperprior/N8/lmbda0.01/task2.0", 12.34),
                           ("variable_rate/pyramid/N8", 30.0),
                           ("finetuned/vqa/bmshj2018-hyperprior/N8/lmbda0.01/tau0.1", 5.0)):
        (tmp_path / model).mkdir(parents=True)
        (tmp_path / model / "metrics.json").write_text(json.dumps({"steps": 500, "train_seconds": seconds}))
        torch.save({"params": {"steps": 500, "batch_size": 8}}, tmp_path / model / "model.pt")  # what it trained with
    scalable = tmp_path / "eval/scalable/scalable-hyperprior/N8/lmbda0.01/task2.0/val"
    _evaluation(scalable, {"kind": "scalable", "codec": "s", "point": 2.0, "bpp": 0.5, "psnr": 21.234},
                "detection", {"bpp": 0.5, "bpp_task": 0.125, "map_50": 0.41})
    for k, (bpp, psnr) in enumerate([(0.1, 15.0), (0.3, 18.0)]):
        _evaluation(tmp_path / f"eval/variable_rate/pyramid/N8/point{k}/val",
                    {"kind": "variable-rate", "codec": "p", "point": [0.001, 0.01][k], "bpp": bpp, "psnr": psnr})
    _evaluation(tmp_path / "eval/finetuned/vqa/bmshj2018-hyperprior/N8/lmbda0.01/tau0.1/val",
                {"kind": "finetuned", "codec": "f", "point": 0.01, "bpp": 0.3, "psnr": 22.0},
                "vqa", {"bpp": 0.3, "accuracy": 0.45})
    rows = pd.DataFrame(patches.rows("batch16", params, tmp_path))
    assert rows[["kind", "point", "train_seconds", "bpp", "psnr", "task", "metric", "task_bpp", "task_value"]].fillna(
        "-").values.tolist() == [
        ["scalable", 2.0, 12.3, 0.5, 21.23, "detection", "map_50", 0.125, 0.41],  # the task gets the base layer
        ["variable-rate", 0.001, 30.0, 0.1, 15.0, "", "", "-", "-"],
        ["variable-rate", 0.01, 30.0, 0.3, 18.0, "", "", "-", "-"],
        ["finetuned", 0.01, 5.0, 0.3, 22.0, "vqa", "accuracy", 0.3, 0.45]]
    assert set(rows["batch_size"]) == {8}  # what the models trained with, whatever the variant's name says
    assert set(rows["steps"]) == {500} and set(rows["image_size"]) == {"64×64"}
    assert rows["model"].tolist()[1:3] == ["variable_rate/pyramid/N8"] * 2

    table = summary_tasks.demo_patches(rows.astype(str).replace("nan", "").to_dict("records"))
    assert "| batch16 | 12.3 | 30.0 | 5.0 | 47.3 |" in table  # the pyramid's one model counted once
    assert ("| batch16 | scalable: s | 2 | 500 | 8 | 12.3 | 0.500 | 21.23 | detection | 0.125 | "
            "map_50 41.0 % |") in table


def test_a_run_replaces_its_own_variants_rows_and_keeps_the_others(tmp_path, monkeypatch):
    monkeypatch.setattr(patches, "SUMMARY", tmp_path / "demo-patches.csv")
    committed = pd.DataFrame({"variant": ["batch4-steps2x", "batch8-steps1.5x", "batch16", "batch16"],
                              "kind": ["scalable"] * 4, "codec": ["s"] * 4, "point": [1.0, 1.0, 1.0, 2.0],
                              "psnr": [21.0, 20.0, 19.0, 19.5]})
    committed.to_csv(patches.SUMMARY, index=False)
    new = pd.DataFrame({"variant": ["batch16"], "kind": ["scalable"], "codec": ["s"], "point": [1.0], "psnr": [18.0]})
    assert patches.merged(new)[["variant", "point", "psnr"]].values.tolist() == [
        ["batch16", 1.0, 18.0], ["batch8-steps1.5x", 1.0, 20.0],  # batch16's old rows gone, in VARIANTS' order,
        ["batch4-steps2x", 1.0, 21.0]]  # a variant no longer in VARIANTS kept, last
