from pathlib import Path

import pytest
from snakemake.utils import update_config

from taskcodec.codecs.registry import CODECS
from taskcodec.errors import UserError
from taskcodec.params import CHAINS, chained_from, codec_dirname, codec_id, load_yaml, number_id, validate_params

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow" / "schemas" / "params.schema.yaml"
SCIENCE_SECTIONS = ["codec.train", "tasks.classification.train", "tasks.classification.features", "finetune.train", "latent_classifier.train",
                    "latent_classifier.joint", "cache", "evaluate"]


def escaped(message: str) -> str:
    return message.replace(".", r"\.").replace("(", r"\(").replace(")", r"\)").replace("+", r"\+").replace("?", r"\?")


def section_of(params: dict, dotted: str) -> dict:
    for key in dotted.split("."):
        params = params[key]
    return params


@pytest.fixture
def params():
    return load_yaml(ROOT / "params.yaml")


@pytest.mark.parametrize("path", ["params.yaml", "bench/machine/params.yaml", "bench/kodak/params.yaml",
                                  "bench/variable_rate/params.yaml"])
def test_shipped_params_are_valid(path):
    params = load_yaml(ROOT / path)
    validate_params(params, SCHEMA, source=path)
    for dotted in SCIENCE_SECTIONS:  # run settings live in `resources` only
        if dotted.startswith("tasks.") and not params["tasks"]:
            continue  # a study of the human branch
        assert not {"device", "threads"} & set(section_of(params, dotted)), (path, dotted)


@pytest.mark.parametrize("name", ["independent", "chain-down", "chain-up"])
def test_a_kodak_overlay_changes_only_how_the_study_trains_its_sweep_and_its_codec(name):
    """bench/kodak/run.sh (and chains.sh) pass an overlay after the study's params; Snakemake merges it key by key.
    These overlays name the codec of their committed summaries (tests/test_bench_summary.py)."""
    params, overlay = load_yaml(ROOT / "bench/kodak/params.yaml"), load_yaml(ROOT / f"bench/kodak/{name}.yaml")
    assert "prepare" not in overlay and set(overlay) == {"results_dir", "codec"}
    assert overlay["results_dir"] != params["results_dir"] and set(overlay["codec"]["train"]) == {"init"}
    assert set(overlay["codec"]["sweep"]) == {"models"}  # valid once merged: the test of every overlay below


def test_the_two_sides_of_latent_channels_sh_differ_only_in_their_latent_channels():
    """bench/kodak/latent_channels.sh trains the study's chain as bench/kodak/m64.yaml and m128.yaml say: the
    study's sweep with one codec each, its former one and one with twice its latent channels, nothing else; the wide
    one won and is the study's codec now."""
    (narrow,), (wide,) = (load_yaml(ROOT / f"bench/kodak/{name}.yaml")["codec"]["sweep"]["models"]
                          for name in ("m64", "m128"))
    assert [wide] == load_yaml(ROOT / "bench/kodak/params.yaml")["codec"]["sweep"]["models"]
    assert {**narrow, "M": wide["M"]} == wide and wide["M"] == 2 * narrow["M"]
    for name in ("m64", "m128"):
        overlay = load_yaml(ROOT / f"bench/kodak/{name}.yaml")  # valid once merged: the test of every overlay below
        assert set(overlay) == {"results_dir", "codec"} and set(overlay["codec"]) == {"sweep"}
        assert set(overlay["codec"]["sweep"]) == {"models"}


def test_the_two_kodak_chains_train_the_studys_sweep_both_ways_into_their_own_folders():
    """bench/kodak/chains.sh runs overlays at once, without Snakemake's lock: every overlay's folder must differ (and
    differ from the study's); and every overlay, merged onto the study's params as run.sh and chains.sh merge it, is
    valid."""
    study = load_yaml(ROOT / "bench/kodak/params.yaml")
    down, up = (load_yaml(ROOT / f"bench/kodak/chain-{chain}.yaml") for chain in ("down", "up"))
    assert CHAINS[down["codec"]["train"]["init"]] == "larger" and CHAINS[up["codec"]["train"]["init"]] == "smaller"
    assert down["codec"]["train"]["init"] == study["codec"]["train"]["init"]  # the study's own chain
    overlays = {path.stem: load_yaml(path) for path in (ROOT / "bench/kodak").glob("*.yaml")}
    overlays = {name: overlay for name, overlay in overlays.items() if "prepare" not in overlay}  # not whole files
    assert {"chain-down", "chain-up", "independent", "m64", "m128", "m128-guard"} <= set(overlays)
    folders = [overlay["results_dir"] for overlay in overlays.values()] + [study["results_dir"]]
    assert len(set(folders)) == len(folders)
    for name, overlay in overlays.items():  # and each is a valid change of the study's params
        params = load_yaml(ROOT / "bench/kodak/params.yaml")
        update_config(params, overlay)
        validate_params(params, SCHEMA, source=f"bench/kodak/{name}.yaml")


