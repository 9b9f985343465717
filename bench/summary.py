"""Write the benchmark numbers quoted in README.md and bench/README.md from the committed summaries.

``python bench/summary.py`` rewrites every block between ``<!-- summary:NAME -->`` and ``<!-- /summary -->``
in those files with what ``RENDERERS[NAME]`` makes of ``bench/results-summary/``; ``--check`` only reports
the blocks that differ (exit status 1), so a number edited by hand or a summary committed without its
README is caught by the tests. No number in those blocks is typed by hand.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from pathlib import Path
from typing import Callable

from taskcodec.params import CHAINS

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/summary_*.py, also when loaded by path
from summary_kodak import latent_channels, spike_guard  # noqa: E402
from summary_scale import capacity, scale, storage  # noqa: E402
from summary_tasks import (classification, classification_headline, demo_machine, demo_patches,  # noqa: E402
                           detection, detection_levers, fixed3, pct, vqa)

ROOT = Path(__file__).resolve().parents[1]
SUMMARIES = ROOT / "bench/results-summary"
DOCUMENTS = (ROOT / "README.md", ROOT / "bench/README.md")
BLOCK = re.compile(r"(<!-- summary:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /summary -->)", re.S)


def _json(name: str) -> dict:
    return json.loads((SUMMARIES / name).read_text())


def _bd_rows(summary: dict, anchors: list[str] | None = None) -> list[dict]:
    rows = [row for row in summary["bd_rate"] if anchors is None or row["anchor"] in anchors]
    return sorted(rows, key=lambda row: (row["codec"], row["anchor"]))


def _overlaps(value: float | None) -> bool:
    """Whether two curves share a quality range of this width (None or ≤ 0: they do not)."""
    return value is not None and value > 0


def _overlap(value: float | None) -> str:
    if not _overlaps(value):
        return "none"
    return f"{value:.2f} dB" + (" (under 1 dB)" if value < 1 else "")


def bd_table(summary: dict, anchors: list[str] | None = None) -> str:
    lines = ["| learned codec | anchor | BD-rate (PSNR) | PSNR overlap | BD-rate (MS-SSIM) | MS-SSIM overlap | note |",
             "|---|---|---|---|---|---|---|"]
    for row in _bd_rows(summary, anchors):
        lines.append(f"| {row['codec']} | {row['anchor']} | {pct(row['bd_rate_psnr'])} | "
                     f"{_overlap(row['overlap_psnr_db'])} | {pct(row['bd_rate_ms_ssim'])} | "
                     f"{_overlap(row['overlap_ms_ssim_db'])} | {row['note']} |")
    return "\n".join(lines)


def points_table(summary: dict) -> str:
    lines = ["| codec | λ | training steps | training CPU-s | image size | bpp (bytes) | bpp (estimated) | PSNR (dB) "
             "| MS-SSIM |", "|---|---|---|---|---|---|---|---|---|"]
    for row in summary["learned"]:
        lines.append(f"| {row['codec']} | {row['point']:g} | {row['steps']} | {row['train_seconds']:.0f} | "
                     f"{row['image_size']} | {row['bpp']:.3f} | {row['bpp_estimated']:.3f} | {row['psnr']:.2f} | "
                     f"{row['ms_ssim']:.4f} |")
    return "\n".join(lines)


def classical_line(summary: dict) -> str:
    parts = []
    for codec in sorted({row["codec"] for row in summary["classical"]}):
        rows = [row for row in summary["classical"] if row["codec"] == codec]
        low, high = min(rows, key=lambda row: row["bpp"]), max(rows, key=lambda row: row["bpp"])
        parts.append(f"{codec} {low['bpp']:.3f}–{high['bpp']:.3f} bpp at {low['psnr']:.2f}–{high['psnr']:.2f} dB")
    return "Classical codecs in the same run, on the same images: " + "; ".join(parts) + "."


def render_kodak() -> str:
    summary = _json("kodak.json")
    published = {"bd_rate": [row for row in summary["published_bd_rate"]
                             if row["anchor"] in ("jpeg", "webp", "avif") and "hyperprior" in row["codec"]]}
    return "\n\n".join([points_table(summary), bd_table(summary), classical_line(summary),
                         "For scale, CompressAI's published curves against the classical codecs of this run:",
                         bd_table(published)]) + "\n"


def psnr_spans(summary: dict) -> str:
    """Each learned curve's PSNR span (highest minus lowest point)."""
    return ", ".join(f"{span:.2f} dB" for span in summary["psnr_span_db"].values())


