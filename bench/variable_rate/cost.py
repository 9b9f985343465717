"""What one variable-rate model saves in training (seed 001, issue 15), measured on the photos' validation split.

``.venv/bin/python bench/variable_rate/cost.py [--budgets 600 300 150] [--seed S] [snakemake arguments]``

Runs ``bench/variable_rate/params.yaml`` with CompressAI's variable-rate hyperprior alone
(``bmshj2018-hyperprior-vbr``, N 48, M 64, the benchmark's 600 CPU-s for its four λ) and, for every per-λ budget B
of ``--budgets``, the per-λ sweep of the same architecture (``bmshj2018-hyperprior``, N 48, M 64, one codec per λ,
B CPU-s each, the same recipe); each budget in its own results folder
(``bench/results/variable_rate_cost/seed<S>/b<B>``), two jobs side by side. Every operating point is coded to real
bitstreams on the validation split, photos the training never sees. For each sweep: the variable-rate model's
BD-PSNR against it (dB at equal bpp, over the bpp range both share, written beside it) and BD-rate on PSNR (over
the PSNR range both share). The sweep that draws level with the variable-rate model costs B* per λ, found where
BD-PSNR crosses 0 between two measured budgets (linear in log B); the ratio is 4·B* / 600. Writes the seed's run
to ``bench/results-summary/variable-rate-cost.json`` (the other seeds' runs stay), then the README numbers
(bench/summary.py).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from taskcodec.evaluation import read_table
from taskcodec.metrics import bd_or_reason, bd_quality, bd_rate
from taskcodec.params import codec_id, number_id
from taskcodec.report.tables import overlap, rd_points

ROOT = Path(__file__).resolve().parents[2]
PARAMS = ROOT / "bench" / "variable_rate" / "params.yaml"
OUT = ROOT / "bench" / "results-summary" / "variable-rate-cost.json"
VARIABLE = {"arch": "bmshj2018-hyperprior-vbr", "N": 48, "M": 64}
SINGLE = {"arch": "bmshj2018-hyperprior", "N": 48, "M": 64}
VARIABLE_ID, SINGLE_ID = codec_id(VARIABLE), codec_id(SINGLE)  # as the workflow names their folders


def config(results: str, seed: int, budget: float, variable: bool) -> dict:
    """The benchmark's params with the per-λ sweep at ``budget`` CPU-s per λ and, when ``variable``, the
    variable-rate model (at the benchmark's own budget)."""
    params = yaml.safe_load(PARAMS.read_text())
    params["results_dir"] = results
    params["tracking"]["experiment"] += "-cost"
    params["codec"]["sweep"]["models"] = [SINGLE]
    params["codec"]["train"].update(time_budget_s=budget, seed=seed)
    params["variable_rate"]["train"]["seed"] = seed
    params["variable_rate"]["enabled"] = variable
    params["variable_rate"]["sweep"]["models"] = [VARIABLE]
    # the variable-rate hyperprior reads no SimCLR features, but the workflow trains the network for every
    # variable-rate sweep: a short training is enough here
    params["simclr"]["time_budget_s"] = 30
    return params


def run(results: str, params: dict, extra: list[str]) -> None:
    lmbdas = params["codec"]["sweep"]["lmbdas"]
    targets = [f"{results}/eval/learned/{SINGLE_ID}/lmbda{number_id(lmbda)}/val" for lmbda in lmbdas]
    if params["variable_rate"]["enabled"]:
        targets += [f"{results}/eval/variable_rate/{VARIABLE_ID}/point{k}/val" for k in range(len(lmbdas))]
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as file:
        yaml.safe_dump(params, file, sort_keys=False)
        file.flush()
        subprocess.run([sys.executable, "-m", "snakemake", *targets, "--profile", "workflow/profiles/local",
                        "--configfile", file.name, *extra], cwd=ROOT, check=True)


def curve(folders: list[Path], metrics: list[Path]) -> tuple[dict, tuple[np.ndarray, np.ndarray]]:
    """A model's points on the validation split (bpp from the bytes) with its training steps and CPU seconds,
    rounded for the summary, and its (bpp, PSNR) as measured, which the BD values are computed from."""
    points = rd_points(pd.concat([read_table(folder / "per_image.csv") for folder in folders])).sort_values("bpp")
    trained = [json.loads(path.read_text()) for path in metrics]
    return ({"steps": sum(m["steps"] for m in trained), "train_cpu_s": round(sum(m["train_seconds"] for m in trained)),
             "images": int(points["images"].iloc[0]), "image_size": points["image_size"].iloc[0],
             "bpp": points["bpp"].round(4).tolist(), "psnr": points["psnr"].round(2).tolist()},
            (points["bpp"].to_numpy(), points["psnr"].to_numpy()))


def finite(value: float, digits: int) -> float | None:
    """``value`` rounded, None when it cannot be computed (NaN: no range the two curves share)."""
    return None if math.isnan(value) else round(value, digits)


def bd(function, anchor: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
       digits: int) -> float | None:
    """A Bjøntegaard value (``bd_rate``, ``bd_quality``) of ``test`` against ``anchor``, rounded; None when it
    cannot be computed (:func:`~taskcodec.metrics.bd_or_reason`)."""
    return finite(bd_or_reason(function, *anchor, *test)[0], digits)


def shared_range(anchor: np.ndarray, test: np.ndarray) -> list[float] | None:
    """The bpp range two curves share, over which BD-PSNR averages (None: none)."""
    low, high = max(anchor.min(), test.min()), min(anchor.max(), test.max())
    return [round(float(low), 4), round(float(high), 4)] if low < high else None


def crossing(sweeps: list[dict]) -> float | None:
    """The per-λ budget at which the variable-rate model's BD-PSNR against the sweep crosses 0 (linear in
    log budget between the two measured budgets around it), or None when no two budgets bracket it."""
    rows = sorted((s["budget_s"], s["bd_psnr_db"]) for s in sweeps if s["bd_psnr_db"] is not None)
    for (low, above), (high, below) in zip(rows, rows[1:]):
        if above >= 0 >= below:
            return float(np.exp(np.interp(0.0, [below, above], [np.log(high), np.log(low)])))
    return None


def sweep_row(budget: float, sweep: dict, anchor: tuple[np.ndarray, np.ndarray],
              test: tuple[np.ndarray, np.ndarray]) -> dict:
    """A sweep's row: its curve (:func:`curve`) with the variable-rate model's (``test``) BD-PSNR and BD-rate
    against it (``anchor``), the bpp range and the PSNR overlap they average over."""
    return {"budget_s": budget, **sweep, "bd_psnr_db": bd(bd_quality, anchor, test, 2),
            "shared_bpp": shared_range(anchor[0], test[0]), "bd_rate_psnr": bd(bd_rate, anchor, test, 1),
            "overlap_psnr_db": finite(overlap(anchor[1], test[1]), 2)}


def store(out: Path, measured: dict) -> None:
    """Write one seed's run to ``out``; the other seeds' runs stay."""
    runs = json.loads(out.read_text())["runs"] if out.is_file() else []
    kept = [other for other in runs if other["seed"] != measured["seed"]]
    out.write_text(json.dumps({"runs": sorted([*kept, measured], key=lambda one: one["seed"])}, indent=1) + "\n")


def measure(folders: dict[float, str], first_budget: float, seed: int) -> dict:
    """One seed's table: the variable-rate model's curve (trained in the first budget's folder), every sweep's
    curve with the model's BD-PSNR and BD-rate against it, the budget where they draw level and the ratio."""
    first = ROOT / folders[first_budget]
    n_points = len(yaml.safe_load(PARAMS.read_text())["codec"]["sweep"]["lmbdas"])
    variable, test = curve([first / "eval" / "variable_rate" / VARIABLE_ID / f"point{k}" / "val"
                            for k in range(n_points)], [first / "variable_rate" / VARIABLE_ID / "metrics.json"])
    sweeps = []
    for budget, results in sorted(folders.items()):
        codecs = sorted((ROOT / results / "codecs" / SINGLE_ID).glob("lmbda*"))
        sweep, anchor = curve([ROOT / results / "eval" / "learned" / SINGLE_ID / c.name / "val" for c in codecs],
                              [c / "metrics.json" for c in codecs])
        sweeps.append(sweep_row(budget, sweep, anchor, test))
    budget = crossing(sweeps)
    return {"seed": seed, "variable_rate": {"codec": VARIABLE_ID, **variable},
            "single_rate_codec": SINGLE_ID, "lmbdas": n_points, "sweeps": sweeps,
            "crossing_budget_s": None if budget is None else round(budget),
            "cost_ratio": None if budget is None else round(n_points * budget / variable["train_cpu_s"], 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=float, nargs="+", default=[600, 300, 150],
                        help="CPU seconds per λ of the per-λ sweeps (the first also trains the variable-rate model)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every training")
    args, extra = parser.parse_known_args(argv)
    base = f"bench/results/variable_rate_cost/seed{args.seed}"
    folders = {budget: f"{base}/b{budget:g}" for budget in args.budgets}
    for i, (budget, results) in enumerate(folders.items()):
        run(results, config(results, args.seed, budget, variable=i == 0), extra)
    measured = measure(folders, args.budgets[0], args.seed)
    store(OUT, measured)
    print(json.dumps(measured, indent=1))
    return subprocess.run([sys.executable, str(ROOT / "bench" / "summary.py")], check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