def test_the_variable_rate_overlay_gives_every_model_four_times_the_budget_in_all():
    """bench/variable_rate/run.sh passes budget4x.yaml after the benchmark's params; Snakemake merges it."""
    params = load_yaml(ROOT / "bench/variable_rate/params.yaml")
    update_config(params, load_yaml(ROOT / "bench/variable_rate/budget4x.yaml"))
    validate_params(params, SCHEMA, source="bench/variable_rate/budget4x.yaml")
    assert params["results_dir"] != "bench/results/variable_rate"
    per_lmbda, lmbdas = params["codec"]["train"]["time_budget_s"], len(params["codec"]["sweep"]["lmbdas"])
    assert params["variable_rate"]["train"]["time_budget_s"] == lmbdas * per_lmbda == 4 * 600
    assert params["evaluate"]["classical"]["hevc"]  # merged key by key: the benchmark's other codecs stay


def test_mistyped_key_names_the_key_and_the_closest_valid_one(params):
    params["codec"]["train"]["aux_lrr"] = params["codec"]["train"].pop("aux_lr")
    with pytest.raises(UserError) as err:
        validate_params(params, SCHEMA)
    assert "'codec.train.aux_lrr'" in str(err.value) and "did you mean 'aux_lr'" in str(err.value)


def test_mistyped_top_level_section(params):
    params["evalute"] = params.pop("evaluate")
    with pytest.raises(UserError, match="unknown key 'evalute' \\(did you mean 'evaluate'\\?\\)"):
        validate_params(params, SCHEMA)


@pytest.mark.parametrize("dotted", SCIENCE_SECTIONS)
def test_run_settings_in_a_science_section_are_unknown_keys(params, dotted):
    section_of(params, dotted)["threads"] = 4
    with pytest.raises(UserError, match=escaped(f"unknown key '{dotted}.threads'")):
        validate_params(params, SCHEMA)


@pytest.mark.parametrize(
    "path, value, message",
    [
        (("codec", "train", "steps"), "many", "codec.train.steps = 'many' has the wrong type"),
        (("codec", "train", "distortion"), "l1", "codec.train.distortion = 'l1' is not allowed"),
        (("prepare", "image_size"), 4, "prepare.image_size = 4 is invalid"),
        (("codec", "sweep", "lmbdas"), [0.01, -1], "codec.sweep.lmbdas.1 = -1 is invalid"),
        (("resources", "device"), "tpu", "resources.device = 'tpu' is invalid"),
        (("resources", "train_codec", "gpu"), -1, "resources.train_codec.gpu = -1 is invalid"),
        (("resources", "cache_latents", "threads"), 0, "resources.cache_latents.threads = 0 is invalid"),
        (("resources", "train_codec", "tasks"), 0, "resources.train_codec.tasks = 0 is invalid"),
        (("finetune", "tasks"), "classification", "finetune.tasks = 'classification' has the wrong type"),
    ],
)
def test_bad_values_name_the_key(params, path, value, message):
    section = params
    for key in path[:-1]:
        section = section[key]
    section[path[-1]] = value
    with pytest.raises(UserError, match=escaped(message)):
        validate_params(params, SCHEMA)


def test_every_stage_job_needs_its_resources(params):
    del params["resources"]["evaluate_codec"]["runtime"]
    with pytest.raises(UserError, match="resources.evaluate_codec is missing a required key: 'runtime'"):
        validate_params(params, SCHEMA)


def test_only_the_codec_trainings_run_several_processes(params):
    del params["resources"]["finetune_codec"]["tasks"]
    with pytest.raises(UserError, match="resources.finetune_codec is missing a required key: 'tasks'"):
        validate_params(params, SCHEMA)
    params["resources"]["finetune_codec"]["tasks"] = 1
    params["resources"]["evaluate_codec"]["tasks"] = 2
    with pytest.raises(UserError, match="unknown key 'resources.evaluate_codec.tasks'"):
        validate_params(params, SCHEMA)