def headline(summary: dict, anchors: list[str]) -> str:
    """The BD-rates of the learned curves whose PSNR range meets an anchor's (the table beside it has the others)."""
    size = summary["learned"][0]["image_size"]
    rows = [row for row in _bd_rows(summary, anchors) if _overlaps(row["overlap_psnr_db"])]
    named = len({row["codec"] for row in rows}) > 1  # several learned codecs: say whose BD-rate each is
    parts = [f"{row['codec'] + ': ' if named else ''}{pct(row['bd_rate_psnr'])} against {row['anchor']} "
             f"(PSNR overlap {_overlap(row['overlap_psnr_db'])})" for row in rows]
    return f"BD-rate (PSNR) {'; '.join(parts)}; learned curve spans {psnr_spans(summary)} of PSNR; images {size}"


def render_kodak_headline() -> str:
    summary = _json("kodak.json")
    cpu = max(row["train_seconds"] for row in summary["learned"])
    codecs = ", ".join(sorted({row["codec"] for row in summary["learned"]}))
    return (f"Kodak (24 images), {codecs}, {len(summary['learned'])} λ, {sweep(summary['learned'])} sweep, at most "
            f"{cpu:.0f} CPU-s of training per λ: {headline(summary, ['jpeg', 'webp', 'avif'])}.\n")


#: the Kodak study's committed runs of the same recipe (bench/README.md, "Kodak"), oldest first; kodak-m64.json is
#: the study's run with its former codec (M = 64), kodak.json the run of the study's params, which the headline quotes
KODAK_RUNS = ("kodak-1200s.json", "kodak-independent.json", "kodak-m64.json", "kodak.json")
#: the study's sweeps on the photos' validation split (bench/kodak/chains.sh): chained both ways, side by side;
#: chained down with the spike guard (bench/README.md, "A guard against loss spikes"); chained down with M = 64 and
#: M = 128 latent channels, side by side, and M = 128's with the guard ("Twice the latent channels")
KODAK_CHAINS = ("kodak-chain-down-val.json", "kodak-chain-up-val.json", "kodak-chain-guard-val.json",
                "kodak-m64-val.json", "kodak-m128-val.json", "kodak-m128-guard-val.json")


def sweep(learned: list[dict]) -> str:
    """How a summary's λ sweep was trained, from its codecs' ``init`` (older summaries: independent sweeps) and
    ``spike_guard`` (older summaries: none)."""
    chained = [row["init"] for row in learned if row.get("init") in CHAINS]
    guards = sorted({row["spike_guard"] for row in learned if row.get("spike_guard") is not None})
    guarded = f", spike guard {', '.join(f'{guard:g}x' for guard in guards)}" if guards else ""
    if chained:
        return f"chained (each λ from the next {CHAINS[chained[0]]} λ's codec{guarded})"
    return ("independent" if all(row.get("init") is None for row in learned) else "from given checkpoints") + guarded


