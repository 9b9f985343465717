"""The variable-rate training-cost study (bench/variable_rate/cost.py): where a per-λ sweep draws level with one
variable-rate model, and how bench/summary.py states it."""

import math

import numpy as np
import pytest

from bench_scripts import load_bench

cost = load_bench("variable_rate/cost.py")
summary = load_bench("summary.py")


def sweep(budget: float, gap: float | None) -> dict:
    return {"budget_s": budget, "bd_psnr_db": gap}


def test_the_crossing_is_interpolated_in_log_budget_between_the_budgets_around_it():
    # the variable-rate model is 0.2 dB above the 300 s sweep and 0.6 dB below the 600 s one: a quarter of the way
    # from 300 to 600 in log budget
    sweeps = [sweep(600, -0.6), sweep(150, 1.0), sweep(300, 0.2)]
    assert cost.crossing(sweeps) == pytest.approx(300 * 2 ** 0.25)
    assert cost.crossing([sweep(150, 1.0), sweep(300, 0.0)]) == pytest.approx(300)


def test_no_crossing_when_no_two_budgets_bracket_it_or_a_gap_is_unknown():
    assert cost.crossing([sweep(150, 1.0), sweep(300, 0.4)]) is None  # the model beats every sweep measured
    assert cost.crossing([sweep(150, -0.3), sweep(300, -0.5)]) is None
    assert cost.crossing([sweep(150, 1.0), sweep(300, None), sweep(600, 0.5)]) is None


def test_the_shared_bpp_range_and_missing_values():
    assert cost.shared_range(np.array([0.1, 0.3, 0.5]), np.array([0.2, 0.6])) == [0.2, 0.5]
    assert cost.shared_range(np.array([0.1, 0.2]), np.array([0.3, 0.6])) is None
    assert cost.finite(math.nan, 2) is None and cost.finite(1.234, 1) == 1.2


def test_a_bd_value_is_none_when_a_curve_has_two_points_at_one_psnr_or_no_range_is_shared():
    anchor, test = (np.array([0.3, 0.4, 0.5]), np.array([21.49, 21.49, 22.7])), (np.array([0.45, 0.6]),
                                                                                np.array([21.0, 22.0]))
    assert cost.bd(cost.bd_rate, anchor, test, 1) is None  # the sweep's rate is no function of its PSNR
    assert cost.bd(cost.bd_quality, anchor, test, 2) is not None  # BD-PSNR needs distinct rates only
    assert cost.bd(cost.bd_quality, anchor, (np.array([0.7, 0.9]), np.array([23.0, 24.0])), 2) is None


def test_the_summary_states_each_seeds_ratio_with_every_gap_beside_its_range(monkeypatch):
    model = {"codec": "vbr/N8", "steps": 100, "train_cpu_s": 600, "images": 7, "image_size": "512×512",
             "bpp": [0.1, 0.2], "psnr": [20.0, 22.0]}
    sweeps = [{"budget_s": 150, "steps": 40, "train_cpu_s": 600, "bpp": [0.1, 0.2], "psnr": [19.0, 21.0],
               "bd_psnr_db": 1.0, "shared_bpp": [0.1, 0.2], "bd_rate_psnr": -30.0, "overlap_psnr_db": 1.0},
              {"budget_s": 300, "steps": 80, "train_cpu_s": 1200, "bpp": [0.3, 0.4], "psnr": [23.0, 24.0],
               "bd_psnr_db": None, "shared_bpp": None, "bd_rate_psnr": None, "overlap_psnr_db": None}]
    run = {"seed": 0, "variable_rate": model, "single_rate_codec": "hp/N8", "lmbdas": 2, "sweeps": sweeps,
           "crossing_budget_s": 200, "cost_ratio": 0.67}
    data = {"runs": [run, {**run, "seed": 1, "sweeps": sweeps[:1], "crossing_budget_s": None, "cost_ratio": None}]}
    monkeypatch.setattr(summary, "_json", lambda name: data)
    lines = summary.render_variable_rate_cost().splitlines()
    assert lines[4] == "| 0 | vbr/N8 (one model) | 600 | 100 | 0.100 / 20.00, 0.200 / 22.00 | | |"
    assert lines[5] == ("| 0 | hp/N8, 2 × 150 CPU-s | 600 | 40 | 0.100 / 19.00, 0.200 / 21.00 | +1.00 dB over "
                        "0.100–0.200 bpp | -30.0 %, 1.00 dB |")
    assert lines[6].endswith("| n/a (no bpp range shared) | n/a, none |")
    assert lines[7].startswith("| 1 | vbr/N8 (one model) |") and len(lines) == 11
    assert lines[-1] == ("The per-λ models that draw level with the variable-rate model (BD-PSNR 0, interpolated in "
                         "log budget): seed 0: 2 × 200 CPU-s, **0.7×** the variable-rate model's 600 CPU-s; seed 1: "
                         "no two measured budgets bracket it.")
