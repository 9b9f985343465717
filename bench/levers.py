"""Which levers make codec pretraining converge fast: each variant trains codecs for the same budget on a
study's training split and is scored on its validation split (never Kodak, never a test split).

``python bench/levers.py [--study kodak|demo] [--budget 300] [--jobs 2] [--only NAME ...] [--lmbdas λ ...]``

Studies: ``kodak`` trains one codec per variant at λ 0.0067 for ``--budget`` CPU seconds on the photos
(``bench/kodak/params.yaml``); ``demo`` trains the demo's λ (its ``codec.sweep.lmbdas``) for its step count
(``params.yaml``). ``--lmbdas`` runs the chosen variants at other λ. Every variant is the study's ``codec.train`` with a few keys changed
(``STUDIES``), and ``bmshj2018-hyperprior`` unless its hyperparameters name another ``arch``; it runs the
train_codec stage as a user would (one thread; a budget counts process CPU seconds; a variant's own
``time_budget_s`` wins). A variable-rate architecture (CompressAI's ``-vbr`` models) trains one model for all
the run's λ, one row per operating point. A variant of ``NEIGHBOURS`` starts from the codec of a larger λ
(``init: neighbour``), trained first with the same recipe and budget; a variant whose ``init`` chains the λ
(``neighbour``, ``smaller_neighbour``) trains its λ one after another, each from its own codec of the
neighbouring λ, as the workflow's chained sweep does.
Scored on the validation images: the rate–distortion loss R + λ·255²·MSE it was trained for (lower is better;
bpp estimated from the likelihoods; a variable-rate model reports one loss for all its points, left empty), PSNR
and bpp, and throughput (training images/s). The table goes to ``bench/results-summary/<study>-levers.csv``;
bench/summary.py puts it in bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import yaml

from taskcodec.codecs.registry import is_variable_rate
from taskcodec.params import CHAINS, chained_from

ROOT = Path(__file__).resolve().parents[1]
ARCH = "bmshj2018-hyperprior"  # a variant's architecture unless its hyperparameters name another

#: name → (codec hyperparameters, changes to codec.train), in the order they were tried; each row says what
#: it changes from the row it builds on
OLD = {"lr": 1e-3, "lr_warmup": 0.0, "lr_decay": "steps", "lr_drop_at": [0.8, 0.95], "lr_gamma": 0.3,
       "ema_decay": None, "quantization": "noise", "patch_size": 256, "batch_size": 8}
KODAK: dict[str, tuple[dict, dict]] = {
    "old: N128-M192, 256² patches, step drops": ({"N": 128, "M": 192}, OLD),
    "N64-M96": ({"N": 64, "M": 96}, OLD),
    "N64-M96, 128² patches": ({"N": 64, "M": 96}, {**OLD, "patch_size": 128}),
    "+ warm-up 2 %, cosine": ({"N": 64, "M": 96}, {**OLD, "patch_size": 128, "lr_warmup": 0.02,
                                                 "lr_decay": "cosine"}),
    "+ peak lr 2e-3": ({"N": 64, "M": 96}, {**OLD, "patch_size": 128, "lr_warmup": 0.02, "lr_decay": "cosine",
                                           "lr": 2e-3}),
    "+ straight-through rounding": ({"N": 64, "M": 96}, {**OLD, "patch_size": 128, "lr_warmup": 0.02,
                                                         "lr_decay": "cosine", "lr": 2e-3, "quantization": "ste"}),
    # cosine lost to step drops at this budget (the rows above): the rest builds on step drops at 1e-3
    "128², step drops + straight-through": ({"N": 64, "M": 96}, {**OLD, "patch_size": 128, "quantization": "ste"}),
    "+ weight average 0.99": ({"N": 64, "M": 96}, {**OLD, "patch_size": 128, "quantization": "ste",
                                                   "ema_decay": 0.99}),
    "+ N48-M64 (no average)": ({"N": 48, "M": 64}, {**OLD, "patch_size": 128, "quantization": "ste"}),
    # the kept recipe (bench/kodak/params.yaml) with twice the budget, and started from a larger λ's codec
    "N48-M64, 600 CPU-s": ({"N": 48, "M": 64}, {**OLD, "patch_size": 128, "quantization": "ste",
                                               "time_budget_s": 600}),
    "N48-M64 from the λ 0.013 codec (300 + 300 CPU-s)": ({"N": 48, "M": 64}, {**OLD, "patch_size": 128,
                                                                               "quantization": "ste"}),
    # the workflow's two chains over the study's four λ (--lmbdas), every λ from its neighbour's codec
    "N48-M64 chained from the largest λ down (init: neighbour)": (
        {"N": 48, "M": 64}, {**OLD, "patch_size": 128, "quantization": "ste", "init": "neighbour"}),
    "N48-M64 chained from the smallest λ up (init: smaller_neighbour)": (
        {"N": 48, "M": 64}, {**OLD, "patch_size": 128, "quantization": "ste", "init": "smaller_neighbour"}),
}
#: variant → the larger λ whose codec it starts from (``init: neighbour``): trained first, same recipe and budget
NEIGHBOURS = {"N48-M64 from the λ 0.013 codec (300 + 300 CPU-s)": 0.013,
              "+ from the λ 0.18 codec (1600 + 1600 steps)": 0.18}


#: the demo study's rows all trained 16 patches per step (params.yaml's then) without the spike guard; pinned, as
#: params.yaml now has 8 and the guard
DEMO_OLD = {"steps": 1200, "lr": 2e-3, "lr_warmup": 0.0, "lr_decay": "steps", "lr_drop_at": [0.75, 0.9], "lr_gamma": 0.3,
            "ema_decay": None, "quantization": "noise", "batch_size": 16, "spike_guard": None}
DEMO_NOW = {**DEMO_OLD, "quantization": "ste", "steps": 1600}
DEMO: dict[str, tuple[dict, dict]] = {
    "demo before: step drops, noise": ({"N": 32, "M": 48}, DEMO_OLD),
    "+ warm-up 2 %, cosine": ({"N": 32, "M": 48}, {**DEMO_OLD, "lr_warmup": 0.02, "lr_decay": "cosine"}),
    # cosine lost (above): the rest builds on step drops
    "step drops + straight-through": ({"N": 32, "M": 48}, {**DEMO_OLD, "quantization": "ste"}),
    # 4×4×48 latents for 64×64 images: at most 1 value per 16 (pixel, colour) values, a ceiling on PSNR
    # for the demo's textured backgrounds; M costs little (only g_a's last and g_s's first layer see it)
    "+ M96": ({"N": 32, "M": 96}, {**DEMO_OLD, "quantization": "ste"}),
    # then the default: + M96 with 1600 steps, each λ from scratch; the rows below each change one thing from it
    "from scratch: M96, 1600 steps (the default before the chain)": ({"N": 32, "M": 96}, DEMO_NOW),
    "+ mean-scale hyperprior (mbt2018-mean)": ({"arch": "mbt2018-mean", "N": 32, "M": 96}, DEMO_NOW),
    "+ N64": ({"N": 64, "M": 96}, DEMO_NOW),
    "+ 4× the steps (6400)": ({"N": 32, "M": 96}, {**DEMO_NOW, "steps": 6400}),
    "+ from the λ 0.18 codec (1600 + 1600 steps)": ({"N": 32, "M": 96}, DEMO_NOW),
    # the workflow's chained sweeps: every λ from its own neighbour's codec, from the largest down or smallest up
    "+ chained from the largest λ down (init: neighbour)": ({"N": 32, "M": 96}, {**DEMO_NOW, "init": "neighbour"}),
    "+ chained from the smallest λ up (init: smaller_neighbour)": ({"N": 32, "M": 96},
                                                                   {**DEMO_NOW, "init": "smaller_neighbour"}),
    # CompressAI's variable-rate hyperprior: one model for the three λ in their three step counts
    "variable-rate (-vbr), the three λ in one model, 4800 steps": (
        {"arch": "bmshj2018-hyperprior-vbr", "N": 32, "M": 96}, {**DEMO_NOW, "steps": 4800}),
}

#: study → (params file, variants, λ values or None for the params' codec.sweep.lmbdas, results folder); a study
#: without a budget trains its step count
STUDIES = {
    "kodak": ("bench/kodak/params.yaml", KODAK, [0.0067], "bench/results/kodak-levers"),
    "demo": ("params.yaml", DEMO, None, "bench/results/demo-levers"),
}


def slug(name: str) -> str:
    return "".join(c if c.isascii() and c.isalnum() else "-" for c in name).strip("-").lower()[:60]


def prepare(params: dict, out: Path) -> Path:
    """The study's prepared data (train / val split), made once with the prepare stage."""
    out = out / "prepared"
    if not (out / "manifest.csv").is_file():
        subprocess.run([sys.executable, "-m", "taskcodec.stages.prepare", "--params", json.dumps(params["prepare"]),
                        "--out", str(out)], check=True, cwd=ROOT,
                       env={**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{out.parent}/mlflow.db"})
    return out / "manifest.csv"


def train_params(base: dict, changes: dict, budget: float | None) -> dict:
    """A variant's codec.train: from scratch unless it chains its λ itself (``changes``' ``init``)."""
    params = {**base, "init": None, **changes, "val_every": 1_000_000, "checkpoint_every": 500}
    if budget is not None:  # a variant's own time_budget_s (a longer run) wins over the study's
        params.update(time_budget_s=changes.get("time_budget_s", budget), steps=1_000_000)
    return params


def folder_name(lmbdas: list[float]) -> str:
    """A trained codec's folder: ``lmbda<λ>``, or ``lmbdas<λ,λ,...>`` for a variable-rate model of several λ."""
    return f"lmbda{lmbdas[0]}" if len(lmbdas) == 1 else "lmbdas" + ",".join(map(str, lmbdas))


def neighbour_folder(name: str) -> str | None:
    """The folder, beside the variant's own, of the codec variant ``name`` starts from (``NEIGHBOURS``): the same
    recipe from scratch at the larger λ; None for a variant trained from scratch."""
    return f"neighbour-lmbda{NEIGHBOURS[name]}" if name in NEIGHBOURS else None


def train(folder: Path, hyper: dict, params: dict, lmbdas: list[float], manifest: Path, out: Path,
          neighbour: Path | None = None) -> None:
    """One codec trained by the train_codec stage into ``folder`` (skipped when it is already there), at its λ (a
    variable-rate model at all of ``lmbdas``); from the trained codec in ``neighbour`` (``init: neighbour``), as the
    workflow chains a sweep (a chained variant's own ``init``)."""
    model = folder / "model.pt"
    if model.is_file():
        return
    start = []
    if neighbour is not None:
        init = params["init"] if params["init"] in CHAINS else "neighbour"
        params, start = {**params, "init": init}, ["--init-from", str(neighbour / "model.pt")]
    arch = hyper.get("arch", ARCH)
    rates = ["--lmbdas", ",".join(map(str, lmbdas))] if is_variable_rate(arch) else ["--lmbda", str(lmbdas[0])]
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "train.log", "w") as log:
        subprocess.run([sys.executable, "-m", "taskcodec.stages.train_codec", "--params", json.dumps(params),
                        "--threads", "1", "--device", "cpu", "--arch", arch,
                        "--hyper", json.dumps({k: v for k, v in hyper.items() if k != "arch"}), *rates,
                        "--manifest", str(manifest), *start, "--out", str(model)], check=True, cwd=ROOT, stdout=log,
                       stderr=subprocess.STDOUT, env={**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{out}/mlflow.db"})


def rows_of(name: str, hyper: dict, params: dict, folder: Path) -> list[dict]:
    """A trained variant's table rows, from its metrics.json: one per operating point (one for a single λ)."""
    metrics = json.loads((folder / "metrics.json").read_text())
    val, lmbdas = metrics["val"], metrics["lmbda"] if isinstance(metrics["lmbda"], list) else [metrics["lmbda"]]
    common = {"variant": name, "N": hyper["N"], "M": hyper["M"], "patch": params["patch_size"],
              "batch": params["batch_size"], "budget_cpu_s": params["time_budget_s"], "steps": metrics["steps"],
              "train_cpu_s": round(metrics["train_seconds"], 1),
              "images_per_s": round(metrics["steps"] * params["batch_size"] / metrics["train_seconds"], 2)}
    if len(lmbdas) == 1:
        return [{**common, "lmbda": lmbdas[0], "val_loss": round(val["loss"], 4), "val_bpp": round(val["bpp"], 4),
                 "val_psnr": round(val["psnr"], 2)}]
    return [{**common, "lmbda": lmbda, "val_loss": None, "val_bpp": round(val[f"bpp_p{k}"], 4),
             "val_psnr": round(val[f"psnr_p{k}"], 2)} for k, lmbda in enumerate(lmbdas)]


def jobs(variants: dict[str, tuple[dict, dict]], names: list[str], lmbdas: list[float]) -> list[tuple[str, list]]:
    """(variant, λ of one job) for each job: every λ for one, all at once (ascending) for a variable-rate model or
    a chained variant (one training after another); a variant that starts from a larger λ's codec
    (``NEIGHBOURS``) only below that λ."""
    lmbdas = sorted(set(lmbdas))
    return [(name, group) for name in names
            for group in ([lmbdas] if is_variable_rate(variants[name][0].get("arch", ARCH))
                          or variants[name][1].get("init") in CHAINS else
                          [[lmbda] for lmbda in lmbdas if lmbda < NEIGHBOURS.get(name, float("inf"))])]


def trainings(variants: dict[str, tuple[dict, dict]], name: str,
              lmbdas: list[float]) -> list[tuple[str, list[float], str | None]]:
    """The trainings of one job of ``jobs``, in order: (folder, its λ, the folder of the codec it starts from or
    None); a chained variant's λ one after another, from the chain's first."""
    init = variants[name][1].get("init")
    if init not in CHAINS:
        return [(folder_name(lmbdas), lmbdas, neighbour_folder(name))]
    starts = {lmbda: chained_from(init, lmbda, lmbdas) for lmbda in sorted(lmbdas, reverse=CHAINS[init] == "larger")}
    return [(folder_name([lmbda]), [lmbda], None if start is None else folder_name([start]))
            for lmbda, start in starts.items()]


def table(variants: dict[str, tuple[dict, dict]], out: Path, base: dict, budget: float | None,
          committed: list[dict]) -> pd.DataFrame:
    """The study's table: every variant and λ trained under ``out`` so far (a variant may have been tried at more λ
    than others), and the ``committed`` rows of the variants whose results are gone, as they were measured. A
    variant measured twice at one λ (two variable-rate models of different λ sets) is refused: remove one folder."""
    rows, where = {}, {}
    for name, (hyper, changes) in variants.items():
        for folder in sorted((out / slug(name)).glob("lmbda*/")):
            if (folder / "metrics.json").is_file():
                for measured in rows_of(name, hyper, train_params(base, changes, budget), folder):
                    key = (name, measured["lmbda"])
                    if key in where:
                        raise SystemExit(f"bench/levers.py: '{name}' at λ {key[1]} was trained in {where[key]} and "
                                         f"in {folder}; remove one of them")
                    rows[key], where[key] = measured, folder
    rows = {**{(old["variant"], old["lmbda"]): old for old in committed if old["variant"] in variants}, **rows}
    order = list(variants)
    return pd.DataFrame(sorted(rows.values(), key=lambda r: (order.index(r["variant"]), r["lmbda"])))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", choices=sorted(STUDIES), default="kodak")
    parser.add_argument("--budget", type=float, help="CPU seconds of training per codec (kodak: 300)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--only", nargs="*", help="variant names to run (default: all; [] none: the table only)")
    parser.add_argument("--lmbdas", type=float, nargs="+", help="the λ to run them at (default: the study's)")
    args = parser.parse_args(argv)
    params_file, variants, lmbdas, out = STUDIES[args.study]
    budget = args.budget if args.budget is not None else (300.0 if args.study == "kodak" else None)
    params = yaml.safe_load((ROOT / params_file).read_text())
    out = ROOT / out
    manifest = prepare(params, out)
    base = params["codec"]["train"]
    todo = jobs(variants, list(variants) if args.only is None else args.only,
                args.lmbdas or lmbdas or params["codec"]["sweep"]["lmbdas"])

    def run(name: str, folder: str, lmbdas: list[float], neighbour: str | None = None) -> None:
        hyper, changes = variants[name]
        train(out / slug(name) / folder, hyper, train_params(base, changes, budget), lmbdas, manifest, out,
              None if neighbour is None else out / slug(name) / neighbour)

    def job(name: str, lmbdas: list[float]) -> None:
        for folder, group, start in trainings(variants, name, lmbdas):
            run(name, folder, group, start)

    with ThreadPoolExecutor(args.jobs) as pool:  # the codecs others start from first, each once
        list(pool.map(lambda name: run(name, neighbour_folder(name), [NEIGHBOURS[name]]),
                      {name for name, _ in todo if name in NEIGHBOURS}))
        list(pool.map(lambda todo_job: job(*todo_job), todo))
    summary = ROOT / f"bench/results-summary/{args.study}-levers.csv"
    committed = pd.read_csv(summary).to_dict("records") if summary.is_file() else []
    result = table(variants, out, base, budget, committed)
    print(result.to_string(index=False))
    summary.parent.mkdir(parents=True, exist_ok=True)
    result.to_csv(summary, index=False)


if __name__ == "__main__":
    main()
