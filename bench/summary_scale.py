"""The tables of bench/summary.py for datasets larger than memory (bench/scale/): what each stage costs by
dataset size and image source, the capacity plan, and the ways to store prepared data.

Each renderer takes a summary written by bench/scale/ and returns the Markdown that bench/summary.py puts between
its ``<!-- summary:NAME -->`` markers; nothing here reads files.
"""

from __future__ import annotations


def scale(summary: dict) -> str:
    """Datasets larger than memory (scale.json): peak memory and images/s of each stage by dataset size and image
    source."""
    train = summary["train"]
    lines = [f"Images of {summary['image_size']}², {summary['threads']} threads; codec training {train['steps']} "
             f"steps of {train['batch_size']} patches of {train['patch_size']}²; the sets above "
             f"{summary['distinct_images']:,} images repeat its files. A training's images/s are per CPU-second "
             "of the training process (its loader workers' decoding not counted: compare the job wall times); "
             "caching's and evaluation's are per second of the job's wall time.", "",
             "| stage | dataset images | split images | images from | job wall time (s) | peak memory (MB) | "
             "images/s |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {row['stage']} | {row['images']:,} | {row['split_images']:,} | {row['source']} | "
              f"{row['seconds']:.1f} | {row['peak_mb']:.0f} | {row['images_per_s']:.1f} |" for row in summary["rows"]]
    return "\n".join(lines) + "\n"


def capacity(plan: dict) -> str:
    """Capacity plan (capacity.json): costs measured here per image, then disk and hours per dataset and jobs per
    sweep."""
    size, threads, tflops = plan["image_size"], plan["threads"], plan["gpu_tflops_assumed"]
    codecs, first = plan["codecs"], plan["codecs"][0]
    cache_s, evaluate_s = (sum(1 / c[key] for c in codecs) / len(codecs)
                           for key in ("cache_images_per_s", "evaluate_images_per_s"))  # seconds per image
    entropy_s = sum(c["entropy_s_per_image"] for c in codecs) / len(codecs)  # the CPU's rANS, mean over the λ
    patch_s = sum(1 / c["train_patches_per_cpu_s"] for c in codecs) / len(codecs)  # CPU-seconds per patch
    gpu_s = first["coding_flops"] / (tflops * 1e12) + entropy_s  # a GPU job's seconds per image
    lines = [f"Measured here ({threads} CPU threads, images of {size}²: the {plan['photos']} photos of "
             f"`../shared/data/photos`, each prepared under {plan['repeats']} names; the default codec "
             f"{first['codec']}, one per λ, trained {plan['train_steps']} steps of {plan['train_batch']} patches of "
             f"{size}²):", "",
             f"- `prepare`: {plan['prepare_images_per_s']:.1f} images/s, {plan['png_bytes_per_image'] / 1e3:.0f} KB "
             f"of PNG per image; `cache_latents`: {1 / cache_s:.1f} images/s, `evaluate_codec` (as `params.yaml` "
             f"evaluates): {1 / evaluate_s:.1f} images/s (means over the λ);",
             f"- training: {1 / patch_s:.1f} patches per CPU-second (all threads), "
             f"{first['train_flops_per_patch'] / 1e9:.1f} GFLOP per patch (forward and backward, counted);",
             f"- coding: {first['coding_flops'] / 1e9:.1f} GFLOP per image (counted), of which the CPU's rANS "
             f"entropy coding takes " + ", ".join(f"{c['entropy_s_per_image'] * 1e3:.0f} ms" for c in codecs)
             + " per image (encode + decode) at λ = " + ", ".join(f"{c['lmbda']:g}" for c in codecs) + ".", "",
             "| per codec of a sweep | per 1 M images | " + " | ".join(f"{name}: {count:,}" for name, count
                                                                    in plan["datasets"].items()) + " |",
             "|---|---|" + "---|" * len(plan["datasets"])]
    counts = [10**6, *plan["datasets"].values()]
    rows = [("prepared PNG, GB (once per dataset)", plan["png_bytes_per_image"] / 1e9, ".1f"),
            ("`prepare`, CPU core-hours (measured rate, one process; once per dataset)",
             1 / plan["prepare_images_per_s"] / 3600, ".0f")]
    rows += [(f"bitstreams at λ = {c['lmbda']:g} ({c['bpp']:.2f} bpp), GB", c["bitstream_bytes"] / 1e9, ".1f")
             for c in codecs]
    rows += [("decoded latents ŷ, σ̂ (any λ; `--no-latents` skips them), GB", first["latent_bytes"] / 1e9, ".1f"),
             ("`cache_latents`, CPU core-hours (measured rate)", threads * cache_s / 3600, ".0f"),
             ("`evaluate_codec`, CPU core-hours (measured rate)", threads * evaluate_s / 3600, ".0f"),
             (f"`cache_latents`, GPU hours (extrapolated: {tflops:g} TFLOP/s + the CPU's rANS)", gpu_s / 3600, ".1f")]
    lines += [f"| {name} | " + " | ".join(f"{per_image * n:,{form}}" for n in counts) + " |"
              for name, per_image, form in rows]
    lines += ["", f"Training does not grow with the dataset: 100,000 steps of {plan['train_batch']} patches of "
              f"{size}² take {1e5 * plan['train_batch'] * patch_s / 3600:,.0f} CPU core-hours at the measured rate, "
              f"about "
              f"{1e5 * plan['train_batch'] * first['train_flops_per_patch'] / (tflops * 1e12) / 3600:,.1f} GPU "
              f"hours at {tflops:g} TFLOP/s (extrapolated).", "",
              "| codec sizes N | λ | τ (every λ fine-tuned) | SLURM jobs | train_codec | finetune_codec | cache_* | "
              "evaluate_* |", "|---|---|---|---|---|---|---|---|"]
    for sweep in plan["sweeps"]:
        rules = sweep["per_rule"]
        cache, evaluate = (sum(n for rule, n in rules.items() if rule.startswith(prefix))
                           for prefix in ("cache_", "evaluate_"))
        lines.append(f"| {sweep['models']} | {sweep['lmbdas']} | {sweep['taus']} | {sweep['jobs']} | "
                     f"{rules['train_codec']} | {rules['finetune_codec']} | {cache} | {evaluate} |")
    return "\n".join(lines) + "\n"


