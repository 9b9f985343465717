"""The pyramid's per-λ family study (bench/variable_rate/family.py): each member is the variable-rate pyramid
restricted to one point, trained at that point alone, and every run reads one SimCLR network."""

import pytest
import torch

from bench_scripts import ROOT, load_bench
from taskcodec import artifacts
from taskcodec.params import validate_params

family = load_bench("variable_rate/family.py")
SCHEMA = ROOT / "workflow" / "schemas" / "params.schema.yaml"


@pytest.mark.parametrize("k", range(len(family.LMBDAS)))
def test_point_ks_member_has_the_models_first_k_plus_1_levels_at_their_strides_and_trains_at_lambda_k(k):
    levels = len(family.LMBDAS)
    params = family.config("bench/results/x", 3, family.member(k), family.LMBDAS[: k + 1], 150, "ssl/model.pt")
    validate_params(params, SCHEMA, source="family")
    sweep, train = params["variable_rate"]["sweep"], params["variable_rate"]["train"]
    (entry,) = sweep["models"]
    assert sweep["lmbdas"] == family.LMBDAS[: k + 1]  # k + 1 levels, the top one at λ_k
    assert {key: entry[key] for key in family.DESIGN} == family.DESIGN and entry["top_only"] == 1
    # level i of the member has the stride of the model's level i (16 · 2^(levels − i), the model's finest 16)
    for i in range(1, k + 2):
        assert entry["finest_stride"] * 2 ** (k + 1 - i) == 16 * 2 ** (levels - i)
    assert (train["time_budget_s"], train["seed"], params["results_dir"]) == (150, 3, "bench/results/x")
    assert params["simclr"]["weights"] == "ssl/model.pt" and params["simclr"]["steps"] == 0  # read as it is
    model = family.config("bench/results/y", 3, family.DESIGN, family.LMBDAS, None, None)
    assert model["variable_rate"]["train"]["time_budget_s"] == 600 and model["simclr"]["weights"] is None


def test_a_run_whose_simclr_network_differs_from_the_trained_one_stops_the_study(tmp_path):
    def saved(folder, value):
        path = tmp_path / folder / "simclr" / "model.pt"
        path.parent.mkdir(parents=True)
        artifacts.save_checkpoint(path, {"state_dict": {"trunk.w": torch.full((2,), value), "head.w": torch.rand(2)}})
        return path

    ssl = saved("ssl", 1.0)
    saved("same", 1.0)
    saved("other", 2.0)
    family.same_features(ssl, [tmp_path / "same"])  # the projection heads may differ: the codec reads the trunk
    with pytest.raises(SystemExit, match="other/simclr/model.pt does not hold the network of"):
        family.same_features(ssl, [tmp_path / "same", tmp_path / "other"])
