"""The codec points of params.yaml's sweeps (taskcodec.sweeps), which the workflow's paths and a benchmark's targets
are both made of: fine-tuning only the selected pretrained codecs, λ_task at full precision, none for a switched-off
system."""

from taskcodec.sweeps import SCALABLE, TUNED, VARIABLE_POINT, finetune_points, scalable_points, variable_rate_points

PARAMS = {"codec": {"sweep": {"models": [{"arch": "bmshj2018-hyperprior", "N": 8, "M": 12}],
                              "lmbdas": [0.003, 0.03]}},
          "finetune": {"tasks": ["vqa", "detection"], "sweep": {"lmbdas": [0.003, 0.5], "taus": [0.1, 1.0]}},
          "scalable": {"enabled": True, "sweep": {"models": [{"arch": "scalable-hyperprior", "N": 8, "M_base": 4,
                                                              "M_enh": 8}], "lmbdas": [0.01], "task_lmbdas": [1, 4.0]}},
          "variable_rate": {"enabled": True, "sweep": {"models": [{"arch": "pyramid", "N": 8, "M": 4}],
                                                       "lmbdas": [0.001, 0.01, 0.1]}}}


def test_fine_tuning_takes_the_selected_codecs_of_the_sweep_once_per_task_and_tau():
    paths = [TUNED.format(**point) for point in finetune_points(PARAMS)]
    assert paths == [f"{task}/bmshj2018-hyperprior/N8-M12/lmbda0.003/tau{tau}"
                     for task in ("vqa", "detection") for tau in ("0.1", "1.0")]  # λ 0.5 is not in codec.sweep
    assert [point["task"] for point in finetune_points(PARAMS, ["detection"])] == ["detection", "detection"]


def test_the_seed_systems_points_name_their_folders_and_vanish_when_switched_off():
    assert [SCALABLE.format(**point) for point in scalable_points(PARAMS)] == [
        f"scalable-hyperprior/N8-M_base4-M_enh8/lmbda0.01/task{task_lmbda}" for task_lmbda in ("1.0", "4.0")]
    assert [VARIABLE_POINT.format(**point) for point in variable_rate_points(PARAMS)] == [
        f"pyramid/N8-M4/point{k}" for k in range(3)]
    switched_off = {**PARAMS, "scalable": {**PARAMS["scalable"], "enabled": False},
                    "variable_rate": {**PARAMS["variable_rate"], "enabled": False}}
    assert scalable_points(switched_off) == [] and variable_rate_points(switched_off) == []
