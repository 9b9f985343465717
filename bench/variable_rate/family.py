"""What one pyramid saves against its own per-λ family (seed 001, issue 15), measured on the photos' validation split.

``.venv/bin/python bench/variable_rate/family.py [--budgets 600 300 150 75] [--seed S] [snakemake arguments]``

cost.py measures CompressAI's variable-rate hyperprior against per-λ hyperpriors; this measures the seed's pyramid
(attention after the SimCLR features, ``bench/variable_rate/params.yaml``: 600 CPU-s for its four λ) against the
per-λ models of its own design. The member for point k is a pyramid of the same levels 1…k+1 at the same strides
(``finest_stride`` 16·2^(L−1−k)), so the same encoder depth and decoder, trained at λ_k alone (``top_only: 1``),
B CPU-s for every per-λ budget B of ``--budgets``. The SimCLR network is trained once, in its own folder, and
every run reads it (``simclr.weights``, ``steps: 0``), so that the model and every member see the same features.
The variable-rate pyramid and every member train in folders of their own (``ssl``, ``variable``, ``b<B>/point<k>``
under ``bench/results/variable_rate_family/seed<S>/``; a results folder takes one run at a time), two side by
side, one core each, the longest first. Every operating point is coded to real bitstreams on the validation split,
photos the training never sees; the BD values, the budget where the family draws level with the model and the
ratio are computed as cost.py's. Writes the seed's run to ``bench/results-summary/variable-rate-family.json`` (the
other seeds' runs stay), then the README numbers (bench/summary.py).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))  # cost.py, also when loaded by path
from cost import crossing, curve, store, sweep_row  # noqa: E402

from taskcodec import artifacts  # noqa: E402
from taskcodec.params import codec_id  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PARAMS = ROOT / "bench" / "variable_rate" / "params.yaml"
OUT = ROOT / "bench" / "results-summary" / "variable-rate-family.json"
#: the seed's design, as the benchmark and levers.py run it
DESIGN = {"arch": "pyramid", "N": 48, "M": 64, "attention": 1, "simclr": 1}
LMBDAS = yaml.safe_load(PARAMS.read_text())["variable_rate"]["sweep"]["lmbdas"]


def member(k: int) -> dict:
    """The sweep entry of point k's per-λ member: levels 1…k+1 of the model, at their strides (its finest level at
    the stride of the model's level k+1), trained at their top point alone."""
    return {**DESIGN, "finest_stride": DESIGN.get("finest_stride", 16) * 2 ** (len(LMBDAS) - 1 - k), "top_only": 1}


def config(results: str, seed: int, model: dict, lmbdas: list[float], budget: float | None, ssl: str | None) -> dict:
    """The benchmark's params with ``model`` alone for ``lmbdas`` (``budget`` CPU-s; None: the benchmark's), reading
    the SimCLR network at ``ssl`` as it is (None: training it)."""
    params = yaml.safe_load(PARAMS.read_text())
    params["results_dir"] = results
    params["tracking"]["experiment"] += "-family"
    params["variable_rate"]["sweep"].update(models=[model], lmbdas=lmbdas)
    params["variable_rate"]["train"]["seed"] = seed
    if budget is not None:  # 300, not 300.0: a changed value retrains
        params["variable_rate"]["train"]["time_budget_s"] = int(budget) if budget == int(budget) else budget
    if ssl is not None:
        params["simclr"].update(weights=ssl, steps=0)
    return params


def snakemake(params: dict, targets: list[str], extra: list[str], cores: int = 1) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as file:
        yaml.safe_dump(params, file, sort_keys=False)
        file.flush()
        subprocess.run([sys.executable, "-m", "snakemake", *targets, "--profile", "workflow/profiles/local",
                        "--cores", str(cores), "--configfile", file.name, *extra], cwd=ROOT, check=True)


def member_folder(base: str, budget: float, k: int) -> str:
    return f"{base}/b{budget:g}/point{k}"


