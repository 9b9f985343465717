"""The recipe-lever study (bench/levers.py): which codecs a run trains, and its table rows for single-λ and
variable-rate codecs, from codecs trained by the train_codec stage as the study trains them."""

import copy

import pytest
import yaml

from bench_scripts import ROOT, load_bench

levers = load_bench("levers.py")

VARIANTS = {"single": ({"N": 8, "M": 8}, {}),
            "variable": ({"arch": "bmshj2018-hyperprior-vbr", "N": 8, "M": 8}, {})}


def test_a_variable_rate_variant_trains_one_model_for_all_the_lambdas():
    assert levers.jobs(VARIANTS, ["single", "variable"], [0.001, 0.01]) == [
        ("single", [0.001]), ("single", [0.01]), ("variable", [0.001, 0.01])]
    assert levers.folder_name([0.01]) == "lmbda0.01" and levers.folder_name([0.001, 0.01]) == "lmbdas0.001,0.01"


@pytest.mark.parametrize("name", ["single", "variable"])
def test_a_trained_variant_gives_one_row_per_operating_point(tmp_path, name):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["prepare"] = {**params["prepare"], "image_size": 64, "split": {"train": 0.5, "val": 0.25, "test": 0.25},
                         "builtin": {**params["prepare"]["builtin"], "num_images": 8, "canvas_size": 64}}
    manifest = levers.prepare(params, tmp_path)
    train = levers.train_params({**copy.deepcopy(params["codec"]["train"]), "steps": 2, "batch_size": 2,
                                 "patch_size": 64}, {}, None)
    hyper, lmbdas = VARIANTS[name][0], [0.001, 0.01]
    (_, group), *rest = levers.jobs(VARIANTS, [name], lmbdas)
    folder = tmp_path / levers.folder_name(group)
    levers.train(folder, hyper, train, group, manifest, tmp_path)
    rows = levers.rows_of(name, hyper, train, folder)
    assert [row["lmbda"] for row in rows] == group and all(row["steps"] == 2 for row in rows)
    assert all(row["val_bpp"] > 0 and row["val_psnr"] > 0 for row in rows)
    if name == "variable":  # one model, one loss for all its points: no per-point loss is claimed
        assert not rest and all(row["val_loss"] is None for row in rows)
    else:
        assert len(rest) == 1 and rows[0]["val_loss"] > 0