def test_split_must_sum_to_one(params):
    params["prepare"]["split"] = {"train": 0.5, "val": 0.1, "test": 0.1}
    with pytest.raises(UserError, match="prepare.split fractions sum to 0.7"):
        validate_params(params, SCHEMA)


def test_missing_key_is_named(params):
    del params["cache"]["shard_size"]
    with pytest.raises(UserError, match="cache is missing a required key: 'shard_size'"):
        validate_params(params, SCHEMA)


def test_imagefolder_needs_a_root(params):
    params["prepare"]["dataset"] = "imagefolder"
    with pytest.raises(UserError, match="prepare.root is null"):
        validate_params(params, SCHEMA)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda p: p["codec"]["train"].update(patch_size=128), "patch_size 128 is larger than prepare.image_size 64"),
        (lambda p: p["codec"]["train"].update(init="zoo:x"), "is not of the form zoo:<arch>:<quality 1-8>"),
        (lambda p: p["scalable"]["train"].update(init="neighbour"), "scalable.train.init 'neighbour' chains the λ of "
                                                                    "codec.sweep only"),
        (lambda p: p["variable_rate"]["train"].update(init="smaller_neighbour"), "variable_rate.train.init "
                                                                                 "'smaller_neighbour' chains the λ"),
        (lambda p: p["evaluate"]["report"].update(grid_image=4), "grid_image 4 needs a saved reconstruction"),
        (lambda p: p["evaluate"]["report"].update(references={"kodak": "x"}), "references.kodak names no evaluated"),
        (lambda p: p["evaluate"]["classical"]["hevc"].update(qualities=[60]), "hevc.qualities.0 = 60 is invalid"),
        (lambda p: p["prepare"]["split"].update(train=0.9, val=0.1, test=0), "prepare.split.test = 0 is invalid"),
    ],
)
def test_cross_checks_name_the_keys(params, edit, message):
    edit(params)
    with pytest.raises(UserError, match=escaped(message)):
        validate_params(params, SCHEMA)


# ------------------------------------------------------------------ the codec sweep against the registry


def test_the_schema_keeps_no_list_of_architectures():
    assert not any(arch in SCHEMA.read_text() for arch in CODECS)


def test_unknown_architecture_suggests_the_closest(params):
    params["codec"]["sweep"]["models"][0]["arch"] = "bmshj2018-hyperprio"
    with pytest.raises(UserError) as err:
        validate_params(params, SCHEMA)
    message = str(err.value)
    assert "codec.sweep.models.0.arch = 'bmshj2018-hyperprio' is not a registered codec architecture" in message
    assert "(did you mean 'bmshj2018-hyperprior'?)" in message and "\n" not in message


def test_hyperparameter_the_architecture_does_not_take_is_an_error(params):
    params["codec"]["sweep"]["models"].append({"arch": "cheng2020-anchor", "N": 32, "M": 48})
    with pytest.raises(UserError, match=escaped("codec.sweep.models.1.M: cheng2020-anchor takes no hyperparameter "
                                                "'M' (its hyperparameters: N); remove it")):
        validate_params(params, SCHEMA)


def test_required_hyperparameter_is_named(params):
    params["codec"]["sweep"]["models"] = [{"arch": "bmshj2018-factorized", "N": 32}]
    with pytest.raises(UserError, match=escaped("codec.sweep.models.0 (bmshj2018-factorized) is missing the "
                                                "hyperparameter 'M'")):
        validate_params(params, SCHEMA)


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"arch": "bmshj2018-hyperprior", "N": "32", "M": 48}, "codec.sweep.models.0.N = '32' has the wrong type"),
        ({"arch": "bmshj2018-hyperprior", "N": 32.5, "M": 48}, "codec.sweep.models.0.N = 32.5 has the wrong type"),
        ({"arch": "bmshj2018-hyperprior", "N": 32, "M/2": 48},
         "codec.sweep.models.0 has the key 'M/2', which is not a name"),
        ({"N": 32, "M": 48}, "codec.sweep.models.0 is missing a required key: 'arch'"),
    ],
)
def test_sweep_entries_are_checked_by_the_schema(params, entry, message):
    params["codec"]["sweep"]["models"] = [entry]
    with pytest.raises(UserError, match=escaped(message)):
        validate_params(params, SCHEMA)


def test_an_entry_names_at_least_one_hyperparameter(params):
    params["codec"]["sweep"]["models"] = [{"arch": "cheng2020-anchor"}]  # N has a default, but names the folder
    with pytest.raises(UserError, match=escaped("codec.sweep.models.0 (cheng2020-anchor) gives no hyperparameter; "
                                                "give at least one (its hyperparameters: N)")):
        validate_params(params, SCHEMA)


