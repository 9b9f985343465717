"""The recipe-lever study (bench/levers.py): which codecs a run trains, and its table rows for single-λ and
variable-rate codecs, from codecs trained by the train_codec stage as the study trains them."""

import copy
import json

import pytest
import torch
import yaml

from bench_scripts import ROOT, load_bench
from taskcodec.codecs.checkpoint import load_codec
from taskcodec.codecs.registry import build_codec

levers = load_bench("levers.py")

VARIANTS = {"single": ({"N": 8, "M": 8}, {}),
            "variable": ({"arch": "bmshj2018-hyperprior-vbr", "N": 8, "M": 8}, {}),
            "chained": ({"N": 8, "M": 8}, {"init": "smaller_neighbour"})}


def test_a_variable_rate_variant_trains_one_model_for_all_the_lambdas(monkeypatch):
    assert levers.jobs(VARIANTS, ["single", "variable"], [0.01, 0.001]) == [
        ("single", [0.001]), ("single", [0.01]), ("variable", [0.001, 0.01])]  # ascending, as --lmbdas must be
    assert levers.folder_name([0.01]) == "lmbda0.01" and levers.folder_name([0.001, 0.01]) == "lmbdas0.001,0.01"
    monkeypatch.setitem(levers.NEIGHBOURS, "single", 0.01)  # starts from the λ 0.01 codec: only below it
    assert levers.jobs(VARIANTS, ["single"], [0.001, 0.01, 0.1]) == [("single", [0.001])]
    assert levers.trainings(VARIANTS, "single", [0.001]) == [("lmbda0.001", [0.001], "neighbour-lmbda0.01")]


@pytest.mark.parametrize("init, order", [("smaller_neighbour", [0.001, 0.01, 0.1]), ("neighbour", [0.1, 0.01, 0.001])])
def test_a_chained_variant_trains_its_lambdas_one_after_another_each_from_the_one_before(init, order):
    variants = {"chained": ({"N": 8, "M": 8}, {"init": init})}
    assert levers.jobs(variants, ["chained"], [0.01, 0.1, 0.001]) == [("chained", [0.001, 0.01, 0.1])]
    assert levers.train_params({"init": "neighbour"}, {}, None)["init"] is None  # others: from scratch
    assert levers.train_params({"init": None}, {"init": init}, None)["init"] == init
    assert levers.trainings(variants, "chained", [0.001, 0.01, 0.1]) == [
        (f"lmbda{lmbda}", [lmbda], None if k == 0 else f"lmbda{order[k - 1]}") for k, lmbda in enumerate(order)]


def measured(folder, lmbda, val):
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"lmbda": lmbda, "steps": 10, "train_seconds": 2.0, "val": val}))


def test_the_table_keeps_gone_variants_committed_rows_and_refuses_a_lambda_measured_twice(tmp_path):
    base = {"patch_size": 64, "batch_size": 2, "time_budget_s": None}
    measured(tmp_path / "single" / "lmbda0.01", 0.01, {"loss": 1.5, "bpp": 0.3, "psnr": 25.0})
    measured(tmp_path / "variable" / "lmbdas0.001,0.01", [0.001, 0.01],
             {"loss": 9.0, "bpp_p0": 0.1, "psnr_p0": 20.0, "bpp_p1": 0.2, "psnr_p1": 22.0})
    committed = [{"variant": "single", "lmbda": 0.001, "val_loss": 1.0}, {"variant": "single", "lmbda": 0.01,
                                                                          "val_loss": 9.9},
                 {"variant": "dropped", "lmbda": 0.01, "val_loss": 1.0}]
    rows = levers.table(VARIANTS, tmp_path, base, None, committed).to_dict("records")
    assert [(r["variant"], r["lmbda"]) for r in rows] == [("single", 0.001), ("single", 0.01), ("variable", 0.001),
                                                          ("variable", 0.01)]
    assert rows[1]["val_loss"] == 1.5 and rows[0]["val_loss"] == 1.0  # measured wins; gone results stay
    assert (rows[2]["val_bpp"], rows[3]["val_psnr"]) == (0.1, 22.0) and rows[2]["images_per_s"] == 10.0
    measured(tmp_path / "variable" / "lmbdas0.01,0.1", [0.01, 0.1],
             {"loss": 9.0, "bpp_p0": 0.2, "psnr_p0": 21.0, "bpp_p1": 0.4, "psnr_p1": 23.0})
    with pytest.raises(SystemExit, match="'variable' at λ 0.01 was trained in .* remove one"):
        levers.table(VARIANTS, tmp_path, base, None, committed)


@pytest.mark.parametrize("name", ["single", "variable", "chained"])
def test_a_trained_variant_gives_one_row_per_operating_point(tmp_path, name):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["prepare"] = {**params["prepare"], "image_size": 64, "split": {"train": 0.5, "val": 0.25, "test": 0.25},
                         "builtin": {**params["prepare"]["builtin"], "num_images": 8, "canvas_size": 64}}
    manifest = levers.prepare(params, tmp_path)
    (hyper, changes), lmbdas = VARIANTS[name], [0.001, 0.01]
    train = levers.train_params({**copy.deepcopy(params["codec"]["train"]), "steps": 2, "batch_size": 2,
                                 "patch_size": 64}, changes, None)
    (_, group), *rest = levers.jobs(VARIANTS, [name], lmbdas)
    rows = []
    for folder, trained, start in levers.trainings(VARIANTS, name, group):
        still = {"lr": 1e-12} if start else {}  # a chained λ keeps the weights it starts from: they show which
        levers.train(tmp_path / folder, hyper, {**train, **still}, trained, manifest, tmp_path,
                     start and tmp_path / start)
        rows += levers.rows_of(name, hyper, train, tmp_path / folder)
    assert [row["lmbda"] for row in rows] == group and all(row["steps"] == 2 for row in rows)
    assert all(row["val_bpp"] > 0 and row["val_psnr"] > 0 for row in rows)
    if name == "variable":  # one model, one loss for all its points: no per-point loss is claimed
        assert not rest and all(row["val_loss"] is None for row in rows)
    else:
        assert len(rest) == (name == "single") and all(row["val_loss"] > 0 for row in rows)
    if name == "chained":  # the larger λ started from the smaller's trained codec, not from the seed's weights
        (first, _), (then, _) = (load_codec(tmp_path / f"lmbda{lmbda}" / "model.pt") for lmbda in lmbdas)
        torch.manual_seed(train["seed"])
        fresh = build_codec(levers.ARCH, hyper)

        def same(one, other):
            return all(torch.allclose(a, b, atol=1e-6) for a, b in zip(one.g_a.parameters(), other.g_a.parameters()))

        assert same(first, then) and not same(first, fresh)