def points(results: str, entry: dict, ks: range) -> list[str]:
    return [f"{results}/eval/variable_rate/{codec_id(entry)}/point{k}/val" for k in ks]


def same_features(ssl: Path, folders: list[Path]) -> None:
    """Every run's SimCLR trunk is the one trained in ``ssl`` (a changed network would make the comparison unfair)."""
    trained = {key: value for key, value in artifacts.load_checkpoint(ssl, map_location="cpu")["state_dict"].items()
               if key.startswith("trunk.")}
    if not trained:
        raise SystemExit(f"{ssl} holds no SimCLR trunk; delete its folder and rerun")
    for folder in folders:
        read = artifacts.load_checkpoint(folder / "simclr" / "model.pt", map_location="cpu")["state_dict"]
        if any(key not in read or not torch.equal(value, read[key]) for key, value in trained.items()):
            raise SystemExit(f"{folder}/simclr/model.pt does not hold the network of {ssl}; delete {folder} and rerun")


def measure(base: str, budgets: list[float], seed: int) -> dict:
    """One seed's table: the variable-rate pyramid's curve, each budget's family with the model's BD-PSNR and
    BD-rate against it, the budget where they draw level and the ratio (as cost.py's)."""
    variable = f"{base}/variable"
    model, test = curve([ROOT / path for path in points(variable, DESIGN, range(len(LMBDAS)))],
                        [ROOT / variable / "variable_rate" / codec_id(DESIGN) / "metrics.json"])
    sweeps = []
    for budget in sorted(budgets):
        folders = [member_folder(base, budget, k) for k in range(len(LMBDAS))]
        family, anchor = curve([ROOT / points(f, member(k), range(k, k + 1))[0] for k, f in enumerate(folders)],
                               [ROOT / f / "variable_rate" / codec_id(member(k)) / "metrics.json"
                                for k, f in enumerate(folders)])
        sweeps.append(sweep_row(budget, family, anchor, test))
    budget = crossing(sweeps)
    return {"seed": seed, "variable_rate": {"codec": codec_id(DESIGN), **model},
            "single_rate_codec": f"{codec_id(DESIGN)}'s per-λ family (point k: levels 1…k+1, top_only 1)",
            "lmbdas": len(LMBDAS), "sweeps": sweeps, "crossing_budget_s": None if budget is None else round(budget),
            "cost_ratio": None if budget is None else round(len(LMBDAS) * budget / model["train_cpu_s"], 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=float, nargs="+", default=[600, 300, 150, 75],
                        help="CPU seconds per λ of the families' members")
    parser.add_argument("--seed", type=int, default=0, help="variable_rate.train.seed of every codec training")
    args, extra = parser.parse_known_args(argv)
    base = f"bench/results/variable_rate_family/seed{args.seed}"
    ssl = f"{base}/ssl/simclr/model.pt"
    snakemake(config(f"{base}/ssl", args.seed, DESIGN, LMBDAS, None, None), [ssl], extra, cores=2)
    jobs = [(f"{base}/variable", config(f"{base}/variable", args.seed, DESIGN, LMBDAS, None, ssl),
             points(f"{base}/variable", DESIGN, range(len(LMBDAS))))]
    for budget in args.budgets:
        for k in range(len(LMBDAS)):
            folder = member_folder(base, budget, k)
            jobs.append((folder, config(folder, args.seed, member(k), LMBDAS[: k + 1], budget, ssl),
                         points(folder, member(k), range(k, k + 1))))
    with ThreadPoolExecutor(2) as pool:  # the longest first
        jobs.sort(key=lambda job: -job[1]["variable_rate"]["train"]["time_budget_s"])
        for done in [pool.submit(snakemake, params, targets, extra) for _, params, targets in jobs]:
            done.result()
    same_features(ROOT / ssl, [ROOT / folder for folder, _, _ in jobs])
    measured = measure(base, args.budgets, args.seed)
    store(OUT, measured)
    print(json.dumps(measured, indent=1))
    return subprocess.run([sys.executable, str(ROOT / "bench" / "summary.py")], check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