def test_the_same_codec_twice_is_an_error(params):
    params["codec"]["sweep"]["models"].append({"arch": "bmshj2018-hyperprior", "M": 96, "N": 32})
    with pytest.raises(UserError, match=escaped("codec.sweep.models.1 repeats codec.sweep.models.0")):
        validate_params(params, SCHEMA)


class ToyCodec:
    """A registered codec with its own hyperparameter names (one required, one optional)."""

    def __init__(self, channels, levels=2, **kwargs):
        pass


def test_any_registered_codec_takes_its_own_hyperparameters(params, monkeypatch):
    monkeypatch.setitem(CODECS, "toy-codec", ToyCodec)
    params["codec"]["sweep"]["models"] = [{"arch": "toy-codec", "levels": 3, "channels": 8},
                                          {"arch": "toy-codec", "channels": 16}]
    validate_params(params, SCHEMA)
    params["codec"]["sweep"]["models"] = [{"arch": "toy-codec", "levels": 3}]
    with pytest.raises(UserError, match="missing the hyperparameter 'channels'"):
        validate_params(params, SCHEMA)
    params["codec"]["sweep"]["models"] = [{"arch": "toy-codec", "channels": 3, "kwargs": 1}]
    with pytest.raises(UserError, match="toy-codec takes no hyperparameter 'kwargs'"):
        validate_params(params, SCHEMA)


def test_codec_paths_keep_the_entry_order_and_full_precision():
    assert codec_dirname({"arch": "bmshj2018-hyperprior", "N": 32, "M": 48}) == "N32-M48"
    assert codec_dirname({"arch": "toy", "levels": 3, "channels": 8}) == "levels3-channels8"
    assert number_id(0.00123456789) == "0.00123456789" and float(number_id(0.00123456789)) == 0.00123456789
    assert number_id(0.0035) == "0.0035" and number_id(1) == "1.0" and number_id(1e-7) == "1e-07"
    assert number_id(0.1 + 0.2) != number_id(0.3)  # format(x, "g") would give both paths "0.3"


def test_a_sweep_entry_has_the_codec_id_its_checkpoint_reports(tmp_path):
    """Tables and evaluation folders name a codec by its checkpoint's codec_id; benches find them by the entry's."""
    from taskcodec.codecs.checkpoint import load_codec, save_codec
    from taskcodec.codecs.registry import build_codec

    entry = {"arch": "bmshj2018-hyperprior", "M": 12, "N": 8}  # the entry's order, not sorted
    save_codec(tmp_path / "model.pt", build_codec(entry["arch"], {"M": 12, "N": 8}), entry["arch"],
               {"M": 12, "N": 8}, 0.01, {}, {})
    assert codec_id(entry) == load_codec(tmp_path / "model.pt")[1]["codec_id"] == "bmshj2018-hyperprior/M12-N8"


# ------------------------------------------------------------------ fine-tuning sweep, task registry


def test_a_chained_sweep_starts_each_lambda_from_its_neighbour():
    lmbdas = [0.18, 0.0009, 0.0035]  # in any order
    assert [chained_from("neighbour", lmbda, lmbdas) for lmbda in (0.0009, 0.0035, 0.18)] == [0.0035, 0.18, None]
    assert [chained_from("smaller_neighbour", lmbda, lmbdas) for lmbda in (0.0009, 0.0035, 0.18)] == [
        None, 0.0009, 0.0035]
    assert chained_from(None, 0.0035, lmbdas) is None and chained_from("zoo:mbt2018:3", 0.0035, lmbdas) is None


def test_finetuned_lambdas_must_be_pretrained_ones(params):
    params["finetune"]["sweep"]["lmbdas"] = [0.0035, 0.004]
    with pytest.raises(UserError) as err:
        validate_params(params, SCHEMA)
    assert str(err.value) == ("params.yaml: finetune.sweep.lmbdas has 0.004, which is not in codec.sweep.lmbdas "
                              "(0.0009, 0.0035, 0.025); fine-tuning starts from a pretrained codec of the sweep, so use "
                              "one of those or add 0.004 there")


