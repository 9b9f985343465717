"""The pyramid's per-λ family study (bench/variable_rate/family.py): each member is the variable-rate pyramid
restricted to one point, trained at that point alone, and every run reads one SimCLR network."""

import pytest
import torch
from torch import nn

from bench_scripts import ROOT, load_bench
from taskcodec import artifacts
from taskcodec.codecs.registry import build_codec
from taskcodec.params import validate_params

family = load_bench("variable_rate/family.py")
SCHEMA = ROOT / "workflow" / "schemas" / "params.schema.yaml"


class Features(nn.Module):
    """A stand-in for the SimCLR network: stride 4, 8 channels."""

    channels, stride = 8, 4

    def __init__(self):
        super().__init__()
        self.net = nn.Conv2d(3, 8, 4, 4)

    def forward(self, x):
        return self.net(x)


@pytest.mark.parametrize("k", range(len(family.LMBDAS)))
def test_point_ks_member_has_the_models_first_k_plus_1_levels_at_their_strides_and_trains_at_lambda_k(k):
    levels = len(family.LMBDAS)
    params = family.config("bench/results/x", 3, family.member(k), family.LMBDAS[: k + 1], 150, "ssl/model.pt")
    validate_params(params, SCHEMA, source="family")
    sweep, train = params["variable_rate"]["sweep"], params["variable_rate"]["train"]
    (entry,) = sweep["models"]
    assert sweep["lmbdas"] == family.LMBDAS[: k + 1]  # k + 1 levels, the top one at λ_k
    assert {key: entry[key] for key in family.DESIGN} == family.DESIGN and entry["top_only"] == 1
    # built with as many levels as λ, as the workflow builds them: the member's levels are the model's first
    # k + 1, at their strides, decoded by a trunk as long
    model, built = codec(family.DESIGN, levels), codec(entry, k + 1)
    x = torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        assert [y.shape for y in built._latents(x, count=k + 1)] == [y.shape for y in model._latents(x, count=k + 1)]
    assert len(built.trunk) == len(model.trunk) and built.pad_multiple == model.pad_multiple
    assert built.point_weights == (0.0,) * k + (1.0,)
    assert (train["time_budget_s"], train["seed"], params["results_dir"]) == (150, 3, "bench/results/x")
    assert params["simclr"]["weights"] == "ssl/model.pt" and params["simclr"]["steps"] == 0  # read as it is
    variable = family.config("bench/results/y", 3, family.DESIGN, family.LMBDAS, None, None)
    assert variable["variable_rate"]["train"]["time_budget_s"] == 600 and variable["simclr"]["weights"] is None


def codec(entry: dict, levels: int):
    hyper = {key: value for key, value in entry.items() if key != "arch"}
    return build_codec(entry["arch"], {**hyper, "levels": levels}, ssl_model=Features())


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
