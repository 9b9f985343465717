"""One section of params.yaml, as a stage run by hand receives it (``--params``): checked like the whole file."""

import pytest

from taskcodec.errors import UserError
from taskcodec.params import check_section
from test_params import SCIENCE_SECTIONS, escaped, params, section_of  # noqa: F401 (params: the shipped file's fixture)


def test_check_section_accepts_the_shipped_sections(params):
    for dotted in SCIENCE_SECTIONS + ["prepare", "saliency", "tasks", "tasks.classification", "codec", "codec.sweep",
                                      "evaluate.report", "evaluate.classical.jpeg", "latent_classifier.model"]:
        check_section(dotted, section_of(params, dotted), "--params")


@pytest.mark.parametrize(
    "dotted, edit, message",
    [
        ("codec.train", lambda s: s.update(stpes=s.pop("steps")),
         "--params: unknown key 'codec.train.stpes' (did you mean 'steps'?); fix or remove it"),
        ("codec.train", lambda s: s.update(threads=2), "--params: unknown key 'codec.train.threads'"),
        ("codec.train", lambda s: s.update(steps="many"), "--params: codec.train.steps = 'many' has the wrong type"),
        ("codec.train", lambda s: s.update(patch_size=0), "--params: codec.train.patch_size = 0 is invalid"),
        ("codec.train", lambda s: s.pop("seed"), "--params: codec.train is missing a required key: 'seed'"),
        ("codec.train", lambda s: s.update(init="zoo:x"), "--params: codec.train.init 'zoo:x' is not of the form"),
        ("tasks.classification.train", lambda s: s.update(momentum=2),
         "--params: tasks.classification.train.momentum = 2 is invalid"),
        ("evaluate.classical.hevc", lambda s: s.update(qualities=[60]),
         "--params: evaluate.classical.hevc.qualities.0 = 60 is invalid"),
        ("tasks", lambda s: s.update({"vqa-typo": s["classification"]}),
         "--params: tasks.vqa-typo = 'vqa-typo' is not a registered task"),
        ("codec.sweep", lambda s: s["models"][0].update(M=None),
         "--params: codec.sweep.models.0.M = None has the wrong type"),
    ],
)
def test_check_section_reports_like_full_validation(params, dotted, edit, message):
    section = section_of(params, dotted)
    edit(section)
    with pytest.raises(UserError, match=escaped(message)):
        check_section(dotted, section, "--params")


def test_check_section_of_the_keys_a_stage_takes(params):
    keys = ("save_reconstructions", "saliency_threshold")
    given = {key: params["evaluate"][key] for key in keys}
    check_section("evaluate", given, "--params", keys=keys)
    with pytest.raises(UserError, match=escaped("unknown key 'evaluate.save_reconstruction' "
                                                "(did you mean 'save_reconstructions'?)")):
        check_section("evaluate", {"save_reconstruction": 4, "saliency_threshold": 0.5}, "--params", keys=keys)
    with pytest.raises(UserError, match="unknown key 'evaluate.extra_datasets'"):
        check_section("evaluate", {**given, "extra_datasets": {}}, "--params", keys=keys)
    with pytest.raises(UserError, match="evaluate is missing a required key: 'saliency_threshold'"):
        check_section("evaluate", {"save_reconstructions": 4}, "--params", keys=keys)


def test_check_section_of_some_keys_still_checks_them_beyond_the_schema(params):
    keys = ("enabled", "sweep")
    given = {key: params["scalable"][key] for key in keys}
    check_section("scalable", given, "--params", keys=keys)
    given["sweep"]["models"][0]["arch"] = "scalable-hyperprio"
    with pytest.raises(UserError, match=escaped("scalable.sweep.models.0.arch = 'scalable-hyperprio' is not a "
                                                "registered codec architecture (did you mean")):
        check_section("scalable", given, "--params", keys=keys)


def test_check_section_without_the_keys_a_rule_leaves_out(params):
    given = {key: value for key, value in params["cache"].items() if key != "splits"}  # as the cache rule passes it
    check_section("cache", given, "--params", omit=("splits",))
    with pytest.raises(UserError, match="cache is missing a required key: 'splits'"):
        check_section("cache", given, "--params")
    with pytest.raises(UserError, match="unknown key 'cache.splits'"):
        check_section("cache", params["cache"], "--params", omit=("splits",))
    joint = {key: value for key, value in params["latent_classifier"]["joint"].items() if key != "enabled"}
    check_section("latent_classifier.joint", joint, "--params", omit=("enabled",))
    del joint["rate_weight"]
    with pytest.raises(UserError, match="latent_classifier.joint is missing a required key: 'rate_weight'"):
        check_section("latent_classifier.joint", joint, "--params", omit=("enabled",))


def test_check_section_of_an_unknown_section_is_a_programming_error(params):
    with pytest.raises(ValueError, match="no section 'codec.trian'"):
        check_section("codec.trian", params["codec"]["train"], "--params")