def test_scalable_codecs_have_their_own_sweep_and_need_the_task_branch(params):
    scalable_entry = params["scalable"]["sweep"]["models"][0]
    params["codec"]["sweep"]["models"].append(dict(scalable_entry))
    with pytest.raises(UserError, match=escaped("codec.sweep.models.1.arch scalable-hyperprior is built on the "
                                                "frozen task model; list it in scalable.sweep.models")):
        validate_params(params, SCHEMA)
    params["codec"]["sweep"]["models"].pop()
    params["scalable"]["sweep"]["models"][0] = {"arch": "bmshj2018-hyperprior", "N": 8, "M": 8}
    with pytest.raises(UserError, match=escaped("scalable.sweep.models.0.arch bmshj2018-hyperprior is trained alone "
                                                "at one rate; list it in codec.sweep.models")):
        validate_params(params, SCHEMA)
    params["scalable"]["sweep"]["models"][0] = scalable_entry
    params["tasks"] = {}
    with pytest.raises(UserError, match=escaped("scalable.enabled is true but tasks is empty")):
        validate_params(params, SCHEMA)
    params["scalable"]["enabled"] = False
    validate_params(params, SCHEMA)


def test_vqa_needs_no_scalable_codec_and_translations_that_keep_the_sides_of_its_questions(params):
    vqa = load_yaml(ROOT / "bench" / "vqa" / "params.yaml")
    validate_params(vqa, SCHEMA)
    vqa["scalable"]["enabled"] = True
    with pytest.raises(UserError, match=escaped("scalable.enabled is true but the vqa task's model does not split")):
        validate_params(vqa, SCHEMA)
    vqa["scalable"]["enabled"] = False
    vqa["finetune"]["train"]["crop_padding"] = 7  # the questions keep 0.05 * 128 = 6.4 px from the middle
    with pytest.raises(UserError, match=escaped("finetune.train.crop_padding 7 can move an object across the middle "
                                                "of the 128-pixel images, whose questions about sides keep 6.4 px away "
                                                "from it; make it at most 6")):
        validate_params(vqa, SCHEMA)
    vqa["prepare"]["builtin"]["questions"] = None  # then no generated question is about sides (and the task has none)
    validate_params(vqa, SCHEMA)


def test_unknown_task_suggests_the_closest(params):
    params["tasks"]["clasification"] = params["tasks"].pop("classification")
    with pytest.raises(UserError, match=escaped("tasks.clasification = 'clasification' is not a registered task "
                                                "(did you mean 'classification'?)")):
        validate_params(params, SCHEMA)


def test_the_task_of_fine_tuning_and_of_the_scalable_codec_is_one_of_the_tasks(params):
    params["scalable"]["task"] = "classifcation"
    with pytest.raises(UserError, match=escaped("scalable.task names 'classifcation', which is not among tasks (did "
                                                "you mean 'classification'?); name one of classification, ")):
        validate_params(params, SCHEMA)
    params["scalable"]["task"] = "detection"
    params["finetune"]["tasks"] = ["classification", "segmentation"]
    with pytest.raises(UserError, match=escaped("finetune.tasks names 'segmentation', which is not among tasks; name "
                                                "one of")):
        validate_params(params, SCHEMA)
    params["finetune"]["sweep"]["lmbdas"] = []  # nothing is fine-tuned: its task is not read
    validate_params(params, SCHEMA)


def test_variable_rate_codecs_have_their_own_sweep_whose_lambdas_set_their_levels(params):
    params["codec"]["sweep"]["models"].append({"arch": "pyramid", "N": 8, "M": 4})
    with pytest.raises(UserError, match=escaped("codec.sweep.models.1.arch pyramid is a variable-rate codec; list it "
                                                "in variable_rate.sweep.models")):
        validate_params(params, SCHEMA)
    params["codec"]["sweep"]["models"].pop()
    params["variable_rate"]["sweep"]["models"][0]["levels"] = 3
    with pytest.raises(UserError, match=escaped("variable_rate.sweep.models.0.levels: the number of "
                                                "variable_rate.sweep.lmbdas sets a variable-rate codec's levels")):
        validate_params(params, SCHEMA)
    del params["variable_rate"]["sweep"]["models"][0]["levels"]
    params["variable_rate"]["sweep"]["lmbdas"] = [0.01, 0.001]
    with pytest.raises(UserError, match="variable_rate.sweep.lmbdas must ascend"):
        validate_params(params, SCHEMA)
    params["variable_rate"]["sweep"]["lmbdas"] = [0.001, 0.01]
    params["variable_rate"]["sweep"]["models"].append({"arch": "mbt2018-mean-vbr", "N": 8, "M": 8})
    validate_params(params, SCHEMA)