def render_kodak_runs(names: tuple[str, ...] = KODAK_RUNS,
                      anchors: tuple[str, ...] = ("avif", "jpeg", "webp")) -> str:
    """A line per committed summary of ``names``: how its sweep was trained and what it measured."""
    lines = ["| summary | codec | λ sweep | CPU-s of training per λ | steps per λ | steps per CPU-s | validation loss "
             "per λ (ascending λ) | learned PSNR span | BD-rate (PSNR), overlap: " + " | ".join(anchors) + " |",
             "|" + "---|" * (8 + len(anchors))]
    for name in names:
        if not (SUMMARIES / name).is_file():
            continue
        summary = _json(name)
        learned = sorted(summary["learned"], key=lambda row: row["point"])
        steps = [row["steps"] for row in learned]
        rates = [row["steps"] / row["train_seconds"] for row in learned]
        losses = [row.get("val_loss") for row in learned]  # summaries collected before it have none
        cells = [f"`{name}`", ", ".join(sorted({row["codec"] for row in learned})), sweep(learned),
                 f"{max(row['train_seconds'] for row in learned):.0f}",
                 f"{min(steps)}–{max(steps)}", f"{min(rates):.1f}–{max(rates):.1f}",
                 " / ".join(f"{loss:.3f}" for loss in losses) if None not in losses else "not collected",
                 psnr_spans(summary)]
        cells += [f"{pct(r['bd_rate_psnr'])}, {_overlap(r['overlap_psnr_db'])}" for r in _bd_rows(summary, [*anchors])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def render_kodak_chains() -> str:
    """The Kodak study's sweeps on the photos' validation split (:data:`KODAK_CHAINS`, those committed): a line per
    sweep (its codec, how it was chained), then every codec's point."""
    names = tuple(name for name in KODAK_CHAINS if (SUMMARIES / name).is_file())
    lines = ["| codec | λ sweep | λ | image size | bpp (bytes) | PSNR (dB) | MS-SSIM |", "|" + "---|" * 7]
    for name in names:
        learned = sorted(_json(name)["learned"], key=lambda row: row["point"])
        lines += [f"| {row['codec']} | {sweep(learned)} | {row['point']:g} | {row['image_size']} | {row['bpp']:.3f} | "
                  f"{row['psnr']:.2f} | {row['ms_ssim']:.4f} |" for row in learned]
    return render_kodak_runs(names) + "\n" + "\n".join(lines) + "\n"


def render_demo() -> str:
    summary = _json("demo.json")
    return (f"Default demo (its test split; {sweep(summary['learned'])} λ sweep): {headline(summary, ['jpeg', 'webp'])}."
            f"\n\n{bd_table(summary)}\n")


def _csv(name: str) -> list[dict]:
    with open(SUMMARIES / name) as handle:
        return list(csv.DictReader(handle))


def render_levers(study: str) -> str:
    rows = _csv(f"{study}-levers.csv")
    lines = ["| variant | N / M | patch | λ | steps | training CPU-s | images/s | val loss R + λ·255²·D | val bpp (est.) "
             "| val PSNR (dB) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['variant']} | {row['N']} / {row['M']} | {row['patch']}² | {row['lmbda']} | {row['steps']} | "
                     f"{row['train_cpu_s']} | {row['images_per_s']} | {row['val_loss']} | {row['val_bpp']} | "
                     f"{row['val_psnr']} |")
    return "\n".join(lines) + "\n"


def render_demo_lambdas() -> str:
    """The demo's candidate λ ranges and step counts on its validation split, against WebP (bench/demo_lambdas.py)."""
    rows = _csv("demo-lambdas.csv")
    first, anchor = rows[0], rows[0]["anchor"]
    qualities = ", ".join(f"q{quality} {point}" for quality, point in
                          zip(first["anchor_qualities"].split(), first["anchor_points"].split()))
    lines = [f"Validation split ({first['images']} images, {first['image_size']}), bpp from bytes; {anchor} on the "
             f"same images (bpp / PSNR dB): {qualities}.", "",
             "| λ | steps per λ | patches per step | training CPU-s (its λ together) | bpp / PSNR (dB) of each λ "
             f"| PSNR span | BD-rate (PSNR) vs {anchor} | PSNR overlap | BD-rate (MS-SSIM) | MS-SSIM overlap | note |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['lmbdas']} | {row['steps']} | {row['batch_size']} | {row['train_seconds'] or 'n/a'} | "
                     f"{row['points']} | {float(row['psnr_span_db']):.2f} dB | "
                     f"{pct(float(row['bd_rate_psnr']))} | {_overlap(float(row['overlap_psnr_db']))} | "
                     f"{pct(float(row['bd_rate_ms_ssim']))} | {_overlap(float(row['overlap_ms_ssim_db']))} | "
                     f"{row['note']} |")
    return "\n".join(lines) + "\n"


def render_variable_rate_levers() -> str:
    """The pyramid's entropy models on the photos' validation split (bench/variable_rate/levers.py)."""
    rows = _csv("variable-rate-levers.csv")
    lines = [f"Validation split of the photos ({rows[0]['images']} images, {rows[0]['image_size']}), bpp from the "
             "bytes:",
             "", "| seed | variant | training steps | training CPU-s | bpp / PSNR (dB) at each point | BD-rate (PSNR) "
             "against the seed's first variant, PSNR overlap |", "|---|---|---|---|---|---|"]
    runs = dict.fromkeys((row["seed"], row["variant"]) for row in rows)
    for seed, variant in runs:
        points = [row for row in rows if (row["seed"], row["variant"]) == (seed, variant)]
        first = points[0]
        bd, width = (float(first[key]) if first[key] else None for key in ("bd_rate_psnr", "overlap_psnr_db"))
        anchor = next(name for run_seed, name in runs if run_seed == seed)
        versus = "the anchor" if variant == anchor else f"{pct(bd)}, {_overlap(width)}"
        curve = ", ".join(f"{float(p['bpp']):.3f} / {float(p['psnr']):.2f}" for p in points)
        lines.append(f"| {seed} | {variant} | {first['steps']} | {first['train_cpu_s']} | {curve} | {versus} |")
    return "\n".join(lines) + "\n"


def render_variable_rate_cost(name: str = "variable-rate-cost.json") -> str:
    """One variable-rate model against per-λ sweeps of several budgets, per seed (bench/variable_rate/cost.py,
    family.py)."""
    runs = _json(name)["runs"]
    first = runs[0]["variable_rate"]
    lines = [f"Validation split of the photos ({first['images']} images, {first['image_size']}), bpp from the bytes:",
             "", "| seed | model | training CPU-s, all λ | training steps, all λ | bpp / PSNR (dB) at each point | the "
             "variable-rate model against it: BD-PSNR over the bpp range both share | BD-rate (PSNR), PSNR overlap |",
             "|---|---|---|---|---|---|---|"]

    def curve(row: dict) -> str:
        return ", ".join(f"{bpp:.3f} / {psnr:.2f}" for bpp, psnr in zip(row["bpp"], row["psnr"]))

    ratios = []
    for run in runs:
        model, seed = run["variable_rate"], run["seed"]
        lines.append(f"| {seed} | {model['codec']} (one model) | {model['train_cpu_s']} | {model['steps']} | "
                     f"{curve(model)} | | |")
        for sweep in run["sweeps"]:
            shared = sweep["shared_bpp"]
            gap = "n/a (no bpp range shared)" if sweep["bd_psnr_db"] is None else \
                f"{sweep['bd_psnr_db']:+.2f} dB over {shared[0]:.3f}–{shared[1]:.3f} bpp"
            lines.append(f"| {seed} | {run['single_rate_codec']}, {run['lmbdas']} × {sweep['budget_s']:g} CPU-s | "
                         f"{sweep['train_cpu_s']} | {sweep['steps']} | {curve(sweep)} | {gap} | "
                         f"{pct(sweep['bd_rate_psnr'])}, {_overlap(sweep['overlap_psnr_db'])} |")
        ratios.append(f"seed {seed}: no two measured budgets bracket it" if run["cost_ratio"] is None else
                      f"seed {seed}: {run['lmbdas']} × {run['crossing_budget_s']} CPU-s, "
                      f"**{run['cost_ratio']:.1f}×** the variable-rate model's {model['train_cpu_s']} CPU-s")
    lines += ["", "The per-λ models that draw level with the variable-rate model (BD-PSNR 0, interpolated in log "
              "budget): " + "; ".join(ratios) + "."]
    return "\n".join(lines) + "\n"


def render_pipeline_speed() -> str:
    summary = _json("pipeline-speed.json")
    lines = ["| measurement | value |", "|---|---|",
             f"| full run, wall time | **{summary['full_run_s']:.1f} s ({summary['full_run_s'] / 60:.1f} min)** |",
             f"| no-op rerun, wall time | {summary['noop_run_s']:.1f} s |", f"| jobs | {summary['jobs']} |",
             f"| CPU time of all jobs, as sampled (a lower bound: see the CPU column below) | {summary['cpu_s']:.0f} s |"]
    if "previous" in summary:  # a run made side by side just before: the ratio holds where absolute times do not
        before = summary["previous"]
        lines += ["", f"Side by side on the same machine, just before this run: {before['label']}, full run "
                  f"{before['full_run_s']:.1f} s, {before['jobs']} jobs, {before['cpu_s']:.0f} CPU-s of jobs; this "
                  f"run took **{summary['full_run_s'] / before['full_run_s']:.2f}×** its wall time."]
    previous_rules = {row["rule"]: row for row in summary.get("previous", {}).get("rules", [])}  # older: none kept
    header = "| rule | jobs | sum of job wall times (s) | slowest job (s) | CPU time (s) |"
    if previous_rules:
        header += " sum of job wall times, previous run (s) |"
    lines += ["", "CPU time is Snakemake's last sample of a job (every 0.5 s in its first 15 s, then every 30 s), so "
              "it leaves out up to 30 s of each longer job: compare the wall times.",
              "", header, "|---" * header.count(" |") + "|"]
    for row in summary["rules"]:
        line = f"| {row['rule']} | {row['jobs']} | {row['sum_s']:.1f} | {row['max_s']:.1f} | {row['cpu_s']:.1f} |"
        if previous_rules:
            before = previous_rules.get(row["rule"])
            line += f" {before['sum_s']:.1f} |" if before else " |"
        lines.append(line)
    return "\n".join(lines) + "\n"


def render_variable_rate(name: str = "variable-rate.json") -> str:
    """Seed 001's benchmark: every variable-rate model's curve, its training cost, its BD-rates against the
    single-rate codecs (same total budget in this run; a committed bench/kodak run) and the classical codecs."""
    summary = _json(name)
    block = summary["variable_rate"]
    name, cpu = (block["committed_single_rate"][key] for key in ("summary", "train_seconds"))
    lines = ["| model | training steps | training CPU-s | single-rate CPU-s for as many λ: this run "
             f"({name}) | validation (photos) bpp / PSNR at each point |", "|---|---|---|---|---|"]
    lines += [f"| {row['codec']} | {row['steps']} | {row['train_seconds']:.0f} | "
              f"{block['single_rate_train_seconds']:.0f} ({cpu:.0f}) | "
              + ", ".join(f"{bpp:.3f} / {psnr:.2f}" for bpp, psnr in row["val_points"]) + " |"
              for row in block["training"]]
    lines += ["", "| model | λ (point) | image size | bpp (bytes) | PSNR (dB) | MS-SSIM | NIQE |",
              "|---|---|---|---|---|---|---|"]
    lines += [f"| {row['codec']} | {row['point']:g} | {row['image_size']} | {row['bpp']:.3f} | {row['psnr']:.2f} | "
              f"{row['ms_ssim']:.4f} | {fixed3(row['niqe'], 'n/a')} |" for row in block["points"]]
    models = {row["codec"] for row in block["points"]}
    classical = {"bd_rate": [row for row in summary["bd_rate"] if row["codec"] in models
                             and row["anchor"] in ("jpeg", "webp", "avif")]}
    return "\n\n".join(["\n".join(lines), bd_table({"bd_rate": block["bd_rate_vs_single_rate"]}),
                         bd_table(classical)]) + "\n"


RENDERERS: dict[str, Callable[[], str]] = {
    "pipeline-speed": render_pipeline_speed,
    "kodak": render_kodak,
    "kodak-headline": render_kodak_headline,
    "kodak-runs": render_kodak_runs,
    "kodak-chains": render_kodak_chains,
    "kodak-spike-guard": lambda: spike_guard(_json("kodak-spike-guard.json")),
    "kodak-latent-channels": lambda: latent_channels(_json("kodak-latent-channels.json")),
    "kodak-levers": lambda: render_levers("kodak"),
    "demo-levers": lambda: render_levers("demo"),
    "demo-lambdas": render_demo_lambdas,
    "demo-patches": lambda: demo_patches(_csv("demo-patches.csv")),
    "demo": render_demo,
    "demo-machine": lambda: demo_machine(_json("demo.json")),
    "detection": lambda: detection(_json("detection.json")["machine"]["detection"]),
    "detection-levers": lambda: detection_levers(_csv("detection-levers.csv")),
    "machine": lambda: classification(_json("machine.json")["machine"]["classification"]),
    "machine-headline": lambda: classification_headline(_json("machine.json")["machine"]["classification"]),
    "variable-rate": render_variable_rate,
    "variable-rate-budget4x": lambda: render_variable_rate("variable-rate-budget4x.json"),
    "variable-rate-levers": render_variable_rate_levers,
    "variable-rate-cost": render_variable_rate_cost,
    "variable-rate-family": lambda: render_variable_rate_cost("variable-rate-family.json"),
    "scale": lambda: scale(_json("scale.json")),
    "capacity": lambda: capacity(_json("capacity.json")),
    "storage": lambda: storage(_json("storage.json")),
    "vqa": lambda: vqa(_json("vqa.json")["machine"]["vqa"]),
}


def rewrite(text: str) -> str:
    def block(match: re.Match) -> str:
        name = match["name"]
        if name not in RENDERERS:
            raise SystemExit(f"unknown summary block '{name}'; known: {', '.join(RENDERERS)}")
        return match.group(1) + RENDERERS[name]() + match.group(4)

    return BLOCK.sub(block, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report stale blocks, change nothing")
    args = parser.parse_args(argv)
    stale = []
    for document in DOCUMENTS:
        text = document.read_text()
        new = rewrite(text)
        if new != text:
            stale.append(document)
            if not args.check:
                document.write_text(new)
    if args.check and stale:
        print(f"stale benchmark numbers in {', '.join(map(str, stale))}; run python bench/summary.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
