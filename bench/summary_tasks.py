"""The machine-branch tables of bench/summary.py: a task's accuracy against the bits it receives.

Each renderer takes a summary written by bench/collect.py (the demo's whole; the ``machine`` block of the
classification, detection and VQA studies') and returns the Markdown that bench/summary.py puts between its
``<!-- summary:NAME -->`` markers. Nothing here reads files, so the formatting helpers serve both modules.
"""

from __future__ import annotations

import math


def missing(value: float | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def pct(value: float | None) -> str:
    """A signed percentage (a BD-rate, a saving), or n/a."""
    return "n/a" if missing(value) else f"{value:+.1f} %"


def fixed3(value: float | None, absent: str = "never") -> str:
    """A bpp (or another small measure) to 3 decimals, or ``absent`` (a curve that never reaches a target)."""
    return absent if missing(value) else f"{value:.3f}"


def _points(machine: dict, receiver: str) -> list[str]:
    metric = machine["metric"]
    lines = [f"| kind | curve | λ (scalable: λ_task) | bpp the {receiver} receives | {metric} | image bpp "
             "| image PSNR (dB) |", "|---|---|---|---|---|---|---|"]
    return lines + [f"| {row['kind']} | {row['codec']} | {row['point']:g} | {row['bpp']:.3f} | "
                    f"{100 * row[metric]:.1f} % | {row['bpp_image']:.3f} | {row['psnr']:.2f} |"
                    for row in machine["points"]]


def _share(value: float | None) -> str:
    return "n/a" if missing(value) else f"{100 * value:.1f} %"


def _by_bits(needed: list[dict]) -> list[dict]:
    """The rows of a bits_for_accuracy table, cheapest first, the curves that never reach the target last."""
    return sorted(needed, key=lambda row: (missing(row["bpp"]), row["bpp"] or 0))


def _target(machine: dict) -> float:
    return machine["bits_for_accuracy"][0][f"target_{machine['metric']}"]


def demo_machine(summary: dict) -> str:
    """The default demo's learned codecs for each of its tasks."""
    size = summary["learned"][0]["image_size"]
    return "\n".join(line for task, machine in summary["machine"].items() for line in [
        f"Default demo, {task} (its test split, images {size}): uncompressed {machine['metric']} "
        f"{100 * machine['uncompressed']:.1f} %.", "", *_points(machine, "task"), ""])


def classification(machine: dict) -> str:
    """The classification study: every curve's bits → accuracy, the bits to come within 2 points of the
    uncompressed model as a share of AVIF's, and the compressed-domain classifiers beside decoding the same
    codec's pixels, and the compressed-domain speed."""
    metric = machine["metric"]
    lines = [f"Test split, {machine['images']} images of {machine['image_size']}; uncompressed {metric} "
             f"**{100 * machine['uncompressed']:.1f} %**, target {100 * _target(machine):.1f} % (2 points below). "
             "Every bpp counts the whole file or bitstream, headers included.", "",
             f"| kind | curve | bpp → {metric} (λ, quality or QP ascending in bits) |", "|---|---|---|"]
    curves: dict[tuple[str, str], list[dict]] = {}
    for row in machine["curves"]:
        curves.setdefault((row["kind"], row["codec"]), []).append(row)
    lines += [f"| {kind} | {codec} | " + ", ".join(f"{row['bpp']:.3f} → {100 * row[metric]:.1f} %"
                                                  for row in sorted(rows, key=lambda row: row["bpp"])) + " |"
              for (kind, codec), rows in curves.items()]
    lines += ["", f"Bits to reach {100 * _target(machine):.1f} % (interpolated between the measured points around "
              "the crossing) and their share of each AVIF's:", "",
              "| kind | curve | bpp to reach the target | share of AVIF 4:2:0's | share of AVIF 4:4:4's |",
              "|---|---|---|---|---|"]
    lines += [f"| {row['kind']} | {row['codec']} | {fixed3(row['bpp'])} | {_share(row.get('share_of_avif'))} | "
              f"{_share(row.get('share_of_avif444'))} |" for row in _by_bits(machine["bits_for_accuracy"])]
    lines += ["", f"Compressed-domain classifiers beside decode-then-classify (bpp → {metric}): the cResNet reads "
              "the pretrained codec's own bitstreams (the same bpp); the joint encoder + cResNet codes anew.", "",
              "| pretrained codec | λ | decoded pixels + task model | cResNet on ŷ, σ̂ | joint encoder + cResNet |",
              "|---|---|---|---|---|"]
    found = {(row["codec"], row["point"]): row for row in machine["curves"]}
    for row in (row for row in machine["curves"] if row["kind"] == "pretrained"):
        cells = [found.get((f"{row['codec']} {kind} cResNet", row["point"])) for kind in ("latent", "joint")]
        lines.append(f"| {row['codec']} | {row['point']:g} | " + " | ".join(
            "n/a" if cell is None else f"{cell['bpp']:.3f} → {100 * cell[metric]:.1f} %" for cell in [row, *cells])
            + " |")
    if machine.get("speed"):
        lines += ["", "Compressed-domain speed (`speed.csv`; both receivers decode the same bitstreams, timed side "
                  "by side in one process, 1 thread, batches of 16):", "",
                  "| codec | images from | images | bpp | entropy decode (s) | cResNet (s) | g_s + task model (s) "
                  "| images/s latents / pixels | speed-up incl. entropy decoding |", "|---" * 9 + "|"]
        lines += [f"| {row['codec']} | {row['images_from']} | {row['images']} × {row['image_size']} | "
                  f"{row['bpp']:.3f} | {row['entropy_decode_s']:.3f} | {row['latent_classifier_s']:.3f} | {row['synthesis_s']:.3f} + "
                  f"{row['task_model_s']:.3f} | {row['latent_images_per_s']:.0f} / {row['pixel_images_per_s']:.1f} | "
                  f"{row['speedup']:.1f}× |" for row in machine["speed"]]
    return "\n".join(lines) + "\n"


def classification_headline(machine: dict) -> str:
    """One sentence for README.md: the bits each learned curve needs for uncompressed − 2 points, against AVIF's."""
    metric, needed = machine["metric"], _by_bits(machine["bits_for_accuracy"])
    shares = [f"{row['codec']} ({row['kind']}) {fixed3(row['bpp'])} bpp, {_share(row.get('share_of_avif'))} of AVIF "
              f"4:2:0's bits and {_share(row.get('share_of_avif444'))} of AVIF 4:4:4's" for row in needed
              if row["kind"] != "classical" and not missing(row["bpp"])]
    never = sorted({row["kind"] for row in needed if row["kind"] != "classical" and missing(row["bpp"])})
    avif = {row["codec"]: fixed3(row["bpp"]) for row in needed if row["codec"] in ("avif", "avif444")}
    return (f"Machine benchmark (`bench/machine/params.yaml`; test split, {machine['images']} images of "
            f"{machine['image_size']}): uncompressed {metric} {100 * machine['uncompressed']:.1f} %; to come within "
            f"2 points, AVIF 4:2:0 needs {avif.get('avif', 'never')} bpp and AVIF 4:4:4 "
            f"{avif.get('avif444', 'never')}; " + ("; ".join(shares) if shares else "no learned curve gets there")
            + (f"; never within 2 points: the {', '.join(never)} curves" if never else "") + ".\n")


def detection(machine: dict) -> str:
    """Seed 002's benchmark: bits to come within 2 mAP points, the scalable codecs' savings, their redundancy."""
    metric = machine["metric"]
    lines = [f"Detection benchmark (`bench/detection/params.yaml`; test split, {machine['images']} images of "
             f"{machine['image_size']}): uncompressed {metric} {100 * machine['uncompressed']:.1f} %; target "
             f"{100 * _target(machine):.1f} % (2 points below). bpp is what the detector receives (a scalable "
             "codec's base layer alone), measured from the bytes.", "", *_points(machine, "detector")]
    lines += ["", "| kind | curve | bpp to reach the target | first measured point at or above it |",
              "|---|---|---|---|"]
    lines += [f"| {row['kind']} | {row['codec']} | {fixed3(row['bpp'])} | {fixed3(row['measured_bpp'])} |"
              for row in _by_bits(machine["bits_for_accuracy"])]
    lines += ["", "| scalable codec | against | its bpp | their bpp | bits saved |", "|---|---|---|---|---|"]
    lines += [f"| {row['codec']} | {row['against']} | {fixed3(row['bpp'])} | {fixed3(row['against_bpp'])} | "
              f"{pct(row['saving_percent'])} |" for row in machine["savings"]]
    final: dict[tuple, dict] = {}
    for row in machine.get("redundancy", []):
        final[(row["codec"], row["lmbda"], row["task_lmbda"])] = row  # the last validation of each codec
    lines += ["", "| scalable codec | λ | λ_task | step | U(base given enh) | U(enh given base) |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {codec} | {lmbda:g} | {task_lmbda:g} | {row['step']} | {fixed3(row['u_base_given_enh'], 'n/a')} | "
              f"{fixed3(row['u_enh_given_base'], 'n/a')} |"
              for (codec, lmbda, task_lmbda), row in sorted(final.items())]
    return "\n".join(lines) + "\n"


def detection_levers(rows: list[dict]) -> str:
    """The scalable codec's settings tried on the detection study's validation split (detection-levers.csv)."""
    first = rows[0]
    uncompressed = float(first["uncompressed_val_map_50"])
    lines = [f"Validation split ({first['val_images']} images): uncompressed map_50 {100 * uncompressed:.1f} %, "
             f"target {100 * uncompressed - 2:.1f} %.", "",
             "| codec | M_base | λ | λ_task | steps | base bpp | map_50 | feature MSE | image bpp | image PSNR (dB) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {row['codec']} N{row['N']} M_enh{row['M_enh']} | {row['M_base']} | {row['lmbda']} | "
              f"{float(row['task_lmbda']):g} | {row['steps']} | {float(row['val_bpp_base']):.3f} | "
              f"{100 * float(row['val_map_50']):.1f} % | {row['val_feature_mse']} | {float(row['val_bpp']):.3f} | "
              f"{row['val_psnr']} |" for row in rows]
    return "\n".join(lines) + "\n"


def vqa(machine: dict) -> str:
    """Seed 000's benchmark: every curve's VQA accuracy and image quality, the bits to come within 2 points of the
    uncompressed model (as a share of AVIF's), the accuracy per answer type and the question-only baseline's, and
    the accuracy per question type of every point."""
    metric = machine["metric"]
    lines = [f"VQA benchmark (`bench/vqa/params.yaml`; test split, {machine['images']} images of "
             f"{machine['image_size']}): the uncompressed VQA model's {metric} and the question-only (blind) "
             "model's, overall and per answer type:", "",
             "| model | " + " | ".join(machine["uncompressed_metrics"]) + " |",
             "|---|" + "---|" * len(machine["uncompressed_metrics"])]
    for name, values in (("with the image", machine["uncompressed_metrics"]), ("blind", machine.get("blind", {}))):
        lines.append(f"| {name} | " + " | ".join(f"{100 * values[key]:.1f} %" if key in values else "n/a"
                                                 for key in machine["uncompressed_metrics"]) + " |")
    lines += ["", f"| kind | codec | λ | bpp | {metric} | PSNR (dB) |", "|---|---|---|---|---|---|"]
    lines += [f"| {row['kind']} | {row['codec']} | {row['point']:g} | {row['bpp']:.3f} | {100 * row[metric]:.1f} % | "
              f"{row['psnr']:.2f} |" for row in machine["points"]]
    lines += ["", f"Bits to reach {100 * _target(machine):.1f} % (2 points below uncompressed):", "",
              "| kind | curve | bpp to reach the target | share of AVIF's |", "|---|---|---|---|"]
    lines += [f"| {row['kind']} | {row['codec']} | {fixed3(row['bpp'])} | {_share(row.get('share_of_avif'))} |"
              for row in _by_bits(machine["bits_for_accuracy"])]
    if not machine.get("by_group"):  # collected before the report broke accuracy down, or questions without types
        return "\n".join(lines) + "\n"
    groups = sorted({row["group"] for row in machine["by_group"]})
    items = {row["group"]: row["items"] for row in machine["by_group"] if row["kind"] == "uncompressed"}
    table: dict[str, dict[str, float]] = {}
    for row in machine["by_group"]:
        name = ("uncompressed" if row["kind"] == "uncompressed"
                else f"{row['kind']}: {row['codec']} {row['point']:g} ({fixed3(row['bpp'], 'n/a')} bpp)")
        table.setdefault(name, {})[row["group"]] = row[metric]
    lines += ["", f"{metric} per question type (questions of the test split in brackets):", "",
              "| point | " + " | ".join(f"{group} ({items.get(group, 0)})" for group in groups) + " |",
              "|---|" + "---|" * len(groups)]
    lines += [f"| {name} | " + " | ".join(f"{100 * values[group]:.1f} %" if group in values else "n/a"
                                           for group in groups) + " |" for name, values in table.items()]
    return "\n".join(lines) + "\n"


def demo_patches(rows: list[dict]) -> str:
    """The demo's later codecs at 16 and at 8 patches per step on its validation split (demo-patches.csv): every
    point, then each variant's training CPU-s per kind of codec (each model once)."""
    first = rows[0]
    lines = [f"Validation split ({first['images']} images, {first['image_size']}), bpp from bytes; a scalable "
             "codec's task receives its base layer alone.", "",
             "| variant | codec | λ (scalable: λ_task) | steps | patches per step | training CPU-s | image bpp | "
             "image PSNR (dB) | task | bpp the task receives | task metric |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        measured = (f"{float(row['task_bpp']):.3f} | {row['metric']} {100 * float(row['task_value']):.1f} %"
                    if row["task"] else " | ")
        lines.append(f"| {row['variant']} | {row['kind']}: {row['codec']} | {float(row['point']):g} | {row['steps']} | "
                     f"{row['batch_size']} | {row['train_seconds']} | {float(row['bpp']):.3f} | "
                     f"{float(row['psnr']):.2f} | {row['task'] or 'image'} | {measured} |")
    kinds = list(dict.fromkeys(row["kind"] for row in rows))
    seconds: dict[str, dict[str, dict[str, float]]] = {}
    for row in rows:
        seconds.setdefault(row["variant"], {}).setdefault(row["kind"], {})[row["model"]] = float(row["train_seconds"])
    lines += ["", "| variant | " + " | ".join(f"{kind}: training CPU-s" for kind in kinds) + " | all |",
              "|---|" + "---|" * (len(kinds) + 1)]
    for variant, by_kind in seconds.items():
        totals = [sum(by_kind.get(kind, {}).values()) for kind in kinds]
        lines.append(f"| {variant} | " + " | ".join(f"{total:.1f}" for total in totals) + f" | {sum(totals):.1f} |")
    return "\n".join(lines) + "\n"