def storage(summary: dict) -> str:
    """Prepared data stored three ways (storage.json): prepare's speed and disk, and the speed of reading the
    images back."""
    lines = [f"The {summary['photos']} photos of `../shared/data/photos` ({summary['megapixels']:.2f} MP on average), "
             f"each under {summary['repeats']} "
             f"names, prepared at {summary['image_size']}² (`tar`: {summary['images_per_shard']} images per shard); "
             f"reading: the {summary['train_images']} training images in a shuffled order on one thread, from the "
             "page cache. Files and bytes count everything in `results/prepared` (not the source photos).", "",
             "| `prepare.storage` | prepare's processes | prepare, images/s | files | bytes per image | "
             "reading, images/s | pixels as `png` |", "|---|---|---|---|---|---|---|"]
    lines += [f"| `{row['storage']}` | {row['processes']} | {row['prepare_images_per_s']:.1f} | {row['files']:,} | "
              f"{row['bytes_per_image'] / 1e3:,.1f} KB | {row['read_images_per_s']:.0f} | "
              f"{'identical' if row['identical_to_png'] else 'DIFFERENT'} |" for row in summary["rows"]]
    by = {(row["storage"], row["processes"]): row for row in summary["rows"]}
    png, tar, in_place = by["png", 1], by["tar", 1], by["in_place", 1]
    lines += ["", f"Two processes prepare {by['png', 2]['prepare_images_per_s'] / png['prepare_images_per_s']:.2f}× "
              "as many images per second as one. "
              f"Shards read at {tar['read_images_per_s'] / png['read_images_per_s']:.0%} of the speed of PNG "
              f"files here, in {tar['files']} files rather than {png['files']}. In place, `prepare` writes "
              f"{in_place['bytes_per_image'] / png['bytes_per_image']:.1%} of the bytes, and a read is "
              f"{png['read_images_per_s'] / in_place['read_images_per_s']:.0f}× slower: it decodes the full photo "
              "and resizes it, so a training that streams in place spends that much more of its loader workers' "
              "CPU per image, less for source images nearer the prepared size."]
    return "\n".join(lines) + "\n"
